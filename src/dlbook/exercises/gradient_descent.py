"""Checks for the exercises of section 1.4, Gradient descent.

Each exercise states the precision it needs (three significant figures for the numbers, a whole
number for the step count); the checks accept exactly that, as a float, int, 0-d tensor or
NumPy number.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from dlbook import check

# The quadratic of the first two exercises: f(x) = ½ xᵀ A x with eigenvalues 1 and 6.
_A = torch.tensor([[5.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
#: The exercise "steps to a tolerance": f(x) = (λ/2) x² with λ = 4, η = 0.1, x_0 = 1, |x_t| ≤ 1e-6.
CURVATURE, STEP_LR, TOLERANCE = 4.0, 0.1, 1e-6
#: The exercise "how much noise does a batch remove?": N examples, spread tr Σ, batch size B.
#: B is a fifth of N, so the finite-population factor (N − B)/(N − 1) = 40/49 matters, and
#: (N − B)/N = 0.8 gives a visibly different answer.
NOISE_N, NOISE_TRACE, NOISE_B = 50, 4.0, 10


def _eigenvalues() -> tuple[float, float]:
    lam = torch.linalg.eigvalsh(_A)
    return float(lam[0]), float(lam[-1])


def _as_float(answer: Any) -> float | None:
    return check.as_number(answer)


def _near(answer: Any, value: float, rel: float = 2e-3) -> bool:
    got = _as_float(answer)
    return got is not None and math.isclose(got, value, rel_tol=rel)


def _same_to(got: float, want: float, digits: int) -> bool:
    """``got`` equals ``want`` to ``digits`` significant figures (within half a unit)."""
    unit = 10.0 ** (math.floor(math.log10(abs(want))) - digits + 1)
    return abs(got - want) <= 0.5 * unit * (1 + 1e-9)


def max_lr(answer: Any) -> check.Result:
    """Exercise: the largest stable learning rate for f(x) = ½ xᵀ A x, A = [[5, 2], [2, 2]], to
    three significant figures."""
    lam_min, lam_max = _eigenvalues()
    hint = ("the steepest direction diverges first: once |1 − η λ| > 1 for the largest "
            "eigenvalue λ of A (trace 7, determinant 6).")
    if _near(answer, 2 / lam_min):
        hint = "that is the limit of the flattest direction; the steepest one diverges first."
    elif _near(answer, 1 / lam_max):
        hint = ("above 1/λ_max the steep direction oscillates, but it still converges for a "
                "while longer.")
    elif _near(answer, 2 / (lam_min + lam_max)):
        hint = "that is the best learning rate, not the largest stable one."
    elif _near(answer, 2 / float(_A.diagonal().max())):
        hint = "the curvatures are the eigenvalues of A, not its diagonal entries."
    return check.number(answer, 2 / lam_max, name="largest stable learning rate", digits=3,
                        hint=hint)


def best_lr(lr: Any, rate: Any) -> check.Result:
    """Exercise: the best fixed learning rate η* and its contraction ρ* for the same A, each to
    three significant figures."""
    lam_min, lam_max = _eigenvalues()
    want_lr, want_rate = 2 / (lam_min + lam_max), (lam_max - lam_min) / (lam_max + lam_min)

    def test(answer: tuple[Any, Any]) -> str | None:
        got_lr, got_rate = (_as_float(v) for v in answer)
        if got_lr is None or got_rate is None:
            return "give two numbers: the learning rate and the contraction per step."
        if not _same_to(got_lr, want_lr, 3):
            if math.isclose(got_lr, 2 / lam_max, rel_tol=2e-3):
                return "that learning rate is the largest stable one, not the best one."
            return f"the learning rate {got_lr:.6g} is not the best one."
        if not _same_to(got_rate, want_rate, 3):
            if math.isclose(got_rate, 1 - want_rate, rel_tol=2e-3):
                return "the rate is |1 − η λ|, the factor that remains, not the part removed."
            return f"the learning rate is right, but the rate {got_rate:.6g} is not."
        return None

    return check.condition((lr, rate), test, name="best learning rate and its rate",
                           hint="make the flat and the steep direction shrink equally fast.")


def steps_to_tolerance(answer: Any) -> check.Result:
    """Exercise: first t with |x_t| ≤ 1e-6 for f = 2x² (λ = 4), η = 0.1, x_0 = 1: a whole
    number."""
    factor, t, x = 1 - STEP_LR * CURVATURE, 0, 1.0
    while abs(x) > TOLERANCE:
        x, t = x * factor, t + 1
    got = _as_float(answer)
    if got is not None and not math.isfinite(got):
        got = None
    hint = ("x_t shrinks by the same factor every step: find that factor, then the first whole t "
            "at which its t-th power is at most 1e-6.")
    if got is not None and got != round(got):
        hint = "the number of steps is a whole number: the first t that reaches the tolerance."
    elif got is not None and got == t - 1:
        hint = "check |x_t| at your t: is it below 1e-6 yet?"
    return check.number(answer, t, name="steps to reach 1e-6", rtol=0, atol=1e-9, hint=hint)


def _reference_step(x: torch.Tensor, A: torch.Tensor, b: torch.Tensor,
                    lr: float) -> torch.Tensor:
    return x - lr * (A @ x - b)


def gd_step(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(x, A, b, lr)`` does one gradient-descent step on ½ xᵀ A x − bᵀ x, right to
    about four significant figures (relative 1e-4; float32 arithmetic is fine)."""
    gen = torch.Generator().manual_seed(14)
    cases = []
    for d, lr in [(2, 0.1), (3, 0.05), (5, 0.2)]:
        M = torch.randn(d, d, generator=gen, dtype=torch.float64)
        A = M @ M.T + torch.eye(d, dtype=torch.float64)
        x = torch.randn(d, generator=gen, dtype=torch.float64)
        b = torch.randn(d, generator=gen, dtype=torch.float64)
        cases.append((x, A, b, lr))
    return check.function(fn, _reference_step, cases, name="one gradient-descent step",
                          hint="differentiate ½ xᵀ A x and − bᵀ x separately (A is symmetric), "
                               "then step against the gradient, returning a new tensor.")


def batch_noise(answer: Any) -> check.Result:
    """Exercise: E‖g_B − ∇L‖² for N = 50, tr Σ = 4, B = 10, drawn without replacement, to three
    significant figures."""
    n, trace, b = NOISE_N, NOISE_TRACE, NOISE_B
    hint = "use the noise formula for a batch drawn without replacement, as in a shuffled epoch."
    if _near(answer, trace / b):
        hint = ("that is the noise of a batch drawn with replacement; a shuffled epoch draws "
                "without replacement.")
    elif _near(answer, trace / b * (n - b) / n):
        hint = "check the denominator of the finite-population factor."
    elif _near(answer, trace / b**2) or _near(answer, trace / b**2 * (n - b) / (n - 1)):
        hint = "averaging B terms divides their summed variance by B², and the sum has B terms."
    return check.number(answer, trace / b * (n - b) / (n - 1), name="mini-batch noise",
                        digits=3, hint=hint)
