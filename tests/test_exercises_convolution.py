"""The exercise checks of section 3.1 (``dlbook.exercises.convolution``): see exercise_harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_harness import Case, case_params, run_case

from dlbook import cnn
from dlbook.exercises import convolution as ex

# --- conv1d_strided(x, w, b, stride) -----------------------------------------------------------


def _conv1d(x, w, b, stride):
    k = w.shape[-1]
    L_out = (x.shape[-1] - k) // stride + 1
    cols = torch.stack([x[:, :, i * stride:i * stride + k] for i in range(L_out)], dim=-1)
    return torch.einsum("bckl,ock->bol", cols, w) + b[None, :, None]


def _conv1d_loops_float32(x, w, b, stride):  # right: plain loops, in single precision
    x, w, b = x.float(), w.float(), b.float()
    k, L_out = w.shape[-1], (x.shape[-1] - w.shape[-1]) // stride + 1
    y = torch.zeros(x.shape[0], w.shape[0], L_out)
    for o in range(w.shape[0]):
        for i in range(L_out):
            y[:, o, i] = (x[:, :, i * stride:i * stride + k] * w[o]).sum(dim=(1, 2)) + b[o]
    return y


def _conv1d_unfold(x, w, b, stride):  # right: Tensor.unfold and a matrix product
    patches = x.unfold(2, w.shape[-1], stride)                # (B, C_in, L_out, k)
    return torch.einsum("bclk,ock->bol", patches, w) + b[:, None]


def _conv1d_ours(x, w, b, stride):  # right: the section's own function
    return cnn.conv1d(x, w, b, stride=stride)


def _conv1d_flipped(x, w, b, stride):  # a true convolution: the kernel flipped
    return F.conv1d(x, w.flip(-1), b, stride=stride)


def _conv1d_no_stride(x, w, b, stride):  # ignores the stride
    return F.conv1d(x, w, b)


def _conv1d_off_by_one_start(x, w, b, stride):  # the first window starts at 1, not 0
    return F.conv1d(x, w, b)[:, :, 1::stride]


def _conv1d_no_bias(x, w, b, stride):  # forgot the bias
    return F.conv1d(x, w, stride=stride)


def _conv1d_transposed_weight(x, w, b, stride):  # reads w as (C_in, C_out, k)
    return F.conv1d(x, w.transpose(0, 1), b, stride=stride)


def _conv1d_padded(x, w, b, stride):  # pads as if 'same'
    return F.conv1d(x, w, b, stride=stride, padding=w.shape[-1] // 2)


def _conv1d_in_place(x, w, b, stride):  # right values, but overwrites its input
    y = F.conv1d(x, w, b, stride=stride)
    x.zero_()
    return y


def _conv1d_no_return(x, w, b, stride):
    y = F.conv1d(x, w, b, stride=stride)  # noqa: F841 - forgot to return


def _conv1d_one_channel(x, w, b, stride):  # sums only the first input channel
    return F.conv1d(x[:, :1], w[:, :1], b, stride=stride)


# --- the cases ---------------------------------------------------------------------------------

CORR = [[0.0, 1.0, 7.0], [5.0, -2.0, 5.0]]
POOL_GRAD = [[0.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 4.0]]

CASES = [
    Case(ex.output_size, solution=14, right=[14.0, torch.tensor(14), np.int64(14)],
         wrong=[13, 16, 15, 12, 28, 14.5, "14"]),
    Case(ex.separable_parameters, solution=64 * 9 + 64 + 128 * 64 + 128,
         right=[8960.0, torch.tensor(8960)],
         wrong=[8768, 128 * 64 * 9 + 128, 64 * 64 * 9 + 64 + 128 * 64 + 128, 640, 8320, 8960.5]),
    Case(ex.receptive_field, solution=23, right=[23.0, torch.tensor([23])],
         wrong=[12, 19, 17, 24, 22, 3 * 3 * 3]),
    Case(ex.small_correlation, solution=torch.tensor(CORR),
         right=[CORR, np.array(CORR), torch.tensor(CORR)[None, None], torch.tensor(CORR).int()],
         wrong=[[[4.0, 1.0, 3.0], [-2.0, 1.0, 1.0]],  # not the values
                F.conv2d(ex.CORR_X[None, None], ex.CORR_K.flip(-1, -2)[None, None])[0, 0],
                F.conv2d(ex.CORR_X[None, None], ex.CORR_K[None, None], padding=1)[0, 0],
                torch.tensor(CORR).T, [[0.0, 1.0, 7.0], [5.0, -2.0, 6.0]], "0 1 7"]),
    Case(ex.conv1d_strided, solution=_conv1d, takes_function=True,
         right=[_conv1d_loops_float32, _conv1d_unfold, _conv1d_ours],
         wrong=[_conv1d_flipped, _conv1d_no_stride, _conv1d_off_by_one_start, _conv1d_no_bias,
                _conv1d_transposed_weight, _conv1d_padded, _conv1d_in_place, _conv1d_no_return,
                _conv1d_one_channel]),
    Case(ex.maxpool_gradient, solution=torch.tensor(POOL_GRAD),
         right=[POOL_GRAD, np.array(POOL_GRAD), torch.tensor(POOL_GRAD).float()],
         wrong=[[[0.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 4.0]],  # overwrites
                [[0.25, 0.75, 0.5], [1.0, 2.5, 1.5], [0.75, 1.75, 1.0]],  # average pooling
                [[0.0, 0.0, 0.0], [0.0, 6.0, 0.0], [0.0, 0.0, 0.0]],  # one window lost
                torch.tensor([[1.0, 2.0], [3.0, 4.0]]),  # the upstream gradient itself
                [[0.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 0.0]]]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_wrong_answers_get_their_own_message(capsys):
    """The named mistakes are recognised, and the message does not give the answer away."""
    for check, answer, words in [
        (ex.output_size, 13, "one too few"), (ex.output_size, 16, "without dilation"),
        (ex.separable_parameters, 8768, "biases"),
        (ex.separable_parameters, 128 * 64 * 9 + 128, "standard"),
        (ex.receptive_field, 12, "after a stride"), (ex.receptive_field, 17, "pooling"),
        (ex.small_correlation,
         F.conv2d(ex.CORR_X[None, None], ex.CORR_K.flip(-1, -2)[None, None])[0, 0], "flipped"),
        (ex.maxpool_gradient, [[0, 0, 0], [0, 3, 0], [0, 0, 4]], "add up"),
    ]:
        result = check(answer)
        out = capsys.readouterr().out
        assert not result and words in result.message, out
        assert "14" not in out and "8960" not in out and "23" not in out
