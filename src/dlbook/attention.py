"""Attention, written to be read (section 4.2): scaled dot-product attention, positions
(sinusoidal and rotary), a key/value cache and multi-head attention with grouped-query heads.

``dlbook.gpt`` builds its Transformer blocks from :class:`MultiHeadAttention`.

Conventions
-----------
* Shapes follow ``torch.nn.functional.scaled_dot_product_attention``: queries ``(..., L, E)``,
  keys ``(..., S, E)``, values ``(..., S, Ev)``; a boolean mask is ``True`` where a query *may*
  attend to a key, a floating-point mask is added to the scores.
* Rotary embeddings use the "rotate-half" pairing of Hugging Face's Llama: feature ``i`` of a
  head is rotated together with feature ``i + head_dim/2`` by the angle ``pos * theta**(-2i/d)``.
  The original RoFormer/Meta code pairs neighbours ``(2i, 2i+1)`` instead; the two differ only by a
  fixed permutation of the features, which converters apply to the q/k weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["scaled_dot_product_attention", "attention_weights", "causal_mask",
           "sinusoidal_positions", "rope_cos_sin", "apply_rope", "KVCache", "MultiHeadAttention"]


# ----------------------------------------------------------------- scaled dot-product attention

def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() < 2:
            raise ValueError(f"expected {name} to be a tensor of shape (..., seq, features), "
                             f"got {getattr(t, 'shape', type(t).__name__)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries and keys need the same feature size: q has {q.shape[-1]}, "
                         f"k has {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"keys and values need the same length: k has {k.shape[-2]} positions, "
                         f"v has {v.shape[-2]}")


def causal_mask(L: int, S: int | None = None, *, offset: int = 0,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean ``(L, S)`` mask, ``True`` where query ``i`` (at position ``offset + i``) may see key
    ``j``: ``j <= offset + i``. ``offset=0`` is F.scaled_dot_product_attention's ``is_causal``."""
    S = L if S is None else S
    i = torch.arange(L, device=device).unsqueeze(1)
    j = torch.arange(S, device=device).unsqueeze(0)
    return j <= i + offset


def attention_weights(q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None = None,
                      is_causal: bool = False, scale: float | None = None) -> torch.Tensor:
    """The attention probabilities ``softmax(q k^T * scale + mask)``, shape ``(..., L, S)``.

    A query that may attend to no key at all gets all-zero weights (as PyTorch does), not NaN.
    """
    if mask is not None and is_causal:
        raise ValueError("pass either mask or is_causal=True, not both "
                         "(combine them yourself: mask & causal_mask(L, S))")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale                     # (..., L, S)
    if is_causal:
        mask = causal_mask(q.shape[-2], k.shape[-2], device=q.device)
    if mask is not None:
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    # softmax written out so that fully masked rows give zeros and finite gradients
    top = scores.amax(dim=-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top)).detach()
    e = torch.exp(scores - top)
    total = e.sum(dim=-1, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 mask: torch.Tensor | None = None, is_causal: bool = False,
                                 scale: float | None = None) -> torch.Tensor:
    """``softmax(q k^T / sqrt(E) + mask) v`` with the semantics of
    ``F.scaled_dot_product_attention`` (``mask`` plays the role of its ``attn_mask``).

    q: (..., L, E), k: (..., S, E), v: (..., S, Ev) -> (..., L, Ev); the mask broadcasts to
    (..., L, S).
    """
    _check_qkv(q, k, v)
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise ValueError("mask must be a tensor (bool: True = may attend, or float: added)")
        try:
            torch.broadcast_shapes(mask.shape, q.shape[:-1] + (k.shape[-2],))
        except RuntimeError:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the scores' "
                             f"shape {tuple(q.shape[:-1]) + (k.shape[-2],)} (..., L, S)") from None
    return attention_weights(q, k, mask, is_causal, scale) @ v


# ---------------------------------------------------------------------------------- positions

def sinusoidal_positions(length: int, d_model: int, base: float = 10000.0,
                         dtype: torch.dtype | None = None) -> torch.Tensor:
    """Vaswani et al.'s fixed position codes, ``(length, d_model)``: even features
    ``sin(pos / base**(2i/d))``, odd features ``cos`` of the same angle (computed in float64,
    returned in ``dtype``, by default the default dtype)."""
    if d_model % 2:
        raise ValueError(f"d_model must be even for sine/cosine pairs, got {d_model}")
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    freq = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe.to(torch.get_default_dtype() if dtype is None else dtype)


