"""Checks for the exercises of section 1.1, The artificial neuron."""

from __future__ import annotations

from typing import Any, Callable

import torch

from dlbook import check
from dlbook.data import logic_gate
from dlbook.neuron import step

_GATE_NAMES = ("AND", "OR", "NAND", "NOR", "XOR", "XNOR")


def _floats(a: Any, name: str, numel: int) -> torch.Tensor:
    """``a`` as a float64 tensor with ``numel`` entries (a list, array, tensor or number)."""
    t = check.as_float_tensor(a)
    if t is None:
        raise ValueError(f"{name} should hold numbers, not {type(a).__name__}")
    if t.numel() != numel:
        raise ValueError(f"{name} should hold {numel} number{'s' * (numel > 1)}, "
                         f"got shape {tuple(t.shape)}")
    return t


def _gate_of(outputs: torch.Tensor) -> str:
    """The name of the gate whose truth table is ``outputs`` (on the rows of logic_gate)."""
    for name in _GATE_NAMES:
        if torch.equal(outputs, logic_gate(name)[1].double()):
            return name
    table = tuple(int(v) if v == v else v for v in outputs.tolist())
    return f"no gate of two inputs (outputs {table} on (0,0), (0,1), (1,0), (1,1))"


def _wrong_rows(X: torch.Tensor, got: torch.Tensor, want: torch.Tensor) -> list[tuple]:
    return [tuple(int(v) for v in x) for x, g, t in zip(X, got, want) if not g == t]


def nand(w: Any, b: Any) -> check.Result:
    """Exercise: weights ``w`` (two numbers) and bias ``b`` of a perceptron computing NAND."""

    def test(args: tuple) -> str | None:
        w_ = _floats(args[0], "w", 2)
        if tuple(w_.shape) not in {(2,), (1, 2)}:
            return f"w should hold two weights, shape (2,), not {tuple(w_.shape)}."
        b_ = _floats(args[1], "b", 1).reshape(())
        X, y = (t.double() for t in logic_gate("NAND"))
        pred = step(X @ w_.reshape(2) + b_)
        wrong = _wrong_rows(X, pred, y)
        if not wrong:
            return None
        return f"the neuron computes {_gate_of(pred)}, not NAND: wrong on input(s) {wrong}."

    return check.condition((w, b), test, name="NAND perceptron",
                           hint="NAND is 'not AND': start from a working AND neuron and flip "
                                "the sign of its output's condition. Remember that step(0) = 1.")


def distance(answer: Any) -> check.Result:
    """Exercise: the signed distance of x = (1, −2) to the line 3·x₁ + 4·x₂ − 5 = 0."""
    w, b, x = torch.tensor([3.0, 4.0]), -5.0, torch.tensor([1.0, -2.0])
    expected = float((w @ x + b) / w.norm())
    got = check.as_float_tensor(answer)
    hint = "use the formula for the signed distance (not its absolute value) with this w and b."
    if got is not None and got.numel() == 1 and abs(float(got.reshape(())) + expected) < 0.01:
        hint = ("the size is right, but the distance is signed: on which side of the line is "
                "x, the one w points to or the other?")
    return check.number(answer, expected, name="signed distance", digits=3, hint=hint)


def _logistic_grad_w(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
                     b: torch.Tensor) -> torch.Tensor:
    w = w.detach().clone().requires_grad_(True)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)
    (grad,) = torch.autograd.grad(loss, w)
    return grad


def _grad_cases() -> list[tuple]:
    gen = torch.Generator().manual_seed(11)
    cases = []
    for label, d, dtype in [(0.0, 3, torch.float32), (1.0, 3, torch.float32),
                            (1.0, 4, torch.float32), (0.0, 2, torch.float64),
                            (1.0, 3, torch.float64)]:
        x = 2 * torch.randn(d, generator=gen, dtype=dtype)
        w = torch.randn(d, generator=gen, dtype=dtype)
        b = torch.randn((), generator=gen, dtype=dtype)
        cases.append((x, torch.tensor(label, dtype=dtype), w, b))
    return cases


def loss_grad_w(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(x, y, w, b)`` returns ∂ℓ/∂w of the logistic loss for one example."""
    return check.function(fn, _logistic_grad_w, _grad_cases(), name="logistic-loss gradient",
                          rtol=1e-4, atol=1e-6,
                          hint="apply the chain rule through z = w·x + b: ∂ℓ/∂w is ∂ℓ/∂z "
                               "times ∂z/∂w, and the text works out ∂ℓ/∂z (mind its sign).")


def xor_network(W1: Any, b1: Any, w2: Any, b2: Any) -> check.Result:
    """Exercise: a 2-2-1 network of step neurons, a = step(w2·step(W1 x + b1) + b2), that
    computes XOR with hidden units that compute OR and NAND (in either order)."""

    def test(args: tuple) -> str | None:
        W1_ = _floats(args[0], "W1", 4)
        if tuple(W1_.shape) != (2, 2):
            return f"W1 should have shape (2, 2), one row per hidden unit, not " \
                   f"{tuple(W1_.shape)}."
        b1_, w2_ = _floats(args[1], "b1", 2).reshape(2), _floats(args[2], "w2", 2).reshape(2)
        b2_ = _floats(args[3], "b2", 1).reshape(())
        X, y = (t.double() for t in logic_gate("XOR"))
        H = step(X @ W1_.T + b1_)
        units = [_gate_of(H[:, j]) for j in range(2)]
        if sorted(units) != ["NAND", "OR"]:
            return (f"the hidden units compute {units[0]} and {units[1]}; the exercise asks "
                    f"for one OR unit and one NAND unit.")
        out = step(H @ w2_ + b2_)
        wrong = _wrong_rows(X, out, y)
        if wrong:
            return (f"the hidden units are right ({units[0]}, {units[1]}), but the network "
                    f"is wrong on input(s) {wrong}.")
        return None

    return check.condition((W1, b1, w2, b2), test, name="XOR network",
                           hint="build each hidden unit like the single neurons above (NAND is "
                                "the first exercise); then list, for each input, the hidden "
                                "pair (h1, h2) and the XOR output it must give.")
