"""Sharding the training state over the ranks: ZeRO and FSDP written by hand (section 6.3).

Data parallelism keeps a full copy of everything on every rank: weights, gradients and the
optimizer's state, 16 bytes per parameter with Adam in fp32. ZeRO (Rajbhandari et al., 2020)
removes the copies in three stages:

* stage 1, :class:`ShardedOptimizer`: each rank keeps and updates the optimizer state of its
  share of the parameters only, then sends the updated parameters to the others;
* stage 2 (``ShardedOptimizer(..., shard_gradients=True)``): each rank also keeps only the
  gradients of its share;
* stage 3, :class:`FSDP`: the weights themselves are sharded, and each layer's weights are
  all-gathered just before its forward and again before its backward, then dropped.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

from dlbook.distributed.comm import record
from dlbook.distributed.ddp import _require_group, unique_parameters

# torch 2.13 renamed the tensor-in, tensor-out collectives; older versions (Colab's) have the
# old names only
_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
_reduce_scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor


# --------------------------------------------------------------------------- bytes per parameter

def bytes_per_parameter(stage: int, world_size: int, weights: float = 4, gradients: float = 4,
                        optimizer: float = 8) -> float:
    """Bytes each rank holds per parameter under ZeRO ``stage`` (0 = plain data parallelism)
    on ``world_size`` ranks. The defaults are fp32 weights and gradients with Adam's two fp32
    moments (16 bytes in all at stage 0); mixed precision with an fp32 master copy is
    ``weights=2, gradients=2, optimizer=12``."""
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"stage must be 0 (DDP), 1, 2 or 3, got {stage!r}")
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    n = world_size
    return (weights / (n if stage >= 3 else 1) + gradients / (n if stage >= 2 else 1)
            + optimizer / (n if stage >= 1 else 1))


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t  # a DTensor holds one shard here


def local_bytes(params: Iterable[torch.Tensor], optimizer: torch.optim.Optimizer | None = None
                ) -> dict[str, int]:
    """Bytes this rank holds for the given parameters: their weights, their gradients and the
    optimizer's state tensors (DTensors count only their local shard)."""
    seen: set[int] = set()
    out = {"weights": 0, "gradients": 0, "optimizer": 0}
    for p in params:
        if id(p) in seen:
            continue
        seen.add(id(p))
        w = _local(p)
        out["weights"] += w.numel() * w.element_size()
        if p.grad is not None:
            g = _local(p.grad)
            out["gradients"] += g.numel() * g.element_size()
    if optimizer is not None:
        for state in optimizer.state.values():
            for v in state.values():
                if isinstance(v, torch.Tensor) and v.dim() > 0:  # Adam's step counter is a scalar
                    v = _local(v)
                    out["optimizer"] += v.numel() * v.element_size()
    return out


# --------------------------------------------------------------------------- ZeRO-1 and ZeRO-2

class ShardedOptimizer(torch.optim.Optimizer):
    """ZeRO stage 1: ``ShardedOptimizer(model.parameters(), torch.optim.Adam, lr=1e-3)``.

    The parameters are dealt out to the ranks (each to the rank with the fewest elements so far,
    in order); every rank builds ``optimizer_cls`` on its own share only, so the optimizer state
    of the model is split ``world_size`` ways. ``step()`` updates the local share and then
    broadcasts every parameter from its owner, so all replicas end the step equal.

    Use it with averaged gradients (after ``DDP``'s synchronization, or
    :func:`dlbook.distributed.allreduce_gradients`). With ``shard_gradients=True`` (ZeRO
    stage 2) it takes unaveraged local gradients instead: ``step()`` first *reduces* each
    gradient to its owner only (averaging it there) and drops it on the other ranks. (Real
    ZeRO-2 reduces in buckets during the backward pass, so the full gradient never exists at
    once; here the reduction runs at the start of ``step()`` to keep the code short.)
    """

    def __init__(self, params: Iterable[Any], optimizer_cls: type,
                 shard_gradients: bool = False, **kwargs: Any) -> None:
        if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
            raise ValueError("optimizer_cls must be an optimizer class such as torch.optim.Adam "
                             f"(the class, not an instance), got {optimizer_cls!r}")
        super().__init__(params, defaults=dict(kwargs))
        self.world_size = _require_group()
        self.rank = dist.get_rank()
        self.shard_gradients = shard_gradients
        self.optimizer_cls = optimizer_cls
        sizes = [0] * self.world_size
        #: the rank that owns (keeps the state of, and updates) each parameter
        self.owner: dict[torch.Tensor, int] = {}
        for group in self.param_groups:
            for p in group["params"]:
                r = min(range(self.world_size), key=lambda i: sizes[i])
                self.owner[p] = r
                sizes[r] += p.numel()
        self._local_groups = []   # (index of the full group, this rank's params of it)
        local_groups = []
        for i, group in enumerate(self.param_groups):
            mine = [p for p in group["params"] if self.owner[p] == self.rank]
            if mine:
                self._local_groups.append(i)
                local_groups.append({**{k: v for k, v in group.items() if k != "params"},
                                     "params": mine})
        self.local = optimizer_cls(local_groups, **kwargs) if local_groups else None
        # the state this rank holds is the local optimizer's: a shard of the whole
        self.state = self.local.state if self.local is not None else {}

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        params = [p for g in self.param_groups for p in g["params"]]
        if self.shard_gradients:
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                dist.reduce(p.grad, dst=self.owner[p])
                record("reduce", p.grad.numel() * p.grad.element_size(), self.world_size)
                if self.owner[p] == self.rank:
                    p.grad /= self.world_size
                else:
                    p.grad = None  # ZeRO-2: keep only the gradients of your own share
        if self.local is not None:
            for local_group, i in zip(self.local.param_groups, self._local_groups):
                for k, v in self.param_groups[i].items():  # e.g. an lr changed by a scheduler
                    if k != "params":
                        local_group[k] = v
            self.local.step()
        for p in params:
            dist.broadcast(p.data, src=self.owner[p])
            record("broadcast", p.numel() * p.element_size(), self.world_size)
        return loss


