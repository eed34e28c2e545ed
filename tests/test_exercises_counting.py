"""The exercise checks of section 5.1 (``dlbook.exercises.counting``): see exercise_harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import counting as ex
from dlbook.gpt import GPT

L, d, V, T = 6, 512, 32000, 512
N_FORMULA = 12 * L * d * d + 13 * L * d + (V + T + 2) * d
N_MODEL = GPT(ex.PARAMS_CONFIG).num_parameters()

N7, D7, DAY = 6.74e9, 2.0e12, 86400
DAYS = 6 * N7 * D7 / (1024 * 312e12 * 0.40) / DAY

s, b, h, a = 2048, 4, 4096, 32
ACT = s * b * h * (34 + 5 * a * s / h)


CASES = [
    Case(ex.parameters, solution=N_FORMULA,
         right=[N_MODEL, float(N_FORMULA), np.int64(N_FORMULA), torch.tensor(N_FORMULA)],
         wrong=[12 * L * d * d,                                   # the rule of thumb only
                N_FORMULA + V * d,                                # the tied head counted twice
                N_FORMULA - T * d,                                # no position table
                12 * L * d * d + (V + T) * d]),                   # no biases, no norms
    Case(ex.training_days, solution=DAYS,
         right=[round(DAYS, 1), 6 * N7 * D7 / (1024 * 0.4 * 312e12 * 24 * 3600),
                np.float32(DAYS)],
         wrong=[2 * N7 * D7 / (1024 * 312e12 * 0.40) / DAY,       # 2ND: forward only
                6 * N7 * D7 / (1024 * 312e12) / DAY,              # MFU forgotten
                6 * N7 * D7 / (312e12 * 0.40) / DAY,              # one GPU
                6 * N7 * D7 / (1024 * 312e12 * 0.40) / 3600]),    # hours
    Case(ex.activation_bytes, solution=ACT,
         right=[int(ACT), 34 * s * b * h + 5 * a * s * s * b, np.float64(ACT)],
         wrong=[34 * s * b * h,                                   # attention term forgotten
                s * h * (34 + 5 * a * s / h),                     # batch forgotten
                2 * ACT,                                          # fp32 instead of 16 bits
                s * b * h * (34 + 5 * a * s / h) * 24]),          # times some layer count
    Case(ex.largest_model, solution=5e9,
         right=[5_000_000_000, 80e9 / (2 + 2 + 4 + 4 + 4), 4.99e9],
         wrong=[80e9 / 2, 80e9 / 4, 80e9 / 12, 80e9 / 8, 80 / 16]),
]


@pytest.mark.parametrize("check, expected, answer", case_params(CASES))
def test_check(check, expected, answer, capsys):
    run_case(check, expected, answer, capsys)


def test_formula_equals_the_model():
    assert N_FORMULA == N_MODEL
