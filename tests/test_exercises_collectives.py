"""The exercise checks of section 6.1 (``dlbook.exercises.collectives``): see exercise_harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.distributed import collectives as C
from dlbook.exercises import collectives as ex

# ------------------------------------------- reduce-scatter schedules of a ring to the left


def _schedule(rank, step, world_size):  # the book's solution
    return (rank + step + 1) % world_size, (rank + step + 2) % world_size


def _schedule_mirror(rank, step, world_size):  # right: the section's schedule, mirrored
    n = world_size
    send, recv = C.reduce_scatter_chunks((n - rank) % n, step, n)
    return (n - send) % n, (n - recv) % n


def _schedule_list(rank, step, world_size):  # right: a list, counted from the last step back
    last = world_size - 2
    return [(rank - (last - step) - 1) % world_size, (rank - (last - step)) % world_size]


def _schedule_off_by_one(rank, step, world_size):  # ends with chunk r - 1 complete
    return (rank + step) % world_size, (rank + step + 1) % world_size


def _schedule_own_chunk(rank, step, world_size):  # always sends its own chunk
    return rank, (rank + 1) % world_size


def _schedule_receive_same(rank, step, world_size):  # receives into the chunk it sends
    c = (rank + step + 1) % world_size
    return c, c


def _schedule_no_mod(rank, step, world_size):  # forgets the modulo: chunk numbers >= N
    return rank + step + 1, rank + step + 2


def _schedule_one_value(rank, step, world_size):  # returns only the chunk to send
    return (rank + step + 1) % world_size


_ANSWERS = dict(ex._SITUATIONS)  # noqa: SLF001

CASES = [
    Case(ex.ring_bytes, solution=2 * 7 / 8 * 2.6e9,
         right=[4.55e9, 4_550_000_000, np.float32(4.55e9), torch.tensor(4.549e9)],
         wrong=[2 * 7 * 2.6e9,  # parameter server: everything to one rank and back
                7 / 8 * 2.6e9,  # one phase only
                2 * 7 / 8 * 1.3e9,  # parameters, not bytes
                2 * 7 / 8 * 5.2e9,  # fp32
                2 * 2.6e9]),  # 2n, the limit for many ranks
    Case(ex.ring_time, solution=2 * 15 * 20e-6 + 2 * 15 / 16 * 1e8 / 25e9,
         right=[8.1e-3, 0.0081, C.ring_all_reduce_time(1e8, 16, 20e-6, 25e9)],
         wrong=[2 * 15 / 16 * 1e8 / 25e9,  # no latency
                2 * 16 * 20e-6 + 2 * 1e8 / 25e9,  # N instead of N - 1
                2 * 15 * (20e-6 + 1e8 / 25e9),  # parameter server
                15 * 20e-6 + 15 / 16 * 1e8 / 25e9,  # one phase
                8.1]),  # milliseconds
    Case(ex.reduce_scatter_schedule, solution=_schedule, takes_function=True,
         right=[_schedule_mirror, _schedule_list],
         wrong=[C.reduce_scatter_chunks,  # the section's ring, which sends to the right
                _schedule_off_by_one, _schedule_own_chunk, _schedule_receive_same,
                _schedule_no_mod, _schedule_one_value, C.all_gather_chunks]),
    Case(ex.bus_bandwidth, solution=1e9 / 3.9e-3 * 2 * 7 / 8 / 1e9,
         right=[449, 448.7, C.bus_bandwidth(1e9, 3.9e-3, 8) / 1e9, np.float64(448.72)],
         wrong=[1e9 / 3.9e-3 / 1e9,  # the algorithm bandwidth
                1e9 / 3.9e-3 * 7 / 8 / 1e9,  # the all-gather factor
                1e9 / 3.9e-3 * 2 / 1e9,  # 2 without (N - 1) / N
                2 ** 30 / 3.9e-3 * 2 * 7 / 8 / 1e9,  # GiB
                1e9 / 3.9e-3 * 2 * 7 / 8]),  # bytes per second, not GB/s
    Case(ex.which_collective, solution=_ANSWERS,
         right=[{k: v.replace("_", "-").upper() for k, v in _ANSWERS.items()},
                {k: "dist." + v for k, v in _ANSWERS.items()}],
         wrong=[{**_ANSWERS, "gradient shards": "all_reduce"},
                {**_ANSWERS, "weight shards": "broadcast", "loss for logging": "all_reduce"},
                {**_ANSWERS, "tokens to experts": "scatter"},
                {k: v for k, v in _ANSWERS.items() if k != "initial weights"},
                list(_ANSWERS.values())],
         unanswered=[..., {k: ... for k in _ANSWERS}]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_solution_is_the_section_schedule_with_the_ranks_mirrored():
    for n in range(2, 9):
        for r in range(n):
            for s in range(n - 1):
                assert _schedule(r, s, n) == _schedule_mirror(r, s, n)


def test_the_off_by_one_schedule_is_told_which_chunk_it_completes(capsys):
    result = ex.reduce_scatter_schedule(_schedule_off_by_one)
    assert not result and "complete" in result.message
