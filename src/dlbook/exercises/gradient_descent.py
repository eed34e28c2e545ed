"""Checks for the exercises of section 1.4, Gradient descent."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from dlbook import check

# The quadratic of the first two exercises: f(x) = ½ xᵀ A x with eigenvalues 1 and 6.
_A = torch.tensor([[5.0, 2.0], [2.0, 2.0]], dtype=torch.float64)


def _eigenvalues() -> tuple[float, float]:
    lam = torch.linalg.eigvalsh(_A)
    return float(lam[0]), float(lam[-1])


def max_lr(answer: Any) -> check.Result:
    """Exercise: the largest stable learning rate for f(x) = ½ xᵀ A x, A = [[5, 2], [2, 2]]."""
    _, lam_max = _eigenvalues()
    return check.number(answer, 2 / lam_max, name="largest stable learning rate", rtol=1e-3,
                        hint="the steepest direction diverges once |1 − η λ_max| > 1; find the "
                             "largest eigenvalue of A (trace 7, determinant 6).")


def best_lr(lr: Any, rate: Any) -> check.Result:
    """Exercise: the best fixed learning rate η* and its contraction ρ* for the same A."""
    lam_min, lam_max = _eigenvalues()
    want_lr, want_rate = 2 / (lam_min + lam_max), (lam_max - lam_min) / (lam_max + lam_min)

    def test(answer: tuple[Any, Any]) -> str | None:
        got_lr, got_rate = (float(v) for v in answer)
        if not math.isclose(got_lr, want_lr, rel_tol=1e-3):
            return f"the learning rate {got_lr:.6g} is not the best one."
        if not math.isclose(got_rate, want_rate, rel_tol=1e-3):
            return f"the learning rate is right, but the rate {got_rate:.6g} is not."
        return None

    return check.condition((lr, rate), test, name="best learning rate and its rate",
                           hint="make the flat and the steep direction shrink equally fast: "
                                "1 − η λ_min = η λ_max − 1.")


def steps_to_tolerance(answer: Any) -> check.Result:
    """Exercise: first t with |x_t| ≤ 1e-6 for f = 2x² (L = 4), η = 0.1, x_0 = 1."""
    factor, t, x = 1 - 0.1 * 4.0, 0, 1.0
    while abs(x) > 1e-6:
        x, t = x * factor, t + 1
    return check.number(answer, t, name="steps to reach 1e-6", rtol=0, atol=1e-9,
                        hint="x_t = (1 − ηL)^t x_0 = 0.6^t; solve 0.6^t ≤ 1e-6 for the smallest "
                             "whole t (round up).")


def _reference_step(x: torch.Tensor, A: torch.Tensor, b: torch.Tensor,
                    lr: float) -> torch.Tensor:
    return x - lr * (A @ x - b)


def gd_step(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(x, A, b, lr)`` does one gradient-descent step on ½ xᵀ A x − bᵀ x."""
    gen = torch.Generator().manual_seed(14)
    cases = []
    for d, lr in [(2, 0.1), (3, 0.05), (5, 0.2)]:
        M = torch.randn(d, d, generator=gen, dtype=torch.float64)
        A = M @ M.T + torch.eye(d, dtype=torch.float64)
        x = torch.randn(d, generator=gen, dtype=torch.float64)
        b = torch.randn(d, generator=gen, dtype=torch.float64)
        cases.append((x, A, b, lr))
    return check.function(fn, _reference_step, cases, name="one gradient-descent step",
                          hint="the gradient of ½ xᵀ A x − bᵀ x is A x − b (A symmetric); the "
                               "step subtracts lr times it from x.")


def batch_noise(answer: Any) -> check.Result:
    """Exercise: E‖g_B − ∇L‖² for N = 1000, tr Σ = 4, B = 10, drawn without replacement."""
    n, trace, b = 1000, 4.0, 10
    return check.number(answer, trace / b * (n - b) / (n - 1), name="mini-batch noise",
                        rtol=1e-3,
                        hint="tr Σ / B is the noise with replacement; a shuffled epoch draws "
                             "without replacement, which multiplies it by (N − B)/(N − 1).")
