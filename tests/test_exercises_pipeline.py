"""The exercise checks of section 6.5 (``dlbook.exercises.pipeline``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.distributed import pipeline as pp
from dlbook.exercises import pipeline as ex

# ---------------------------------------------------------------- 1F1B for one stage


def _ofob(stage, n_stages, n_micro):  # the book's solution
    warmup = min(n_stages - 1 - stage, n_micro)
    actions = [("F", i) for i in range(warmup)]
    for i in range(n_micro - warmup):
        actions += [("F", warmup + i), ("B", i)]
    return actions + [("B", i) for i in range(n_micro - warmup, n_micro)]


def _ofob_counters(stage, n_stages, n_micro):  # right: two counters, lists instead of tuples
    out, f, b = [], 0, 0
    while f < min(n_stages - stage - 1, n_micro):
        out.append(["F", f])
        f += 1
    while b < n_micro:
        if f < n_micro:
            out.append(["F", f])
            f += 1
        out.append(["B", b])
        b += 1
    return out


def _ofob_library(stage, n_stages, n_micro):  # right: the library's
    return pp.one_f_one_b_schedule(n_stages, n_micro)[stage]


def _ofob_no_min(stage, n_stages, n_micro):  # warm-up not capped by the micro-batches
    warmup = n_stages - 1 - stage
    actions = [("F", i) for i in range(warmup)]
    for i in range(n_micro - warmup):
        actions += [("F", warmup + i), ("B", i)]
    return actions + [("B", i) for i in range(max(n_micro - warmup, 0), n_micro)]


def _ofob_warmup_p_minus_s(stage, n_stages, n_micro):  # one warm-up forward too many
    warmup = min(n_stages - stage, n_micro)
    actions = [("F", i) for i in range(warmup)]
    for i in range(n_micro - warmup):
        actions += [("F", warmup + i), ("B", i)]
    return actions + [("B", i) for i in range(n_micro - warmup, n_micro)]


def _ofob_backward_first(stage, n_stages, n_micro):  # steady state B then F
    warmup = min(n_stages - 1 - stage, n_micro)
    actions = [("F", i) for i in range(warmup)]
    for i in range(n_micro - warmup):
        if i < warmup:
            actions.append(("B", i))
        actions.append(("F", warmup + i))
        if i >= warmup:
            actions.append(("B", i))
    done = {a for a in actions}
    return actions + [("B", i) for i in range(n_micro) if ("B", i) not in done]


def _ofob_gpipe(stage, n_stages, n_micro):  # GPipe's order
    return pp.gpipe_schedule(n_stages, n_micro)[stage]


def _ofob_reverse_stages(stage, n_stages, n_micro):  # warm-up grows with the stage index
    warmup = min(stage, n_micro)
    actions = [("F", i) for i in range(warmup)]
    for i in range(n_micro - warmup):
        actions += [("F", warmup + i), ("B", i)]
    return actions + [("B", i) for i in range(n_micro - warmup, n_micro)]


CASES = [
    Case(ex.bubble, solution=pp.bubble_fraction(8, 32),
         right=[0.179, 7 / 39, np.float32(0.1795), torch.tensor(0.17949)],
         wrong=[7 / 32, 8 / 40, 7 / 40, 0.18, 32 / 39]),
    Case(ex.micro_batches_for_bubble, solution=133,
         right=[133.0, np.int64(133), torch.tensor(133)],
         wrong=[140, 132, 19 * 8, 134, math.ceil(7 / 0.05)]),
    Case(ex.one_f_one_b, solution=_ofob, takes_function=True,
         right=[_ofob_counters, _ofob_library],
         wrong=[_ofob_no_min, _ofob_warmup_p_minus_s, _ofob_backward_first, _ofob_gpipe,
                _ofob_reverse_stages]),
    Case(ex.activation_memory, solution=(96.0, 12.0),
         right=[[96, 12], (np.float64(96.0), torch.tensor(12.0)), (96.04, 11.99)],
         wrong=[(96.0, 10.5), (96.0, 13.5), (12.0, 96.0), (1.5, 12.0), (96.0, 96.0), 108.0,
                (96.4, 12.0)]),
    Case(ex.loss_weights, solution=[0.4, 0.4, 0.2],
         right=[torch.tensor([4, 4, 2]) / 10, np.array([2, 2, 1]) / 5, (0.4, 0.4, 0.2)],
         wrong=[[1 / 3, 1 / 3, 1 / 3], [1.0, 1.0, 1.0], [4, 4, 2], [0.25, 0.25, 0.5],
                [0.4, 0.4]]),
]


@pytest.mark.parametrize("check, expected, answer", case_params(CASES))
def test_check(check, expected, answer, capsys):
    run_case(check, expected, answer, capsys)


def test_every_check_has_a_case():
    names = {c.check.__name__ for c in CASES}
    public = {n for n in dir(ex) if not n.startswith("_") and callable(getattr(ex, n))
              and getattr(getattr(ex, n), "__module__", "") == ex.__name__}
    assert public == names
