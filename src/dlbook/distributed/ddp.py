"""Data parallelism written by hand (section 6.2).

Every rank holds a full copy of the model and runs forward and backward on its own slice of the
global batch; before the optimizer step, the gradients are averaged over the ranks, so that every
replica takes the same step as one process would on the whole batch. Three versions, each faster
than the last:

* :func:`allreduce_gradients`: one all-reduce per parameter after ``backward()`` returns;
* ``DDP(model)``: an asynchronous all-reduce per parameter, launched by a hook the moment that
  parameter's gradient is ready, so communication overlaps the rest of the backward pass;
* ``DDP(model, bucket_size_mb=25)``: gradients packed into buckets of about that size (in the
  order backward produces them), one all-reduce per bucket: fewer, larger messages, each paying
  the per-message latency α once.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn

from dlbook.distributed.comm import record


def _require_group() -> int:
    if not dist.is_initialized():
        raise ValueError("no process group: run this inside dlbook.distributed.launch(fn, N) "
                         "or a script started with torchrun (init_process_group first)")
    return dist.get_world_size()


def unique_parameters(module: nn.Module, trainable_only: bool = True) -> list[nn.Parameter]:
    """The module's parameters, each once (a tied matrix used by two layers appears once), in
    registration order; with ``trainable_only`` those with ``requires_grad`` only."""
    seen: set[int] = set()
    out = []
    for p in module.parameters():
        if id(p) not in seen and (p.requires_grad or not trainable_only):
            seen.add(id(p))
            out.append(p)
    return out


@torch.no_grad()
def broadcast_module(module: nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers into every rank's module, so all replicas
    start equal even if each rank initialised its own."""
    world = _require_group()
    for t in unique_parameters(module, trainable_only=False) + list(module.buffers()):
        dist.broadcast(t.data, src=src)
        record("broadcast", t.numel() * t.element_size(), world)


def allreduce_gradients(module: nn.Module) -> None:
    """Average every gradient over the ranks, one blocking all-reduce per parameter, after
    ``backward()`` has returned: the simplest correct data parallelism (no overlap)."""
    world = _require_group()
    for p in unique_parameters(module):
        if p.grad is None:
            p.grad = torch.zeros_like(p)  # every rank must join every all-reduce
        dist.all_reduce(p.grad)
        record("all_reduce", p.grad.numel() * p.grad.element_size(), world)
        p.grad /= world


class _Bucket:
    def __init__(self, params: list[nn.Parameter]) -> None:
        self.params = params
        self.ready: set[int] = set()
        self.buffer: torch.Tensor | None = None
        self.handle: Any = None


class DDP(nn.Module):
    """Distributed data parallelism: ``DDP(model)`` then train as usual, calling
    :meth:`finish_gradient_synchronization` between ``loss.backward()`` and ``optimizer.step()``.

    * At construction, rank 0's parameters and buffers are broadcast to every rank.
    * During ``backward()``, as soon as all the gradients of a bucket have been accumulated, the
      bucket is flattened, divided by the world size and all-reduced *asynchronously*, so
      communication overlaps the backward pass of earlier layers.
    * ``bucket_size_mb=None`` makes one bucket per parameter; otherwise parameters are grouped,
      in reverse registration order (roughly the order backward reaches them), into buckets of
      about that many megabytes (2**20 bytes).
    * Parameters that do not require grad are left alone; a parameter shared by two layers (tied
      weights) is one tensor with one gradient, all-reduced once.
    * Inside ``with ddp.no_sync():`` gradients only accumulate locally (gradient accumulation);
      the next backward outside it all-reduces the accumulated sums.

    Like PyTorch's DDP without ``find_unused_parameters``, every rank must produce a gradient
    for the same parameters in every step; a parameter that got none is all-reduced as zeros
    when :meth:`finish_gradient_synchronization` finds its bucket incomplete.
    """

    def __init__(self, module: nn.Module, bucket_size_mb: float | None = None) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"DDP wraps an nn.Module, got {type(module).__name__}")
        if bucket_size_mb is not None and not bucket_size_mb > 0:
            raise ValueError(f"bucket_size_mb must be a positive number of megabytes or None "
                             f"(one bucket per parameter), got {bucket_size_mb!r}")
        self.world_size = _require_group()
        self.module = module
        self.bucket_size_mb = bucket_size_mb
        broadcast_module(module)
        params = unique_parameters(module)[::-1]  # backward meets the last layers first
        self.buckets: list[_Bucket] = []
        if bucket_size_mb is None:
            self.buckets = [_Bucket([p]) for p in params]
        else:
            limit = bucket_size_mb * 2**20
            current: list[nn.Parameter] = []
            size = 0
            for p in params:
                nbytes = p.numel() * p.element_size()
                if current and (size + nbytes > limit or p.dtype != current[0].dtype):
                    self.buckets.append(_Bucket(current))
                    current, size = [], 0
                current.append(p)
                size += nbytes
            if current:
                self.buckets.append(_Bucket(current))
        self._bucket_of = {id(p): i for i, b in enumerate(self.buckets) for p in b.params}
        self.require_sync = True
        #: bucket indices in the order their all-reduce was launched, this step and the last
        self.launch_order: list[int] = []
        self.last_launch_order: list[int] = []
        #: how many of the last step's buckets were launched by a hook, during backward
        self.launched_during_backward = 0
        for p in params:
            p.register_post_accumulate_grad_hook(self._grad_ready)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Accumulate gradients locally, without communication, inside this block."""
        old, self.require_sync = self.require_sync, False
        try:
            yield
        finally:
            self.require_sync = old

    def _grad_ready(self, p: torch.Tensor) -> None:
        if not self.require_sync:
            return
        i = self._bucket_of[id(p)]
        bucket = self.buckets[i]
        bucket.ready.add(id(p))
        if len(bucket.ready) == len(bucket.params):
            self._launch(i)

    def _launch(self, i: int) -> None:
        bucket = self.buckets[i]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in bucket.params]
        bucket.buffer = torch.cat([g.reshape(-1) for g in grads]) / self.world_size
        bucket.handle = dist.all_reduce(bucket.buffer, async_op=True)
        record("all_reduce", bucket.buffer.numel() * bucket.buffer.element_size(),
               self.world_size)
        self.launch_order.append(i)

    def finish_gradient_synchronization(self) -> None:
        """Wait for every bucket's all-reduce (launching any that backward did not complete)
        and write the averaged gradients back into ``p.grad``. Call it before the optimizer
        step."""
        self.launched_during_backward = len(self.launch_order)
        for i, bucket in enumerate(self.buckets):
            if bucket.handle is None:
                self._launch(i)
        for bucket in self.buckets:
            bucket.handle.wait()
            offset = 0
            for p in bucket.params:
                n = p.numel()
                averaged = bucket.buffer[offset:offset + n].view_as(p)
                if p.grad is None:
                    p.grad = averaged.clone()
                else:
                    p.grad.copy_(averaged)
                offset += n
            bucket.ready.clear()
            bucket.buffer = bucket.handle = None
        self.last_launch_order, self.launch_order = self.launch_order, []
