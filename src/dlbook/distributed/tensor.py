"""Tensor parallelism (section 6.4): one layer's matrices split across the ranks of a group.

Megatron-LM (Shoeybi et al. 2019) splits a Transformer block with two kinds of linear layer:

* :class:`ColumnParallelLinear` keeps a block of the weight's *output* rows: every rank gets
  the whole input and computes its own slice of the output features (its attention heads, its
  part of the MLP's hidden layer);
* :class:`RowParallelLinear` keeps a block of the weight's *input* columns: every rank
  multiplies its slice of the features, and one all-reduce adds the partial sums.

Two autograd functions hold all the communication. ``f`` (:class:`CopyToParallelRegion`) is
the identity forward and an all-reduce backward; ``g`` (:class:`ReduceFromParallelRegion`) is
an all-reduce forward and the identity backward. A column-parallel layer followed by a
row-parallel one (the MLP; the attention's q/k/v and output projections) then needs one
all-reduce forward and one backward.

Sequence parallelism (Korthikanti et al. 2023) also splits the LayerNorms and residual adds,
which every rank would otherwise repeat on the whole sequence, along the *sequence*: the
all-reduce becomes a reduce-scatter (forward) and the copy an all-gather
(:class:`GatherFromSequenceParallelRegion`, :class:`ReduceScatterToSequenceParallelRegion`).
Same bytes on the wire, ``t`` times fewer activations kept. The input of the first matmuls is
kept as its shard and gathered again in the backward pass (:func:`column_parallel`).

Every function takes ``group`` (default: the whole world). The workers at the end compare a
split block with the same block on one process, by hand and with PyTorch's DTensor.
"""

from __future__ import annotations

import contextlib
import copy
import math
from typing import Any, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from dlbook.attention import MultiHeadAttention, apply_rope, causal_mask, rope_cos_sin
from dlbook.gpt import MLP, Block, GPTConfig, SwiGLU

__all__ = [
    "CopyToParallelRegion", "ReduceFromParallelRegion", "GatherFromParallelRegion",
    "ScatterToParallelRegion", "GatherFromSequenceParallelRegion",
    "ReduceScatterToSequenceParallelRegion", "copy_to_parallel_region",
    "reduce_from_parallel_region", "gather_from_parallel_region", "scatter_to_parallel_region",
    "gather_from_sequence_parallel_region", "reduce_scatter_to_sequence_parallel_region",
    "ColumnParallelLinear", "RowParallelLinear", "column_parallel", "TensorParallelMLP",
    "TensorParallelAttention", "TensorParallelBlock", "allreduce_sequence_parallel_grads",
    "gather_full_parameters", "record_collectives", "random_block", "tensor_parallel_group",
    "compare_with_single_device", "measure_activation_bytes", "activation_bytes_per_rank",
    "dtensor_plan", "compare_dtensor_with_single_device", "run_many",
]

Group = Any  # a torch.distributed ProcessGroup, or None for the whole world

# ------------------------------------------------------------------- the collectives

_LOG: list[tuple[str, int]] | None = None


@contextlib.contextmanager
def record_collectives() -> Iterator[list[tuple[str, int]]]:
    """Inside this block every collective of this module is logged as (name, elements of
    the full tensor), so a test or a reader can count what a forward or backward sends."""
    global _LOG
    previous, _LOG = _LOG, []
    try:
        yield _LOG
    finally:
        _LOG = previous


def _log(name: str, numel: int) -> None:
    if _LOG is not None:
        _LOG.append((name, numel))


def _rank_world(group: Group) -> tuple[int, int]:
    if not dist.is_initialized():
        raise ValueError("tensor parallelism needs a process group: start the code with "
                         "dlbook.distributed.launch(fn, N) or torchrun")
    return dist.get_rank(group), dist.get_world_size(group)


def _check_divisible(x: torch.Tensor, dim: int, n: int, what: str = "tensor") -> None:
    if x.shape[dim] % n:
        raise ValueError(f"cannot split the {what} of shape {tuple(x.shape)} along dim {dim} "
                         f"into {n} equal parts: make that size a multiple of {n}")


def _all_reduce(x: torch.Tensor, group: Group) -> torch.Tensor:
    _, n = _rank_world(group)
    _log("all-reduce", x.numel())
    if n == 1:
        return x
    x = x.contiguous().clone()
    dist.all_reduce(x, group=group)
    return x


def _split(x: torch.Tensor, dim: int, group: Group) -> torch.Tensor:
    rank, n = _rank_world(group)
    _check_divisible(x, dim, n)
    # a copy, not a view: a view would keep the whole tensor's memory alive
    return x.chunk(n, dim)[rank].clone(memory_format=torch.contiguous_format)


def _all_gather(x: torch.Tensor, dim: int, group: Group) -> torch.Tensor:
    _, n = _rank_world(group)
    _log("all-gather", x.numel() * n)
    if n == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(n)]
    dist.all_gather(parts, x.contiguous(), group=group)
    return torch.cat(parts, dim)


