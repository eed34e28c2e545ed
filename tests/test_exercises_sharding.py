"""The exercise checks of section 6.3 (``dlbook.exercises.sharding``): see exercise_harness."""

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.distributed.zero import bytes_per_parameter
from dlbook.exercises import sharding as ex


def _rs(grads):  # the book's solution
    n = len(grads)
    return list((sum(grads) / n).chunk(n))


def _rs_stack(grads):  # right: stack, mean, view as (N, piece) rows, as a tuple of lists
    n = len(grads)
    rows = torch.stack(grads).mean(0).view(n, -1)
    return tuple(row.tolist() for row in rows)


def _rs_sum(grads):  # forgets the division
    n = len(grads)
    return list(sum(grads).chunk(n))


def _rs_own_piece(grads):  # each rank keeps its own piece without reducing
    n = len(grads)
    return [g.chunk(n)[r] for r, g in enumerate(grads)]


def _rs_strided(grads):  # every n-th element instead of consecutive pieces
    n = len(grads)
    mean = sum(grads) / n
    return [mean[r::n] for r in range(n)]


def _rs_full(grads):  # an all-reduce: everyone keeps the whole mean
    n = len(grads)
    return [sum(grads) / n for _ in range(n)]


CASES = [
    Case(ex.zero2_bytes, solution=2 + 14 / 64,
         right=[2.22, bytes_per_parameter(2, 64, 2, 2, 12), np.float32(2.21875), 2.219],
         wrong=[16 / 64, 2 + 2 + 12 / 64, 4 + 12 / 64, 16, 2 + 12 / 64]),
    Case(ex.largest_model, solution=3.2e11,
         right=[320e9, int(3.2e11), torch.tensor(3.2e11, dtype=torch.float64)],
         wrong=[80e9 / 16, 80e9 * 64 / 12, 80e9 * 64 / 2, 80 * 2**30 * 64 / 16, 80e9 * 64 / 4]),
    Case(ex.zero3_traffic, solution=3 * 7 / 8 * 7e9 * 2,
         right=[3.675e10, 36.75e9, 3.68e10],
         wrong=[2 * 7 / 8 * 7e9 * 2, 3 * 7e9 * 2, 3 * 7 / 8 * 7e9 * 4, 1.5 * 7 / 8 * 7e9 * 2,
                3 * 7 / 8 * 7e9]),
    Case(ex.reduce_scatter_mean, solution=_rs, takes_function=True, right=[_rs_stack],
         wrong=[_rs_sum, _rs_own_piece, _rs_strided, _rs_full]),
    Case(ex.more_traffic_than_ddp, solution=3, right=["3", 3.0], wrong=[1, 2, "stage 3"]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)
