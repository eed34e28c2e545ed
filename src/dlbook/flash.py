"""FlashAttention-2 written to be read (section 5.4): exact attention without the T × T matrix.

Naive attention writes the scores ``S = Q Kᵀ / √d`` and the probabilities ``P = softmax(S)``
(both ``seq_q × seq_k``) to memory, reads them back, and keeps ``P`` for the backward pass.
FlashAttention (Dao et al., 2022; FlashAttention-2, Dao, 2023) never forms them: it walks over
tiles of queries and, for each, over tiles of keys, keeping per query row a running maximum
``m``, a running sum ``l`` and an unnormalised output, which the *online softmax* (Milakov &
Gimelshein, 2018) rescales by ``exp(m_old - m_new)`` whenever the maximum grows. It saves only
``q, k, v``, the output and one log-sum-exp per row, and recomputes the tiles of ``P`` in the
backward pass.

Here the tiles are a Python loop over PyTorch matmuls, so on a CPU it is *slower* than
PyTorch's fused kernel; what it shows is the algorithm and the memory it saves. On a GPU the
same loop runs inside one kernel, tiles live in on-chip SRAM, and the saving in memory traffic
becomes a saving in time.

Shapes follow ``F.scaled_dot_product_attention``: ``q`` is ``(batch, seq_q, head_dim)``, ``k``
``(batch, seq_k, head_dim)``, ``v`` ``(batch, seq_k, head_dim_v)``; a 4-D
``(batch, heads, seq, dim)`` input is flattened to 3-D and back. ``is_causal`` means query ``i``
sees keys ``j <= i`` (``torch.ones(seq_q, seq_k).tril()``, top-left aligned, as PyTorch does).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from dlbook.calc import saved_tensor_bytes

__all__ = ["FlashAttentionFunction", "flash_attention", "flash_forward", "flash_backward",
           "naive_attention", "tile_count", "saved_bytes", "saved_tensors"]

_HALF = (torch.float16, torch.bfloat16)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulate in the input's precision, or in float32 for the half types."""
    return torch.float32 if dtype in _HALF else dtype


def _check_inputs(q: Any, k: Any, v: Any, is_causal: Any, block_size: Any) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() not in (3, 4):
            raise ValueError(f"expected {name} of shape (batch, seq, head_dim) or "
                             f"(batch, heads, seq, head_dim), got {tuple(t.shape)}: add the "
                             f"missing batch dimension with {name}.unsqueeze(0)")
        if not t.is_floating_point():
            raise ValueError(f"{name} has dtype {t.dtype}; attention needs floating-point "
                             f"inputs: convert with {name}.float()")
    if not q.dim() == k.dim() == v.dim():
        raise ValueError(f"q, k and v need the same number of dimensions, got {q.dim()}, "
                         f"{k.dim()} and {v.dim()}")
    if q.shape[:-2] != k.shape[:-2] or q.shape[:-2] != v.shape[:-2]:
        raise ValueError(f"q, k and v need the same leading (batch[, heads]) dimensions, got "
                         f"{tuple(q.shape[:-2])}, {tuple(k.shape[:-2])} and "
                         f"{tuple(v.shape[:-2])}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries and keys need the same head_dim: q has {q.shape[-1]}, "
                         f"k has {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"keys and values need the same length: k has {k.shape[-2]} "
                         f"positions, v has {v.shape[-2]}")
    if q.shape[-2] < 1 or k.shape[-2] < 1 or q.shape[-1] < 1:
        raise ValueError(f"sequences and head_dim must be non-empty, got q {tuple(q.shape)} "
                         f"and k {tuple(k.shape)}")
    if k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"q, k and v need one dtype, got {q.dtype}, {k.dtype} and {v.dtype}: "
                         "convert with .to(q.dtype)")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"q, k and v need one device, got {q.device}, {k.device} and "
                         f"{v.device}: move them with .to(q.device)")
    if not isinstance(is_causal, bool):
        raise ValueError(f"is_causal must be True or False, got {is_causal!r}")
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer (for example 64), got "
                         f"{block_size!r}")


def _flat(t: torch.Tensor) -> torch.Tensor:
    """(batch, heads, seq, dim) -> (batch·heads, seq, dim); 3-D tensors pass through."""
    return t.reshape(-1, t.shape[-2], t.shape[-1]) if t.dim() == 4 else t


def _tile_visible(q0: int, q1: int, k0: int, is_causal: bool) -> bool:
    """Does any query in rows [q0, q1) see a key at or after k0? (no: skip the tile)."""
    return not is_causal or k0 <= q1 - 1