def _reduce_scatter(x: torch.Tensor, dim: int, group: Group) -> torch.Tensor:
    rank, n = _rank_world(group)
    _check_divisible(x, dim, n)
    _log("reduce-scatter", x.numel())
    if n == 1:
        return x
    chunks = [c.contiguous() for c in x.chunk(n, dim)]
    out = torch.empty_like(chunks[rank])
    dist.reduce_scatter(out, chunks, group=group)
    return out


# ------------------------------------------------------- the operators, as autograd functions

class CopyToParallelRegion(torch.autograd.Function):
    """Megatron's f: identity forward; backward, all-reduce the gradient, because each rank's
    part of the layer sends back only its share of dL/dx."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Group = None) -> torch.Tensor:
        ctx.group = group
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _all_reduce(grad, ctx.group), None


class ReduceFromParallelRegion(torch.autograd.Function):
    """Megatron's g: all-reduce forward (add the ranks' partial sums); identity backward,
    because every rank needs the whole gradient of the sum."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, group: Group = None) -> torch.Tensor:
        return _all_reduce(x, group)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class GatherFromParallelRegion(torch.autograd.Function):
    """All-gather along ``dim`` forward; backward, keep this rank's slice (the gradient is
    the same on every rank, as after a replicated loss)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int = -1, group: Group = None) -> torch.Tensor:
        ctx.dim, ctx.group = dim, group
        return _all_gather(x, dim, group)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _split(grad, ctx.dim, ctx.group), None, None


class ScatterToParallelRegion(torch.autograd.Function):
    """Keep this rank's slice along ``dim`` forward; all-gather the gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int = -1, group: Group = None) -> torch.Tensor:
        ctx.dim, ctx.group = dim, group
        return _split(x, dim, group)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _all_gather(grad, ctx.dim, ctx.group), None, None


class GatherFromSequenceParallelRegion(torch.autograd.Function):
    """Sequence parallelism's entry to a tensor-parallel region: all-gather the sequence
    shards forward; backward, reduce-scatter, since each rank's heads contributed only a
    partial gradient for every position."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int = 1, group: Group = None) -> torch.Tensor:
        ctx.dim, ctx.group = dim, group
        return _all_gather(x, dim, group)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _reduce_scatter(grad, ctx.dim, ctx.group), None, None


class ReduceScatterToSequenceParallelRegion(torch.autograd.Function):
    """Sequence parallelism's exit: reduce-scatter the partial sums forward, so each rank
    gets the finished sum for its part of the sequence; all-gather the gradient backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int = 1, group: Group = None) -> torch.Tensor:
        ctx.dim, ctx.group = dim, group
        return _reduce_scatter(x, dim, group)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return _all_gather(grad, ctx.dim, ctx.group), None, None


def copy_to_parallel_region(x: torch.Tensor, group: Group = None) -> torch.Tensor:
    """f: identity forward, all-reduce backward."""
    return CopyToParallelRegion.apply(x, group)


def reduce_from_parallel_region(x: torch.Tensor, group: Group = None) -> torch.Tensor:
    """g: all-reduce forward, identity backward."""
    return ReduceFromParallelRegion.apply(x, group)


def gather_from_parallel_region(x: torch.Tensor, dim: int = -1,
                                group: Group = None) -> torch.Tensor:
    """All-gather along ``dim`` forward, take this rank's slice backward."""
    return GatherFromParallelRegion.apply(x, dim, group)


def scatter_to_parallel_region(x: torch.Tensor, dim: int = -1,
                               group: Group = None) -> torch.Tensor:
    """Take this rank's slice along ``dim`` forward, all-gather backward."""
    return ScatterToParallelRegion.apply(x, dim, group)


def gather_from_sequence_parallel_region(x: torch.Tensor, dim: int = 1,
                                         group: Group = None) -> torch.Tensor:
    """All-gather the sequence forward, reduce-scatter backward."""
    return GatherFromSequenceParallelRegion.apply(x, dim, group)


def reduce_scatter_to_sequence_parallel_region(x: torch.Tensor, dim: int = 1,
                                               group: Group = None) -> torch.Tensor:
    """Reduce-scatter along the sequence forward, all-gather backward."""
    return ReduceScatterToSequenceParallelRegion.apply(x, dim, group)


