"""Context parallelism: ring attention, exact attention over a sequence split across ranks
(section 6.6).

A sequence of ``T`` tokens is cut into ``N`` shards, one per rank. Every layer except attention
works token by token, so it runs on the local shard alone. Attention needs every key and value:
ring attention (Liu et al., 2023) passes the key/value blocks around a ring of ranks, ``N``
steps, and each rank folds each block into its running result with the online softmax of
section 5.4: a state ``(out, lse)`` per query, where ``lse`` is the log-sum-exp of the scores
seen so far and ``out`` the normalised output over those keys. Two states merge exactly::

    lse = logaddexp(lse_a, lse_b)
    out = exp(lse_a - lse) * out_a + exp(lse_b - lse) * out_b

While a rank computes with the block it holds, the next block is already on its way
(``isend``/``irecv``), so on a GPU the transfer hides behind the matmuls.

Causal attention skips blocks that lie wholly in the future. With contiguous shards (rank r
holds tokens ``r·T/N ... (r+1)·T/N - 1``) rank 0 then computes one block and rank N-1 all N:
the ring waits for the slowest rank. The *zig-zag* layout gives rank r the chunks ``r`` and
``2N-1-r`` of ``2N`` equal chunks, so every rank does the same work.

Shapes: ``(..., T_local, head_dim)`` for q, k and v, e.g. ``(batch, heads, T_local, d)``; every
rank holds the same number of tokens. :class:`RingAttention` also has a backward pass: the
gradients of the keys and values travel around the ring with their block and arrive home after
the last step.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist

from dlbook.distributed.launch import local_device

__all__ = ["ring_attention", "RingAttention", "shard_sequence", "unshard_sequence",
           "shard_positions", "block_attention", "merge_partials", "ring_schedule", "ring_work"]

LAYOUTS = ("contiguous", "zigzag")


# ----------------------------------------------------------------------- the sequence layout

def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def shard_positions(seq_len: int, rank: int, world_size: int,
                    layout: str = "contiguous") -> torch.Tensor:
    """Global token positions held by ``rank``: a contiguous slice, or for ``"zigzag"`` the
    chunks ``rank`` and ``2·world_size - 1 - rank`` of ``2·world_size`` equal chunks."""
    _check_layout(layout)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                         f"world_size={world_size}")
    parts = world_size if layout == "contiguous" else 2 * world_size
    if seq_len % parts:
        raise ValueError(f"seq_len={seq_len} must be divisible by {parts} for the {layout} "
                         f"layout on {world_size} ranks: pad the sequence")
    c = seq_len // parts
    if layout == "contiguous":
        return torch.arange(rank * c, (rank + 1) * c)
    j = 2 * world_size - 1 - rank
    return torch.cat([torch.arange(rank * c, (rank + 1) * c), torch.arange(j * c, (j + 1) * c)])


def shard_sequence(x: torch.Tensor, rank: int, world_size: int, layout: str = "contiguous",
                   dim: int = -2) -> torch.Tensor:
    """The tokens of ``x`` (sequence along ``dim``) that ``rank`` holds."""
    pos = shard_positions(x.shape[dim], rank, world_size, layout).to(x.device)
    return x.index_select(dim, pos)


def unshard_sequence(shards: list[torch.Tensor], layout: str = "contiguous",
                     dim: int = -2) -> torch.Tensor:
    """Put the ranks' shards (rank 0 first) back into one sequence in token order."""
    world_size = len(shards)
    seq_len = sum(s.shape[dim] for s in shards)
    pos = torch.cat([shard_positions(seq_len, r, world_size, layout) for r in range(world_size)])
    whole = torch.cat(shards, dim=dim)
    return whole.index_select(dim, torch.argsort(pos).to(whole.device))


# --------------------------------------------------------------- one block and the merge

def block_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                    mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of the queries over one block of keys: ``(out, lse)``, where ``out`` is the
    softmax-weighted sum of the block's values and ``lse`` the log-sum-exp of the scores.
    ``mask`` (True = may attend) may hide every key from a query: its ``lse`` is ``-inf`` and
    its ``out`` 0, the neutral state of the merge."""
    s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if mask is not None:
        s = s.masked_fill(~mask, -math.inf)
    lse = torch.logsumexp(s, dim=-1)
    safe = torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)  # exp(-inf - 0) = 0
    p = torch.exp(s - safe.unsqueeze(-1))
    return p @ v, lse


def merge_partials(out_a: torch.Tensor, lse_a: torch.Tensor, out_b: torch.Tensor,
                   lse_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The online-softmax merge of two partial results over disjoint sets of keys. ``lse_a``
    must be finite (the running state always is: it starts from the diagonal block)."""
    lse = torch.logaddexp(lse_a, lse_b)
    wa, wb = torch.exp(lse_a - lse).unsqueeze(-1), torch.exp(lse_b - lse).unsqueeze(-1)
    return wa * out_a + wb * out_b, lse


