"""The exercise checks of section 1.2 (``dlbook.exercises.activations``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook import activations as A
from dlbook.exercises import activations as ex


def _softmax(z):  # the book's solution
    e = torch.exp(z - z.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def _softmax_logsumexp(z):  # right: exp(z − logsumexp(z))
    return torch.exp(z - torch.logsumexp(z, dim=-1, keepdim=True))


def _softmax_float64_loop(z):  # right: row by row, in float64, returned as float64
    flat = z.double().reshape(-1, z.shape[-1])
    rows = []
    for row in flat:
        e = (row - row.max()).exp()
        rows.append(e / e.sum())
    return torch.stack(rows).reshape(z.shape)


def _softmax_float32(z):  # right: in single precision whatever comes in
    return _softmax(z.float())


def _softmax_naive(z):  # overflows: exp(1000) = inf
    return torch.exp(z) / torch.exp(z).sum(dim=-1, keepdim=True)


def _softmax_global_max(z):  # subtracts the largest entry of the whole tensor
    e = torch.exp(z - z.max())
    return e / e.sum(dim=-1, keepdim=True)


def _softmax_all_entries(z):  # normalises over the whole tensor, not each row
    e = torch.exp(z - z.amax(dim=-1, keepdim=True))
    return e / e.sum()


def _softmax_dim0(z):  # the first dimension instead of the last
    e = torch.exp(z - z.amax(dim=0, keepdim=True))
    return e / e.sum(dim=0, keepdim=True)


def _softmax_in_place(z):  # right values, but it changes the caller's tensor
    z -= z.amax(dim=-1, keepdim=True)
    z.exp_()
    return z / z.sum(dim=-1, keepdim=True)


def _softmax_no_return(z):
    e = torch.exp(z - z.amax(dim=-1, keepdim=True))  # noqa: F841 - forgot to return


def _softmax_placeholder_lambda(z):
    ...


z_min = -0.7517916243  # where GELU is smallest (the check bisects the derivative)
gelu_min = z_min * 0.5 * (1 + math.erf(z_min / math.sqrt(2)))
silu_z = -1.2784645  # SiLU's minimum: a different function
CASES = [
    Case(ex.tanh_derivative, solution=1 - math.tanh(1.0) ** 2,
         right=[0.42, 0.420, 1 / math.cosh(1.0) ** 2, torch.tensor(0.41997, dtype=torch.float32),
                np.float64(4 * math.exp(2) / (math.exp(2) + 1) ** 2)],
         wrong=[1 - math.tanh(1.0),          # forgot the square
                math.tanh(1.0) ** 2,         # forgot the 1 −
                1 / math.cosh(1.0),          # sech, not sech²
                0.25,                        # the sigmoid's largest slope
                0.43,
                10**400]),
    Case(ex.softmax, solution=_softmax, takes_function=True,
         right=[_softmax_logsumexp, _softmax_float64_loop, _softmax_float32,
                lambda z: torch.softmax(z, dim=-1)],
         wrong=[_softmax_naive, _softmax_global_max, _softmax_all_entries, _softmax_dim0,
                _softmax_in_place, _softmax_no_return, lambda z: 1 / 0],
         unanswered=[..., _softmax_placeholder_lambda, lambda z: ...]),
    Case(ex.gelu_minimum, solution=(z_min, gelu_min),
         right=[(-0.752, -0.170), [-0.7518, -0.16997], torch.tensor([-0.752, -0.17]),
                np.array([-0.7515, -0.1704])],
         wrong=[(-0.5, float(A.gelu(torch.tensor(-0.5)))),          # not the lowest point
                (gelu_min, z_min),                                   # the pair swapped
                (z_min, 0.5 * (1 + math.erf(z_min / math.sqrt(2)))),  # Φ(z_min), not GELU
                (silu_z, silu_z / (1 + math.exp(-silu_z))),          # SiLU's minimum
                (-0.75, -0.169),                                     # the value off in 3rd decimal
                (-0.754, -0.170),                                    # z off by 2e-3
                "abc", (1, 2, 3)],
         unanswered=[..., (..., ...), (-0.75, ...)]),
    Case(ex.non_monotonic, solution={"gelu", "silu"},
         right=[["GELU", "SiLU"], ("silu", "gelu"), frozenset({"Gelu", "SILU"}),
                {"gelu": True, "silu": True}.keys()],
         wrong=[{"gelu", "silu", "elu"}, {"relu"}, {"gelu"}, "gelu, silu", 42,
                {"gelu", "silu", "swish"}]),
    Case(ex.collapse, solution=(torch.tensor([[-1.0, 3.0]]), torch.tensor([-2.5])),
         right=[([[-1, 3]], [-2.5]), (torch.tensor([-1.0, 3.0]), -2.5),
                (np.array([[-1.0, 3.0]]), np.float64(-2.5)),
                (torch.tensor([[-1.0, 3.0]], dtype=torch.float64), torch.tensor(-2.5))],
         wrong=[(torch.tensor([[-1.0], [3.0]]), torch.tensor([-2.5])),   # W transposed, (2, 1)
                ([[-1.0, 3.0]], [2.5]),                                 # sign of b
                ([[-1.0, 3.0]], [-3.0]),                                # forgot b2
                ([[3.0, -1.0]], [-2.5]),                                # entries swapped
                ([[1.0, 2.0, 0.0]], [-2.5]),                            # not a (1, 2) weight
                ([1, 2, 3], 1), "W, b"],
         unanswered=[..., (..., ...), (torch.tensor([[-1.0, 3.0]]), ...)]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_collapse_says_when_w_is_transposed(capsys):
    ex.collapse((torch.tensor([[-1.0], [3.0]]), torch.tensor([-2.5])))
    assert "transposed" in capsys.readouterr().out


def test_softmax_hint_does_not_give_the_code(capsys):
    ex.softmax(_softmax_naive)
    out = capsys.readouterr().out
    assert "amax" not in out and "keepdim" not in out