class _GatherThenLinears(torch.autograd.Function):
    """All-gather the sequence shards of x, then ``x W_i^T + b_i`` for each layer, keeping
    only the shard for the backward pass (as Korthikanti et al. do), which gathers
    it again: saves (1 - 1/t) of the input's memory at the price of one more all-gather."""

    @staticmethod
    def forward(ctx: Any, x_shard: torch.Tensor, dim: int, group: Group,
                *params: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        x = _all_gather(x_shard, dim, group)
        weights, biases = params[0::2], params[1::2]
        ctx.dim, ctx.group, ctx.has_bias = dim, group, [b is not None for b in biases]
        ctx.save_for_backward(x_shard, *weights)
        return tuple(F.linear(x, w, b) for w, b in zip(weights, biases))

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x_shard, *weights = ctx.saved_tensors
        x = _all_gather(x_shard, ctx.dim, ctx.group)          # gathered again, not stored
        x2 = x.reshape(-1, x.shape[-1])
        grad_x = sum(g @ w for g, w in zip(grads, weights))
        out: list[torch.Tensor | None] = [_reduce_scatter(grad_x, ctx.dim, ctx.group), None, None]
        for g, has_bias in zip(grads, ctx.has_bias):
            g2 = g.reshape(-1, g.shape[-1])
            out += [g2.t() @ x2, g2.sum(0) if has_bias else None]
        return tuple(out)


# --------------------------------------------------------------------------- the layers

def _uniform_(p: nn.Parameter, fan_in: int) -> None:
    bound = 1.0 / math.sqrt(fan_in)        # nn.Linear's default range, from the full fan-in
    with torch.no_grad():
        p.uniform_(-bound, bound)


class ColumnParallelLinear(nn.Module):
    """``y = x Wᵀ + b`` with W's output rows split: rank r keeps rows
    ``[r·out/t, (r+1)·out/t)`` of W and of b and computes that slice of y.

    Forward applies f (or, with ``sequence_parallel``, an all-gather of the sequence shards
    along ``sequence_dim``) to the input; ``gather_output`` all-gathers the output features
    so that every rank holds the whole y.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 gather_output: bool = False, *, sequence_parallel: bool = False,
                 sequence_dim: int = 1, group: Group = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__()
        rank, t = _rank_world(group)
        if out_features % t:
            raise ValueError(f"out_features={out_features} must be divisible by the "
                             f"tensor-parallel size {t}")
        self.in_features, self.out_features = in_features, out_features
        self.gather_output, self.sequence_parallel = gather_output, sequence_parallel
        self.sequence_dim, self.group, self.rank, self.world = sequence_dim, group, rank, t
        local = out_features // t
        self.weight = nn.Parameter(torch.empty(local, in_features, device=device, dtype=dtype))
        self.weight.tensor_parallel_dim = 0
        _uniform_(self.weight, in_features)
        if bias:
            self.bias = nn.Parameter(torch.empty(local, device=device, dtype=dtype))
            self.bias.tensor_parallel_dim = 0
            _uniform_(self.bias, in_features)
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, gather_output: bool = False, *,
                    sequence_parallel: bool = False, sequence_dim: int = 1,
                    group: Group = None) -> "ColumnParallelLinear":
        """This rank's shard of a whole ``nn.Linear`` (same values, same dtype and device)."""
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    gather_output, sequence_parallel=sequence_parallel,
                    sequence_dim=sequence_dim, group=group, device=w.device, dtype=w.dtype)
        rows = slice(layer.rank * layer.weight.shape[0], (layer.rank + 1) * layer.weight.shape[0])
        with torch.no_grad():
            layer.weight.copy_(w[rows])
            if linear.bias is not None:
                layer.bias.copy_(linear.bias[rows])
        return layer

    def local(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's slice of the output, with no communication."""
        return F.linear(x, self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (y,) = column_parallel(x, [self])
        if self.gather_output:
            y = gather_from_parallel_region(y, -1, self.group)
        return y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features} "
                f"(this rank: {self.weight.shape[0]}), bias={self.bias is not None}, "
                f"sequence_parallel={self.sequence_parallel}")


class RowParallelLinear(nn.Module):
    """``y = x Wᵀ + b`` with W's input columns split: rank r keeps columns
    ``[r·in/t, (r+1)·in/t)``, multiplies its slice of x's features, and g (an all-reduce;
    with ``sequence_parallel`` a reduce-scatter along ``sequence_dim``) adds the partial
    sums. The bias is whole on every rank and added once, after the sum.

    ``input_is_parallel=False`` takes the whole x and keeps this rank's slice first.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 input_is_parallel: bool = True, *, sequence_parallel: bool = False,
                 sequence_dim: int = 1, group: Group = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__()
        rank, t = _rank_world(group)
        if in_features % t:
            raise ValueError(f"in_features={in_features} must be divisible by the "
                             f"tensor-parallel size {t}")
        if sequence_parallel and not input_is_parallel:
            raise ValueError("sequence_parallel=True needs input_is_parallel=True (the input "
                             "comes from a column-parallel layer)")
        self.in_features, self.out_features = in_features, out_features
        self.input_is_parallel, self.sequence_parallel = input_is_parallel, sequence_parallel
        self.sequence_dim, self.group, self.rank, self.world = sequence_dim, group, rank, t
        local = in_features // t
        self.weight = nn.Parameter(torch.empty(out_features, local, device=device, dtype=dtype))
        self.weight.tensor_parallel_dim = 1
        _uniform_(self.weight, in_features)
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, device=device, dtype=dtype))
            self.bias.sequence_parallel = sequence_parallel   # sees only this rank's positions
            _uniform_(self.bias, in_features)
        else:
            self.register_parameter("bias", None)

    @classmethod
    def from_linear(cls, linear: nn.Linear, input_is_parallel: bool = True, *,
                    sequence_parallel: bool = False, sequence_dim: int = 1,
                    group: Group = None) -> "RowParallelLinear":
        """This rank's shard of a whole ``nn.Linear`` (same values, same dtype and device)."""
        w = linear.weight
        layer = cls(linear.in_features, linear.out_features, linear.bias is not None,
                    input_is_parallel, sequence_parallel=sequence_parallel,
                    sequence_dim=sequence_dim, group=group, device=w.device, dtype=w.dtype)
        k = layer.weight.shape[1]
        with torch.no_grad():
            layer.weight.copy_(w[:, layer.rank * k:(layer.rank + 1) * k])
            if linear.bias is not None:
                layer.bias.copy_(linear.bias)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.input_is_parallel:
            x = scatter_to_parallel_region(x, -1, self.group)
        partial = F.linear(x, self.weight)                       # this rank's share of y
        if self.sequence_parallel:
            y = reduce_scatter_to_sequence_parallel_region(partial, self.sequence_dim,
                                                           self.group)
        else:
            y = reduce_from_parallel_region(partial, self.group)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features} (this rank: {self.weight.shape[1]}), "
                f"out_features={self.out_features}, bias={self.bias is not None}, "
                f"sequence_parallel={self.sequence_parallel}")


