"""Checks for the exercises of section 2.4, Making deep networks trainable."""

from __future__ import annotations

import math
from typing import Any

import torch

from dlbook import check


def he_std(answer: Any) -> check.Result:
    """The std of He (Kaiming) normal init for a ReLU layer with fan-in 512."""
    return check.number(answer, math.sqrt(2.0 / 512), name="He std for fan-in 512", rtol=1e-3,
                        hint="He init sets Var[w] = 2 / fan_in; the std is the square root "
                             "of the variance.")


def relu_variance(answer: Any) -> check.Result:
    """Var[z_10] of a bias-free ReLU chain: width 100, Var[w] = 0.03, E[x²] = 1."""
    n, v, k = 100, 0.03, 10
    expected = n * v * 1.0 * (n * v / 2) ** (k - 1)
    return check.number(answer, expected, name="variance after 10 layers", rtol=1e-3,
                        hint="The first layer sees x itself: Var[z_1] = n Var[w] E[x²]. Every "
                             "later layer sees relu(z), which keeps half the second moment, so "
                             "it multiplies the variance by n Var[w] / 2. Count how many "
                             "times.")


def _bn_dx_autograd(dy: torch.Tensor, x: torch.Tensor, gamma: torch.Tensor,
                    eps: float = 1e-5) -> torch.Tensor:
    """dLoss/dx of training-mode batch norm, by autograd (the reference)."""
    with torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        xhat = (x - x.mean(dim=0)) / torch.sqrt(x.var(dim=0, correction=0) + eps)
        ((gamma * xhat) * dy).sum().backward()
    return x.grad


def _bn_cases() -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(24)
    cases = []
    for n, d in ((8, 3), (16, 5), (2, 4), (64, 1)):
        x = 3 * torch.randn(n, d, generator=g, dtype=torch.float64) + 1
        dy = torch.randn(n, d, generator=g, dtype=torch.float64)
        gamma = torch.randn(d, generator=g, dtype=torch.float64)
        cases.append((dy, x, gamma))
    return cases


def batchnorm_backward(fn: Any) -> check.Result:
    """``fn(dy, x, gamma, eps=1e-5) -> dx`` for batch norm in training mode, without autograd."""
    return check.function(fn, _bn_dx_autograd, _bn_cases(), name="batch-norm backward",
                          rtol=1e-6, atol=1e-9,
                          hint="Recompute x̂ and σ = sqrt(var + eps) with the biased variance "
                               "(correction=0), then dx = γ / (N σ) · (N dy − Σ dy − x̂ "
                               "Σ(dy x̂)), every sum over the batch (dim=0).")


def batch_of_one(answer: Any) -> check.Result:
    """``(y, dx)`` of training-mode batch norm (γ = 2, β = 0.3) on a batch of one x = 5."""
    return check.tensor(answer, [0.3, 0.0], name="batch of one", atol=1e-6,
                        hint="With a single example the batch mean is the example itself: "
                             "what is x − μ? And the output no longer depends on x at all.")


def residual_growth(answer: Any) -> check.Result:
    """Var[z_20] / Var[z_0] when every residual branch adds variance Var[z_{l-1}] / 6."""
    return check.number(answer, (7 / 6) ** 20, name="residual variance growth", rtol=1e-3,
                        hint="Var[z_l] = Var[z_{l-1}] + Var[f_l] = (1 + 1/6) Var[z_{l-1}] for "
                             "independent zero-mean terms; repeat 20 times.")
