"""The exercise checks of section 6.4 (``dlbook.exercises.tensor_parallel``): see
exercise_harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case
from torch.nn import functional as F

from dlbook.distributed.tensor import activation_bytes_per_rank
from dlbook.exercises import tensor_parallel as ex


def _gelu(z):
    return F.gelu(z, approximate="tanh")


# ------------------------------------------------------------------------ the split MLP

def _mlp(x, a_shards, b_shards):  # the book's solution
    partials = [_gelu(x @ a) @ b for a, b in zip(a_shards, b_shards)]
    return sum(partials)


def _mlp_stacked(x, a_shards, b_shards):  # right: one batched matmul over the ranks
    y = _gelu(torch.einsum("nh,thf->tnf", x, torch.stack(a_shards)))
    return torch.einsum("tnf,tfh->nh", y, torch.stack(b_shards))


def _mlp_numpy(x, a_shards, b_shards):  # right: numpy, GeLU written out
    xs = x.numpy()
    total = 0
    for a, b in zip(a_shards, b_shards):
        z = xs @ a.numpy()
        y = 0.5 * z * (1 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z ** 3)))
        total = total + y @ b.numpy()
    return total


def _mlp_gelu_after_sum(x, a_shards, b_shards):  # GeLU of the sum: not the MLP
    return _gelu(sum(x @ a @ b for a, b in zip(a_shards, b_shards)))


def _mlp_concat(x, a_shards, b_shards):  # concatenates the partial sums
    return torch.cat([_gelu(x @ a) @ b for a, b in zip(a_shards, b_shards)], dim=-1)


def _mlp_mean(x, a_shards, b_shards):  # averages instead of summing
    return sum(_gelu(x @ a) @ b for a, b in zip(a_shards, b_shards)) / len(a_shards)


def _mlp_one_rank(x, a_shards, b_shards):  # forgets the all-reduce
    return _gelu(x @ a_shards[0]) @ b_shards[0]


def _mlp_exact_gelu(x, a_shards, b_shards):  # erf GeLU instead of the tanh form
    return sum(F.gelu(x @ a) @ b for a, b in zip(a_shards, b_shards))


# -------------------------------------------------------------------------- the numbers

B, S, H, T = 8, 2048, 8192, 8
TP_BYTES = 4 * 2 * (T - 1) / T * B * S * H * 2
SP = (4096, 2, 8192, 64, 4)
SP_BYTES = SP[0] * SP[1] * SP[2] / SP[4] * (34 + 5 * SP[3] * SP[0] / SP[2])
GOOD_DIMS = {"q_proj": 0, "k_proj": 0, "v_proj": 0, "o_proj": 1, "fc": 0, "proj": 1}

CASES = [
    Case(ex.megatron_mlp, solution=_mlp, takes_function=True,
         right=[_mlp_stacked, _mlp_numpy],
         wrong=[_mlp_gelu_after_sum, _mlp_concat, _mlp_mean, _mlp_one_rank, _mlp_exact_gelu]),
    Case(ex.tp_bytes_per_layer, solution=TP_BYTES,
         right=[1.88e9, 1_879_048_192, np.float32(1.879e9), torch.tensor(1.8790e9)],
         wrong=[4 * B * S * H * 2,                       # the whole tensor, not 2(t-1)/t of it
                2 * 2 * (T - 1) / T * B * S * H * 2,     # forward only
                4 * 2 * (T - 1) / T * B * S * H * 4,     # fp32
                4 * 2 * (T - 1) / T * B * S * H,         # elements, not bytes
                4 * (T - 1) / T * B * S * H * 2]),       # an all-gather's volume
    Case(ex.sp_activation_bytes, solution=SP_BYTES,
         right=[3.25e9, 3_254_779_904, activation_bytes_per_rank(*SP, sequence_parallel=True),
                np.float64(3.2548e9)],
         wrong=[activation_bytes_per_rank(*SP),                         # TP only
                SP[0] * SP[1] * SP[2] * (34 + 5 * SP[3] * SP[0] / SP[2]),  # not divided by t
                SP[0] * SP[1] * SP[2] / SP[4] * (34 + 5 * SP[3] * SP[0] / SP[2] / SP[4]),
                SP[0] * SP[1] * SP[2] / SP[4] * 34]),                   # no attention term
    Case(ex.allreduce_placement, solution="B", right=["b", " B "],
         wrong=["A", "C", "D", "E"]),
    Case(ex.split_dims, solution=GOOD_DIMS,
         right=[{"q_proj": 0, "k_proj": 0, "v_proj": 0, "o_proj": -1, "fc": -2, "proj": 1},
                dict(reversed(list(GOOD_DIMS.items())))],
         wrong=[{k: 0 for k in GOOD_DIMS}, {k: 1 - v for k, v in GOOD_DIMS.items()},
                {**GOOD_DIMS, "o_proj": 0}, {k: v for k, v in GOOD_DIMS.items() if k != "fc"},
                [0, 0, 0, 1, 0, 1], {**GOOD_DIMS, "proj": True}, {**GOOD_DIMS, "lm_head": 0}]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_split_mlp_cases_cover_several_ranks_and_separate_the_mistakes():
    cases = ex._mlp_cases()  # noqa: SLF001
    assert sorted({len(a) for _, a, _ in cases}) == [1, 2, 4]
    x, a, b = cases[2]
    gap = (_mlp(x, a, b) - _mlp_gelu_after_sum(x, a, b)).abs().max()
    assert gap > 1e-3
    torch.testing.assert_close(_mlp(x, a, b), _mlp_stacked(x, a, b), rtol=1e-12, atol=1e-12)


def test_the_numbers_are_the_formulas():
    assert TP_BYTES == pytest.approx(1.879048192e9)
    assert SP_BYTES == 3_254_779_904
