"""The exercise checks of section 7.5 (``dlbook.exercises.trust``): see exercise_harness."""

import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import trust as ex


def _fgsm(x, grad, eps):  # the book's solution
    return (x + eps * grad.sign()).clamp(0, 1)


def _fgsm_where(x, grad, eps):  # right: the sign from comparisons, min/max for the range
    step = eps * (grad > 0).to(x.dtype) - eps * (grad < 0).to(x.dtype)
    return torch.minimum(torch.maximum(x + step, torch.zeros_like(x)), torch.ones_like(x))


def _fgsm_no_clip(x, grad, eps):  # leaves the pixel range
    return x + eps * grad.sign()


def _fgsm_raw_grad(x, grad, eps):  # uses the gradient, not its sign
    return (x + eps * grad).clamp(0, 1)


def _fgsm_descent(x, grad, eps):  # lowers the loss
    return (x - eps * grad.sign()).clamp(0, 1)


def _clip(grads, max_norm):  # the book's solution
    norms = grads.norm(dim=1, keepdim=True)
    return grads * (max_norm / norms).clamp(max=1.0)


def _clip_loop(grads, max_norm):  # right: one row at a time
    rows = []
    for g in grads:
        n = float(torch.sqrt((g ** 2).sum()))
        rows.append(g * min(1.0, max_norm / n))
    return torch.stack(rows)


def _clip_batch(grads, max_norm):  # clips the whole batch at once
    return grads * min(1.0, max_norm / float(grads.norm()))


def _clip_entries(grads, max_norm):  # clamps the entries, changing the direction
    return grads.clamp(-max_norm, max_norm)


def _clip_always(grads, max_norm):  # scales every row to norm max_norm, even short ones
    return grads * max_norm / grads.norm(dim=1, keepdim=True)


CASES = [
    Case(ex.fgsm_step, _fgsm, wrong=[_fgsm_no_clip, _fgsm_raw_grad, _fgsm_descent],
         right=[_fgsm_where], takes_function=True),
    Case(ex.clip_per_example, _clip, wrong=[_clip_batch, _clip_entries, _clip_always],
         right=[_clip_loop], takes_function=True),
    Case(ex.dp_noise_std, 1.1 * 1.0 / 256, wrong=[1.1, 1.1 / 16, 1.1 / 256 ** 2],
         right=[0.0043, torch.tensor(0.004296875)]),
    Case(ex.membership_advantage, 0.6, wrong=[0.9, 0.8, 0.3], right=[0.60, torch.tensor(0.6, dtype=torch.float64), 3 / 5]),
]


@pytest.mark.parametrize("check,expected,answer", case_params(CASES))
def test_check(check, expected, answer, capsys):
    run_case(check, expected, answer, capsys)
