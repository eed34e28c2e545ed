"""The exercise checks of section 5.2 (``dlbook.exercises.numbers``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import torch
from exercise_harness import Case, case_params, run_case

import pytest

from dlbook import numerics
from dlbook.exercises import numbers as ex


def _kahan(values):  # the book's solution
    total, c = 0.0, 0.0
    for x in values:
        y = x - c
        t = total + y
        c = (t - total) - y
        total = t
    return total


def _kahan_library(values):  # right: dlbook.numerics in float64
    return numerics.kahan_sum(values, torch.float64)


def _neumaier(values):  # right: Neumaier's variant, which also handles a large later term
    total, c = 0.0, 0.0
    for x in values:
        t = total + x
        c += (total - t) + x if abs(total) >= abs(x) else (x - t) + total
        total = t
    return total + c


def _naive(values):
    return sum(values)


def _kahan_float32(values):  # the right algorithm in float32
    total, c = np.float32(0), np.float32(0)
    for x in values:
        y = np.float32(x) - c
        t = total + y
        c = (t - total) - y
        total = t
    return float(total)


def _kahan_sign_bug(values):  # adds the compensation with the wrong sign
    total, c = 0.0, 0.0
    for x in values:
        y = x + c
        t = total + y
        c = (t - total) - y
        total = t
    return total


def _kahan_unused(values):  # computes c but never feeds it back
    total, c = 0.0, 0.0
    for x in values:
        t = total + x
        c = (t - total) - x
        total = t
    return total


def _fp16_sum():
    s = torch.tensor(512.0, dtype=torch.float16)
    for _ in range(100):
        s = s + torch.tensor(0.3, dtype=torch.float16)
    return s


CASES = [
    Case(ex.decode_pattern, solution=numerics.decode("1|10010|1001000000", "fp16"),
         right=[-12.5, -(1 + 1 / 2 + 1 / 16) * 2 ** 3, torch.tensor(-12.5, dtype=torch.float16)],
         wrong=[12.5, -(1 / 2 + 1 / 16) * 8, -1.5625 * 2 ** 2, -1.5625 * 2 ** 4, -1.5625]),
    Case(ex.exact_integers, solution=2 ** 11,
         right=[2048.0, np.int64(2048), torch.tensor(2048)],
         wrong=[2 ** 10, 2047, 2049, 65504, 2 ** 8, 2 ** 24]),
    Case(ex.fp16_sum, solution=_fp16_sum(),
         right=[562, 512 + 100 * 0.5, float(_fp16_sum())],
         wrong=[542.0, 512.0, 512 + 100 * 0.300048828125, 612.0]),
    Case(ex.loss_scale, solution=2 ** 16,
         right=[2 ** 15, 2.0 ** 21, torch.tensor(2.0 ** 18), np.float64(131072)],
         wrong=[2 ** 14, 2 ** 22, 1000, 65504, 0, -(2 ** 16), 2 ** 16 + 1]),
    Case(ex.kahan, solution=_kahan, takes_function=True,
         right=[_kahan_library, _neumaier, math.fsum],
         wrong=[_naive, _kahan_float32, _kahan_sign_bug, _kahan_unused]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_naive_summation_is_far_off_on_every_kahan_input():
    for (values,) in ex._kahan_inputs():  # noqa: SLF001
        exact = math.fsum(values)
        assert abs(sum(values) - exact) > 1e-13 * abs(exact)
        assert abs(_kahan(values) - exact) <= 2e-16 * abs(exact)


def test_the_loss_scale_range_is_the_stated_one():
    valid = [k for k in range(0, 40) if ex._loss_scale_problem(2.0 ** k) is None]  # noqa: SLF001
    assert valid == list(range(15, 22))
