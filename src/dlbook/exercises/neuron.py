"""Checks for the exercises of section 1.1, The artificial neuron."""

from __future__ import annotations

from typing import Any, Callable

import torch

from dlbook import check
from dlbook.data import logic_gate
from dlbook.neuron import step


def _gate_test(gate: str, w: Any, b: Any) -> str | None:
    X, y = logic_gate(gate)
    w = torch.as_tensor(w, dtype=torch.float32)
    if w.shape != (2,):
        return f"w should hold two weights, shape (2,), not {tuple(w.shape)}."
    pred = step(X @ w + float(b))
    wrong = [tuple(int(v) for v in x) for x, p, t in zip(X, pred, y) if p != t]
    if wrong:
        return f"the neuron is wrong on input(s) {wrong}."
    return None


def nand(w: Any, b: Any) -> check.Result:
    """Exercise: weights ``w`` (two numbers) and bias ``b`` of a perceptron computing NAND."""
    return check.condition((w, b), lambda a: _gate_test("NAND", *a), name="NAND perceptron",
                           hint="NAND is 'not AND': flip the signs of a working AND neuron.")


def distance(answer: Any) -> check.Result:
    """Exercise: the signed distance of x = (2, 1) to the line 3·x₁ + 4·x₂ − 5 = 0."""
    w, b, x = torch.tensor([3.0, 4.0]), -5.0, torch.tensor([2.0, 1.0])
    return check.number(answer, float((w @ x + b) / w.norm()), name="signed distance",
                        hint="divide w·x + b by the length of w, ‖w‖ = 5.")


def _logistic_grad_w(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                     b: torch.Tensor) -> torch.Tensor:
    w = w.detach().clone().requires_grad_(True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)
    (grad,) = torch.autograd.grad(loss, w)
    return grad


def loss_grad_w(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(x, y, w, b)`` returns ∂ℓ/∂w of the logistic loss for one example."""
    gen = torch.Generator().manual_seed(11)
    cases = []
    for _ in range(5):
        x, w = torch.randn(3, generator=gen), torch.randn(3, generator=gen)
        b = torch.randn((), generator=gen)
        y = torch.randint(0, 2, (), generator=gen).float()
        cases.append((x, y, w, b))
    return check.function(fn, _logistic_grad_w, cases, name="logistic-loss gradient",
                          hint="the gradient is (σ(z) − y)·x with z = w·x + b.")


def xor_network(W1: Any, b1: Any, w2: Any, b2: Any) -> check.Result:
    """Exercise: a 2-2-1 network of step neurons, a = step(w2·step(W1 x + b1) + b2), = XOR."""

    def test(args: tuple) -> str | None:
        W1_, b1_, w2_, b2_ = (torch.as_tensor(a, dtype=torch.float32) for a in args)
        if W1_.shape != (2, 2) or b1_.shape != (2,) or w2_.shape != (2,) or b2_.shape != ():
            return ("expected shapes W1 (2, 2), b1 (2,), w2 (2,), b2 a number; got "
                    f"{tuple(W1_.shape)}, {tuple(b1_.shape)}, {tuple(w2_.shape)}, "
                    f"{tuple(b2_.shape)}.")
        X, y = logic_gate("XOR")
        out = step(step(X @ W1_.T + b1_) @ w2_ + b2_)
        wrong = [tuple(int(v) for v in x) for x, o, t in zip(X, out, y) if o != t]
        return None if not wrong else f"the network is wrong on input(s) {wrong}."

    return check.condition((W1, b1, w2, b2), test, name="XOR network",
                           hint="let one hidden unit compute OR, the other NAND, and the output "
                                "unit AND them.")
