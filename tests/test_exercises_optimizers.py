"""The exercise checks of section 1.5 (``dlbook.exercises.optimizers``): see exercise_harness."""

from __future__ import annotations

import math

import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import optimizers as ex


def _momentum(p, g, buf, lr, mu):
    buf_new = mu * buf + g
    return p - lr * buf_new, buf_new


def _momentum_float32(p, g, buf, lr, mu):  # right, in single precision
    b = mu * buf.float() + g.float()
    return p.float() - lr * b, b


def _momentum_tuple_of_lists(p, g, buf, lr, mu):  # right, returned as lists
    b = [mu * bi + gi for bi, gi in zip(buf.tolist(), g.tolist())]
    return [pi - lr * bi for pi, bi in zip(p.tolist(), b)], b


def _momentum_in_place(p, g, buf, lr, mu):  # forbidden: changes p and buf
    buf.mul_(mu).add_(g)
    p.sub_(lr * buf)
    return p, buf


def _momentum_old_buffer(p, g, buf, lr, mu):  # steps along the old buffer
    return p - lr * buf, mu * buf + g


def _momentum_dampened(p, g, buf, lr, mu):  # the "EMA" convention, (1 − μ)·g
    b = mu * buf + (1 - mu) * g
    return p - lr * b, b


def _momentum_no_return(p, g, buf, lr, mu):
    buf_new = mu * buf + g  # noqa: F841 - forgot to return


def _momentum_nesterov(p, g, buf, lr, mu):  # Nesterov's step, not the heavy ball's
    b = mu * buf + g
    return p - lr * (g + mu * b), b


def _momentum_parameter_only(p, g, buf, lr, mu):  # returns one tensor, not the pair
    return p - lr * (mu * buf + g)


theta_1 = 0.5 - 0.1 * -3.0 / (3.0 + 1e-8)
lr_35 = 0.5 * 0.1 * (1 + math.cos(math.pi * 25 / 100))

CASES = [
    Case(ex.adam_first_step, solution=theta_1, right=[0.6, torch.tensor(0.6)],
         wrong=[0.4, 0.5 + 0.1 * 0.3, 0.5 + 0.1 * 3.0]),
    Case(ex.momentum_gain, solution=20.0, right=[20, 1 / 0.05], wrong=[0.95, 19.0, 10**400]),
    Case(ex.momentum_step, solution=_momentum, takes_function=True,
         right=[_momentum_float32, _momentum_tuple_of_lists],
         wrong=[_momentum_in_place, _momentum_old_buffer, _momentum_dampened,
                _momentum_no_return, _momentum_nesterov, _momentum_parameter_only]),
    Case(ex.warmup_cosine, solution=lr_35, right=[0.0854, round(lr_35, 5)],
         wrong=[0.5 * 0.1 * (1 + math.cos(math.pi * 35 / 110)), 0.1, 0.5 * 0.1]),
    Case(ex.dropout_variance, solution=1.0, right=[1, 4 * 0.2 / 0.8],
         wrong=[4.0, 0.8, 4 * 0.2 * 0.8]),
    Case(ex.clip_factor, solution=6.5 / math.sqrt(3**2 + 4**2 + 12**2),
         right=[0.5, 6.5 / (13 + 1e-6), torch.tensor(0.5), 0.4999],
         wrong=[6.5 / 17, 6.5 / 12, 1.0, 2.0, 13.0]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)
