"""The exercise checks of section 2.4 (``dlbook.exercises.deep``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook import layers
from dlbook.exercises import deep as ex

# ---------------------------------------------------------------- batch-norm backward answers


def _bn(dy, x, gamma, eps=1e-5):  # the book's solution
    b = x.shape[0]
    s = torch.sqrt(x.var(dim=0, correction=0) + eps)
    xhat = (x - x.mean(dim=0)) / s
    return gamma / (b * s) * (b * dy - dy.sum(dim=0) - xhat * (dy * xhat).sum(dim=0))


def _bn_float32(dy, x, gamma, eps=1e-5):  # right, in single precision
    return _bn(dy.float(), x.float(), gamma.float(), eps)


def _bn_library(dy, x, gamma, eps=1e-5):  # right, through dlbook.layers
    _, cache = layers.batchnorm_forward(x, gamma, torch.zeros_like(gamma), eps)
    return layers.batchnorm_backward(dy, cache)[0]


def _bn_jacobian(dy, x, gamma, eps=1e-5):  # right, the full Jacobian (eq-deep-bn-jacobian)
    b = x.shape[0]
    s = torch.sqrt(x.var(dim=0, correction=0) + eps)
    xhat = (x - x.mean(dim=0)) / s
    eye = torch.eye(b, dtype=x.dtype)
    jac = (eye[:, :, None] - 1 / b - xhat[:, None, :] * xhat[None, :, :] / b) / s  # (i, j, d)
    return torch.einsum("id,ijd->jd", gamma * dy, jac)


def _bn_no_eps(dy, x, gamma, eps=1e-5):  # ignores eps
    return _bn(dy, x, gamma, 0.0)


def _bn_fixed_eps(dy, x, gamma, eps=1e-5):  # ignores the eps it is given
    return _bn(dy, x, gamma, 1e-5)


def _bn_unbiased(dy, x, gamma, eps=1e-5):  # the unbiased variance in the normalisation
    b = x.shape[0]
    s = torch.sqrt(x.var(dim=0, correction=1) + eps)
    xhat = (x - x.mean(dim=0)) / s
    return gamma / (b * s) * (b * dy - dy.sum(dim=0) - xhat * (dy * xhat).sum(dim=0))


def _bn_no_xhat_term(dy, x, gamma, eps=1e-5):  # forgets that σ depends on x
    b = x.shape[0]
    s = torch.sqrt(x.var(dim=0, correction=0) + eps)
    return gamma / (b * s) * (b * dy - dy.sum(dim=0))


def _bn_as_constants(dy, x, gamma, eps=1e-5):  # treats μ and σ as constants
    return gamma * dy / torch.sqrt(x.var(dim=0, correction=0) + eps)


def _bn_wrong_axis(dy, x, gamma, eps=1e-5):  # sums over the features instead of the batch
    b = x.shape[0]
    s = torch.sqrt(x.var(dim=0, correction=0) + eps)
    xhat = (x - x.mean(dim=0)) / s
    return gamma / (b * s) * (b * dy - dy.sum(dim=1, keepdim=True)
                              - xhat * (dy * xhat).sum(dim=1, keepdim=True))


def _bn_in_place(dy, x, gamma, eps=1e-5):  # changes dy
    out = _bn(dy, x, gamma, eps)
    dy.mul_(0)
    return out


def _bn_no_return(dy, x, gamma, eps=1e-5):
    dx = _bn(dy, x, gamma, eps)  # noqa: F841 - forgot to return


y1, cache1 = layers.batchnorm_forward(torch.tensor([[5.0]]), torch.tensor([2.0]),
                                      torch.tensor([0.3]))
dx1 = layers.batchnorm_backward(torch.tensor([[1.7]]), cache1)[0]

CASES = [
    Case(ex.he_std, solution=math.sqrt(2 / 512),
         right=[0.0625, 1 / 16, torch.tensor(0.0625), np.float32(0.0625), 0.06254],
         wrong=[math.sqrt(1 / 512), 2 / 512, math.sqrt(2 / 1024), math.sqrt(2) / 512, 10**400]),
    Case(ex.relu_variance, solution=100 * 0.03 * 1.5**9,
         right=[115, 115.3, 3 * 1.5**9, torch.tensor(115.33, dtype=torch.float32)],
         wrong=[3 * 1.5**10, 1.5**9, 3**10, (100 * 0.03 / 2) ** 10, 116]),
    Case(ex.batchnorm_backward, solution=_bn, takes_function=True,
         right=[_bn_float32, _bn_library, _bn_jacobian],
         wrong=[_bn_no_eps, _bn_fixed_eps, _bn_unbiased, _bn_no_xhat_term, _bn_as_constants,
                _bn_wrong_axis, _bn_in_place, _bn_no_return]),
    Case(ex.batch_of_one, solution=(y1.item(), dx1.item()),
         right=[(y1, dx1), (0.3, 0), [0.3, 0.0], torch.tensor([0.3, 0.0]),
                np.array([0.3, 0.0]), (torch.tensor(0.3), torch.tensor([[0.0]]))],
         wrong=[(0.3, 2.0), (10.3, 2.0), (2.3, 0.0), (0.3, 1.7), (float("nan"), 0.0), 0.3,
                (0.3,), (0.3, 0.0, 0.0), ("0.3", "0")],
         unanswered=[..., (..., ...), (0.3, ...)]),
    Case(ex.residual_growth, solution=(7 / 6) ** 20,
         right=[21.8, 21.82, torch.tensor(21.8), np.float64(21.82)],
         wrong=[2.0**20, 1 + 20 / 6, (7 / 6) ** 21, math.sqrt((7 / 6) ** 20), 22.1,
                (1 / 6) ** 20]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_eps_matters_in_the_batchnorm_cases():
    """The inputs are chosen so that ignoring eps changes dx far beyond the tolerance."""
    for dy, x, gamma, eps in ex._bn_cases():  # noqa: SLF001
        if eps == 1e-5 and x.var(dim=0, correction=0).min() > 1e-4:
            continue
        right, wrong = _bn(dy, x, gamma, eps), _bn_no_eps(dy, x, gamma, eps)
        assert not torch.allclose(right, wrong, rtol=1e-2, atol=0)