def column_parallel(x: torch.Tensor, layers: Sequence[ColumnParallelLinear]
                    ) -> tuple[torch.Tensor, ...]:
    """Several column-parallel layers that read the same input (q, k and v; SwiGLU's gate and
    up) with one f, or one all-gather under sequence parallelism, for all of them: one
    all-reduce backward instead of one per layer."""
    if not layers:
        raise ValueError("give at least one ColumnParallelLinear")
    first = layers[0]
    if any(l.sequence_parallel != first.sequence_parallel or l.group is not first.group
           for l in layers):
        raise ValueError("the layers must share their group and sequence_parallel setting")
    if first.sequence_parallel:
        params: list[torch.Tensor | None] = []
        for l in layers:
            params += [l.weight, l.bias]
        return _GatherThenLinears.apply(x, first.sequence_dim, first.group, *params)
    x = copy_to_parallel_region(x, first.group)
    return tuple(l.local(x) for l in layers)


# --------------------------------------------------------------------- the block's parts

class TensorParallelMLP(nn.Module):
    """GPT-2's MLP (fc, GELU, proj) or a SwiGLU (gate_proj, up_proj, down_proj) with the
    hidden layer split: column-parallel in, row-parallel out, one all-reduce each way."""

    def __init__(self, d_model: int, d_ff: int, *, bias: bool = True, kind: str = "gelu",
                 sequence_parallel: bool = False, group: Group = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__()
        if kind not in ("gelu", "swiglu"):
            raise ValueError(f"kind must be 'gelu' or 'swiglu', got {kind!r}")
        self.kind, self.sequence_parallel = kind, sequence_parallel
        opts = dict(sequence_parallel=sequence_parallel, group=group, device=device, dtype=dtype)
        if kind == "gelu":
            self.fc = ColumnParallelLinear(d_model, d_ff, bias, **opts)
            self.proj = RowParallelLinear(d_ff, d_model, bias, **opts)
        else:
            self.gate_proj = ColumnParallelLinear(d_model, d_ff, bias, **opts)
            self.up_proj = ColumnParallelLinear(d_model, d_ff, bias, **opts)
            self.down_proj = RowParallelLinear(d_ff, d_model, bias, **opts)

    @classmethod
    def from_mlp(cls, mlp: nn.Module, *, sequence_parallel: bool = False,
                 group: Group = None) -> "TensorParallelMLP":
        """This rank's part of a :class:`dlbook.gpt.MLP` or :class:`dlbook.gpt.SwiGLU`."""
        if isinstance(mlp, MLP):
            kind, first, last = "gelu", ["fc"], "proj"
        elif isinstance(mlp, SwiGLU):
            kind, first, last = "swiglu", ["gate_proj", "up_proj"], "down_proj"
        else:
            raise ValueError(f"expected a dlbook.gpt.MLP or SwiGLU, got {type(mlp).__name__}")
        out = getattr(mlp, last)                                  # (d_model, d_ff)
        col = dict(sequence_parallel=sequence_parallel, group=group)
        new = cls(out.out_features, out.in_features, bias=out.bias is not None, kind=kind,
                  device=out.weight.device, dtype=out.weight.dtype, **col)
        for name in first:
            setattr(new, name, ColumnParallelLinear.from_linear(getattr(mlp, name), **col))
        setattr(new, last, RowParallelLinear.from_linear(out, **col))
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "gelu":
            (h,) = column_parallel(x, [self.fc])                # this rank's d_ff / t units
            return self.proj(F.gelu(h, approximate="tanh"))
        gate, up = column_parallel(x, [self.gate_proj, self.up_proj])
        return self.down_proj(F.silu(gate) * up)


class TensorParallelAttention(nn.Module):
    """Multi-head attention with the heads split across ranks: rank r computes heads
    ``[r·H/t, (r+1)·H/t)`` (and their key/value heads) entirely on its own; the output
    projection is row-parallel. Needs ``n_heads`` and ``n_kv_heads`` divisible by ``t``."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int | None = None, *,
                 bias: bool = True, causal: bool = True, rope: bool = False,
                 context_length: int = 1024, rope_theta: float = 10000.0,
                 sequence_parallel: bool = False, group: Group = None,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__()
        _, t = _rank_world(group)
        n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        if n_heads % t or n_kv_heads % t:
            raise ValueError(f"n_heads={n_heads} and n_kv_heads={n_kv_heads} must be divisible "
                             f"by the tensor-parallel size {t}: each rank computes whole heads")
        if n_heads % n_kv_heads:
            raise ValueError(f"n_heads={n_heads} must be a multiple of n_kv_heads={n_kv_heads}")
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.n_local_heads, self.n_local_kv_heads = n_heads // t, n_kv_heads // t
        self.head_dim = d_model // n_heads
        self.causal, self.rope, self.sequence_parallel = causal, rope, sequence_parallel
        opts = dict(sequence_parallel=sequence_parallel, group=group, device=device, dtype=dtype)
        self.q_proj = ColumnParallelLinear(d_model, n_heads * self.head_dim, bias, **opts)
        self.k_proj = ColumnParallelLinear(d_model, n_kv_heads * self.head_dim, bias, **opts)
        self.v_proj = ColumnParallelLinear(d_model, n_kv_heads * self.head_dim, bias, **opts)
        self.o_proj = RowParallelLinear(n_heads * self.head_dim, d_model, bias, **opts)
        if rope:
            cos, sin = rope_cos_sin(self.head_dim, context_length, rope_theta, torch.float64)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)

    @classmethod
    def from_attention(cls, attn: MultiHeadAttention, *, sequence_parallel: bool = False,
                       group: Group = None) -> "TensorParallelAttention":
        """This rank's heads of a :class:`dlbook.attention.MultiHeadAttention`."""
        if not isinstance(attn, MultiHeadAttention):
            raise ValueError(f"expected a MultiHeadAttention, got {type(attn).__name__}")
        if attn.dropout:
            raise ValueError("attention dropout needs per-rank random streams; build the block "
                             "with dropout=0.0")
        w = attn.q_proj.weight
        context = attn.rope_cos.shape[0] if attn.rope else 1
        new = cls(attn.q_proj.in_features, attn.n_heads, attn.n_kv_heads,
                  bias=attn.q_proj.bias is not None, causal=attn.causal, rope=attn.rope,
                  context_length=context, sequence_parallel=sequence_parallel, group=group,
                  device=w.device, dtype=w.dtype)
        col = dict(sequence_parallel=sequence_parallel, group=group)
        new.q_proj = ColumnParallelLinear.from_linear(attn.q_proj, **col)
        new.k_proj = ColumnParallelLinear.from_linear(attn.k_proj, **col)
        new.v_proj = ColumnParallelLinear.from_linear(attn.v_proj, **col)
        new.o_proj = RowParallelLinear.from_linear(attn.o_proj, **col)
        if attn.rope:
            new.rope_cos, new.rope_sin = attn.rope_cos.clone(), attn.rope_sin.clone()
        return new

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T, d_model), or (B, T/t, d_model) under sequence parallelism -> same shape."""
        if x.dim() != 3:
            raise ValueError(f"expected x of shape (batch, seq, d_model), got {tuple(x.shape)}")
        q, k, v = column_parallel(x, [self.q_proj, self.k_proj, self.v_proj])
        B, T, _ = q.shape                                          # the whole sequence
        q = q.view(B, T, self.n_local_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_local_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_local_kv_heads, self.head_dim).transpose(1, 2)
        if self.rope:
            cos, sin = self.rope_cos[:T].to(q.dtype), self.rope_sin[:T].to(q.dtype)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.n_local_kv_heads != self.n_local_heads:
            group = self.n_local_heads // self.n_local_kv_heads
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        mask = causal_mask(T, T, device=x.device) if self.causal and T > 1 else None
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).reshape(B, T, self.n_local_heads * self.head_dim)
        return self.o_proj(y)


class TensorParallelBlock(nn.Module):
    """A :class:`dlbook.gpt.Block` split across the ranks of ``group``:
    ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``, with the attention's heads and the
    MLP's hidden units split. Without sequence parallelism x is whole and the same on every
    rank (the norms and residual adds are repeated on each); with it, x is this rank's part of
    the sequence, ``(B, T/t, d)``, and the norms' gradients must be summed over the ranks
    after the backward pass (:func:`allreduce_sequence_parallel_grads`)."""

    def __init__(self, norm1: nn.Module, attn: TensorParallelAttention, norm2: nn.Module,
                 mlp: TensorParallelMLP, sequence_parallel: bool = False) -> None:
        super().__init__()
        self.norm1, self.attn, self.norm2, self.mlp = norm1, attn, norm2, mlp
        self.sequence_parallel = sequence_parallel
        for norm in (norm1, norm2):
            for p in norm.parameters():
                p.sequence_parallel = sequence_parallel

    @classmethod
    def from_block(cls, block: Block, *, sequence_parallel: bool = False,
                   group: Group = None) -> "TensorParallelBlock":
        """This rank's part of a single-device block: the same computation, split."""
        if not isinstance(block, Block):
            raise ValueError(f"expected a dlbook.gpt.Block, got {type(block).__name__}")
        if block.drop.p:
            raise ValueError("dropout needs per-rank random streams; build the block with "
                             "GPTConfig(dropout=0.0)")
        opts = dict(sequence_parallel=sequence_parallel, group=group)
        return cls(copy.deepcopy(block.norm1),
                   TensorParallelAttention.from_attention(block.attn, **opts),
                   copy.deepcopy(block.norm2), TensorParallelMLP.from_mlp(block.mlp, **opts),
                   sequence_parallel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def allreduce_sequence_parallel_grads(module: nn.Module, group: Group = None) -> int:
    """Sum, over the ranks, the gradients of the whole (replicated) parameters that saw only
    this rank's part of the sequence: the norms' and the row-parallel biases'. Call it after
    ``backward()`` and before the optimizer step; returns how many were summed."""
    n = 0
    for p in module.parameters():
        if getattr(p, "sequence_parallel", False) and p.grad is not None:
            p.grad = _all_reduce(p.grad, group)
            n += 1
    return n


def gather_full_parameters(module: nn.Module, grads: bool = False,
                           group: Group = None) -> dict[str, torch.Tensor]:
    """The whole parameters (or their gradients) of a tensor-parallel module, all-gathered
    from the ranks' shards, named as in the single-device module (``attn.q_proj.weight``)."""
    out = {}
    for name, p in module.named_parameters():
        t = p.grad if grads else p.detach()
        if t is None:
            raise ValueError(f"{name} has no gradient yet: run backward() first")
        dim = getattr(p, "tensor_parallel_dim", None)
        out[name] = (t if dim is None else _all_gather(t, dim, group)).detach().clone()
    return out


# ------------------------------------------------------------------- activation memory

#: the terms of calc.activation_breakdown that tensor parallelism alone leaves whole on every
#: rank: the norms' inputs, the inputs of the first matmuls and the residual dropout masks
REPLICATED_TERMS = ("layer norm inputs", "q, k, v projection input", "mlp input",
                    "dropout masks (attention and mlp outputs)")


def activation_bytes_per_rank(seq_len: int, batch_size: int, d_model: int, n_heads: int,
                              tp: int, *, sequence_parallel: bool = False,
                              **options: Any) -> float:
    """Bytes one layer keeps for backward on each of ``tp`` ranks (Korthikanti et al. 2023,
    section 4.2). Tensor parallelism splits every term of :func:`dlbook.calc.activation_breakdown`
    but the four in :data:`REPLICATED_TERMS`; sequence parallelism splits those too. With the
    defaults (16-bit values, 1-byte dropout masks): s·b·h·(10 + 24/t + 5·a·s/(h·t)), and with
    sequence parallelism s·b·h/t·(34 + 5·a·s/h). ``options`` go to ``activation_breakdown``
    (``bytes_per_value``, ``dropout``, ...)."""
    from dlbook import calc

    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise ValueError(f"tp must be a positive integer (the tensor-parallel size), got {tp!r}")
    terms = calc.activation_breakdown(seq_len, batch_size, d_model, n_heads, **options)
    return sum(v if name in REPLICATED_TERMS and not sequence_parallel else v / tp
               for name, v in terms.items())


# ------------------------------------------------------------------------------ workers

def random_block(config: GPTConfig, seed: int = 0, dtype: torch.dtype = torch.float64,
                 device: torch.device | str | None = None) -> Block:
    """A block whose every parameter (biases and norm gains too) is drawn from one float64
    generator, so every rank builds the same block and the tests see every term."""
    block = Block(config).to(dtype)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in block.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if p.dim() >= 2:
                p.copy_(noise / math.sqrt(p.shape[1]))
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)
    return block.to(device)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().cpu() - b.detach().cpu()).abs().max())


