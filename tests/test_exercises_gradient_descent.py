"""The exercise checks of section 1.4 (``dlbook.exercises.gradient_descent``): see
exercise_harness."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from exercise_harness import Args, Case, case_params, run_case

from dlbook.exercises import gradient_descent as ex


def _step(x, A, b, lr):
    return x - lr * (A @ x - b)


def _step_expanded(x, A, b, lr):  # right: the same step, multiplied out
    return x - lr * torch.mv(A, x) + lr * b


def _step_float32(x, A, b, lr):  # right, in single precision
    return x.float() - lr * (A.float() @ x.float() - b.float())


def _step_forgot_b(x, A, b, lr):
    return x - lr * A @ x


def _step_uphill(x, A, b, lr):
    return x + lr * (A @ x - b)


def _step_wrong_sign_b(x, A, b, lr):
    return x - lr * (A @ x + b)


def _step_no_half(x, A, b, lr):  # differentiated ½ xᵀ A x as 2 A x
    return x - lr * (2 * A @ x - b)


def _step_in_place(x, A, b, lr):  # forbidden: changes the caller's x
    x -= lr * (A @ x - b)
    return x


def _step_no_return(x, A, b, lr):
    x_new = x - lr * (A @ x - b)  # noqa: F841 - forgot to return


NOISE = 4 / 10 * (50 - 10) / (50 - 1)                        # 0.32653

CASES = [
    Case(ex.max_lr, solution=2 / torch.linalg.eigvalsh(torch.tensor([[5.0, 2.0], [2.0, 2.0]]))
         .max().item(),
         right=[1 / 3, 0.333, torch.tensor(1 / 3), np.float32(1 / 3)],
         wrong=[2.0, 1 / 6, 2 / 7, 2 / 5, 0.33, 10**400]),
    Case(ex.best_lr, solution=Args((2 / 7, 5 / 7)),
         right=[Args((0.286, 0.714)), Args((torch.tensor(2 / 7), np.float64(5 / 7))),
                Args((2 / (1 + 6), 1 - 2 / 7))],
         wrong=[Args((1 / 3, 5 / 7)),                 # the largest stable rate
                Args((2 / 7, 2 / 7)),                 # rate = the part removed
                Args((2 / 7, 0.5)),
                Args((5 / 7, 2 / 7)),                 # swapped
                Args((0.29, 0.71)),                   # two figures only
                Args(("2/7", 5 / 7))],
         unanswered=[Args((..., ...)), Args((2 / 7, ...))]),
    Case(ex.steps_to_tolerance, solution=28,
         right=[28.0, torch.tensor(28), np.int64(28)],
         wrong=[27, 27.05, 29, 14, 10**400]),
    Case(ex.gd_step, solution=_step, takes_function=True,
         right=[_step_expanded, _step_float32],
         wrong=[_step_forgot_b, _step_uphill, _step_wrong_sign_b, _step_no_half, _step_in_place,
                _step_no_return]),
    Case(ex.batch_noise, solution=NOISE,
         right=[0.327, 0.3265, torch.tensor(NOISE), np.float32(NOISE)],
         wrong=[4 / 10,                              # with replacement
                4 / 10 * (50 - 10) / 50,             # (N − B)/N
                4 / 10**2 * (50 - 10) / (50 - 1),    # divided by B²
                4 * (50 - 10) / (50 - 1),            # forgot 1/B
                0.33, 10**400]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_batch_noise_tells_the_two_finite_population_factors_apart():
    """(N − B)/(N − 1) and (N − B)/N differ by more than the three significant figures asked."""
    n, b = ex.NOISE_N, ex.NOISE_B
    right, wrong = 4 / b * (n - b) / (n - 1), 4 / b * (n - b) / n
    assert abs(right - wrong) > 10 * 0.0005


def test_hints_name_the_mistake_without_the_answer(capsys):
    ex.max_lr(2.0)
    ex.max_lr(2 / 7)
    ex.batch_noise(0.4)
    ex.batch_noise(4 / 10 * 40 / 50)
    ex.steps_to_tolerance(27)
    ex.best_lr(2 / 7, 2 / 7)
    out = capsys.readouterr().out
    assert "flattest direction" in out and "best learning rate" in out
    assert "with replacement" in out and "denominator" in out
    assert "below 1e-6" in out and "factor that remains" in out
    for number in ("0.333", "1/3", "0.327", "28", "0.714", "5/7"):
        assert not re.search(rf"(?<![\d.]){re.escape(number)}(?![\d])", out), \
            f"a hint gives away {number}"


def test_solution_numbers_in_the_text_pass(capsys):
    """The rounded numbers the solutions print are accepted."""
    assert ex.max_lr(0.333) and ex.best_lr(0.286, 0.714) and ex.batch_noise(0.327)
    assert math.isclose(ex.NOISE_N, 50) and capsys.readouterr().out.count("✅") == 3
