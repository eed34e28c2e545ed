"""The exercise checks of section 1.3 (``dlbook.exercises.losses``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case
from torch import nn

from dlbook.exercises import losses as ex

CE = math.log(math.exp(2.0) + math.exp(1.0) + math.exp(0.1)) - 2.0          # 0.41703
P = torch.softmax(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), 0)      # (0.090, 0.245, 0.665)
ONE_HOT = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)


# --- the stable log-softmax -------------------------------------------------------------------

def _log_softmax(z):
    shifted = z - z.amax(dim=-1, keepdim=True)
    return shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))


def _log_softmax_lse_form(z):  # right: z - (m + log Σ exp(z - m))
    m = z.max(dim=-1, keepdim=True).values
    return z - (m + torch.log(torch.exp(z - m).sum(dim=-1, keepdim=True)))


def _log_softmax_float64(z):  # right: computed in double precision, returned as float64
    return _log_softmax(z.double())


def _log_of_softmax(z):  # wrong: log of a softmax that rounds to 0 (and overflows)
    return torch.log(torch.exp(z) / torch.exp(z).sum(dim=-1, keepdim=True))


def _global_max_shift(z):  # wrong: one shift for the whole tensor, not per row
    shifted = z - z.max()
    return shifted - torch.log(torch.exp(shifted).sum(dim=-1, keepdim=True))


def _no_keepdim(z):  # wrong: the row maximum without keepdim does not broadcast on 2-D input
    shifted = z - z.amax(dim=-1)
    return shifted - torch.log(torch.exp(shifted).sum(dim=-1))


def _shift_only(z):  # wrong: forgot to subtract the log of the sum
    return z - z.amax(dim=-1, keepdim=True)


def _in_place(z):  # forbidden: changes the caller's tensor
    z -= z.amax(dim=-1, keepdim=True)
    return z - torch.log(torch.exp(z).sum(dim=-1, keepdim=True))


def _no_return(z):
    shifted = z - z.amax(dim=-1, keepdim=True)  # noqa: F841 - forgot to return


CASES = [
    Case(ex.ce_by_hand, solution=CE,
         right=[0.417, 0.4170, torch.tensor(CE, dtype=torch.float32), np.float64(0.417)],
         wrong=[math.exp(-CE),                      # p_0 instead of -log p_0
                CE / math.log(10),                  # log base 10
                -CE,                                # forgot the minus
                math.log(math.exp(1.0) + math.exp(0.1)) - 2.0 + 1.0,  # summed the wrong classes
                0.416, 10**400]),
    Case(ex.ce_gradient, solution=P - ONE_HOT,
         right=[torch.tensor([-0.910, 0.245, 0.665]), [-0.910, 0.245, 0.665],
                np.array([-0.90997, 0.24473, 0.66524]), (P - ONE_HOT).float()[None]],
         wrong=[P,                                           # forgot to subtract y
                ONE_HOT - P,                                 # sign flipped
                P - torch.tensor([0.0, 0.0, 1.0]),           # one-hot of the wrong class
                torch.tensor([-0.91, 0.245]),                # two entries
                (P - ONE_HOT) / 3]),                         # divided by the number of classes
    Case(ex.stable_log_softmax, solution=_log_softmax, takes_function=True,
         right=[_log_softmax_lse_form, _log_softmax_float64,
                lambda z: z - torch.logsumexp(z, dim=-1, keepdim=True)],
         wrong=[_log_of_softmax, _global_max_shift, _no_keepdim, _shift_only, _in_place,
                _no_return]),
    Case(ex.initial_loss, solution=math.log(100),
         right=[4.6, 4.605, 4.61, torch.tensor(4.6052), np.float32(math.log(100))],
         wrong=[math.log10(100), math.log2(100), 1 / 100, -math.log(100), 100, 10**400]),
    Case(ex.choose_losses,
         solution={"price": "MSELoss", "digit": "CrossEntropyLoss", "spam": "BCEWithLogitsLoss",
                   "tags": "BCEWithLogitsLoss"},
         right=[{"price": "nn.MSELoss", "digit": "torch.nn.CrossEntropyLoss()",
                 "spam": "bcewithlogitsloss", "tags": " BCEWithLogitsLoss "},
                {"price": nn.MSELoss, "digit": nn.CrossEntropyLoss(),
                 "spam": nn.BCEWithLogitsLoss, "tags": nn.BCEWithLogitsLoss()}],
         wrong=[{"price": "MSELoss", "digit": "CrossEntropyLoss", "spam": "BCEWithLogitsLoss",
                 "tags": "CrossEntropyLoss"},                  # a softmax over the tags
                {"price": "L1Loss", "digit": "CrossEntropyLoss", "spam": "BCEWithLogitsLoss",
                 "tags": "BCEWithLogitsLoss"},                 # Laplace, not Gaussian, errors
                {"price": "MSELoss", "digit": "CrossEntropyLoss", "spam": "BCELoss",
                 "tags": "BCEWithLogitsLoss"},                 # not one of the options
                {"price": "MSELoss", "digit": "MSELoss", "spam": "BCEWithLogitsLoss",
                 "tags": "BCEWithLogitsLoss"},                 # a digit is not a number
                {"price": "MSELoss"},                          # tasks missing
                ["MSELoss", "CrossEntropyLoss"]],              # not a dict
         unanswered=[..., {"price": ..., "digit": ..., "spam": ..., "tags": ...},
                     {"price": "MSELoss", "digit": ..., "spam": ..., "tags": ...}]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_hints_name_the_mistake_without_the_answer(capsys):
    ex.ce_by_hand(math.exp(-CE))
    ex.ce_by_hand(CE / math.log(10))
    ex.initial_loss(math.log10(100))
    ex.ce_gradient(P)
    ex.ce_gradient(ONE_HOT - P)
    out = capsys.readouterr().out
    assert "probability of the true class" in out and out.count("natural logarithm") == 2
    assert "one-hot" in out and "sign" in out
    for number in ("0.417", "4.6", "0.910", "-0.91"):
        assert number not in out, f"a hint gives away {number}"


def test_a_function_that_forgot_return_is_told_so(capsys):
    ex.stable_log_softmax(_no_return)
    assert "forget the `return`" in capsys.readouterr().out
