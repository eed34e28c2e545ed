"""Checks for the exercises of section 2.1 (computational graphs and a scalar autograd engine)."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from dlbook import check
from dlbook.autograd import Value


def hand_gradient(answer: Any) -> check.Result:
    """(df/da, df/db) for f(a, b) = (a*b + b)**2 at a = 2, b = -1, worked out by hand."""
    a = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    ((a * b + b) ** 2).backward()
    return check.tensor(answer, [a.grad.item(), b.grad.item()], name="df/da and df/db by hand",
                        hint="name the inner node u = a*b + b, so f = u**2 and df/du = 2u; "
                        "b reaches u along two edges (through a*b and directly), so df/db "
                        "adds two terms.")


def shared_node(answer: Any) -> check.Result:
    """a.grad after one d.backward(), then after a second one without zeroing (d = (a*a + a)*a)."""
    a = Value(3.0)
    d = (a * a + a) * a
    d.backward()
    first = a.grad
    d.backward()
    return check.tensor(answer, [first, a.grad], name="a.grad after one and two passes",
                        hint="expand d as a polynomial in a and differentiate it; the engine "
                        "gives the same number. A second backward adds to a leaf's grad "
                        "instead of replacing it.")


def _returns_nothing(fn: Any, *args: Any) -> bool:
    """A function whose body is still ``...`` returns None: the exercise is not answered yet."""
    if not callable(fn):
        return False
    try:
        out = fn(*args)
    except Exception:  # noqa: BLE001 - reported by the check itself
        return False
    return out is None or out is Ellipsis


def _single_node(out: Any, inputs: tuple[Value, ...], name: str) -> str | None:
    if not isinstance(out, Value):
        return f"{name} should return a Value, got {type(out).__name__}."
    if tuple(out._prev) != inputs:
        return (f"{name} should make one new node whose inputs are exactly "
                f"{'(v,)' if len(inputs) == 1 else '(a, b)'}: build it with "
                f"Value(data, {'(v,)' if len(inputs) == 1 else '(a, b)'}, '{name}') and give it a "
                "_backward(g) closure (a composition of existing ops makes several nodes).")
    return None


def softplus(answer: Callable[[Value], Value]) -> check.Result:
    """A new primitive op softplus(v) = log(1 + exp(v)) with its own backward closure."""

    def test(fn: Callable[[Value], Value]) -> str | None:
        for x in (-3.0, -0.5, 0.0, 0.7, 4.0):
            v = Value(x)
            out = fn(v)
            problem = _single_node(out, (v,), "softplus")
            if problem:
                return problem
            want = math.log1p(math.exp(x))
            if not math.isclose(out.data, want, rel_tol=1e-9, abs_tol=1e-12):
                return f"softplus({x}) gives {out.data:.6g}; the forward value is wrong."
            out.backward()
            sig = 1 / (1 + math.exp(-x))
            if not math.isclose(v.grad, sig, rel_tol=1e-9, abs_tol=1e-12):
                return f"after backward, v.grad at v = {x} is {v.grad:.6g}: the derivative is wrong."
            # The same input used by two softplus nodes and by a product: needs +=, not =.
            v = Value(x)
            y = fn(v) * v + fn(v)
            y.backward()
            want_grad = sig * x + want + sig
            if not math.isclose(v.grad, want_grad, rel_tol=1e-9, abs_tol=1e-12):
                return (f"for y = softplus(v) * v + softplus(v) at v = {x}, v.grad is "
                        f"{v.grad:.6g}: a shared input must collect every contribution.")
        return None

    if _returns_nothing(answer, Value(0.0)):
        return check.condition(..., test, name="softplus node")
    return check.condition(answer, test, name="softplus node",
                           hint="d softplus(x)/dx = 1 / (1 + exp(-x)), the sigmoid; in the "
                           "closure add (+=) g times it to v.grad.")


def power(answer: Callable[[Value, Value], Value]) -> check.Result:
    """A new op a ** b with a Value exponent (a > 0): gradients for both a and b."""

    def test(fn: Callable[[Value, Value], Value]) -> str | None:
        for x, k in ((2.0, 3.0), (0.5, -1.5), (3.0, 0.5), (1.7, 0.0), (0.9, 2.2)):
            a, b = Value(x), Value(k)
            out = fn(a, b)
            problem = _single_node(out, (a, b), "pow")
            if problem:
                return problem
            ta = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            tb = torch.tensor(k, dtype=torch.float64, requires_grad=True)
            tout = ta**tb
            tout.backward()
            if not math.isclose(out.data, tout.item(), rel_tol=1e-9):
                return f"{x} ** {k} gives {out.data:.6g}; the forward value is wrong."
            out.backward()
            if not math.isclose(a.grad, ta.grad.item(), rel_tol=1e-9, abs_tol=1e-12):
                return f"at a = {x}, b = {k}, a.grad is {a.grad:.6g}: d(a**b)/da is wrong."
            if not math.isclose(b.grad, tb.grad.item(), rel_tol=1e-9, abs_tol=1e-12):
                return f"at a = {x}, b = {k}, b.grad is {b.grad:.6g}: d(a**b)/db is wrong."
        a = Value(1.5)
        y = fn(a, a)  # a ** a: the same node as base and exponent
        y.backward()
        want = 1.5**1.5 * (math.log(1.5) + 1)
        if not math.isclose(a.grad, want, rel_tol=1e-9):
            return (f"for a ** a at a = 1.5, a.grad is {a.grad:.6g}: when base and exponent are "
                    "the same node, both contributions must be added (+=).")
        return None

    if _returns_nothing(answer, Value(2.0), Value(1.0)):
        return check.condition(..., test, name="power node")
    return check.condition(answer, test, name="power node",
                           hint="a**b = exp(b log a): d/da = b * a**(b - 1) and "
                           "d/db = a**b * log(a).")
