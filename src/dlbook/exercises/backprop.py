"""Checks for the exercises of section 2.2, Backpropagation in matrix form.

References are computed with autograd (or from the question's numbers), so nothing here
prints or spells out a solution.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from dlbook import check


def _shape(x: Any) -> tuple[int, ...] | None:
    try:
        return tuple(int(v) for v in x)
    except (TypeError, ValueError):
        return None


def dw_shape(dW_shape: Any, weight_grad_shape: Any) -> check.Result:
    """Shapes for X (32, 100) -> Y (32, 10): dW in the book's convention, and nn.Linear's."""
    def test(answer: tuple[Any, Any]) -> str | None:
        ours, torchs = (_shape(a) for a in answer)
        if ours is None or torchs is None:
            return "give each shape as a tuple of integers, e.g. (3, 4)."
        if ours != (100, 10):
            return f"dW with shape {ours} cannot be subtracted from W."
        if torchs != (10, 100):
            return f"weight.grad with shape {torchs} does not match nn.Linear's weight."
        return None

    return check.condition((dW_shape, weight_grad_shape), test, name="dW shape",
                           hint="a gradient always has the shape of the thing it is the gradient "
                           "of; nn.Linear stores weight with shape (out_features, in_features).")


def _sigmoid_reference(dA: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    Z = torch.logit(A.detach().double()).requires_grad_()
    torch.sigmoid(Z).backward(dA.double())
    return Z.grad


def sigmoid_backward(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> check.Result:
    """``fn(dA, A)`` must return dL/dZ for ``A = sigmoid(Z)``, compared with autograd."""
    g = torch.Generator().manual_seed(22)
    cases = []
    for shape in [(4, 3), (1, 5), (7, 2)]:
        Z = torch.randn(shape, generator=g, dtype=torch.float64) * 2
        cases.append((torch.randn(shape, generator=g, dtype=torch.float64), torch.sigmoid(Z)))
    return check.function(fn, _sigmoid_reference, cases, name="sigmoid_backward", rtol=1e-6,
                          atol=1e-8, hint="σ'(z) = σ(z)(1 - σ(z)), and σ(z) is the cached A; "
                          "multiply element-wise by the upstream gradient dA.")


def linear_nobias_backward(fn: Callable[..., Any]) -> check.Result:
    """``fn(dY, X, W)`` must return ``(dX, dW)`` for ``Y = X @ W``, compared with autograd."""
    name = "linear_nobias_backward"
    if check.unanswered(fn) or (callable(fn) and _returns_none(fn)):
        return check.condition(None, lambda _: None, name=name)  # prints "not answered yet"
    g = torch.Generator().manual_seed(23)

    def test(f: Callable[..., Any]) -> str | None:
        for B, d_in, d_out in [(5, 3, 4), (1, 6, 2), (8, 2, 2)]:
            X = torch.randn(B, d_in, generator=g, dtype=torch.float64, requires_grad=True)
            W = torch.randn(d_in, d_out, generator=g, dtype=torch.float64, requires_grad=True)
            dY = torch.randn(B, d_out, generator=g, dtype=torch.float64)
            (X @ W).backward(dY)
            got = f(dY, X.detach(), W.detach())
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                return f"should return a pair (dX, dW), got {type(got).__name__}."
            for label, mine, ref in (("dX", got[0], X.grad), ("dW", got[1], W.grad)):
                mine = torch.as_tensor(mine, dtype=torch.float64)
                if mine.shape != ref.shape:
                    return (f"{label} has shape {tuple(mine.shape)} for X {(B, d_in)} and W "
                            f"{(d_in, d_out)}; it should be {tuple(ref.shape)}.")
                if not torch.allclose(mine, ref, rtol=1e-6, atol=1e-8):
                    return f"{label} has the right shape but wrong values for X {(B, d_in)}."
        return None

    if not callable(fn):
        return check.condition(fn, lambda f: f"expected a function, got {type(f).__name__}.",
                               name=name)
    return check.condition(fn, test, name=name,
                           hint="let the shapes decide: dX (B, d_in) from dY (B, d_out) and W "
                           "(d_in, d_out); dW (d_in, d_out) from X (B, d_in) and dY.")


def _returns_none(fn: Callable[..., Any]) -> bool:
    """True when a function's body is still ``...`` (it returns None on a small input)."""
    try:
        return fn(torch.ones(2, 2, dtype=torch.float64), torch.ones(2, 3, dtype=torch.float64),
                  torch.ones(3, 2, dtype=torch.float64)) is None
    except Exception:  # noqa: BLE001 - errors are reported by the real test
        return False


#: The tiny example of the softmax cross-entropy exercise.
CE_LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
CE_LABELS = torch.tensor([0, 2])


def softmax_ce_grad(dS: Any) -> check.Result:
    """dL/dS of the mean cross-entropy for CE_LOGITS and CE_LABELS, compared with autograd."""
    S = CE_LOGITS.clone().double().requires_grad_()
    torch.nn.functional.cross_entropy(S, CE_LABELS).backward()
    return check.tensor(dS, S.grad, name="softmax CE gradient", rtol=1e-3, atol=1e-4,
                        hint="subtract 1 from the probability of each row's true class, then "
                        "divide everything by the batch size B = 2.")


def backward_flops(with_dX: Any, without_dX: Any) -> check.Result:
    """Backward FLOPs of a linear layer with B=64, d_in=512, d_out=256, with and without dX."""
    unit = 2 * 64 * 512 * 256

    def test(answer: tuple[Any, Any]) -> str | None:
        a, b = (float(v) for v in answer)
        if a == unit and b == 2 * unit:
            return ("the two answers look swapped: the layer whose input needs a gradient "
                    "does more.")
        if a != 2 * unit:
            return f"{a:.6g} FLOPs is not right for the backward pass that computes dX and dW."
        if b != unit:
            return f"{b:.6g} FLOPs is not right for the backward pass of a first layer."
        return None

    return check.condition((with_dX, without_dX), test, name="backward FLOPs",
                           hint="each of dX = dY Wᵀ and dW = Xᵀ dY is one matrix product of "
                           "2·B·d_in·d_out FLOPs; a first layer's input is data and needs "
                           "no dX.")