# --------------------------------------------------------------------------- ZeRO-3: FSDP

class _Shard:
    """One parameter of 2 or more dimensions, flattened, padded to a multiple of the world
    size and cut into equal pieces; this rank keeps piece number ``rank`` as ``self.param``."""

    def __init__(self, full: torch.Tensor, world_size: int, rank: int,
                 compute_dtype: torch.dtype | None) -> None:
        self.shape = full.shape
        self.numel = full.numel()
        self.world_size = world_size
        self.chunk = -(-self.numel // world_size)
        self.compute_dtype = compute_dtype or full.dtype
        flat = torch.zeros(self.chunk * world_size, dtype=full.dtype, device=full.device)
        flat[:self.numel] = full.detach().reshape(-1)
        self.param = nn.Parameter(flat[rank * self.chunk:(rank + 1) * self.chunk].clone())

    def gather_flat(self, shard: torch.Tensor) -> torch.Tensor:
        """All pieces, in the compute dtype (cast *before* sending: half the bytes in bf16)."""
        piece = shard.detach().to(self.compute_dtype)
        out = torch.empty(self.chunk * self.world_size, dtype=piece.dtype, device=piece.device)
        _all_gather(out, piece)
        record("all_gather", out.numel() * out.element_size(), self.world_size)
        return out

    def reduce_scatter(self, grad_full: torch.Tensor) -> torch.Tensor:
        """Sum the ranks' gradients of the full weight, keep this rank's piece, averaged, in
        the master dtype."""
        flat = torch.zeros(self.chunk * self.world_size, dtype=self.param.dtype,
                           device=grad_full.device)
        flat[:self.numel] = grad_full.reshape(-1)
        out = torch.empty(self.chunk, dtype=flat.dtype, device=flat.device)
        _reduce_scatter(out, flat)
        record("reduce_scatter", flat.numel() * flat.element_size(), self.world_size)
        return out / self.world_size


class _Gather(torch.autograd.Function):
    """Forward: all-gather the full weight from the shards. Backward: reduce-scatter its
    gradient back to the shards."""

    @staticmethod
    def forward(ctx: Any, shard_param: torch.Tensor, shard: _Shard) -> torch.Tensor:
        ctx.shard = shard
        return shard.gather_flat(shard_param)[:shard.numel].view(shard.shape)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.shard.reduce_scatter(grad), None


class FSDP(nn.Module):
    """Fully sharded data parallelism (ZeRO stage 3) by hand: ``FSDP(model)``.

    * Every parameter with 2 or more dimensions is cut into ``world_size`` equal pieces (after
      flattening and padding); each rank keeps one piece as a parameter of this wrapper, the
      full tensor exists only while a layer uses it. Parameters with fewer dimensions (biases,
      norm gains) are small: every rank keeps them whole and their gradients are all-reduced.
    * Just before a layer's forward its weights are all-gathered; after it they are dropped.
      Autograd would keep the gathered weight for the backward pass, so a saved-tensor hook
      keeps a note instead and all-gathers the weight again when backward needs it.
    * The gradient of a gathered weight is reduce-scattered straight away: each rank receives
      the average of its own piece.
    * ``compute_dtype`` (``torch.bfloat16``, ``torch.float16``): gathered weights are cast
      before they are sent and every layer computes in that dtype (floating inputs are cast
      too), while the pieces, their gradients and so the optimizer stay in the parameters'
      dtype (fp32 master weights).
    * ``finish_gradient_synchronization()`` all-reduces the replicated parameters' gradients;
      call it between ``backward()`` and the optimizer step. ``gather_full_params()`` returns
      the full tensors by the wrapped module's parameter names (e.g. to save or compare).

    A parameter shared by two layers (tied embeddings) is sharded once and gathered by each.
    """

    def __init__(self, module: nn.Module, compute_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"FSDP wraps an nn.Module, got {type(module).__name__}")
        if compute_dtype is not None and not (isinstance(compute_dtype, torch.dtype)
                                              and compute_dtype.is_floating_point):
            raise ValueError("compute_dtype must be a floating dtype such as torch.bfloat16, or "
                             f"None to compute in the parameters' dtype; got {compute_dtype!r}")
        self.world_size = _require_group()
        self.rank = dist.get_rank()
        self.compute_dtype = compute_dtype
        from dlbook.distributed.ddp import broadcast_module
        broadcast_module(module)                       # every rank starts from rank 0's weights
        self.module = module
        self.local_params = nn.ParameterDict()
        self.shards: dict[str, _Shard] = {}           # by the first name of each sharded tensor
        self.replicated: dict[str, nn.Parameter] = {}
        self._uses: dict[nn.Module, list[tuple[str, str]]] = {}  # module -> (attribute, name)
        first_name: dict[int, str] = {}
        for mod_name, mod in module.named_modules(remove_duplicate=False):
            for attr, p in list(mod._parameters.items()):
                if p is None:
                    continue
                name = f"{mod_name}.{attr}" if mod_name else attr
                if id(p) not in first_name:
                    first_name[id(p)] = name
                    key = name.replace(".", "__")
                    if p.dim() >= 2 and p.requires_grad:
                        shard = _Shard(p, self.world_size, self.rank, compute_dtype)
                        self.shards[name] = shard
                        self.local_params[key] = shard.param
                    else:
                        self.replicated[name] = p
                        self.local_params[key] = p
                self._uses.setdefault(mod, []).append((attr, first_name[id(p)]))
        for mod, uses in self._uses.items():
            for attr, _ in uses:
                del mod._parameters[attr]
                setattr(mod, attr, None)
            mod.register_forward_pre_hook(self._materialize)
            mod.register_forward_hook(self._release)
        self._live: dict[nn.Module, list[tuple[torch.Tensor, _Shard]]] = {}

    # -- gathering and dropping, layer by layer
    def _materialize(self, mod: nn.Module, args: Any) -> None:
        for attr, name in self._uses[mod]:
            if name in self.shards:
                shard = self.shards[name]
                full = _Gather.apply(shard.param, shard)
                self._live.setdefault(mod, []).append((full, shard))
            else:
                p = self.replicated[name]
                full = p.to(self.compute_dtype) if self.compute_dtype and \
                    p.is_floating_point() else p
            setattr(mod, attr, full)

    def _release(self, mod: nn.Module, args: Any, output: Any) -> None:
        for attr, name in self._uses[mod]:
            setattr(mod, attr, None)
        self._live.pop(mod, None)

    def _pack(self, t: torch.Tensor) -> Any:
        for full, shard in (x for live in self._live.values() for x in live):
            if t.untyped_storage().data_ptr() == full.untyped_storage().data_ptr():
                # don't keep the gathered weight alive until backward: gather it again then
                return ("regather", shard, t.size(), t.stride(), t.storage_offset())
        return t

    @staticmethod
    def _unpack(packed: Any) -> torch.Tensor:
        if isinstance(packed, tuple) and packed and packed[0] == "regather":
            _, shard, size, stride, offset = packed
            return torch.as_strided(shard.gather_flat(shard.param), size, stride, offset)
        return packed

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.compute_dtype is not None:
            cast = lambda a: (a.to(self.compute_dtype)  # noqa: E731
                              if isinstance(a, torch.Tensor) and a.is_floating_point() else a)
            args = tuple(cast(a) for a in args)
            kwargs = {k: cast(v) for k, v in kwargs.items()}
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            return self.module(*args, **kwargs)

    def finish_gradient_synchronization(self) -> None:
        """Average the replicated parameters' gradients over the ranks (the sharded ones were
        reduce-scattered during backward)."""
        for p in self.replicated.values():
            if not p.requires_grad:
                continue
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            dist.all_reduce(p.grad)
            record("all_reduce", p.grad.numel() * p.grad.element_size(), self.world_size)
            p.grad /= self.world_size

    @torch.no_grad()
    def gather_full_params(self) -> dict[str, torch.Tensor]:
        """Every parameter of the wrapped module, whole, by name (in the master dtype); every
        rank must call it (it all-gathers)."""
        out: dict[str, torch.Tensor] = {}
        for name, shard in self.shards.items():
            flat = torch.empty(shard.chunk * self.world_size, dtype=shard.param.dtype,
                               device=shard.param.device)
            _all_gather(flat, shard.param.detach())
            out[name] = flat[:shard.numel].view(shard.shape).clone()
        for name, p in self.replicated.items():
            out[name] = p.detach().clone()
        names = dict.fromkeys(name for uses in self._uses.values() for _, name in uses)
        return {name: out[name] for name in names}  # in the order the module registers them