def _inputs(config: GPTConfig, batch: int, seq: int, seed: int, device: torch.device
            ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(batch, seq, config.d_model, generator=g, dtype=torch.float64)
    w = torch.randn(batch, seq, config.d_model, generator=g, dtype=torch.float64)
    return x.to(device), w.to(device)


_GROUPS: dict[int, Group] = {}


def tensor_parallel_group(tp_size: int | None = None) -> Group:
    """This rank's tensor-parallel group when the world is cut into consecutive blocks of
    ``tp_size`` ranks (ranks 0-1, 2-3, ... for 2): ``None`` (the whole world) for ``None`` or
    the world size. Every rank must call it, in the same order, as ``new_group`` requires."""
    rank, world = _rank_world(None)
    if tp_size is None or tp_size == world:
        return None
    if isinstance(tp_size, bool) or not isinstance(tp_size, int) or tp_size < 1 or world % tp_size:
        raise ValueError(f"tp_size must divide the world size {world}, got {tp_size!r}")
    if tp_size not in _GROUPS:
        for start in range(0, world, tp_size):            # every rank creates every group
            group = dist.new_group(list(range(start, start + tp_size)))
            if start <= rank < start + tp_size:
                _GROUPS[tp_size] = group
    return _GROUPS[tp_size]


def compare_with_single_device(config: dict, batch: int = 2, seq: int = 8, seed: int = 0,
                               sequence_parallel: bool = False, lr: float = 0.1,
                               tp_size: int | None = None) -> dict[str, Any]:
    """Worker (run with ``launch``): build the same float64 block on every rank, run it once
    whole (the single-process reference) and once split across the ranks, forward, backward
    on the loss ``sum(y * w)`` and one SGD step; return the largest |difference| of the
    outputs, input gradients, reassembled weight gradients and updated weights, and the
    collectives the split block's forward and backward made. ``tp_size`` splits the block
    over groups of that many ranks (:func:`tensor_parallel_group`) instead of the world."""
    from dlbook.distributed.launch import local_device

    device = local_device()
    group = tensor_parallel_group(tp_size)
    cfg = GPTConfig(**config)
    ref = random_block(cfg, seed, device=device)
    tp = TensorParallelBlock.from_block(ref, sequence_parallel=sequence_parallel, group=group)
    x, w = _inputs(cfg, batch, seq, seed, device)

    x_ref = x.clone().requires_grad_()                         # one device
    y_ref = ref(x_ref)
    (y_ref * w).sum().backward()

    # split: the block's input is a leaf (its shard under sequence parallelism), so that the
    # logs hold only the block's own collectives
    inp = (_split(x, 1, group) if sequence_parallel else x.clone()).requires_grad_()
    with record_collectives() as forward_log:
        out = tp(inp)
    y = gather_from_parallel_region(out, 1, group) if sequence_parallel else out
    grad_out, = torch.autograd.grad((y * w).sum(), out)
    with record_collectives() as backward_log:
        out.backward(grad_out)
    x_grad = _all_gather(inp.grad, 1, group) if sequence_parallel else inp.grad
    if sequence_parallel:
        allreduce_sequence_parallel_grads(tp, group)

    grads = gather_full_parameters(tp, grads=True, group=group)
    names = dict(ref.named_parameters())
    if set(grads) != set(names):
        raise RuntimeError(f"parameter names differ: {sorted(set(grads) ^ set(names))}")
    grad_diff = max(_max_diff(grads[n], p.grad) for n, p in names.items())
    for model in (ref, tp):
        torch.optim.SGD(model.parameters(), lr=lr).step()
    params = gather_full_parameters(tp, group=group)
    weight_diff = max(_max_diff(params[n], p) for n, p in names.items())
    return dict(output=_max_diff(y, y_ref), input_grad=_max_diff(x_grad, x_ref.grad),
                weight_grads=grad_diff, updated_weights=weight_diff,
                forward=list(forward_log), backward=list(backward_log),
                local_parameters=sum(p.numel() for p in tp.parameters()),
                parameters=sum(p.numel() for p in ref.parameters()),
                tp_size=_rank_world(group)[1])


def measure_activation_bytes(shapes: list[dict], sequence_parallel: bool = False,
                             seed: int = 0, tp_size: int | None = None) -> list[dict[str, Any]]:
    """Worker: for each ``dict(batch, seq, d_model, n_heads)``, the bytes this rank's split
    block saves for its backward pass (float64, attention written with matmuls so that the
    s × s probabilities are kept, as Korthikanti et al. assume), and the single-device
    block's, with the saved tensors' shapes; ``tp_size`` as in
    :func:`compare_with_single_device`."""
    from dlbook import calc
    from dlbook.distributed.launch import local_device

    device = local_device()
    group = tensor_parallel_group(tp_size)
    out = []
    for s in shapes:
        cfg = GPTConfig(vocab_size=8, context_length=s["seq"], d_model=s["d_model"],
                        n_heads=s["n_heads"], n_layers=1)
        ref = random_block(cfg, seed, device=device)
        tp = TensorParallelBlock.from_block(ref, sequence_parallel=sequence_parallel,
                                            group=group)
        x, _ = _inputs(cfg, s["batch"], s["seq"], seed, device)
        x_in = _split(x, 1, group) if sequence_parallel else x
        with calc.matmul_attention():
            full, _, _ = calc.saved_tensor_bytes(lambda: ref(x.requires_grad_()),
                                                 exclude=list(ref.parameters()))
            mine, _, rows = calc.saved_tensor_bytes(lambda: tp(x_in.requires_grad_()),
                                                    exclude=list(tp.parameters()))
        out.append(dict(s, tp_size=_rank_world(group)[1], single=full, per_rank=mine,
                        rows=[(shape, str(dtype), n) for shape, dtype, n in rows]))
    return out


# ------------------------------------------------------------------------------- DTensor

class _BlockWithHead(nn.Module):
    """A block, a final norm and an output layer: enough for a vocabulary-parallel loss."""

    def __init__(self, block: Block, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.block = block
        self.norm_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.norm_f(self.block(x)))


def dtensor_plan(config: GPTConfig, sequence_parallel: bool = False) -> dict[str, Any]:
    """The ``parallelize_module`` plan of :class:`_BlockWithHead` (a :class:`dlbook.gpt.Block`
    under ``block.``): q/k/v and the MLP's first layer(s) column-wise, the output projections
    row-wise; with ``sequence_parallel`` the norms on sequence shards, the attention's and
    MLP's inputs gathered, their outputs reduce-scattered; the output layer column-wise, its
    logits left sharded over the vocabulary for ``loss_parallel``."""
    from torch.distributed.tensor import Replicate, Shard
    from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput,
                                                   RowwiseParallel, SequenceParallel)

    first = ["mlp.gate_proj", "mlp.up_proj"] if config.mlp == "swiglu" else ["mlp.fc"]
    last = "mlp.down_proj" if config.mlp == "swiglu" else "mlp.proj"
    plan: dict[str, Any] = {}
    for name in ["attn.q_proj", "attn.k_proj", "attn.v_proj"] + first:
        plan[f"block.{name}"] = ColwiseParallel()
    if not sequence_parallel:
        plan["block.attn.o_proj"] = RowwiseParallel()
        plan[f"block.{last}"] = RowwiseParallel()
        plan["lm_head"] = ColwiseParallel(output_layouts=Shard(-1), use_local_output=False)
        return plan
    for norm in ("block.norm1", "block.norm2", "norm_f"):
        plan[norm] = SequenceParallel()
    for part in ("block.attn", "block.mlp"):
        plan[part] = PrepareModuleInput(input_layouts=(Shard(1),),
                                        desired_input_layouts=(Replicate(),))
    plan["block.attn.o_proj"] = RowwiseParallel(output_layouts=Shard(1), use_local_output=False)
    plan[f"block.{last}"] = RowwiseParallel(output_layouts=Shard(1), use_local_output=False)
    plan["lm_head"] = ColwiseParallel(input_layouts=Shard(1), output_layouts=Shard(-1),
                                      use_local_output=False)
    return plan


