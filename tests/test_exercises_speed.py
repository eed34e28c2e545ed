"""The exercise checks of section 5.4 (``dlbook.exercises.speed``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.calc import GPUS
from dlbook.exercises import speed as ex
from dlbook.flash import tile_count

# ---------------------------------------------------------------- the online-softmax merge


def _merge(m1, l1, m2, l2):  # the book's solution
    m = torch.maximum(m1, m2)
    return m, l1 * torch.exp(m1 - m) + l2 * torch.exp(m2 - m)


def _merge_where(m1, l1, m2, l2):  # right: one rescaling factor is 1, written with where
    first = m1 >= m2
    m = torch.where(first, m1, m2)
    l = torch.where(first, l1 + l2 * torch.exp(m2 - m1), l2 + l1 * torch.exp(m1 - m2))
    return m, l


def _merge_lists(m1, l1, m2, l2):  # right: plain Python numbers, returned as a list
    m = [max(a, b) for a, b in zip(m1.tolist(), m2.tolist())]
    l = [x * math.exp(a - c) + y * math.exp(b - c)
         for x, y, a, b, c in zip(l1.tolist(), l2.tolist(), m1.tolist(), m2.tolist(), m)]
    return [m, l]


def _merge_no_rescale(m1, l1, m2, l2):  # adds the sums as they are
    return torch.maximum(m1, m2), l1 + l2


def _merge_sign(m1, l1, m2, l2):  # rescales by exp(m - m_old): the wrong direction
    m = torch.maximum(m1, m2)
    return m, l1 * torch.exp(m - m1) + l2 * torch.exp(m - m2)


def _merge_unsafe(m1, l1, m2, l2):  # goes back to exp of the raw scores: overflows near 1000
    return torch.maximum(m1, m2), l1 * torch.exp(m1) + l2 * torch.exp(m2)


def _merge_sum_of_max(m1, l1, m2, l2):  # adds the maxima
    m = m1 + m2
    return m, l1 * torch.exp(m1 - m) + l2 * torch.exp(m2 - m)


def _merge_lse(m1, l1, m2, l2):  # a right log-sum-exp, but not the (max, sum) state
    return torch.logaddexp(m1 + torch.log(l1), m2 + torch.log(l2)), torch.ones_like(l1)


def _merge_one(m1, l1, m2, l2):  # returns only l
    return l1 + l2


CASES = [
    Case(ex.matmul_intensity, solution=2 * 2048 * 8192 * 1024 / (2 * (2048 * 8192 + 8192 * 1024
                                                                     + 2048 * 1024)),
         right=[630, 630.2, np.float32(630.15), torch.tensor(630.1)],
         wrong=[2048 * 8192 * 1024 / (2 * (2048 * 8192 + 8192 * 1024 + 2048 * 1024)),  # no 2
                2 * 2048 * 8192 * 1024 / (4 * (2048 * 8192 + 8192 * 1024 + 2048 * 1024)),  # fp32
                2 * 2048 * 8192 * 1024 / (2 * (2048 * 8192 + 8192 * 1024)),  # no output
                2 * 2048 * 8192 * 1024 / (2048 * 8192 + 8192 * 1024 + 2048 * 1024)]),  # elements
    Case(ex.ridge_point, solution=989e12 / 4.8e12,
         right=[206, 206.0, GPUS["H200"].ridge_point, np.float64(206.04)],
         wrong=[4.8e12 / 989e12, 1979e12 / 4.8e12, 989e12 / (4.8 * 2**40), 989 / 3.35, 989e12 / 4.8e9]),
    Case(ex.online_merge, solution=_merge, takes_function=True,
         right=[_merge_where, _merge_lists],
         wrong=[_merge_no_rescale, _merge_sign, _merge_unsafe, _merge_sum_of_max, _merge_lse,
                _merge_one]),
    Case(ex.attention_matrix_bytes, solution=8 * 32 * 8192 ** 2 * 2,
         right=[34359738368.0, 32 * 2 ** 30, torch.tensor(2 ** 35, dtype=torch.float64),
                np.int64(2 ** 35)],
         wrong=[8 * 8192 ** 2 * 2, 8 * 32 * 8192 ** 2 * 4, 8 * 32 * 8192 * 2, 8 * 32 * 8192 ** 2,
                32 * 8192 ** 2 * 2]),
    Case(ex.causal_tiles, solution=32 * 33 // 2,
         right=[528.0, tile_count(4096, 4096, 128, True), np.int32(528), sum(range(1, 33))],
         wrong=[32 * 32, 32 * 32 // 2, 32 * 31 // 2, 4096 * 4097 // 2 // 128, 33 * 33 // 2]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_merging_the_states_of_two_blocks_gives_the_softmax_normaliser():
    g = torch.Generator().manual_seed(0)
    s = 50 * torch.randn(4, 12, generator=g, dtype=torch.float64)
    a, b = s[:, :5], s[:, 5:]
    ma, mb = a.amax(-1), b.amax(-1)
    m, l = _merge(ma, torch.exp(a - ma[:, None]).sum(-1), mb, torch.exp(b - mb[:, None]).sum(-1))
    torch.testing.assert_close(m + torch.log(l), torch.logsumexp(s, -1), rtol=1e-12, atol=1e-12)


def test_the_merge_cases_separate_the_mistakes():
    """Without rescaling the sums the log-sum-exp is wrong far beyond the tolerance, and the
    cases include scores where exp overflows."""
    cases = ex._merge_cases()  # noqa: SLF001
    assert any(float(c[0].max()) > 700 for c in cases)
    assert any(torch.isinf(c[0]).any() for c in cases)
    errs = [float((torch.log(_merge_no_rescale(*c)[1]) - torch.log(_merge(*c)[1])).abs().max())
            for c in cases]
    assert max(errs) > 1.0
