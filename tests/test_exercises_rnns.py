"""The exercise checks of section 3.3 (``dlbook.exercises.rnns``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case
from torch import nn

from dlbook.exercises import rnns as ex

# ---------------------------------------------------------------- backpropagation through time


def _bptt(dH, H, W_hh):  # the book's solution
    dA = torch.empty_like(H)
    da_next = torch.zeros_like(H[:, 0])
    for t in reversed(range(H.shape[1])):
        dh = dH[:, t] + da_next @ W_hh
        dA[:, t] = da_next = dh * (1 - H[:, t] ** 2)
    return dA


def _bptt_list(dH, H, W_hh):  # right: a list of steps, reversed at the end, einsum
    steps, carry = [], torch.zeros(H.shape[0], H.shape[2], dtype=H.dtype)
    for t in range(H.shape[1] - 1, -1, -1):
        carry = (dH[:, t] + torch.einsum("bj,jk->bk", carry, W_hh)) * (1 - H[:, t].pow(2))
        steps.append(carry)
    return torch.stack(steps[::-1], dim=1)


def _bptt_autograd(dH, H, W_hh):  # right: autograd through a rebuilt chain of pre-activations
    B, T, n = H.shape
    a = torch.atanh(H)                           # the pre-activations that gave these states
    inputs = a[:, 1:] - H[:, :-1] @ W_hh.T       # what came from outside at steps 1..T-1
    a0 = a[:, 0].clone().requires_grad_(True)
    rest = inputs.clone().requires_grad_(True)
    states, pre, h = [], [a0], torch.tanh(a0)
    states.append(h)
    for t in range(1, T):
        pre_t = rest[:, t - 1] + h @ W_hh.T
        pre_t.retain_grad()
        pre.append(pre_t)
        h = torch.tanh(pre_t)
        states.append(h)
    (torch.stack(states, 1) * dH).sum().backward()
    return torch.stack([p.grad for p in pre], dim=1)


def _bptt_no_recurrence(dH, H, W_hh):  # forgets what flows back from later steps
    return dH * (1 - H**2)


def _bptt_transposed(dH, H, W_hh):  # multiplies by W_hhᵀ
    return _bptt(dH, H, W_hh.T)


def _bptt_forwards(dH, H, W_hh):  # walks forwards in time
    dA = torch.empty_like(H)
    da_prev = torch.zeros_like(H[:, 0])
    for t in range(H.shape[1]):
        dA[:, t] = da_prev = (dH[:, t] + da_prev @ W_hh) * (1 - H[:, t] ** 2)
    return dA


def _bptt_wrong_slope(dH, H, W_hh):  # tanh'(a) taken as 1 − h instead of 1 − h²
    dA = torch.empty_like(H)
    da_next = torch.zeros_like(H[:, 0])
    for t in reversed(range(H.shape[1])):
        dA[:, t] = da_next = (dH[:, t] + da_next @ W_hh) * (1 - H[:, t])
    return dA


def _bptt_slope_after(dH, H, W_hh):  # multiplies the slope of the next step, not this one
    dA = torch.empty_like(H)
    dh_next = torch.zeros_like(H[:, 0])
    for t in reversed(range(H.shape[1])):
        dh = dH[:, t] + dh_next @ W_hh
        dA[:, t] = dh * (1 - H[:, t] ** 2)
        dh_next = dh
    return dA


def _bptt_in_place(dH, H, W_hh):  # overwrites dH
    out = _bptt(dH, H, W_hh)
    dH.zero_()
    return out


def _bptt_no_return(dH, H, W_hh):
    dA = _bptt(dH, H, W_hh)  # noqa: F841 - forgot to return


# ---------------------------------------------------------------- temperature


def _temp(logits, temperature):  # the book's solution
    return torch.softmax(logits / temperature, dim=-1)


def _temp_manual(logits, temperature):  # right: max subtracted by hand
    z = logits / temperature
    e = torch.exp(z - z.max())
    return e / e.sum()


def _temp_power(logits, temperature):  # right: p^(1/T), renormalised, via log-probabilities
    logp = torch.log_softmax(logits, dim=-1) / temperature
    return torch.softmax(logp, dim=-1)


def _temp_numpy(logits, temperature):  # right: NumPy, returning an array
    z = logits.numpy() / temperature
    e = np.exp(z - z.max())
    return e / e.sum()


def _temp_times(logits, temperature):  # multiplies by the temperature
    return torch.softmax(logits * temperature, dim=-1)


def _temp_after(logits, temperature):  # divides the probabilities, not the logits
    return torch.softmax(logits, dim=-1) / temperature


def _temp_unnormalised(logits, temperature):
    return torch.exp(logits / temperature)


def _temp_overflows(logits, temperature):  # exp without subtracting the max: nan for large logits
    e = torch.exp(logits / temperature)
    return e / e.sum()


def _temp_ignores(logits, temperature):
    return torch.softmax(logits, dim=-1)


CASES = [
    Case(ex.rnn_parameters, solution=100 * 65 + 100 * 100 + 2 * 100,
         right=[16700.0, torch.tensor(16700), np.int64(16700),
                sum(p.numel() for p in nn.RNN(65, 100).parameters())],
         wrong=[100 * 65 + 100 * 100 + 100, 100 * 65 + 2 * 100, 100 * 65 + 100 * 100,
                65 * 100 + 100 * 100 + 65 + 100, 16701]),
    Case(ex.vanishing_steps, solution=math.ceil(math.log(1e-3) / math.log(0.9)),
         right=[66, 66.0, torch.tensor(66), np.int32(66)],
         wrong=[65, math.log(1e-3) / math.log(0.9), 7, 67, -66, 1000]),
    Case(ex.bptt, solution=_bptt, takes_function=True,
         right=[_bptt_list, _bptt_autograd],
         wrong=[_bptt_no_recurrence, _bptt_transposed, _bptt_forwards, _bptt_wrong_slope,
                _bptt_slope_after, _bptt_in_place, _bptt_no_return]),
    Case(ex.perplexity, solution=math.exp(1.40),
         right=[4.06, 4.055, torch.tensor(1.4).exp(), np.float32(4.0552)],
         wrong=[2**1.4, 10**1.4, 1.4, 1 / 1.4, math.exp(-1.4), 4.1, 4.0]),
    Case(ex.temperature_probs, solution=_temp, takes_function=True,
         right=[_temp_manual, _temp_power, _temp_numpy],
         wrong=[_temp_times, _temp_after, _temp_unnormalised, _temp_overflows, _temp_ignores]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_reference_is_autograd():
    """The reference (rnn_backward with W_ih = I) equals autograd on every case."""
    for dH, H, W_hh in ex._bptt_cases():  # noqa: SLF001
        torch.testing.assert_close(ex._reference_dA(dH, H, W_hh),  # noqa: SLF001
                                   _bptt_autograd(dH, H, W_hh))


def test_the_cases_separate_the_mistakes():
    """A transposed W_hh and a missing recurrence are wrong far beyond the tolerance."""
    for dH, H, W_hh in ex._bptt_cases():  # noqa: SLF001
        if H.shape[1] < 2 or H.shape[2] < 2:
            continue
        right = _bptt(dH, H, W_hh)
        for wrong in (_bptt_transposed, _bptt_no_recurrence):
            assert not torch.allclose(right, wrong(dH, H, W_hh), rtol=1e-2, atol=0)
