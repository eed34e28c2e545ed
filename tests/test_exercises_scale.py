"""The exercise checks of section 6.6 (``dlbook.exercises.scale``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.distributed.context import merge_partials as library_merge
from dlbook.exercises import scale as ex

# ------------------------------------------------------------------- merging partial results


def _merge(out_a, lse_a, out_b, lse_b):  # the book's solution
    lse = torch.logaddexp(lse_a, lse_b)
    return (torch.exp(lse_a - lse)[..., None] * out_a
            + torch.exp(lse_b - lse)[..., None] * out_b), lse


def _merge_sigmoid(out_a, lse_a, out_b, lse_b):  # right: the weight of a is a sigmoid
    w = torch.sigmoid(lse_a - lse_b).unsqueeze(-1)
    return w * out_a + (1 - w) * out_b, torch.maximum(lse_a, lse_b) + torch.log1p(
        torch.exp(-(lse_a - lse_b).abs()))


def _merge_average(out_a, lse_a, out_b, lse_b):  # averages the outputs
    return (out_a + out_b) / 2, torch.logaddexp(lse_a, lse_b)


def _merge_unsafe(out_a, lse_a, out_b, lse_b):  # exp of the raw log-sum-exps: overflows
    ea, eb = torch.exp(lse_a), torch.exp(lse_b)
    return (ea[..., None] * out_a + eb[..., None] * out_b) / (ea + eb)[..., None], \
        torch.log(ea + eb)


def _merge_max_lse(out_a, lse_a, out_b, lse_b):  # right weights, but keeps the larger lse
    out, _ = _merge(out_a, lse_a, out_b, lse_b)
    return out, torch.maximum(lse_a, lse_b)


def _merge_sum(out_a, lse_a, out_b, lse_b):  # adds the outputs without weights
    return out_a + out_b, torch.logaddexp(lse_a, lse_b)


def _merge_no_unsqueeze(out_a, lse_a, out_b, lse_b):  # broadcasts the weights the wrong way
    lse = torch.logaddexp(lse_a, lse_b)
    return out_a * torch.exp(lse_a - lse).sum() / lse.numel() + out_b * torch.exp(
        lse_b - lse).sum() / lse.numel(), lse


def _merge_ellipsis(out_a, lse_a, out_b, lse_b):
    ...


# ------------------------------------------------------------------------- the layout

CASES = [
    Case(ex.merge_partials, solution=_merge, takes_function=True,
         right=[_merge_sigmoid, library_merge],
         wrong=[_merge_average, _merge_unsafe, _merge_max_lse, _merge_sum, _merge_no_unsqueeze,
                "logaddexp"],
         unanswered=[..., _merge_ellipsis]),
    Case(ex.ring_bytes, solution=7 * 2 * 16384 * 8 * 128 * 2,
         right=[469762048.0, np.int64(469762048), (8 - 1) * 2 * 131072 // 8 * 1024 * 2],
         wrong=[8 * 2 * 16384 * 8 * 128 * 2, 7 * 16384 * 8 * 128 * 2,
                7 * 2 * 131072 * 8 * 128 * 2, 7 * 2 * 16384 * 8 * 128,
                7 * 2 * 16384 * 32 * 128 * 2]),
    Case(ex.layout_fits, solution=(8, 1),
         right=[[8, 1], (np.int64(8), 1)],
         wrong=[(4, 2), (1, 8), (8, 2), (16, 1), (2, 4), "8x1"]),
    Case(ex.checkpoint_interval, solution=math.sqrt(2 * 60 * 14400),
         right=[1314.5, 1310, math.sqrt(1.728e6)],
         wrong=[math.sqrt(60 * 14400), math.sqrt(2 * 60 * 4), 2 * 60 * 14400,
                math.sqrt(2 * 60 * 240), 60 * 14400 ** 0.5]),
    Case(ex.atomic_save, solution="D",
         right=["d", " D "],
         wrong=["A", "B", "C"]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_merge_cases_overflow_a_plain_exp_and_agree_with_the_library():
    cases = ex._merge_inputs()  # noqa: SLF001
    assert any(float(c[1].max()) > 700 for c in cases)
    for oa, la, ob, lb, o, l in cases:
        got_o, got_l = library_merge(oa, la, ob, lb)
        torch.testing.assert_close(got_o, o, rtol=0, atol=1e-12)
        torch.testing.assert_close(got_l, l, rtol=0, atol=1e-12)


def test_the_layout_answer_is_unique_among_the_smallest_replicas():
    fits = [(t, p) for t in (1, 2, 4, 8) for p in range(1, 65)
            if ex._layout_memory_gb(t, p) <= 72]  # noqa: SLF001
    smallest = min(t * p for t, p in fits)
    assert [(t, p) for t, p in fits if t * p == smallest] == [(8, 1)]
    assert ex._layout_memory_gb(8, 1) == pytest.approx(67.5)  # noqa: SLF001
