"""The exercise checks of section 7.6 (``dlbook.exercises.service``): see exercise_harness."""

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import service as ex


def _static(lengths, max_batch):  # the book's solution
    out, start = [], 0
    for i in range(0, len(lengths), max_batch):
        group = lengths[i:i + max_batch]
        out += [start + n for n in group]
        start += max(group)
    return out


def _static_numpy(lengths, max_batch):  # right: cumulative group maxima with numpy
    lengths = np.asarray(lengths)
    groups = np.arange(len(lengths)) // max_batch
    longest = np.array([lengths[groups == g].max() for g in range(groups.max() + 1)])
    starts = np.concatenate([[0], np.cumsum(longest)[:-1]])
    return starts[groups] + lengths


def _static_no_wait(lengths, max_batch):  # forgets that later groups wait
    return list(lengths)


def _static_group_end(lengths, max_batch):  # everyone waits for the longest of the group
    out, start = [], 0
    for i in range(0, len(lengths), max_batch):
        group = lengths[i:i + max_batch]
        start += max(group)
        out += [start] * len(group)
    return out


def _static_sum(lengths, max_batch):  # groups wait for the sum, not the longest
    out, start = [], 0
    for i in range(0, len(lengths), max_batch):
        group = lengths[i:i + max_batch]
        out += [start + n for n in group]
        start += sum(group)
    return out


CASES = [
    Case(ex.sequences_that_fit, solution=59, right=[59.0, np.int64(59), torch.tensor(59)],
         wrong=[74, 119, 14, 59.5, 63]),
    Case(ex.static_latencies, solution=_static, takes_function=True, right=[_static_numpy],
         wrong=[_static_no_wait, _static_group_end, _static_sum]),
    Case(ex.requests_in_flight, solution=160, right=[160.0, 20 * 8, np.float32(160)],
         wrong=[4000, 2.5, 8, 20]),
    Case(ex.checkpoint_interval, solution=math.sqrt(2 * 90 * 21600) / 60,
         right=[33, 32.9, math.sqrt(2 * 1.5 * 360)],
         wrong=[math.sqrt(90 * 21600) / 60, math.sqrt(2 * 90 * 21600), math.sqrt(2 * 90 * 360),
                2 * 90 * 21600 / 60]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)