def rope_cos_sin(head_dim: int, positions: int | torch.Tensor, theta: float = 10000.0,
                 dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines of the rotary angles, each ``(T, head_dim)`` in rotate-half layout:
    the angle of feature ``i`` and of ``i + head_dim/2`` is ``pos * theta**(-2i/head_dim)``.

    ``positions`` is a length ``T`` (positions 0..T-1) or a 1-D tensor of positions.
    """
    if head_dim % 2:
        raise ValueError(f"rotary embeddings rotate pairs of features: head_dim must be even, "
                         f"got {head_dim}")
    if isinstance(positions, int):
        positions = torch.arange(positions, device=device)
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64,
                                            device=positions.device) / head_dim)
    angles = positions.to(torch.float64).unsqueeze(1) * inv_freq       # (T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)                      # (T, head_dim)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each pair ``(x[..., i], x[..., i + d/2])`` of ``x (..., T, d)`` by its angle."""
    if x.shape[-1] != cos.shape[-1] or x.shape[-2] != cos.shape[-2]:
        raise ValueError(f"x (..., T, head_dim) = {tuple(x.shape)} does not match the rotary "
                         f"table {tuple(cos.shape)} (T, head_dim)")
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)      # (-x2, x1)
    return x * cos + rotated * sin


# ------------------------------------------------------------------------------ the KV cache

class KVCache:
    """The keys and values one attention layer has seen, ``(B, n_kv_heads, T_seen, head_dim)``.

    At generation time each new token's key and value are appended, so a step costs one
    token's projections instead of the whole prefix's.
    """

    def __init__(self) -> None:
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def update(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's keys and values and return all of them."""
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=-2)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def nbytes(self) -> int:
        """Bytes held by the cached keys and values."""
        return 0 if self.k is None else (self.k.numel() * self.k.element_size()
                                         + self.v.numel() * self.v.element_size())


# ------------------------------------------------------------------------ multi-head attention

class MultiHeadAttention(nn.Module):
    """Multi-head attention with separate q/k/v/o projections (weights ``(out, in)``).

    ``n_kv_heads < n_heads`` is grouped-query attention (``1`` is multi-query): each key/value
    head is shared by ``n_heads // n_kv_heads`` query heads.
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None, *,
                 bias: bool = True, causal: bool = True, rope: bool = False,
                 context_length: int = 1024, rope_theta: float = 10000.0,
                 dropout: float = 0.0) -> None:
        super().__init__()
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} must be a multiple of n_kv_heads={n_kv_heads}")
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.head_dim = d_model // n_heads
        if rope and self.head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {self.head_dim}")
        self.causal, self.rope, self.dropout = causal, rope, dropout
        self.q_proj = nn.Linear(d_model, n_heads * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * self.head_dim, d_model, bias=bias)
        if rope:
            cos, sin = rope_cos_sin(self.head_dim, context_length, rope_theta, torch.float64)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    def split_heads(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """(B, T, n * head_dim) -> (B, n, T, head_dim)."""
        B, T, _ = x.shape
        return x.view(B, T, n, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, cache: KVCache | None = None) -> torch.Tensor:
        """x: (B, T, d_model) -> (B, T, d_model). ``context`` (B, S, d_model) gives the keys and
        values for cross-attention; ``mask`` (bool, True = may attend) broadcasts to
        (B, n_heads, T, S); ``cache`` is extended in place and positions continue after it."""
        if x.dim() != 3:
            raise ValueError(f"expected x of shape (batch, seq, d_model), got {tuple(x.shape)}")
        if mask is not None and (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool):
            raise ValueError("MultiHeadAttention takes a boolean mask (True = may attend); "
                             "turn a padding list into one with `lengths[:, None] > arange(S)`")
        B, T, _ = x.shape
        source = x if context is None else context
        past = 0 if cache is None else len(cache)
        q = self.split_heads(self.q_proj(x), self.n_heads)            # (B, H, T, hd)
        k = self.split_heads(self.k_proj(source), self.n_kv_heads)    # (B, Hkv, S, hd)
        v = self.split_heads(self.v_proj(source), self.n_kv_heads)
        if self.rope:
            if context is not None:
                raise ValueError("rotary positions are for self-attention; use rope=False for "
                                 "cross-attention")
            if past + T > self.rope_cos.shape[0]:
                raise ValueError(f"{past + T} positions exceed context_length="
                                 f"{self.rope_cos.shape[0]}")
            cos = self.rope_cos[past:past + T].to(q.dtype)
            sin = self.rope_sin[past:past + T].to(q.dtype)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.update(k, v)                                 # all positions so far
        if self.n_kv_heads != self.n_heads:                           # share each kv head
            group = self.n_heads // self.n_kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        S = k.shape[-2]
        if self.causal and context is None and T > 1:
            causal = causal_mask(T, S, offset=past, device=x.device)
            mask = causal if mask is None else mask & causal
        drop = self.dropout if self.training else 0.0
        if drop:
            attn = F.dropout(attention_weights(q, k, mask), drop)
            y = attn @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)
        return self.o_proj(y)
