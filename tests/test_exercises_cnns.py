"""The exercise checks of section 3.2 (``dlbook.exercises.cnns``): see exercise_harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case
from torch import nn

from dlbook import convnets
from dlbook.exercises import cnns as ex


def _size(n, k, s=1, p=0):
    return (n + 2 * p - k) // s + 1


# ---------------------------------------------------------------- unshuffling the first layer

def _unshuffle(weight, perm):  # the book's solution
    return weight[:, perm]


def _unshuffle_matrix(weight, perm):  # right: W P with the permutation matrix P
    n = len(perm)
    P = torch.zeros(n, n, dtype=weight.dtype)
    P[perm, torch.arange(n)] = 1  # P[k, j] = 1 where k = perm[j]: (W P)[:, j] = W[:, perm[j]]
    return weight @ P


def _unshuffle_index_select(weight, perm):  # right, another function, in float32
    return torch.index_select(weight.float(), 1, perm)


def _unshuffle_inverse(weight, perm):  # the inverse permutation
    return weight[:, perm.argsort()]


def _unshuffle_rows(weight, perm):  # reorders the hidden units instead
    return weight[perm % weight.shape[0]]


def _unshuffle_nothing(weight, perm):  # thinks the MLP needs no change
    return weight


def _unshuffle_in_place(weight, perm):
    weight.copy_(weight[:, perm])
    return weight


def _unshuffle_no_return(weight, perm):
    w = weight[:, perm]  # noqa: F841 - forgot to return


# ---------------------------------------------------------------- shifting each row

def _shift(x, s):  # the book's solution
    L = x.shape[1]
    return x.gather(1, (torch.arange(L) - s.reshape(-1, 1)) % L)


def _shift_roll(x, s):  # right: row by row
    return torch.stack([torch.roll(row, int(k)) for row, k in zip(x, s)])


def _shift_cat(x, s):  # right: each row cut in two and put back the other way round, float32
    out = []
    for row, k in zip(x, s.tolist()):
        L = len(row)
        k %= L
        out.append(torch.cat([row[L - k:], row[:L - k]]))
    return torch.stack(out).float()


def _shift_left(x, s):  # the wrong direction
    return _shift(x, -s)


def _shift_first(x, s):  # one shift for every row
    return torch.roll(x, int(s[0]), dims=1)


def _shift_zeros(x, s):  # fills with zeros instead of wrapping around
    out = torch.zeros_like(x)
    for i, k in enumerate(s.tolist()):
        k = max(-x.shape[1], min(x.shape[1], k))
        if k >= 0:
            out[i, k:] = x[i, :x.shape[1] - k]
        else:
            out[i, :k] = x[i, -k:]
    return out


def _shift_roll_all(x, s):  # rolls the whole tensor by the sum of the shifts
    return torch.roll(x, int(s.sum()))


def _shift_in_place(x, s):
    x.copy_(_shift(x, s))
    return x


def _shift_no_return(x, s):
    out = _shift(x, s)  # noqa: F841 - forgot to return


SMALL = convnets.count_parameters(convnets.lenet((4, 8), 20, batch_norm=False))
FLAT = 25 * _size(_size(_size(40, 5, 2, 1), 3, 2, 1), 3, 2, 1)

CASES = [
    Case(ex.lenet_parameters, solution=SMALL,
         right=[1206, 1206.0, torch.tensor(1206), np.int64(1206), torch.tensor([1206.0])],
         wrong=[1206 - (4 + 8 + 20 + 10),                       # no biases
                SMALL - 8 * (4 * 9 + 1) + 8 * (9 + 1),         # conv 2 sees one channel
                SMALL - 33 * 20 + (8 * 16 + 1) * 20,           # reads after the first pooling
                SMALL + 2 * (4 + 8),                           # counts batch norm
                1207, 1206.5, "1206", [1206, 1]]),
    Case(ex.convbase_flatten, solution=FLAT,
         right=[125, 125.0, torch.tensor(125), np.int32(125)],
         wrong=[5, 100, 150, 250, 1000, 124, 25 * 40]),
    Case(ex.unshuffle_first_layer, solution=_unshuffle, takes_function=True,
         right=[_unshuffle_matrix, _unshuffle_index_select, lambda w, p: w.T[p].T.clone()],
         wrong=[_unshuffle_inverse, _unshuffle_rows, _unshuffle_nothing, _unshuffle_in_place,
                _unshuffle_no_return, lambda w, p: w[:, p].T]),
    Case(ex.receptive_field, solution=24,
         right=[24.0, torch.tensor(24), np.int64(24), torch.tensor([[24]])],
         wrong=[9, 12, 45, 20, 40, 23, 24.5]),
    Case(ex.shift_rows, solution=_shift, takes_function=True,
         right=[_shift_roll, _shift_cat],
         wrong=[_shift_left, _shift_first, _shift_zeros, _shift_roll_all, _shift_in_place,
                _shift_no_return]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_solutions_agree_with_the_networks_they_describe():
    """The expected numbers are those of the real layers, not only of the formulas."""
    convbase = nn.Sequential(nn.Conv1d(1, 25, 5, stride=2, padding=1), nn.ReLU(),
                             nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(),
                             nn.Conv1d(25, 25, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
    assert convbase(torch.zeros(1, 1, 40)).shape == (1, FLAT)
    # the receptive field, by autograd through the same stack with positive weights
    net = nn.Sequential(nn.Conv1d(1, 1, 5, padding=2), nn.AvgPool1d(2),
                        nn.Conv1d(1, 1, 3, padding=1), nn.AvgPool1d(2),
                        nn.Conv1d(1, 1, 3, padding=1), nn.AvgPool1d(2)).double()
    for layer in net[::2]:
        nn.init.ones_(layer.weight)
    x = torch.zeros(1, 1, 40, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x)[0, 0, 2], x)
    assert int((grad != 0).sum()) == 24
    # unshuffling: the MLP with W[:, perm] on shuffled signals equals the original
    for weight, perm in ex._unshuffle_cases():  # noqa: SLF001
        x = torch.randn(3, weight.shape[1], dtype=torch.float64)
        torch.testing.assert_close(x[:, perm] @ _unshuffle(weight, perm).T, x @ weight.T)
    # shifting: the check's cases tell a right shift from a left one and from zero filling
    for x, s in ex._shift_cases():  # noqa: SLF001
        assert not torch.allclose(_shift(x, s), _shift_left(x, s))
        assert not torch.allclose(_shift(x, s), _shift_zeros(x, s))
