"""The exercise checks of section 3.4 (``dlbook.exercises.gated``): see exercise_harness."""

from __future__ import annotations

import math

import pytest
import torch
from exercise_harness import Case, case_params, run_case
from torch import nn

from dlbook.exercises import gated as ex

# --- one LSTM step --------------------------------------------------------------------------


def _lstm(x, h, c, W_ih, W_hh, b_ih, b_hh):
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _lstm_float32_separate_matrices(x, h, c, W_ih, W_hh, b_ih, b_hh):  # right, another form
    x, h, c = x.float(), h.float(), c.float()
    H = h.shape[-1]
    pre = [x @ W_ih[k * H:(k + 1) * H].float().T + h @ W_hh[k * H:(k + 1) * H].float().T
           + b_ih[k * H:(k + 1) * H].float() + b_hh[k * H:(k + 1) * H].float()
           for k in range(4)]
    i, f, o = (1 / (1 + torch.exp(-p)) for p in (pre[0], pre[1], pre[3]))
    c_new = f * c + i * torch.tanh(pre[2])
    return (o * torch.tanh(c_new)).tolist(), c_new.tolist()


def _lstm_order_ifog(x, h, c, W_ih, W_hh, b_ih, b_hh):  # g and o swapped
    i, f, o, g = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _lstm_no_tanh_on_c(x, h, c, W_ih, W_hh, b_ih, b_hh):  # h = o * c
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * c, c


def _lstm_old_c_in_h(x, h, c, W_ih, W_hh, b_ih, b_hh):  # reads the old cell state
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=-1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c_new


def _lstm_one_bias(x, h, c, W_ih, W_hh, b_ih, b_hh):  # forgets b_hh
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _lstm_untransposed(x, h, c, W_ih, W_hh, b_ih, b_hh):  # W x written as x @ W: fails
    i, f, g, o = (x @ W_ih + b_ih + h @ W_hh + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def _lstm_only_h(x, h, c, W_ih, W_hh, b_ih, b_hh):  # returns h alone
    return _lstm(x, h, c, W_ih, W_hh, b_ih, b_hh)[0]


def _lstm_in_place(x, h, c, W_ih, W_hh, b_ih, b_hh):  # overwrites c
    i, f, g, o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=-1)
    c.mul_(torch.sigmoid(f)).add_(torch.sigmoid(i) * torch.tanh(g))
    return torch.sigmoid(o) * torch.tanh(c), c


# --- one GRU step ---------------------------------------------------------------------------


def _gru(x, h, W_ih, W_hh, b_ih, b_hh):
    x_r, x_z, x_n = (x @ W_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ W_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def _gru_interpolation_form(x, h, W_ih, W_hh, b_ih, b_hh):  # right: h + (1 − z)(n − h)
    H = h.shape[-1]
    gx, gh = x @ W_ih.T + b_ih, h @ W_hh.T + b_hh
    r = torch.sigmoid(gx[:, :H] + gh[:, :H])
    z = torch.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
    n = torch.tanh(gx[:, 2 * H:] + r * gh[:, 2 * H:])
    return (h + (1 - z) * (n - h)).float()


def _gru_reset_before(x, h, W_ih, W_hh, b_ih, b_hh):  # Cho et al.'s W_hn (r * h) + b_hn
    H = h.shape[-1]
    x_r, x_z, x_n = (x @ W_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, _ = (h @ W_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + (r * h) @ W_hh[2 * H:].T + b_hh[2 * H:])
    return (1 - z) * n + z * h


def _gru_z_swapped(x, h, W_ih, W_hh, b_ih, b_hh):  # z weights the candidate
    x_r, x_z, x_n = (x @ W_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ W_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return z * n + (1 - z) * h


def _gru_order_zr(x, h, W_ih, W_hh, b_ih, b_hh):  # reads the gates as z, r, n
    x_z, x_r, x_n = (x @ W_ih.T + b_ih).chunk(3, dim=-1)
    h_z, h_r, h_n = (h @ W_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h


def _gru_reset_on_everything(x, h, W_ih, W_hh, b_ih, b_hh):  # r also multiplies the input
    x_r, x_z, x_n = (x @ W_ih.T + b_ih).chunk(3, dim=-1)
    h_r, h_z, h_n = (h @ W_hh.T + b_hh).chunk(3, dim=-1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(r * (x_n + h_n))
    return (1 - z) * n + z * h


def _gru_no_return(x, h, W_ih, W_hh, b_ih, b_hh):
    _gru(x, h, W_ih, W_hh, b_ih, b_hh)


keep = 0.5 ** (1 / 20)
b_half = math.log(keep / (1 - keep))

CASES = [
    Case(ex.lstm_parameters, solution=4 * (20 * 10 + 20 * 20 + 2 * 20),
         right=[2560.0, torch.tensor(2560)],
         wrong=[4 * (20 * 10 + 20 * 20 + 20), 3 * (20 * 10 + 20 * 20 + 2 * 20),
                20 * 10 + 20 * 20 + 2 * 20, 4 * (20 * 10 + 20 * 20), 2561]),
    Case(ex.lstm_step, solution=_lstm, takes_function=True,
         right=[_lstm_float32_separate_matrices],
         wrong=[_lstm_order_ifog, _lstm_no_tanh_on_c, _lstm_old_c_in_h, _lstm_one_bias,
                _lstm_untransposed, _lstm_only_h, _lstm_in_place]),
    Case(ex.forget_bias, solution=b_half, right=[3.34, round(b_half, 4), torch.tensor(3.345)],
         wrong=[keep, 1.0, 0.0, math.log(20), 3.4]),
    Case(ex.gru_step, solution=_gru, takes_function=True,
         right=[_gru_interpolation_form],
         wrong=[_gru_reset_before, _gru_z_swapped, _gru_order_zr, _gru_reset_on_everything,
                _gru_no_return]),
    Case(ex.bidirectional_shapes, solution=((4, 10, 32), (6, 4, 16)),
         right=[[torch.Size([4, 10, 32]), [6, 4, 16]]],
         wrong=[((4, 10, 16), (3, 4, 16)), ((4, 10, 32), (6, 4, 32)),
                ((4, 10, 32), (4, 6, 16)), ((4, 10, 32), (2, 4, 16)), (4, 10, 32),
                ((4, 10, 32.5), (6, 4, 16)), "(4, 10, 32), (6, 4, 16)"]),
    Case(ex.bottleneck_bits, solution=12 * math.log2(8), right=[36, 36.0],
         wrong=[12 * 8, 3, 12, 8 ** 12]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_bidirectional_shapes_are_torchs():
    lstm = nn.LSTM(8, 16, num_layers=3, bidirectional=True, batch_first=True)
    out, (h_n, c_n) = lstm(torch.zeros(4, 10, 8))
    assert ex.bidirectional_shapes((tuple(out.shape), tuple(h_n.shape)))
    assert c_n.shape == h_n.shape


def test_gru_reset_position_matters_for_the_cases():
    """The checks' inputs tell Cho et al.'s reset from PyTorch's (b_hn is not zero)."""
    from dlbook.exercises.gated import _cases_step

    for x, h, W_ih, W_hh, b_ih, b_hh in _cases_step(3):
        assert not torch.allclose(_gru(x, h, W_ih, W_hh, b_ih, b_hh),
                                  _gru_reset_before(x, h, W_ih, W_hh, b_ih, b_hh))
