"""Checks for the exercises of section 2.1 (computational graphs and a scalar autograd engine).

The checks of new operations (``softplus``, ``power``) tell the mistakes apart: a wrong local
derivative, a closure that ignores the gradient ``g`` arriving from downstream (every test that
starts the backward pass at the new node itself has g = 1 and cannot see that), and a closure
that assigns (``=``) instead of adding (``+=``), which loses the contributions of other uses.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch

from dlbook import check
from dlbook.autograd import Value, topological_order

_FORGOT_RETURN = "returned None: did you forget the `return` statement?"


def hand_gradient(answer: Any) -> check.Result:
    """(df/da, df/db) for f(a, b) = (a*b + b)**2 at a = 2, b = -1, worked out by hand."""
    a = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-1.0, dtype=torch.float64, requires_grad=True)
    ((a * b + b) ** 2).backward()
    return check.tensor(answer, [a.grad.item(), b.grad.item()], name="df/da and df/db by hand",
                        rtol=1e-4, atol=1e-6,
                        hint="name the inner node u = a*b + b and start from df/du; b reaches "
                        "u along two edges, and each edge contributes one term.")


def shared_node(answer: Any) -> check.Result:
    """a.grad after one d.backward(), then after a second one without zeroing (d = (a*a + a)*a)."""
    a = Value(3.0)
    d = (a * a + a) * a
    d.backward()
    first = a.grad
    d.backward()
    return check.tensor(answer, [first, a.grad], name="a.grad after one and two passes",
                        rtol=1e-4, atol=1e-6,
                        hint="expand d as a polynomial in a and differentiate it; the engine "
                        "gives the same number. Then ask what a second backward pass does to a "
                        "leaf's grad.")


# ----- new operations: softplus and power --------------------------------------------------
def _close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def _single_node(out: Any, inputs: tuple[Value, ...], name: str) -> str | None:
    if out is None:
        return _FORGOT_RETURN
    if not isinstance(out, Value):
        return f"{name} should return a Value, got {type(out).__name__}."
    args = "(v,)" if len(inputs) == 1 else "(a, b)"
    if tuple(out._prev) != inputs:
        return (f"{name} should make one new node whose inputs are exactly {args}: build it "
                f"with Value(data, {args}, '{name}') and give it a _backward(g) closure (a "
                "composition of existing ops makes several nodes).")
    return None


_MISSING_G = ("your closure ignores g, the gradient that arrives from downstream: it is 1 only "
              "when the backward pass starts at this node. Multiply each local derivative by g.")
_ASSIGNS = ("the input is also used by another node, and its contribution was lost: the "
            "closure must add to the input's grad (+=), not assign it (=).")


def _softplus_problem(fn: Callable[[Value], Value]) -> str | None:
    for x in (-3.0, -0.5, 0.0, 0.7, 4.0):
        want = math.log1p(math.exp(x))
        sig = 1 / (1 + math.exp(-x))
        v = Value(x)
        out = fn(v)
        problem = _single_node(out, (v,), "softplus")
        if problem:
            return problem
        if not _close(out.data, want):
            return f"softplus({x}) gives {out.data:.6g}; the forward value is wrong."
        out.backward()  # starts at the new node: g = 1
        if not _close(v.grad, sig):
            return (f"after softplus(v).backward(), v.grad at v = {x} is {v.grad:.6g}: the local "
                    "derivative is wrong. Hint: differentiate log(1 + e^v) with the chain rule.")
        v, k = Value(x), Value(-2.5)
        (k * fn(v)).backward()  # the gradient arriving at softplus is k = -2.5
        if not _close(v.grad, -2.5 * sig):
            if _close(v.grad, sig):
                return (f"for y = -2.5 * softplus(v) at v = {x}, v.grad is {v.grad:.6g}: "
                        + _MISSING_G)
            return (f"for y = -2.5 * softplus(v) at v = {x}, v.grad is {v.grad:.6g}, not -2.5 "
                    "times the local derivative.")
        v = Value(x)
        (fn(v) + v * 3.0).backward()  # v * 3 adds its 3 before softplus's closure runs
        if not _close(v.grad, sig + 3.0):
            return f"for y = softplus(v) + 3 v at v = {x}, v.grad is {v.grad:.6g}: " + _ASSIGNS
    return None


def softplus(answer: Callable[[Value], Value]) -> check.Result:
    """A new primitive op softplus(v) = log(1 + exp(v)) with its own backward closure."""
    return check.condition(answer, _softplus_problem, name="softplus node")


def _power_problem(fn: Callable[[Value, Value], Value]) -> str | None:
    for x, k in ((2.0, 3.0), (0.5, -1.5), (3.0, 0.5), (1.7, 0.0), (0.9, 2.2)):
        ta = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        tb = torch.tensor(k, dtype=torch.float64, requires_grad=True)
        tout = ta**tb
        tout.backward()
        want, da, db = tout.item(), ta.grad.item(), tb.grad.item()
        a, b = Value(x), Value(k)
        out = fn(a, b)
        problem = _single_node(out, (a, b), "pow")
        if problem:
            return problem
        if not _close(out.data, want):
            return f"{x} ** {k} gives {out.data:.6g}; the forward value is wrong."
        out.backward()  # starts at the new node: g = 1
        hint = " Hint: write a**b = exp(b·log a) and differentiate, the other input held fixed."
        if not _close(a.grad, da):
            return f"at a = {x}, b = {k}, a.grad is {a.grad:.6g}: d(a**b)/da is wrong." + hint
        if not _close(b.grad, db):
            return f"at a = {x}, b = {k}, b.grad is {b.grad:.6g}: d(a**b)/db is wrong." + hint
        a, b, c = Value(x), Value(k), Value(-2.5)
        (c * fn(a, b)).backward()  # the gradient arriving at the power node is -2.5
        if not (_close(a.grad, -2.5 * da) and _close(b.grad, -2.5 * db)):
            if _close(a.grad, da) or _close(b.grad, db):
                return f"for y = -2.5 * power(a, b) at a = {x}, b = {k}: " + _MISSING_G
            return (f"for y = -2.5 * power(a, b) at a = {x}, b = {k}, the gradients are not -2.5 "
                    "times the local derivatives.")
        a, b = Value(x), Value(k)
        (fn(a, b) + a * 3.0).backward()  # a * 3 adds its 3 before the power's closure runs
        if not _close(a.grad, da + 3.0):
            return f"for y = power(a, b) + 3 a at a = {x}, b = {k}, a.grad is {a.grad:.6g}: " + \
                _ASSIGNS
    a = Value(1.5)
    y = fn(a, a)  # a ** a: the same node as base and exponent
    y.backward()
    want = 1.5**1.5 * (math.log(1.5) + 1)
    if not _close(a.grad, want):
        return (f"for power(a, a) at a = 1.5, a.grad is {a.grad:.6g}: base and exponent are the "
                "same node, so both contributions must add up in a.grad (+=, not =).")
    return None


def power(answer: Callable[[Value, Value], Value]) -> check.Result:
    """A new op a ** b with a Value exponent (a > 0): gradients for both a and b."""
    return check.condition(answer, _power_problem, name="power node")


# ----- the backward pass and the topological sort, by hand -----------------------------------
def _graphs() -> list[Value]:
    """The roots of fresh test graphs, built the same way on every call."""
    roots = []
    a, b = Value(2.0, label="a"), Value(-3.0, label="b")
    c = a * b
    d = c + b
    roots.append(c * d)  # c feeds d and the root, b feeds c and d: the order matters
    x1, x2, w1, w2, bias = Value(2.0), Value(-1.0), Value(0.5), Value(1.5), Value(0.25)
    roots.append((w1 * x1 + w2 * x2 + bias).tanh())
    p = Value(3.0, label="p")
    roots.append(p * p + p)  # p is both inputs of one product
    x, y = Value(0.7, label="x"), Value(1.3, label="y")
    h = (x * y).sigmoid()
    k = h * x + y.exp()
    roots.append((k / h).log() * h + k)  # h and k are used at several depths
    t = top = Value(0.5, label="t")
    for _ in range(30):
        top = (top * 1.01).tanh() + t  # a long chain that reuses its leaf at every step
    roots.append(top)
    return roots


def _all_nodes(root: Value) -> list[Value]:
    """Every node that root depends on, in a fixed order (the same for identical graphs)."""
    seen, stack, out = set(), [root], []
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            out.append(node)
            stack.extend(node._prev)
    return out


def _grads(root: Value) -> list[float]:
    return [n.grad for n in _all_nodes(root)]


def _refuse_backward(self: Value) -> None:
    raise RuntimeError("write the sweep yourself: do not call Value.backward inside backward")


def _wrong_sweep(root: Value, how: str) -> list[float]:
    """The gradients of two wrong sweeps: closures in forward order, or each given g = 1."""
    order = topological_order(root)
    root.grad = 1.0
    for node in (order if how == "forward" else reversed(order)):
        node._backward(node.grad if how == "forward" else 1.0)
    return _grads(root)


_WRONG_SWEEPS = {
    "forward": "the closures ran inputs first (topological order); run them in reverse, so "
               "that each node's grad is complete before it is passed on.",
    "one": "each closure must receive its own node's gradient, node._backward(node.grad), "
           "not 1.",
}


def _backward_problem(fn: Callable[[Value], Any]) -> str | None:
    for index in range(len(_graphs())):
        reference = _graphs()[index]
        reference.backward()
        root = _graphs()[index]
        original, Value.backward = Value.backward, _refuse_backward  # type: ignore
        try:
            fn(root)
        finally:
            Value.backward = original  # type: ignore[method-assign]
        got = _grads(root)
        if all(_close(g, w) for g, w in zip(got, _grads(reference))):
            continue
        if root.grad != 1.0:
            return (f"after backward(root), root.grad is {root.grad:g}: the sweep starts from "
                    "d(root)/d(root) = 1.")
        if all(g == 0.0 for g in got[1:]):
            return ("every gradient except the root's is still 0: set root.grad = 1 before "
                    "the sweep, then call each node's _backward(node.grad) to pass its gradient "
                    "on to its inputs.")
        for how, message in _WRONG_SWEEPS.items():
            if all(_close(g, w) for g, w in zip(got, _wrong_sweep(_graphs()[index], how))):
                return message
        return (f"on test graph {index + 1} of {len(_graphs())} the gradients differ from the "
                "engine's: visit every node once, from the root back to the leaves, and call "
                "node._backward(node.grad).")
    return None


def backward_pass(answer: Callable[[Value], Any]) -> check.Result:
    """Exercise: ``backward(root)`` fills in the grad of every node of a freshly built graph."""
    return check.condition(answer, _backward_problem, name="backward pass")


def _describe(node: Value) -> str:
    what = node.label or (f"the '{node._op}' node" if node._op else "a leaf")
    return f"{what} (data {node.data:.4g})"


def _topological_problem(fn: Callable[[Value], Sequence[Value]]) -> str | None:
    for root in _graphs():
        order = fn(root)
        if order is None:
            return _FORGOT_RETURN
        if not isinstance(order, (list, tuple)):
            return f"return a list of Values, got {type(order).__name__}."
        if not all(isinstance(n, Value) for n in order):
            return "the list must hold the graph's Values (the nodes themselves)."
        seen: set[int] = set()
        for node in order:
            if id(node) in seen:
                return (f"{_describe(node)} appears twice: remember which nodes you have "
                        "visited and skip them.")
            seen.add(id(node))
        reachable = {id(n) for n in _all_nodes(root)}
        missing = len(reachable - seen)
        if missing:
            return (f"{missing} of the {len(reachable)} nodes are missing: visit every input "
                    "(node._prev) of every node you reach.")
        if seen - reachable:
            return "the list holds nodes that the root does not depend on."
        position = {id(n): i for i, n in enumerate(order)}
        for node in order:
            for child in node._prev:
                if position[id(child)] > position[id(node)]:
                    return (f"{_describe(node)} comes before its input {_describe(child)}: "
                            "append a node only after all of its inputs (post-order).")
    return None


def topological_sort(answer: Callable[[Value], Sequence[Value]]) -> check.Result:
    """Exercise: ``topo_sort(root)`` lists every node of the graph once, each after its inputs."""
    return check.condition(answer, _topological_problem, name="topological sort")