def _causal_tile_mask(q0: int, q1: int, k0: int, k1: int, device: torch.device
                      ) -> torch.Tensor | None:
    """Boolean (q1-q0, k1-k0) mask, True where query i may see key j (j <= i); None if the
    whole tile is visible (it lies below the diagonal)."""
    if k1 - 1 <= q0:
        return None
    i = torch.arange(q0, q1, device=device).unsqueeze(1)
    j = torch.arange(k0, k1, device=device).unsqueeze(0)
    return j <= i


def flash_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False,
                  block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """FlashAttention-2's forward pass on 3-D inputs: returns (output, lse).

    Outer loop over query tiles, inner loop over key tiles with the online softmax; ``lse`` is
    ``m + log(l)``, the log-sum-exp of each query's scores, shape (batch, seq_q).
    """
    B, Lq, d = q.shape
    Lk, dv = k.shape[1], v.shape[2]
    scale = 1.0 / math.sqrt(d)
    out = torch.empty(B, Lq, dv, dtype=q.dtype, device=q.device)
    lse = torch.empty(B, Lq, dtype=_compute_dtype(q.dtype), device=q.device)
    for q0 in range(0, Lq, block_size):                     # one query tile at a time
        q1 = min(q0 + block_size, Lq)
        qi = q[:, q0:q1].to(lse.dtype)
        m = torch.full((B, q1 - q0), -math.inf, dtype=lse.dtype, device=q.device)
        l = torch.zeros(B, q1 - q0, dtype=lse.dtype, device=q.device)
        acc = torch.zeros(B, q1 - q0, dv, dtype=lse.dtype, device=q.device)
        for k0 in range(0, Lk, block_size):                 # stream the key/value tiles past it
            if not _tile_visible(q0, q1, k0, is_causal):
                break                                       # this and all later tiles are masked
            k1 = min(k0 + block_size, Lk)
            s = (qi @ k[:, k0:k1].to(lse.dtype).transpose(1, 2)) * scale   # (B, bq, bk)
            if is_causal:
                mask = _causal_tile_mask(q0, q1, k0, k1, q.device)
                if mask is not None:
                    s = s.masked_fill(~mask, -math.inf)
            m_new = torch.maximum(m, s.amax(dim=-1))        # running max; finite after tile 0
            p = torch.exp(s - m_new.unsqueeze(-1))          # exp(-inf) = 0 for masked keys
            alpha = torch.exp(m - m_new)                    # rescale what was summed so far
            l = alpha * l + p.sum(dim=-1)
            acc = alpha.unsqueeze(-1) * acc + p @ v[:, k0:k1].to(lse.dtype)
            m = m_new
        out[:, q0:q1] = (acc / l.unsqueeze(-1)).to(q.dtype)  # normalise once, at the end
        lse[:, q0:q1] = m + torch.log(l)
    return out, lse