def compare_dtensor_with_single_device(config: dict, vocab_size: int = 16, batch: int = 2,
                                       seq: int = 8, seed: int = 0,
                                       sequence_parallel: bool = False, lr: float = 0.1
                                       ) -> dict[str, float]:
    """Worker: the same comparison as :func:`compare_with_single_device`, with PyTorch's
    DTensor doing the splitting (``parallelize_module`` on a 1-D device mesh) and a
    cross-entropy loss computed on vocabulary-sharded logits under ``loss_parallel``."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Replicate, Shard
    from torch.distributed.tensor.parallel import loss_parallel, parallelize_module

    from dlbook.distributed.launch import local_device

    rank, t = _rank_world(None)
    device = local_device()
    cfg = GPTConfig(**config)
    torch.manual_seed(seed)
    ref = _BlockWithHead(random_block(cfg, seed), cfg.d_model, vocab_size).to(torch.float64)
    g = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        ref.lm_head.weight.copy_(torch.randn(vocab_size, cfg.d_model, generator=g,
                                             dtype=torch.float64) / math.sqrt(cfg.d_model))
    ref = ref.to(device)
    model = copy.deepcopy(ref)
    model.block.attn.n_heads //= t                 # the module now sees only its own heads
    model.block.attn.n_kv_heads //= t
    model.block.drop = nn.Identity()
    mesh = init_device_mesh(device.type, (t,))
    parallelize_module(model, mesh, dtensor_plan(cfg, sequence_parallel))

    x, _ = _inputs(cfg, batch, seq, seed, device)
    targets = torch.randint(vocab_size, (batch, seq), generator=g).to(device)

    x_ref = x.clone().requires_grad_()
    loss_ref = F.cross_entropy(ref(x_ref).flatten(0, 1), targets.flatten())
    loss_ref.backward()

    x_tp = (_split(x, 1, None) if sequence_parallel else x.clone()).requires_grad_()
    inp = DTensor.from_local(x_tp, mesh, [Shard(1)]) if sequence_parallel else x_tp
    logits = model(inp)
    with loss_parallel():
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        loss.backward()
    if isinstance(loss, DTensor):
        loss = loss.full_tensor()
    x_grad = _all_gather(x_tp.grad, 1, None) if sequence_parallel else x_tp.grad

    def full(p: torch.Tensor) -> torch.Tensor:
        return p.full_tensor() if isinstance(p, DTensor) else p

    names = dict(ref.named_parameters())
    mine = dict(model.named_parameters())
    grad_diff = max(_max_diff(full(mine[n].grad), p.grad) for n, p in names.items())
    for m in (ref, model):
        torch.optim.SGD(m.parameters(), lr=lr).step()
    weight_diff = max(_max_diff(full(mine[n]), p) for n, p in names.items())
    sharded = sum(isinstance(p, DTensor) and p.placements[0] != Replicate()
                  for p in mine.values())
    vocab_sharded = isinstance(logits, DTensor) and logits.placements[0].is_shard(logits.dim() - 1)
    return dict(loss=abs(float(loss.detach()) - float(loss_ref.detach())),
                logits_sharded=vocab_sharded,
                input_grad=_max_diff(x_grad, x_ref.grad), weight_grads=grad_diff,
                updated_weights=weight_diff, sharded_parameters=int(sharded),
                parameters=len(names))


_WORKERS = {"block": compare_with_single_device, "memory": measure_activation_bytes,
            "dtensor": compare_dtensor_with_single_device}


def run_many(calls: list[tuple[str, dict]]) -> list[Any]:
    """Worker: several experiments in one launch (starting processes is the slow part):
    ``calls`` is a list of (``"block"`` | ``"memory"`` | ``"dtensor"``, keyword arguments)."""
    out = []
    for name, kwargs in calls:
        if name not in _WORKERS:
            raise ValueError(f"unknown experiment {name!r}: choose from {sorted(_WORKERS)}")
        out.append(_WORKERS[name](**kwargs))
    return out