def _mask(pos_q: torch.Tensor, pos_k: torch.Tensor, causal: bool) -> torch.Tensor | None | bool:
    """None: the whole block is visible; False: none of it is (skip it); else a bool mask."""
    if not causal or int(pos_k.max()) <= int(pos_q.min()):
        return None
    if int(pos_k.min()) > int(pos_q.max()):
        return False
    return pos_k.unsqueeze(0) <= pos_q.unsqueeze(1)


def ring_schedule(world_size: int, causal: bool = False,
                  layout: str = "contiguous") -> list[list[int]]:
    """Which key/value blocks each rank computes: ``schedule[r]`` lists the source ranks of
    the blocks rank r does not skip, in ring order (its own first). Its lengths show the load
    imbalance of causal attention with contiguous shards."""
    seq = 2 * world_size * 2
    out = []
    for r in range(world_size):
        pos_q = shard_positions(seq, r, world_size, layout)
        done = []
        for step in range(world_size):
            src = (r - step) % world_size
            if _mask(pos_q, shard_positions(seq, src, world_size, layout), causal) is not False:
                done.append(src)
        out.append(done)
    return out


def ring_work(seq_len: int, world_size: int, causal: bool = True,
              layout: str = "contiguous") -> list[int]:
    """Query-key pairs each rank scores (those a causal mask keeps): the work per rank that
    decides how long the ring waits for its slowest member."""
    out = []
    for r in range(world_size):
        pos_q = shard_positions(seq_len, r, world_size, layout)
        if causal:
            out.append(int((pos_q + 1).sum()))          # query i sees keys 0..i
        else:
            out.append(len(pos_q) * seq_len)
    return out


# ------------------------------------------------------------------------------- the ring

