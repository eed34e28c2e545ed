"""Checks for the exercises of section 4.5, Pretraining, scaling and fine-tuning in miniature.

The schedule and the merge are functions, compared with a reference in float64 (relative error
1e-9) on inputs that separate the usual slips (warm-up counted from 0, decay that ignores the
warm-up steps, the scale α rather than α / r). Compute and Chinchilla's allocation need two
significant figures; the LoRA parameter count must be exact.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dlbook import check
from dlbook.lm import cosine_lr

F64 = torch.float64


def _schedule_cases() -> list[tuple[int, float, int, int, float]]:
    """(step, max_lr, warmup_steps, total_steps, min_lr): in the warm-up, at its end, in the
    decay, at and after the last step, and a schedule without warm-up."""
    cases = [(t, 3e-3, 10, 100, 3e-4) for t in (0, 4, 9, 10, 11, 37, 55, 99, 100, 150)]
    cases += [(t, 1.0, 0, 20, 0.0) for t in (0, 5, 19)]
    cases += [(t, 0.5, 1, 4, 0.1) for t in (0, 1, 2, 3)]
    return cases


def warmup_cosine(fn: Any) -> check.Result:
    """``fn(step, max_lr, warmup_steps, total_steps, min_lr) -> lr``: linear warm-up to max_lr
    in ``warmup_steps`` steps (max_lr·(step+1)/warmup_steps), then a cosine to min_lr at
    ``total_steps``, and min_lr after it (as ``dlbook.lm.cosine_lr``), relative error 1e-9."""
    return check.function(fn, cosine_lr, _schedule_cases(), name="warm-up and cosine schedule",
                          rtol=1e-9, atol=1e-15,
                          hint="During the warm-up the rate climbs by max_lr/warmup_steps per "
                               "step and reaches max_lr at step warmup_steps − 1. The cosine's "
                               "progress runs from 0 at step warmup_steps to 1 at total_steps: "
                               "min_lr + (max_lr − min_lr)·(1 + cos(π·progress))/2.")


def training_compute(answer: Any) -> check.Result:
    """The training compute in FLOPs of a model with N = 1.0e9 non-embedding parameters trained
    on D = 2.0e10 tokens, C ≈ 6·N·D, to two significant figures."""
    return check.number(answer, 6 * 1.0e9 * 2.0e10, name="training compute C", digits=2,
                        hint="Each parameter costs one multiply and one add per token in the "
                             "forward pass, and the backward pass costs about twice the forward "
                             "one.")


_BUDGET = 5.76e23          # Gopher's and Chinchilla's training compute (Hoffmann et al. 2022)


def _chinchilla_expected() -> tuple[float, float]:
    n = math.sqrt(_BUDGET / (6 * 20))
    return n, 20 * n


def chinchilla_allocation(answer: Any) -> check.Result:
    """``(N, D)``: the compute-optimal parameters and tokens for C = 5.76e23 FLOPs with
    C = 6·N·D and D = 20·N, each to two significant figures (within 2 %)."""
    n_opt, d_opt = _chinchilla_expected()

    def test(ans: Any) -> str | None:
        if not isinstance(ans, (tuple, list)) or len(ans) != 2:
            return f"expected a pair (N, D), got {type(ans).__name__} {ans!r:.60}."
        n, d = (check.as_number(a) for a in ans)
        if n is None or d is None:
            return "N and D must both be numbers."
        if math.isclose(n, d_opt, rel_tol=0.02) and math.isclose(d, n_opt, rel_tol=0.02):
            return "N and D are swapped: the answer is (parameters, tokens)."
        wrong = [name for name, got, want in (("N", n, n_opt), ("D", d, d_opt))
                 if not math.isclose(got, want, rel_tol=0.02)]
        if wrong:
            return f"{' and '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not right."
        return None

    return check.condition(answer, test, name="Chinchilla-optimal (N, D)",
                           hint="Put D = 20·N into C = 6·N·D: C = 120·N², so N = √(C/120).")


def lora_count(answer: Any) -> check.Result:
    """The trainable parameters of LoRA with rank r = 8 on the query and value projections
    (768 × 768 each) of all 12 layers of GPT-2 small, exactly."""
    expected = 12 * 2 * 8 * (768 + 768)
    return check.number(answer, expected, name="LoRA parameters of GPT-2 small", rtol=0,
                        atol=0,
                        hint="A (r, in) and B (out, r) for each adapted matrix: r·(in + out) "
                             "numbers, for 2 matrices in each of the 12 layers. The frozen W "
                             "does not count.")


def _reference_merge(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                     alpha: float) -> torch.Tensor:
    return W + (alpha / A.shape[0]) * B @ A


def _merge_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(W, A, B, alpha) in float64: ranks 1, 2 and 4, non-square W, alpha ≠ r (so α vs α/r
    differ) and B ≠ 0 (a trained adapter)."""
    g = torch.Generator().manual_seed(45)
    cases = []
    for n_out, n_in, r, alpha in ((5, 3, 2, 4.0), (4, 6, 1, 1.0), (6, 6, 4, 16.0), (3, 7, 2, 1.0)):
        W = torch.randn(n_out, n_in, generator=g, dtype=F64)
        A = torch.randn(r, n_in, generator=g, dtype=F64)
        B = torch.randn(n_out, r, generator=g, dtype=F64)
        cases.append((W, A, B, alpha))
    return cases


def merge(fn: Any) -> check.Result:
    """``fn(W, A, B, alpha) -> W_merged``: W + (α / r)·B A with r = A.shape[0], compared in
    float64 within a relative error of 1e-9 (and W must not change in place)."""
    return check.function(fn, _reference_merge, _merge_cases(), name="merging a LoRA update",
                          rtol=1e-9, atol=1e-12,
                          hint="ΔW has W's shape (out, in): B is (out, r) and A is (r, in). The "
                               "scale is α divided by the rank, and the rank is a dimension of "
                               "A.")
