"""The exercise checks of section 4.5 (``dlbook.exercises.pretraining``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import pretraining as ex
from dlbook.lora import lora_parameter_count


def _schedule(step, max_lr, warmup_steps, total_steps, min_lr):  # the book's solution
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def _schedule_torch(step, max_lr, warmup_steps, total_steps, min_lr):  # right: tensors, clamp
    t = torch.tensor(float(step), dtype=torch.float64)
    warm = max_lr * (t + 1) / max(warmup_steps, 1)
    p = ((t - warmup_steps) / max(1, total_steps - warmup_steps)).clamp(0, 1)
    cos = min_lr + (max_lr - min_lr) * (1 + torch.cos(math.pi * p)) / 2
    return torch.where(t < warmup_steps, warm, cos)


def _schedule_from_zero(step, max_lr, warmup_steps, total_steps, min_lr):  # warm-up from 0
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    return _schedule(step, max_lr, warmup_steps, total_steps, min_lr)


def _schedule_ignores_warmup(step, max_lr, warmup_steps, total_steps, min_lr):
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * step / total_steps))


def _schedule_to_zero(step, max_lr, warmup_steps, total_steps, min_lr):  # forgets min_lr
    return _schedule(step, max_lr, warmup_steps, total_steps, 0.0)


def _schedule_rises_again(step, max_lr, warmup_steps, total_steps, min_lr):  # no clamp at end
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


def _merge(W, A, B, alpha):  # the book's solution
    return W + (alpha / A.shape[0]) * B @ A


def _merge_einsum(W, A, B, alpha):  # right: einsum, rank from B
    return W + alpha / B.shape[1] * torch.einsum("or,ri->oi", B, A)


def _merge_loop(W, A, B, alpha):  # right: a sum of r rank-one updates
    out = W.clone()
    r = A.shape[0]
    for k in range(r):
        out = out + (alpha / r) * torch.outer(B[:, k], A[k])
    return out


def _merge_alpha(W, A, B, alpha):  # forgets to divide by r
    return W + alpha * B @ A


def _merge_no_scale(W, A, B, alpha):
    return W + B @ A


def _merge_transposed(W, A, B, alpha):  # (BA)ᵀ: wrong shape or wrong values
    return W + (alpha / A.shape[0]) * (B @ A).T.reshape(W.shape)


def _merge_in_place(W, A, B, alpha):
    W += (alpha / A.shape[0]) * B @ A
    return W


def _merge_delta_only(W, A, B, alpha):
    return (alpha / A.shape[0]) * B @ A


N_OPT = math.sqrt(5.76e23 / 120)

CASES = [
    Case(ex.warmup_cosine, solution=_schedule, takes_function=True,
         right=[_schedule_torch],
         wrong=[_schedule_from_zero, _schedule_ignores_warmup, _schedule_to_zero,
                _schedule_rises_again]),
    Case(ex.training_compute, solution=6 * 1.0e9 * 2.0e10,
         right=[1.2e20, 1.19e20, torch.tensor(1.2e20), np.float64(1.2e20)],
         wrong=[2 * 1.0e9 * 2.0e10, 1.0e9 * 2.0e10, 6 * 1.0e9 * 2.0e10 / 1e9, 1.3e20,
                3 * 1.0e9 * 2.0e10]),
    Case(ex.chinchilla_allocation, solution=(N_OPT, 20 * N_OPT),
         right=[(6.9e10, 1.4e12), [7.0e10, 1.39e12], (np.float64(6.93e10), torch.tensor(1.386e12))],
         wrong=[(20 * N_OPT, N_OPT), (math.sqrt(5.76e23 / 6), math.sqrt(5.76e23 / 6)),
                (math.sqrt(5.76e23 / 20), 20 * math.sqrt(5.76e23 / 20)), (7e10, 7e10),
                5.76e23 / 120, (6.9e10,)]),
    Case(ex.lora_count, solution=12 * 2 * 8 * (768 + 768),
         right=[294912, 294912.0, torch.tensor(294912),
                lora_parameter_count([(768, 768)] * 24, r=8)],
         wrong=[2 * 8 * (768 + 768), 12 * 2 * 8 * 768, 12 * 2 * 768 * 768, 12 * 4 * 8 * 1536,
                12 * 2 * 8 * 768 * 768]),
    Case(ex.merge, solution=_merge, takes_function=True,
         right=[_merge_einsum, _merge_loop],
         wrong=[_merge_alpha, _merge_no_scale, _merge_transposed, _merge_in_place,
                _merge_delta_only]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_schedule_cases_separate_the_mistakes():
    """Each wrong schedule differs from the right one on at least one case by far more than
    the tolerance."""
    cases = ex._schedule_cases()  # noqa: SLF001
    for wrong in (_schedule_from_zero, _schedule_ignores_warmup, _schedule_to_zero,
                  _schedule_rises_again):
        assert max(abs(wrong(*c) - _schedule(*c)) for c in cases) > 1e-6
