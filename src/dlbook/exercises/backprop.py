"""Checks for the exercises of section 2.2, Backpropagation in matrix form.

References are computed with autograd (or from the question's numbers), so nothing here
prints or spells out a solution. The precision each exercise asks for (and states):

* ``dw_shape``: exact shapes (a tuple, list or ``torch.Size`` of whole numbers);
* ``sigmoid_backward``: within a relative 1e-5 (float32 arithmetic passes);
* ``linear_nobias_backward`` and ``scale_backward``: within a relative 1e-4 (float32 passes);
* ``softmax_ce_grad``: to four decimal places (within 1e-4);
* ``embedding_grad``: exact (the entries are whole numbers);
* ``backward_flops``: exact, or to three significant figures.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from dlbook import check


def _shape(x: Any) -> tuple[int, ...] | None:
    """A shape written as a tuple, list, ``torch.Size`` or 1-d tensor of whole numbers."""
    if isinstance(x, (str, bytes)) or (isinstance(x, torch.Tensor) and x.ndim != 1):
        return None
    try:
        values = [float(v) for v in x]
    except (TypeError, ValueError, OverflowError, RuntimeError):
        return None
    if not all(math.isfinite(v) and v.is_integer() for v in values):
        return None
    return tuple(int(v) for v in values)


def dw_shape(dW_shape: Any, weight_grad_shape: Any) -> check.Result:
    """Shapes for X (32, 100) -> Y (32, 10): dW in the book's convention, and nn.Linear's."""
    def test(answer: tuple[Any, Any]) -> str | None:
        ours, torchs = (_shape(a) for a in answer)
        if ours is None or torchs is None:
            return "give each shape as a tuple of whole numbers, e.g. (3, 4)."
        if ours != (100, 10):
            return f"dW with shape {ours} cannot be subtracted from W."
        if torchs != (10, 100):
            return f"weight.grad with shape {torchs} does not match nn.Linear's weight."
        return None

    return check.condition((dW_shape, weight_grad_shape), test, name="dW shape",
                           hint="a gradient always has the shape of the thing it is the gradient "
                           "of; nn.Linear stores weight with shape (out_features, in_features).")


def _as_float64(x: Any) -> torch.Tensor | None:
    try:
        return torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else x).to(
            "cpu", torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def _gradients(fn: Any, cases: list[tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]],
               labels: tuple[str, ...], *, name: str, hint: str, rtol: float = 1e-4,
               atol: float = 1e-5) -> check.Result:
    """Check ``fn(*args)``, which returns one gradient per label, against autograd's.

    Like :func:`dlbook.check.function`, but for a tuple of results of different shapes: a
    placeholder is unanswered, a forgotten ``return`` and an in-place change are wrong.
    """
    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for args, want in cases:
            mine = tuple(a.clone() for a in args)
            where = "for inputs of shapes " + ", ".join(str(tuple(a.shape)) for a in args)
            try:
                got = f(*mine)
            except Exception as exc:  # noqa: BLE001 - the student's error is a failure
                return f"raised {type(exc).__name__}: {exc}"
            if got is None:
                return "returned None: did you forget the `return` statement?"
            if any(not torch.equal(a, m) for a, m in zip(args, mine)):
                return "changed one of its arguments in place; compute new tensors instead."
            if len(labels) == 1:
                got = (got,)
            elif not isinstance(got, (tuple, list)) or len(got) != len(labels):
                return (f"should return the pair ({', '.join(labels)}), got "
                        f"{type(got).__name__}.")
            for label, g, w in zip(labels, got, want):
                g = _as_float64(g)
                if g is None:
                    return f"{label} is not a tensor or an array."
                if g.shape != w.shape:
                    if g.ndim == 2 and g.shape == w.T.shape and torch.allclose(
                            g.T, w, rtol=rtol, atol=atol):
                        return (f"{label} is transposed {where}: it has shape "
                                f"{tuple(g.shape)}, but a gradient has the shape of its "
                                f"tensor, {tuple(w.shape)}.")
                    return (f"{label} has shape {tuple(g.shape)} {where}; a gradient has the "
                            f"shape of its tensor, {tuple(w.shape)}.")
                if not torch.allclose(g, w, rtol=rtol, atol=atol):
                    return f"{label} has the right shape but wrong values {where}."
        return None

    return check.condition(fn, test, name=name, hint=hint)


def sigmoid_backward(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> check.Result:
    """``fn(dA, A)`` must return dL/dZ for ``A = sigmoid(Z)``, within a relative 1e-5."""
    g = torch.Generator().manual_seed(22)
    cases = []
    for shape in [(4, 3), (1, 5), (7, 2)]:
        Z = (torch.randn(shape, generator=g, dtype=torch.float64) * 2).requires_grad_()
        dA = torch.randn(shape, generator=g, dtype=torch.float64) * 3
        A = torch.sigmoid(Z)
        A.backward(dA)
        cases.append(((dA, A.detach()), (Z.grad,)))
    return _gradients(fn, cases, ("dZ",), name="sigmoid_backward", rtol=1e-5, atol=1e-7,
                      hint="by the chain rule dZ is the upstream gradient times σ'(Z), entry "
                      "by entry; write σ'(Z) with the cached A alone.")


def linear_nobias_backward(fn: Callable[..., Any]) -> check.Result:
    """``fn(dY, X, W)`` must return ``(dX, dW)`` for ``Y = X @ W`` with W (d_in, d_out)."""
    g = torch.Generator().manual_seed(23)
    cases = []
    for B, d_in, d_out in [(5, 3, 4), (8, 2, 2), (1, 6, 2)]:
        X = torch.randn(B, d_in, generator=g, dtype=torch.float64, requires_grad=True)
        W = torch.randn(d_in, d_out, generator=g, dtype=torch.float64, requires_grad=True)
        dY = torch.randn(B, d_out, generator=g, dtype=torch.float64)
        (X @ W).backward(dY)
        cases.append(((dY, X.detach(), W.detach()), (X.grad, W.grad)))
    return _gradients(fn, cases, ("dX", "dW"), name="linear_nobias_backward",
                      hint="let the shapes decide: dX (B, d_in) from dY (B, d_out) and W "
                      "(d_in, d_out); dW (d_in, d_out) from X (B, d_in) and dY.")


def scale_backward(fn: Callable[..., Any]) -> check.Result:
    """``fn(dY, X, gamma)`` must return ``(dX, dgamma)`` for ``Y = X * gamma``, X (B, C, T)
    and gamma (C, 1) broadcast over the batch and the time steps."""
    g = torch.Generator().manual_seed(24)
    cases = []
    for B, C, T in [(4, 3, 5), (2, 4, 3), (1, 2, 6)]:
        X = torch.randn(B, C, T, generator=g, dtype=torch.float64, requires_grad=True)
        gamma = torch.randn(C, 1, generator=g, dtype=torch.float64, requires_grad=True)
        dY = torch.randn(B, C, T, generator=g, dtype=torch.float64)
        (X * gamma).backward(dY)
        cases.append(((dY, X.detach(), gamma.detach()), (X.grad, gamma.grad)))
    return _gradients(fn, cases, ("dX", "dgamma"), name="scale_backward",
                      hint="each entry of Y is a product, so its local derivatives are the "
                      "other factor; and γ was copied along two dimensions: what does the "
                      "backward pass of a copy do, and what shape must dgamma have?")


#: The tiny example of the softmax cross-entropy exercise.
CE_LOGITS = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
CE_LABELS = torch.tensor([0, 2])


def softmax_ce_grad(dS: Any) -> check.Result:
    """dL/dS of the mean cross-entropy for CE_LOGITS and CE_LABELS, to four decimals."""
    S = CE_LOGITS.clone().double().requires_grad_()
    torch.nn.functional.cross_entropy(S, CE_LABELS).backward()
    return check.tensor(dS, S.grad, name="softmax CE gradient", rtol=0.0, atol=1e-4,
                        hint="start from the probabilities P = softmax(S) of each row; the "
                        "true classes are one-hot, and the loss is a mean over the batch.")


#: The lookup of the embedding exercise: a table of V = 5 rows of d = 2 numbers.
EMB_ROWS = 5
EMB_IDS = torch.tensor([[2, 0, 2], [1, 2, 3]])
EMB_UPSTREAM = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]],
                             [[1.0, -1.0], [-1.0, 0.0], [0.0, 3.0]]])


def embedding_grad(dE: Any) -> check.Result:
    """dL/dE for ``Y = E[EMB_IDS]`` and upstream gradient EMB_UPSTREAM (exact)."""
    E = torch.zeros(EMB_ROWS, EMB_UPSTREAM.shape[-1], dtype=torch.float64,
                    requires_grad=True)
    torch.nn.functional.embedding(EMB_IDS, E).backward(EMB_UPSTREAM.double())
    return check.tensor(dE, E.grad, name="embedding gradient", rtol=0.0, atol=1e-6,
                        hint="dE has the table's shape; each row collects the upstream rows "
                        "of every position that looked it up, however many there are.")


def _number(v: Any) -> float | None:
    if isinstance(v, (bool, str, bytes)):
        return None
    try:
        return float(v)
    except OverflowError:
        return math.inf
    except (TypeError, ValueError, RuntimeError):
        return None


def _same(got: float, want: float, digits: int = 3) -> bool:
    """Equal, or equal to ``digits`` significant figures."""
    unit = 10.0 ** (math.floor(math.log10(abs(want))) - digits + 1)
    return got == want or abs(got - want) <= 0.5 * unit * (1 + 1e-9)


def backward_flops(with_dX: Any, without_dX: Any) -> check.Result:
    """Backward FLOPs of a linear layer with B=64, d_in=512, d_out=256, with and without dX
    (exact, or to three significant figures)."""
    unit = 2 * 64 * 512 * 256

    def test(answer: tuple[Any, Any]) -> str | None:
        a, b = (_number(v) for v in answer)
        if a is None or b is None:
            return "give each answer as a number of FLOPs."
        if _same(a, unit) and _same(b, 2 * unit):
            return ("the two answers look swapped: the layer whose input needs a gradient "
                    "does more.")
        if not _same(a, 2 * unit):
            return f"{a:.6g} FLOPs is not right for the backward pass that computes dX and dW."
        if not _same(b, unit):
            return f"{b:.6g} FLOPs is not right for the backward pass of a first layer."
        return None

    return check.condition((with_dX, without_dX), test, name="backward FLOPs",
                           hint="count the matrix products the backward pass runs, and the "
                           "FLOPs of one product; a first layer's input is data.")
