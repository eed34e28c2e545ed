"""Checks for the exercises of section 2.4, Making deep networks trainable.

Numeric answers are checked to the precision each exercise states (three significant figures,
or an absolute error of 1e-6); the batch-norm backward pass is compared with autograd on inputs
chosen so that the usual mistakes (ignoring ``eps``, the unbiased variance, a missing term)
change the result far beyond the tolerance.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dlbook import check


def he_std(answer: Any) -> check.Result:
    """The std of He (Kaiming) normal init for a ReLU layer with fan-in 512 (3 significant
    figures)."""
    return check.number(answer, math.sqrt(2.0 / 512), name="He std for fan-in 512", digits=3,
                        hint="He init fixes the *variance* of the weights from the fan-in; the "
                             "question asks for the standard deviation.")


def relu_variance(answer: Any) -> check.Result:
    """Var[z_10] of a bias-free ReLU chain: width 100, Var[w] = 0.03, E[x²] = 1 (3 significant
    figures)."""
    n, v, k = 100, 0.03, 10
    expected = n * v * 1.0 * (n * v / 2) ** (k - 1)
    return check.number(answer, expected, name="variance after 10 layers", digits=3,
                        hint="Apply Var[z] = n Var[w] E[a²] once per layer. The first layer "
                             "sees x itself; what does a ReLU do to the second moment of "
                             "what the next layer sees? Count the layers of each kind.")


def _bn_dx_autograd(dy: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor,
                    eps: float = 1e-5) -> torch.Tensor:
    """dLoss/dx of training-mode batch norm, by autograd (the reference)."""
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        xhat = (x - x.mean(dim=0)) / torch.sqrt(x.var(dim=0, correction=0) + eps)
        ((gamma * xhat) * dy).sum().backward()
    return x.grad


def _bn_cases() -> list[tuple[Any, ...]]:
    """(dy, x, gamma, eps) in float64. Case 2 has a feature whose variance (1e-6) is below
    eps = 1e-5, so ignoring eps changes dx by a factor of about 3; case 4 passes eps = 0.01 to
    a feature of variance 0.04 (a function that ignores its eps argument is off by 10 %);
    case 3 is a batch of three (the unbiased variance is then 1.5 times the biased one)."""
    g = torch.Generator().manual_seed(24)
    f64 = torch.float64
    cases: list[tuple[Any, ...]] = []
    for n, d, eps in ((8, 3, 1e-5), (16, 5, 1e-5), (3, 4, 1e-5), (64, 1, 0.01)):
        x = 3 * torch.randn(n, d, generator=g, dtype=f64) + 1
        if n == 16:
            x[:, 0] = 1e-3 * torch.randn(n, generator=g, dtype=f64)  # variance << eps
        if n == 64:
            x = 0.2 * torch.randn(n, d, generator=g, dtype=f64)
        dy = torch.randn(n, d, generator=g, dtype=f64)
        gamma = torch.randn(d, generator=g, dtype=f64)
        cases.append((dy, x, gamma, eps))
    return cases


def batchnorm_backward(fn: Any) -> check.Result:
    """``fn(dy, x, gamma, eps=1e-5) -> dx`` for batch norm in training mode, without autograd;
    compared with autograd in float64 within a relative error of 1e-4."""
    return check.function(fn, _bn_dx_autograd, _bn_cases(), name="batch-norm backward",
                          rtol=1e-4, atol=1e-6,
                          hint="Recompute x̂ and s from x exactly as the forward pass does "
                               "(the biased variance, and the eps you are given), then follow "
                               "the section's formula for dx, with every sum over the batch "
                               "(dim=0).")


def _one_number(v: Any) -> float | None:
    """A Python float from a number, a 0-d tensor or any one-element array, else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        t = torch.as_tensor(v.detach().cpu() if isinstance(v, torch.Tensor) else v,
                            dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None
    return float(t.reshape(())) if t.numel() == 1 else None


def batch_of_one(answer: Any) -> check.Result:
    """``(y, dx)`` of training-mode batch norm (γ = 2, β = 0.3) on a batch of one x = 5,
    each within 1e-6; numbers, one-element tensors (any shape) or a 2-element array."""
    expected = (0.3, 0.0)

    def test(ans: Any) -> str | None:
        if isinstance(ans, torch.Tensor) or hasattr(ans, "__array__"):
            flat = torch.as_tensor(ans, dtype=torch.float64).reshape(-1)
            pair = list(flat) if flat.numel() == 2 else None
        elif isinstance(ans, (tuple, list)) and len(ans) == 2:
            pair = list(ans)
        else:
            pair = None
        if pair is None:
            return "expected a pair (y, dx) of two numbers."
        values = [_one_number(v) for v in pair]
        if any(v is None for v in values):
            return "expected a pair (y, dx) whose items are single numbers."
        y, dx = values
        if any(math.isnan(v) for v in values):
            return "got nan: with eps > 0 nothing divides by zero."
        wrong = [name for name, got, want in (("y", y, expected[0]), ("dx", dx, expected[1]))
                 if abs(got - want) > 1e-6]
        if wrong:
            return f"{' and '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not right."
        return None

    return check.condition(answer, test, name="batch of one",
                           hint="With a single example, what is the batch mean, and so what "
                                "is x̂? Then ask whether y changes when x does.")


def residual_growth(answer: Any) -> check.Result:
    """Var[z_20] / Var[z_0] when every residual branch adds variance Var[z_{l-1}] / 6
    (3 significant figures)."""
    return check.number(answer, (7 / 6) ** 20, name="residual variance growth", digits=3,
                        hint="The branch and its input are uncorrelated, so their variances "
                             "add: by what factor does one block multiply the variance?")
