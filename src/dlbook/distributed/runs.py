"""The experiments of sections 6.2 and 6.3, as functions that ``launch`` runs on every rank.

Each one trains the same tiny GPT (float64, so that equal computations give equal numbers to the
last few bits) on the same token batches, a slice of the global batch per rank, and returns what
the notebook compares with a single process: the losses, the final weights by name, the bytes the
collectives moved and the bytes each rank holds.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dlbook.distributed.comm import Traffic
from dlbook.distributed.ddp import DDP, allreduce_gradients, unique_parameters
from dlbook.distributed.launch import local_device
from dlbook.distributed.zero import FSDP, ShardedOptimizer, local_bytes
from dlbook.gpt import GPT, GPTConfig, init_weights_

F64 = torch.float64

#: the model of sections 6.2-6.3: 2 blocks, width 32, a 64-token vocabulary, tied embeddings
TINY = dict(vocab_size=64, context_length=16, d_model=32, n_layers=2, n_heads=4)


def tiny_gpt(seed: int = 0, dtype: torch.dtype = F64, frozen: tuple[str, ...] = (),
             **overrides: Any) -> GPT:
    """A small GPT, initialised the same way on every machine (``init_weights_``); the
    parameters named in ``frozen`` do not require grad."""
    model = GPT(GPTConfig(**{**TINY, **overrides}))
    init_weights_(model, seed)
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad_(False)
    return model.to(dtype)


def token_batches(steps: int, batch: int, seq_len: int = 16, vocab: int = 64,
                  seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``steps`` global batches of random token sequences (inputs, next-token targets)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        t = torch.randint(vocab, (batch, seq_len + 1), generator=g)
        out.append((t[:, :-1], t[:, 1:]))
    return out


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy (in fp32 when the model computes in 16 bits)."""
    logits = model(x)
    if logits.dtype != F64:
        logits = logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def shard_rows(t: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """This rank's contiguous slice of a global batch (batch size divisible by ``world``)."""
    if t.size(0) % world:
        raise ValueError(f"global batch {t.size(0)} is not divisible by {world} ranks")
    n = t.size(0) // world
    return t[rank * n:(rank + 1) * n]


def make_optimizer(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def train_single(steps: int = 3, batch: int = 8, optimizer: str = "sgd", lr: float = 0.1,
                 seed: int = 0, dtype: torch.dtype = F64, **model_kw: Any) -> dict[str, Any]:
    """The reference: one process, the whole global batch each step."""
    model = tiny_gpt(seed, dtype, **model_kw)
    opt = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad], lr)
    losses = []
    for x, y in token_batches(steps, batch, seed=seed):
        loss = lm_loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {"losses": losses, "params": {k: v.detach().clone()
                                         for k, v in model.named_parameters()}}


def _global_loss(loss: torch.Tensor) -> float:
    t = loss.detach().clone()
    dist.all_reduce(t)
    return (t / dist.get_world_size()).item()


def _replica_gap(model: nn.Module) -> float:
    """Largest difference between this rank's weights and rank 0's."""
    flat = torch.cat([p.detach().reshape(-1) for p in unique_parameters(model, False)])
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    gap = (flat - ref).abs().max()
    dist.all_reduce(gap, op=dist.ReduceOp.MAX)
    return gap.item()