def flash_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                   lse: torch.Tensor, dout: torch.Tensor, is_causal: bool = False,
                   block_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FlashAttention-2's backward pass on 3-D inputs: returns (dq, dk, dv).

    Each tile of P is recomputed from the saved ``lse`` as ``exp(S - lse)``; outer loop over key
    tiles (their dK, dV accumulate in registers on a GPU), inner loop over query tiles.
    """
    B, Lq, d = q.shape
    Lk = k.shape[1]
    scale = 1.0 / math.sqrt(d)
    c = lse.dtype
    q_, k_, v_, do = q.to(c), k.to(c), v.to(c), dout.to(c)
    D = (do * out.to(c)).sum(dim=-1)                        # rowsum(dO ∘ O), (B, Lq)
    dq = torch.zeros(B, Lq, d, dtype=c, device=q.device)
    dk = torch.zeros(B, Lk, d, dtype=c, device=q.device)
    dv = torch.zeros(B, Lk, v.shape[2], dtype=c, device=q.device)
    for k0 in range(0, Lk, block_size):
        k1 = min(k0 + block_size, Lk)
        kj, vj = k_[:, k0:k1], v_[:, k0:k1]
        for q0 in range(0, Lq, block_size):
            q1 = min(q0 + block_size, Lq)
            if not _tile_visible(q0, q1, k0, is_causal):
                continue                                    # tile above the diagonal
            qi, doi = q_[:, q0:q1], do[:, q0:q1]
            s = (qi @ kj.transpose(1, 2)) * scale
            if is_causal:
                mask = _causal_tile_mask(q0, q1, k0, k1, q.device)
                if mask is not None:
                    s = s.masked_fill(~mask, -math.inf)
            p = torch.exp(s - lse[:, q0:q1].unsqueeze(-1))  # the probabilities, recomputed
            dv[:, k0:k1] += p.transpose(1, 2) @ doi
            dp = doi @ vj.transpose(1, 2)
            ds = p * (dp - D[:, q0:q1].unsqueeze(-1))       # softmax's backward
            dq[:, q0:q1] += (ds @ kj) * scale
            dk[:, k0:k1] += (ds.transpose(1, 2) @ qi) * scale
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class FlashAttentionFunction(torch.autograd.Function):
    """Exact attention with FlashAttention-2's tiled forward and backward passes.

    ``FlashAttentionFunction.apply(q, k, v, is_causal=False, block_size=64)``; saves
    ``q, k, v, out, lse`` (``lse`` of shape ``q.shape[:-1]``) and nothing of size
    seq_q × seq_k.
    """

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                is_causal: bool = False, block_size: int = 64) -> torch.Tensor:
        _check_inputs(q, k, v, is_causal, block_size)
        out, lse = flash_forward(_flat(q), _flat(k), _flat(v), is_causal, block_size)
        out = out.reshape(*q.shape[:-1], v.shape[-1])
        lse = lse.reshape(q.shape[:-1])
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.is_causal, ctx.block_size = is_causal, block_size
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[Any, ...]:
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = flash_backward(_flat(q), _flat(k), _flat(v), _flat(out),
                                    lse.reshape(-1, lse.shape[-1]), _flat(dout.contiguous()),
                                    ctx.is_causal, ctx.block_size)
        return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape), None, None


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False,
                    block_size: int = 64) -> torch.Tensor:
    """softmax(q kᵀ / √head_dim) v computed tile by tile (FlashAttention-2), differentiable.

    Same result as ``F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)`` for
    q ``(batch, seq_q, head_dim)``, k ``(batch, seq_k, head_dim)``, v ``(batch, seq_k, dim_v)``
    (or 4-D with heads); ``block_size`` is the tile size for queries and keys.
    """
    _check_inputs(q, k, v, is_causal, block_size)
    return FlashAttentionFunction.apply(q, k, v, is_causal, block_size)


def naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    is_causal: bool = False) -> torch.Tensor:
    """The textbook softmax(q kᵀ / √d) v that materialises the seq_q × seq_k scores and
    probabilities (and keeps them for the backward pass): the baseline FlashAttention beats."""
    _check_inputs(q, k, v, is_causal, 1)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if is_causal:
        Lq, Lk = q.shape[-2], k.shape[-2]
        mask = torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~mask, -math.inf)
    return torch.softmax(scores, dim=-1) @ v


def tile_count(seq_q: int, seq_k: int, block_size: int, is_causal: bool = False) -> int:
    """How many (query tile, key tile) pairs the forward pass computes; with ``is_causal`` the
    tiles wholly above the diagonal are skipped."""
    for name, n in (("seq_q", seq_q), ("seq_k", seq_k), ("block_size", block_size)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive integer, got {n!r}")
    n_k = -(-seq_k // block_size)
    if not is_causal:
        return -(-seq_q // block_size) * n_k
    total = 0
    for q0 in range(0, seq_q, block_size):
        q1 = min(q0 + block_size, seq_q)
        total += min(n_k, (q1 - 1) // block_size + 1)   # key tiles starting at or before q1-1
    return total


def saved_tensors(fn: Callable[..., Any], *args: Any, exclude: Iterable[torch.Tensor] = (),
                  **kwargs: Any) -> list[tuple[tuple[int, ...], torch.dtype, int]]:
    """Run ``fn(*args, **kwargs)`` and list what autograd saves for the backward pass:
    ``(shape, dtype, bytes)`` of each storage, counted once (views share a storage), leaving
    out the storages of ``exclude`` (for example a model's parameters). A thin wrapper around
    :func:`dlbook.calc.saved_tensor_bytes`."""
    return saved_tensor_bytes(lambda: fn(*args, **kwargs), exclude=exclude)[2]


def saved_bytes(fn: Callable[..., Any], *args: Any, exclude: Iterable[torch.Tensor] = (),
                **kwargs: Any) -> int:
    """Bytes autograd keeps for the backward pass of ``fn(*args, **kwargs)``, each storage
    once. The inputs must require grad, or nothing is saved."""
    return sum(r[2] for r in saved_tensors(fn, *args, exclude=exclude, **kwargs))