def _pass_on(tensors: list[torch.Tensor], group: Any) -> tuple[list[torch.Tensor], list[Any]]:
    """Start sending ``tensors`` to the next rank and receiving the previous rank's; returns
    the receive buffers and the requests to wait for."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    nxt, prv = (rank + 1) % world, (rank - 1) % world
    if group is not None:                 # ranks within the group -> global ranks
        nxt, prv = dist.get_global_rank(group, nxt), dist.get_global_rank(group, prv)
    bufs = [torch.empty_like(t) for t in tensors]
    ops = [dist.P2POp(dist.isend, t.contiguous(), nxt, group) for t in tensors]
    ops += [dist.P2POp(dist.irecv, b, prv, group) for b in bufs]
    return bufs, dist.batch_isend_irecv(ops)


def _ring_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                  layout: str, group: Any) -> tuple[torch.Tensor, torch.Tensor]:
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    seq = q.shape[-2] * world
    pos_q = shard_positions(seq, rank, world, layout).to(q.device)
    out = lse = None
    for step in range(world):
        src = (rank - step) % world                      # whose keys we hold now
        if step < world - 1:
            (k_next, v_next), reqs = _pass_on([k, v], group)   # in flight during the compute
        mask = _mask(pos_q, shard_positions(seq, src, world, layout).to(q.device), causal)
        if mask is not False:                             # False: wholly in the future, skip
            o, l = block_attention(q, k, v, mask)
            out, lse = (o, l) if out is None else merge_partials(out, lse, o, l)
        if step < world - 1:
            for r in reqs:
                r.wait()
            k, v = k_next, v_next
    return out, lse


def _ring_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor,
                   lse: torch.Tensor, dout: torch.Tensor, causal: bool, layout: str, group: Any
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """FlashAttention's backward pass block by block; dK and dV ride the ring with their block
    and reach their owner after one more hop."""
    rank, world = dist.get_rank(group), dist.get_world_size(group)
    seq = q.shape[-2] * world
    pos_q = shard_positions(seq, rank, world, layout).to(q.device)
    scale = 1.0 / math.sqrt(q.shape[-1])
    D = (dout * out).sum(-1, keepdim=True)               # rowsum(dO ∘ O)
    dq = torch.zeros_like(q)
    dk, dv = torch.zeros_like(k), torch.zeros_like(v)
    for step in range(world):
        src = (rank - step) % world
        if step < world - 1:
            (k_next, v_next), reqs = _pass_on([k, v], group)
        mask = _mask(pos_q, shard_positions(seq, src, world, layout).to(q.device), causal)
        if mask is not False:
            s = (q @ k.transpose(-2, -1)) * scale
            if mask is not None:
                s = s.masked_fill(~mask, -math.inf)
            p = torch.exp(s - lse.unsqueeze(-1))         # the final probabilities, recomputed
            dv = dv + p.transpose(-2, -1) @ dout
            ds = p * (dout @ v.transpose(-2, -1) - D)
            dq = dq + (ds @ k) * scale
            dk = dk + (ds.transpose(-2, -1) @ q) * scale
        # dK, dV of block src move on with it (one hop behind k, v); after the last step one
        # more hop brings every block's gradients home
        if world > 1:
            (dk, dv), dreqs = _pass_on([dk, dv], group)
            for r in dreqs:
                r.wait()
        if step < world - 1:
            for r in reqs:
                r.wait()
            k, v = k_next, v_next
    return dq, dk, dv


class RingAttention(torch.autograd.Function):
    """Ring attention with a ring backward pass; ``RingAttention.apply(q, k, v, causal, layout,
    group)``. Saves only the local q, k, v, out and lse."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool,
                layout: str, group: Any) -> torch.Tensor:
        out, lse = _ring_forward(q, k, v, causal, layout, group)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.causal, ctx.layout, ctx.group = causal, layout, group
        return out

    @staticmethod
    def backward(ctx: Any, dout: torch.Tensor) -> tuple[Any, ...]:
        q, k, v, out, lse = ctx.saved_tensors
        dq, dk, dv = _ring_backward(q, k, v, out, lse, dout.contiguous(), ctx.causal,
                                    ctx.layout, ctx.group)
        return dq, dk, dv, None, None, None


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                   layout: str = "contiguous", group: Any = None) -> torch.Tensor:
    """softmax(q kᵀ / √d) v for this rank's queries over the keys of *all* ranks.

    q, k, v: this rank's shard ``(..., T / N, head_dim)`` of a sequence split over the ``N``
    ranks of ``group`` as :func:`shard_sequence` splits it (``layout``). Returns this rank's
    shard of the output; differentiable (the gradients of k and v reach their owners).
    Without a process group it is plain attention on one rank.
    """
    for name, t in (("q", q), ("k", k), ("v", v)):
        if not isinstance(t, torch.Tensor) or t.dim() < 2 or not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor of shape (..., T_local, "
                             f"head_dim), got {getattr(t, 'shape', type(t).__name__)}")
    if q.shape[:-1] != k.shape[:-1] or k.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"q, k and v need the same (..., T_local) dimensions (every rank "
                         f"holds the same tokens of q, k and v), got {tuple(q.shape)}, "
                         f"{tuple(k.shape)} and {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k need the same head_dim, got {q.shape[-1]} and {k.shape[-1]}")
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be True or False, got {causal!r}")
    _check_layout(layout)
    if not dist.is_initialized():
        raise ValueError("ring_attention needs a process group: run it inside "
                         "dlbook.distributed.launch(fn, N) or torchrun")
    return RingAttention.apply(q, k, v, causal, layout, group)


# ------------------------------------------------------------------------- a worker to launch

def ring_check(shapes: list[tuple[int, int, int, int]], seed: int = 0) -> list[dict]:
    """Worker: for each ``(batch, heads, seq_len, head_dim)``, causal or not, contiguous or
    zig-zag, run ring attention forward and backward on this rank's shard of a float64
    sequence that every rank draws alike, and return this rank's outputs and gradients
    (to compare with full attention on one process)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    device, cpu = local_device(), torch.device("cpu")
    results = []
    for i, shape in enumerate(shapes):
        g = torch.Generator().manual_seed(seed + i)
        q, k, v, dout = (torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(4))
        for causal in (False, True):
            for layout in LAYOUTS:
                local = [shard_sequence(t, rank, world, layout).to(device).requires_grad_()
                         for t in (q, k, v)]
                out = ring_attention(*local, causal=causal, layout=layout)
                out.backward(shard_sequence(dout, rank, world, layout).to(device))
                results.append(dict(shape=shape, causal=causal, layout=layout,
                                    out=out.detach().to(cpu),
                                    grads=[t.grad.to(cpu) for t in local]))
    return results