def train_data_parallel(method: str, steps: int = 3, batch: int = 8, optimizer: str = "sgd",
                        lr: float = 0.1, seed: int = 0, micro_batches: int = 1,
                        bucket_size_mb: float | None = None, dtype: torch.dtype = F64,
                        **model_kw: Any) -> dict[str, Any]:
    """Train on this rank's slice of every global batch with one of the methods of 6.2-6.3:

    ``none`` (no averaging: what goes wrong), ``average_weights`` (step locally, then average
    the weights), ``allreduce`` (all-reduce after backward), ``ddp`` (``DDP``, hooks, buckets
    of ``bucket_size_mb``), ``torch_ddp`` (``DistributedDataParallel``), ``zero1``/``zero2``
    (``ShardedOptimizer`` over ``DDP``-averaged or local gradients), ``torch_zero``
    (``ZeroRedundancyOptimizer``), ``fsdp`` (``FSDP``), ``fsdp_bf16`` (``FSDP`` computing in
    bfloat16 on fp32 master weights), ``fsdp2`` (PyTorch's ``fully_shard``).
    With ``micro_batches`` > 1 each rank's slice is split and the gradients accumulated
    (``no_sync`` on all but the last, for the DDP methods). ``dtype`` is the parameters'
    dtype (float64 by default, so that equal computations agree to the last bits).
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    if method == "fsdp_bf16":
        dtype = torch.float32  # fp32 master weights, bf16 compute
    dev = local_device()  # the CPU under gloo, this rank's GPU under NCCL
    if method in ("ddp", "zero1", "fsdp", "fsdp_bf16"):
        # every rank starts from its own random weights: the wrapper must broadcast rank 0's
        model = tiny_gpt(seed + 100 * rank, dtype, **model_kw).to(dev)
    else:
        model = tiny_gpt(seed, dtype, **model_kw).to(dev)
    traffic = Traffic().__enter__()
    wrapped: nn.Module = model
    if method in ("ddp", "zero1"):
        wrapped = DDP(model, bucket_size_mb=bucket_size_mb)
    elif method == "torch_ddp":
        wrapped = nn.parallel.DistributedDataParallel(model)
    elif method in ("fsdp", "fsdp_bf16"):
        wrapped = FSDP(model, compute_dtype=torch.bfloat16 if method == "fsdp_bf16" else None)
    elif method == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard
        mesh = init_device_mesh(dev.type, (world,))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        wrapped = fully_shard(model, mesh=mesh)
    params = [p for p in wrapped.parameters() if p.requires_grad]
    if method in ("zero1", "zero2"):
        opt: torch.optim.Optimizer = ShardedOptimizer(
            params, torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam,
            shard_gradients=method == "zero2", lr=lr)
    elif method == "torch_zero":
        from torch.distributed.optim import ZeroRedundancyOptimizer
        opt = ZeroRedundancyOptimizer(params, optimizer_class=torch.optim.SGD if optimizer ==
                                      "sgd" else torch.optim.Adam, lr=lr)
    else:
        opt = make_optimizer(optimizer, params, lr)
    losses, gaps, bytes_held = [], [], None
    for x, y in token_batches(steps, batch, seed=seed):
        x, y = shard_rows(x, rank, world).to(dev), shard_rows(y, rank, world).to(dev)
        opt.zero_grad()
        xs, ys = x.chunk(micro_batches), y.chunk(micro_batches)
        total = torch.zeros((), dtype=F64, device=dev)
        for i, (xm, ym) in enumerate(zip(xs, ys)):
            last = i == micro_batches - 1
            sync = wrapped.no_sync() if (not last and isinstance(wrapped, (DDP,
                                         nn.parallel.DistributedDataParallel))) else contextlib.nullcontext()
            with sync:
                loss = lm_loss(wrapped, xm, ym) * (xm.size(0) / x.size(0))
                loss.backward()
            total += loss.detach().to(F64)
        if method in ("allreduce", "torch_zero"):
            allreduce_gradients(model)
        elif isinstance(wrapped, (DDP, FSDP)):
            wrapped.finish_gradient_synchronization()
        opt.step()
        if method == "average_weights":
            with torch.no_grad():
                for p in unique_parameters(model):
                    dist.all_reduce(p.data)
                    p.data /= world
        if bytes_held is None:
            bytes_held = local_bytes(params, opt)
        losses.append(_global_loss(total))
        if method in ("none", "average_weights"):
            gaps.append(_replica_gap(model))
    traffic.__exit__()
    if isinstance(wrapped, FSDP):
        full = wrapped.gather_full_params()
    elif method == "fsdp2":
        full = {k: v.full_tensor().detach().cpu() for k, v in model.named_parameters()}
    else:
        full = {k: v.detach().cpu() for k, v in model.named_parameters()}
    full = {k: v.cpu() for k, v in full.items()}
    n_params = sum(p.numel() for p in unique_parameters(model if method != "fsdp" else
                                                       wrapped.module, False)) \
        if not isinstance(wrapped, FSDP) else sum(v.numel() for v in full.values())
    out = {"losses": losses, "params": full, "sent": dict(traffic.sent),
           "calls": dict(traffic.calls), "bytes": bytes_held, "n_params": n_params,
           "gaps": gaps}
    if isinstance(wrapped, FSDP):
        out["n_replicated"] = sum(p.numel() for p in wrapped.replicated.values())
        out["n_sharded_padded"] = sum(sh.chunk * world for sh in wrapped.shards.values())
    if isinstance(wrapped, DDP):
        out["buckets"] = len(wrapped.buckets)
        out["launched_during_backward"] = wrapped.launched_during_backward
    return out


def compare_methods(methods: list[Any], **kwargs: Any) -> dict[str, Any]:
    """Run several methods one after the other in the same process group (one launch). An
    item is a method name, or ``(label, method, options)`` with options overriding
    ``kwargs``."""
    out = {}
    for item in methods:
        label, method, extra = (item, item, {}) if isinstance(item, str) else item
        out[label] = train_data_parallel(method, **{**kwargs, **extra})
    return out


# ----------------------------------------------------------------- distributed checkpoints

def _fsdp2_model(seed: int = 0) -> nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    dev = local_device() if dist.is_initialized() else torch.device("cpu")
    model = tiny_gpt(seed).to(dev)
    if dist.is_initialized() and dist.get_world_size() > 1:
        mesh = init_device_mesh(dev.type, (dist.get_world_size(),))
        for block in model.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
    return model


def dcp_save(path: str, steps: int = 2, lr: float = 0.1) -> dict[str, Any]:
    """Train the tiny GPT sharded with ``fully_shard`` for a few SGD steps, save it with
    ``torch.distributed.checkpoint`` (each rank writes its own shards) and return the full
    weights and the files written."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    rank, world = dist.get_rank(), dist.get_world_size()
    model = _fsdp2_model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    dev = local_device()
    for x, y in token_batches(steps, 8):
        opt.zero_grad()
        lm_loss(model, shard_rows(x, rank, world).to(dev),
                shard_rows(y, rank, world).to(dev)).backward()
        opt.step()
    dcp.save({"model": get_model_state_dict(model)}, checkpoint_id=path)
    dist.barrier()
    full = {k: v.full_tensor().detach().cpu() for k, v in model.named_parameters()}
    return {"params": full, "files": sorted(os.listdir(path))}


def dcp_load(path: str) -> dict[str, torch.Tensor]:
    """Load the checkpoint of :func:`dcp_save` into a fresh model sharded over however many
    ranks run this (DCP re-shards on load), and return the full weights."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict,
                                                         set_model_state_dict)
    model = _fsdp2_model(seed=1)  # different weights, to see that loading replaces them
    state = {"model": get_model_state_dict(model)}
    with warnings.catch_warnings():  # without a process group DCP says it loads in one process
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single")
        dcp.load(state, checkpoint_id=path)
    set_model_state_dict(model, state["model"])
    return {k: (v.full_tensor() if hasattr(v, "full_tensor") else v).detach().cpu()
            for k, v in model.named_parameters()}
