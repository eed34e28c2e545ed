"""The exercise checks of section 5.3 (``dlbook.exercises.fitting``): see exercise_harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook import calc
from dlbook.exercises import fitting as ex


def _largest(config, memory_bytes, seq_len, checkpointing):  # the book's solution
    b = 0
    while calc.training_memory(config, b + 1, seq_len,
                               checkpointing=checkpointing).fits(memory_bytes):
        b += 1
    return b


def _largest_bisect(config, memory_bytes, seq_len, checkpointing):  # right: bisection by hand
    def fits(b):
        return calc.training_memory(config, b, seq_len, checkpointing=checkpointing).total \
            <= 0.9 * memory_bytes
    lo, hi = 0, 1
    while fits(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def _largest_all_memory(config, memory_bytes, seq_len, checkpointing):  # forgets the 10 %
    b = 0
    while calc.training_memory(config, b + 1, seq_len,
                               checkpointing=checkpointing).fits(memory_bytes, usable=1.0):
        b += 1
    return b


def _largest_first_failing(config, memory_bytes, seq_len, checkpointing):  # off by one
    return _largest(config, memory_bytes, seq_len, checkpointing) + 1


def _largest_no_checkpointing(config, memory_bytes, seq_len, checkpointing):  # ignores it
    return _largest(config, memory_bytes, seq_len, "none")


def _largest_activations_only(config, memory_bytes, seq_len, checkpointing):  # no states
    b = 0
    while calc.training_memory(config, b + 1, seq_len, checkpointing=checkpointing).activations \
            <= 0.9 * memory_bytes:
        b += 1
    return b


CASES = [
    Case(ex.accumulation_weights, solution=[0.6, 0.3, 0.1],
         right=[torch.tensor([6, 3, 1]) / 10, (0.6, 0.3, 0.1), np.array([0.6, 0.3, 0.1])],
         wrong=[[1 / 3, 1 / 3, 1 / 3], [6, 3, 1], [1.0, 1.0, 1.0], [0.1, 0.3, 0.6], [0.6, 0.3]]),
    Case(ex.best_spacing, solution=(10, 20),
         right=[[10, 20], (10.0, torch.tensor(20)), (np.int64(10), 20.0)],
         wrong=[(20, 10), (1, 101), (100, 101), (10, 10), (8, 21), 10, (10,)]),
    Case(ex.offload_traffic, solution=6 * 13.0e9,
         right=[7.8e10, 78_000_000_000, np.float64(7.8e10), torch.tensor(7.8e10)],
         wrong=[16 * 13.0e9, 12 * 13.0e9, 4 * 13.0e9, 2 * 13.0e9, 8 * 13.0e9, 78.0]),
    Case(ex.largest_micro_batch, solution=_largest, takes_function=True,
         right=[_largest_bisect],
         wrong=[_largest_all_memory, _largest_first_failing, _largest_no_checkpointing,
                _largest_activations_only]),
]


@pytest.mark.parametrize("check, expected, answer", case_params(CASES))
def test_check(check, expected, answer, capsys):
    run_case(check, expected, answer, capsys)
