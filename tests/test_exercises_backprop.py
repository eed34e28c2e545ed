"""The exercise checks of section 2.2 (``dlbook.exercises.backprop``): see exercise_harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_harness import Args, Case, case_params, run_case

from dlbook import backprop as bp
from dlbook.exercises import backprop as ex

# --- sigmoid_backward(dA, A) -> dZ --------------------------------------------------------------


def _sigmoid(dA, A):
    return dA * A * (1 - A)


def _sigmoid_float32(dA, A):  # right, in single precision
    return dA.float() * A.float() * (1 - A.float())


def _sigmoid_via_logit(dA, A):  # right, another formula: σ(z) σ(-z)
    z = torch.logit(A)
    return dA * torch.sigmoid(z) * torch.sigmoid(-z)


def _sigmoid_no_upstream(dA, A):  # forgot the upstream factor
    return A * (1 - A)


def _sigmoid_tanh_derivative(dA, A):  # tanh's 1 - A² instead of σ's
    return dA * (1 - A * A)


def _sigmoid_of_A(dA, A):  # treats the cached output as the input Z
    return dA * torch.sigmoid(A) * (1 - torch.sigmoid(A))


def _sigmoid_in_place(dA, A):  # right values, but overwrites the upstream gradient
    dA.mul_(A * (1 - A))
    return dA


def _sigmoid_no_return(dA, A):
    dZ = dA * A * (1 - A)  # noqa: F841 - forgot to return


# --- linear_nobias_backward(dY, X, W) -> (dX, dW) -----------------------------------------------


def _nobias(dY, X, W):
    return dY @ W.T, X.T @ dY


def _nobias_float32(dY, X, W):
    return dY.float() @ W.float().T, X.float().T @ dY.float()


def _nobias_transposed_products(dY, X, W):  # right: (W dYᵀ)ᵀ and (dYᵀ X)ᵀ
    return (W @ dY.T).T, (dY.T @ X).T


def _nobias_einsum_numpy(dY, X, W):  # right, as NumPy arrays in a list
    return [np.einsum("bo,io->bi", dY.numpy(), W.numpy()),
            np.einsum("bi,bo->io", X.numpy(), dY.numpy())]


def _nobias_torch_layout(dY, X, W):  # dW in nn.Linear's (out, in) layout
    return dY @ W.T, dY.T @ X


def _nobias_no_transpose(dY, X, W):  # dY @ W: fits only square W, and is wrong there
    return dY @ W if W.shape[0] == W.shape[1] else dY @ W.T, X.T @ dY


def _nobias_mean(dY, X, W):  # divides by B although dY already carries the loss's 1/B
    return dY @ W.T, X.T @ dY / X.shape[0]


def _nobias_only_dX(dY, X, W):
    return dY @ W.T


def _nobias_no_return(dY, X, W):
    dX, dW = dY @ W.T, X.T @ dY  # noqa: F841


# --- scale_backward(dY, X, gamma) -> (dX, dgamma), gamma (C, 1) ---------------------------------


def _scale(dY, X, gamma):
    return dY * gamma, (dY * X).sum(dim=(0, 2)).reshape(-1, 1)


def _scale_unbroadcast(dY, X, gamma):  # right, with the section's helper
    return dY * gamma, bp.unbroadcast(dY * X, gamma.shape)


def _scale_einsum_float32(dY, X, gamma):  # right, another formula in single precision
    dY, X, gamma = dY.float(), X.float(), gamma.float()
    return gamma * dY, torch.einsum("bct,bct->c", dY, X)[:, None]


def _scale_no_sum(dY, X, gamma):  # forgot that gamma was copied: shape (B, C, T)
    return dY * gamma, dY * X


def _scale_sum_batch_only(dY, X, gamma):  # summed over the batch but not over time
    return dY * gamma, (dY * X).sum(dim=0)


def _scale_lost_keepdim(dY, X, gamma):  # the right numbers in shape (C,) instead of (C, 1)
    return dY * gamma, (dY * X).sum(dim=(0, 2))


def _scale_forgot_X(dY, X, gamma):  # dgamma without the other factor
    return dY * gamma, dY.sum(dim=(0, 2)).reshape(-1, 1)


def _scale_mean(dY, X, gamma):  # a mean over the copies instead of a sum
    return dY * gamma, (dY * X).mean(dim=(0, 2)).reshape(-1, 1)


def _scale_forgot_gamma(dY, X, gamma):  # dX = dY
    return dY.clone(), (dY * X).sum(dim=(0, 2)).reshape(-1, 1)


# --- the tiny numeric answers -------------------------------------------------------------------

P = torch.softmax(ex.CE_LOGITS, dim=1)
Y = F.one_hot(ex.CE_LABELS, 3).float()
dS = (P - Y) / 2

E = torch.zeros(ex.EMB_ROWS, 2, dtype=torch.float64)
dE = E.index_add(0, ex.EMB_IDS.reshape(-1), ex.EMB_UPSTREAM.double().reshape(-1, 2))
dE_assigned = torch.zeros_like(dE)  # dE[ids] = dY: a repeated row keeps only one contribution
for i, row in zip(ex.EMB_IDS.reshape(-1).tolist(), ex.EMB_UPSTREAM.reshape(-1, 2)):
    dE_assigned[i] = row
dE_first_wins = torch.zeros_like(dE)
for i, row in reversed(list(zip(ex.EMB_IDS.reshape(-1).tolist(),
                                ex.EMB_UPSTREAM.reshape(-1, 2)))):
    dE_first_wins[i] = row

unit = 2 * 64 * 512 * 256

CASES = [
    Case(ex.dw_shape, solution=Args(((100, 10), (10, 100))),
         right=[Args(([100, 10], torch.Size([10, 100]))),
                Args((torch.tensor([100, 10]), np.array([10, 100]))),
                Args(((100.0, 10.0), (10, 100)))],
         wrong=[Args(((10, 100), (10, 100))), Args(((100, 10), (100, 10))),
                Args(((10, 100), (100, 10))), Args(((32, 10), (10, 100))),
                Args(((100.5, 10), (10, 100))), Args(("(100, 10)", (10, 100)))],
         unanswered=[Args((..., ...)), Args(((100, 10), ...))]),
    Case(ex.sigmoid_backward, solution=_sigmoid, takes_function=True,
         right=[_sigmoid_float32, _sigmoid_via_logit, lambda dA, A: dA * (A - A ** 2)],
         wrong=[_sigmoid_no_upstream, _sigmoid_tanh_derivative, _sigmoid_of_A,
                _sigmoid_in_place, _sigmoid_no_return, 0.25]),
    Case(ex.linear_nobias_backward, solution=_nobias, takes_function=True,
         right=[_nobias_float32, _nobias_transposed_products, _nobias_einsum_numpy],
         wrong=[_nobias_torch_layout, _nobias_no_transpose, _nobias_mean, _nobias_only_dX,
                _nobias_no_return, lambda dY, X, W: (dY @ W.T, 2 * X.T @ dY)]),
    Case(ex.scale_backward, solution=_scale, takes_function=True,
         right=[_scale_unbroadcast, _scale_einsum_float32],
         wrong=[_scale_no_sum, _scale_sum_batch_only, _scale_lost_keepdim, _scale_forgot_X,
                _scale_mean, _scale_forgot_gamma]),
    Case(ex.softmax_ce_grad, solution=dS,
         right=[dS.double(), dS.numpy(), [[round(v, 4) for v in row] for row in dS.tolist()]],
         wrong=[P - Y, (P - Y) / 3, (Y - P) / 2, P / 2,
                (torch.softmax(ex.CE_LOGITS, dim=0) - Y) / 2,
                [[round(v, 3) for v in row] for row in dS.tolist()]]),
    Case(ex.embedding_grad, solution=dE,
         right=[dE.float(), dE.long(), dE.tolist(), dE.numpy()],
         wrong=[dE_assigned, dE_first_wins, dE[:4], dE.T,
                ex.EMB_UPSTREAM.reshape(-1, 2).sum(0).expand(ex.EMB_ROWS, 2)]),
    Case(ex.backward_flops, solution=Args((2 * unit, unit)),
         right=[Args((3.36e7, 1.68e7)), Args((torch.tensor(2 * unit), np.int64(unit))),
                Args((float(2 * unit), unit))],
         wrong=[Args((unit, 2 * unit)), Args((unit, unit)), Args((3 * unit, 2 * unit)),
                Args((unit, unit // 2)), Args((2 * unit, 0)), Args(("many", unit)),
                Args((10**400, unit))],
         unanswered=[Args((..., ...)), Args((2 * unit, ...))]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_messages_say_what_is_wrong(capsys):
    """The mistakes the section warns about get a message that names them."""
    ex.linear_nobias_backward(_nobias_torch_layout)
    assert "transposed" in capsys.readouterr().out
    ex.linear_nobias_backward(_nobias_no_return)
    assert "forget the `return`" in capsys.readouterr().out
    ex.scale_backward(_scale_lost_keepdim)
    assert "(3, 1)" in capsys.readouterr().out
    ex.backward_flops(unit, 2 * unit)
    assert "swapped" in capsys.readouterr().out
    ex.backward_flops(unit, unit)
    assert "swapped" not in capsys.readouterr().out


def test_hints_do_not_give_the_answer(capsys):
    """A hint points the way; it does not contain the numbers a student is asked for."""
    ex.backward_flops(1, 1)
    hint = capsys.readouterr().out.split("Hint:")[1]
    assert not any(ch.isdigit() for ch in hint)
    ex.embedding_grad(torch.zeros(5, 2))
    hint = capsys.readouterr().out.split("Hint:")[1]
    assert not any(ch.isdigit() for ch in hint)
