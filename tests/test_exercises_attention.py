"""The exercise checks of section 4.2 (``dlbook.exercises.attention``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.attention import causal_mask, scaled_dot_product_attention
from dlbook.exercises import attention as ex

# ---------------------------------------------------------------- attention with a mask


def _attn(q, k, v, mask):  # the book's solution
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v


def _attn_torch(q, k, v, mask):  # right: PyTorch's fused function
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _attn_where(q, k, v, mask):  # right: einsum, a large negative number, explicit softmax
    scores = torch.einsum("...ld,...sd->...ls", q, k) * q.shape[-1] ** -0.5
    scores = torch.where(mask, scores, torch.full_like(scores, -1e30))
    e = torch.exp(scores - scores.amax(-1, keepdim=True))
    return (e / e.sum(-1, keepdim=True)) @ v


def _attn_no_scale(q, k, v, mask):
    return (q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf")).softmax(-1) @ v


def _attn_inverted(q, k, v, mask):  # True taken as "blocked" (nn.MultiheadAttention's meaning)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    out = scores.masked_fill(mask, float("-inf")).softmax(-1) @ v
    return torch.nan_to_num(out)


def _attn_after_softmax(q, k, v, mask):  # zeroes weights after the softmax, no renormalising
    w = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).softmax(-1)
    return (w * mask) @ v


def _attn_wrong_axis(q, k, v, mask):  # softmax over the queries
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.nan_to_num(scores.masked_fill(~mask, float("-inf")).softmax(-2)) @ v


def _attn_scale_by_d(q, k, v, mask):  # divides by d, not sqrt(d)
    scores = q @ k.transpose(-2, -1) / q.shape[-1]
    return scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v


def _attn_no_mask(q, k, v, mask):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v)


# ------------------------------------------------------------------------- split heads


def _split(x, n_heads):  # the book's solution
    B, T, d = x.shape
    return x.reshape(B, T, n_heads, d // n_heads).permute(0, 2, 1, 3)


def _split_view(x, n_heads):  # right: view + transpose
    B, T, d = x.shape
    return x.view(B, T, n_heads, -1).transpose(1, 2)


def _split_stack(x, n_heads):  # right: slice the columns head by head
    dh = x.shape[-1] // n_heads
    return torch.stack([x[..., r * dh:(r + 1) * dh] for r in range(n_heads)], dim=1)


def _split_reshape(x, n_heads):  # right shape, wrong numbers
    B, T, d = x.shape
    return x.reshape(B, n_heads, T, d // n_heads)


def _split_interleaved(x, n_heads):  # head r gets features r, r + h, r + 2h, ...
    B, T, d = x.shape
    return x.view(B, T, d // n_heads, n_heads).permute(0, 3, 1, 2)


def _split_no_transpose(x, n_heads):
    B, T, d = x.shape
    return x.view(B, T, n_heads, d // n_heads)


# ---------------------------------------------------------------------------- RoPE score

def _rot(phi):
    return np.array([[math.cos(phi), -math.sin(phi)], [math.sin(phi), math.cos(phi)]])


_q, _k = np.array([1.0, 2.0]), np.array([3.0, -1.0])
_ROPE = float((_rot(0.5) @ _q) @ (_rot(0.2) @ _k))

# --------------------------------------------------------------------- the cached mask

_MASK = torch.ones(6, 6, dtype=torch.bool).tril()[3:]

CASES = [
    Case(ex.masked_attention, solution=_attn, takes_function=True,
         right=[_attn_torch, _attn_where],
         wrong=[_attn_no_scale, _attn_inverted, _attn_after_softmax, _attn_wrong_axis,
                _attn_scale_by_d, _attn_no_mask]),
    Case(ex.split_heads, solution=_split, takes_function=True,
         right=[_split_view, _split_stack],
         wrong=[_split_reshape, _split_interleaved, _split_no_transpose]),
    Case(ex.scaled_score_variance, solution=64 * 4 * 1 / 64,
         right=[4, 4.0, torch.tensor(4.0), np.float32(4.001)],
         wrong=[256, 32, 2, 16, 1, 64]),
    Case(ex.rope_score, solution=float(_q @ _rot(-0.3) @ _k),
         right=[_ROPE, round(_ROPE, 4), torch.tensor(_ROPE), np.float64(_ROPE)],
         wrong=[float(_q @ _k), float(_q @ _rot(0.3) @ _k), float(_q @ _rot(0.7) @ _k),
                float(_q @ _rot(-0.3) @ _k) * -1, float(_q @ _rot(-3) @ _k)]),
    Case(ex.cache_mask, solution=_MASK,
         right=[_MASK.int(), _MASK.numpy(), _MASK.int().tolist(), causal_mask(3, 6, offset=3),
                torch.arange(6)[None, :] <= torch.arange(3, 6)[:, None]],
         wrong=[torch.ones(3, 6, dtype=torch.bool).tril(), ~_MASK, torch.ones(6, 6).tril()[3:].T,
                torch.ones(6, 6, dtype=torch.bool).tril(-1)[3:], torch.ones(6, 6).tril(),
                [[2, 2, 2, 2, 0, 0]] * 3, "tril"]),
    Case(ex.attention_flops, solution=12 * 4 * 1024**2 * 768,
         right=[3.87e10, 38654705664.0, torch.tensor(12 * 4 * 1024**2 * 768.0)],
         wrong=[4 * 1024**2 * 768, 12 * 2 * 1024**2 * 768, 12 * 12 * 4 * 1024**2 * 768,
                12 * 4 * 1024**2 * 64, 12 * 8 * 1024 * 768**2]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_cases_separate_the_mistakes():
    """Without the scaling, or with the mask inverted, every case is wrong beyond 1 %."""
    for q, k, v, mask in ex._attention_cases():  # noqa: SLF001
        right = scaled_dot_product_attention(q, k, v, mask)
        for wrong in (_attn_no_scale, _attn_after_softmax, _attn_no_mask):
            assert not torch.allclose(right, wrong(q, k, v, mask), rtol=1e-2, atol=1e-3)
        assert not mask.all(-1).all()                       # every case masks something


def test_no_case_masks_a_whole_row():
    for *_, mask in ex._attention_cases():  # noqa: SLF001
        assert mask.any(-1).all()
