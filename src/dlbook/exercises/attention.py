"""Checks for the exercises of section 4.2, Attention.

Functions are compared with ``dlbook.attention`` in float64 within a relative error of 1e-6, on
inputs chosen so that the usual mistakes (no scaling, the mask inverted or transposed, the
softmax over the wrong axis, heads taken from interleaved columns) change the result far beyond
the tolerance. Numbers need three or four significant figures, as each exercise says; the mask
must be exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dlbook import check
from dlbook.attention import causal_mask, scaled_dot_product_attention

F64 = torch.float64


# ------------------------------------------------------------------ attention with a mask

def _attention_cases() -> list[tuple[torch.Tensor, ...]]:
    """(q, k, v, mask) in float64. Scores are large enough that forgetting 1/sqrt(d) matters,
    L != S in one case (a transposed mask has the wrong shape), and no query is fully masked."""
    g = torch.Generator().manual_seed(42)
    cases = []
    for batch, L, S, d, dv, kind in (((), 4, 4, 8, 3, "causal"), ((2,), 5, 7, 16, 4, "padding"),
                                     ((2, 3), 6, 6, 4, 5, "random"), ((), 3, 5, 2, 2, "random")):
        q = 2 * torch.randn(*batch, L, d, generator=g, dtype=F64)
        k = 2 * torch.randn(*batch, S, d, generator=g, dtype=F64)
        v = torch.randn(*batch, S, dv, generator=g, dtype=F64)
        if kind == "causal":
            mask = causal_mask(L, S)
        elif kind == "padding":
            lengths = torch.tensor([3, 6][: batch[0]])
            mask = (torch.arange(S) < lengths[:, None])[:, None, :]          # (B, 1, S)
        else:
            mask = torch.rand(*batch, L, S, generator=g) < 0.6
            mask[..., 0] = True                                              # none fully masked
        cases.append((q, k, v, mask))
    return cases


def _reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                         mask: torch.Tensor) -> torch.Tensor:
    return scaled_dot_product_attention(q, k, v, mask)


def masked_attention(fn: Any) -> check.Result:
    """``fn(q, k, v, mask) -> (..., L, dv)``: scaled dot-product attention with a boolean mask
    (True = may attend) that broadcasts to (..., L, S), compared with dlbook.attention in
    float64 to a relative error of 1e-6."""
    return check.function(fn, _reference_attention, _attention_cases(),
                          name="scaled dot-product attention with a mask", rtol=1e-6, atol=1e-9,
                          hint="Scores q k^T divided by sqrt(d), the feature size of q; set the "
                               "scores where the mask is False to -inf (masked_fill(~mask, ...)) "
                               "before a softmax over the last axis, the keys; then multiply "
                               "by v.")


# ------------------------------------------------------------------------- split heads

def _reference_split(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    B, T, d = x.shape
    return x.view(B, T, n_heads, d // n_heads).transpose(1, 2)


def _split_cases() -> list[tuple[torch.Tensor, int]]:
    g = torch.Generator().manual_seed(7)
    return [(torch.randn(2, 5, 12, generator=g, dtype=F64), 3),
            (torch.randn(1, 4, 8, generator=g, dtype=F64), 2),
            (torch.randn(3, 6, 6, generator=g, dtype=F64), 6),
            (torch.randn(2, 3, 8, generator=g, dtype=F64), 1)]


def split_heads(fn: Any) -> check.Result:
    """``fn(x, n_heads)``: (B, T, d_model) -> (B, n_heads, T, d_model // n_heads), head r
    holding features r·d_head ... (r+1)·d_head − 1, exactly (float64, relative error 1e-12)."""
    return check.function(fn, _reference_split, _split_cases(), name="split heads", rtol=1e-12,
                          atol=0.0,
                          hint="First group the last axis into (n_heads, d_head) with view or "
                               "reshape, which keeps each head's features together, then swap "
                               "the time and head axes. Reshaping straight to (B, n_heads, T, "
                               "d_head) mixes time steps into heads.")


# ------------------------------------------------------------------------ score variance

def scaled_score_variance(answer: Any) -> check.Result:
    """Var[q·k / sqrt(d)] for d = 64, q with independent N(0, 4) entries and k with independent
    N(0, 1) entries, independent of q (three significant figures)."""
    d, var_q, var_k = 64, 4.0, 1.0
    expected = d * var_q * var_k / d
    return check.number(answer, expected, name="variance of the scaled score", digits=3,
                        hint="Each term q_i k_i has variance E[q_i²] E[k_i²]; the d terms are "
                             "independent, so their variances add. Dividing a random variable "
                             "by c divides its variance by c².")


# ---------------------------------------------------------------------------- RoPE score

def rope_score(answer: Any) -> check.Result:
    """The score (R(mθ) q) · (R(nθ) k) for q = (1, 2) at m = 5, k = (3, −1) at n = 2 and
    θ = 0.1 rad per position (four significant figures)."""
    q, k, m, n, theta = (1.0, 2.0), (3.0, -1.0), 5, 2, 0.1

    def rotate(x: tuple[float, float], angle: float) -> tuple[float, float]:
        c, s = math.cos(angle), math.sin(angle)
        return c * x[0] - s * x[1], s * x[0] + c * x[1]

    qr, kr = rotate(q, m * theta), rotate(k, n * theta)
    expected = qr[0] * kr[0] + qr[1] * kr[1]                  # = q · R((n - m) θ) k
    return check.number(answer, expected, name="rotary score", digits=4,
                        hint="Rotate q by 5θ and k by 2θ (R(φ) = [[cos φ, −sin φ], [sin φ, "
                             "cos φ]]), then take the dot product; equivalently rotate k alone "
                             "by (n − m)θ. Angles are in radians.")


# --------------------------------------------------------------------- the cached mask

def _as_mask(answer: Any) -> torch.Tensor | None:
    """A bool tensor from a bool or 0/1 tensor, array or nested list; None otherwise."""
    if isinstance(answer, torch.Tensor):
        t = answer.detach().cpu()
    else:
        try:
            t = torch.as_tensor(np.asarray(answer))
        except (TypeError, ValueError, RuntimeError):
            return None
    if t.is_complex() or t.dtype not in (torch.bool, torch.uint8, torch.int8, torch.int16,
                                         torch.int32, torch.int64, torch.float16, torch.float32,
                                         torch.float64):
        return None
    if t.dtype != torch.bool:
        if not bool(((t == 0) | (t == 1)).all()):
            return None
        t = t != 0
    return t


def cache_mask(answer: Any) -> check.Result:
    """The (3, 6) boolean mask for 3 new queries at positions 3, 4, 5 that attend causally to
    the keys at positions 0..5 (3 cached and 3 new), True = may attend, exactly."""
    expected = causal_mask(3, 6, offset=3)

    def test(a: Any) -> str | None:
        got = _as_mask(a)
        if got is None:
            return "expected a boolean (or 0/1) tensor, array or list of lists."
        if tuple(got.shape) != (3, 6):
            return f"shape {tuple(got.shape)} should be (3, 6): one row per query, one column " \
                   "per key."
        if torch.equal(got, expected):
            return None
        wrong = int((got != expected).sum())
        return f"{wrong} of 18 entries are wrong (the first in row " \
               f"{int((got != expected).nonzero()[0, 0])})."

    return check.condition(answer, test, name="causal mask with a cache",
                           hint="Query row i sits at position 3 + i and may see every key at a "
                                "position up to and including its own; True means may attend.")


# ------------------------------------------------------------------------- FLOPs of attention

def attention_flops(answer: Any) -> check.Result:
    """FLOPs of QKᵀ and AV (multiply and add = 2 FLOPs) in all 12 layers of GPT-2 small
    (d_model = 768, 12 heads of 64) for one sequence of T = 1024 tokens, three significant
    figures; the projections are not counted."""
    layers, T, d_model = 12, 1024, 768
    expected = layers * 4 * T**2 * d_model
    return check.number(answer, expected, name="FLOPs of attention in GPT-2 small", digits=3,
                        hint="One head: QKᵀ is T·T dot products of length d_head, "
                             "2·T²·d_head FLOPs, and AV the same again. The heads together "
                             "have d_model features, and there are 12 layers.")
