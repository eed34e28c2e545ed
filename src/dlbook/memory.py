"""Fitting a training step in memory (section 5.3): gradient accumulation, activation
checkpointing in segments, the bytes that CPU offload moves, and a meter for the memory a
step really uses.

* :func:`accumulate_gradients` splits a batch into micro-batches and weights each one's mean
  loss by its share of the examples, so that ``.grad`` ends equal to the full batch's gradient
  even when the micro-batches have different sizes.
* :class:`Checkpointed` runs a :class:`dlbook.gpt.GPT`'s blocks through
  ``torch.utils.checkpoint.checkpoint`` in segments of ``every`` blocks: only each segment's
  input is kept, and the segment is run again during the backward pass.
* :func:`checkpoint_memory` and :func:`best_segment` are the cost model of Chen et al. (2016):
  ⌈L/k⌉ segment inputs plus one segment of k blocks recomputed at a time.
* :func:`offload_bytes` counts what ZeRO-Offload (Ren et al. 2021) moves over PCIe per step.
* :func:`peak_bytes` measures the memory of new tensors at the peak of a call:
  ``torch.cuda.max_memory_allocated`` on a GPU, a dispatch-mode tracker on the CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.checkpoint import checkpoint

__all__ = ["micro_batch_sizes", "micro_batch_weights", "accumulate_gradients", "segments",
           "Checkpointed", "checkpoint_memory", "best_segment", "offload_bytes", "peak_bytes"]


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


# ------------------------------------------------------------------ gradient accumulation

def micro_batch_sizes(batch_size: int, micro_batches: int | Sequence[int]) -> list[int]:
    """The sizes of the micro-batches: ``micro_batches`` as a count splits ``batch_size`` as
    evenly as possible (as ``torch.tensor_split`` does, larger ones first); as a list of
    sizes it must add up to ``batch_size``."""
    _positive_int("batch_size", batch_size)
    if isinstance(micro_batches, int) and not isinstance(micro_batches, bool):
        _positive_int("micro_batches", micro_batches)
        if micro_batches > batch_size:
            raise ValueError(f"cannot split {batch_size} examples into {micro_batches} "
                             "micro-batches: use at most one micro-batch per example")
        q, r = divmod(batch_size, micro_batches)
        return [q + 1] * r + [q] * (micro_batches - r)
    sizes = list(micro_batches)
    for s in sizes:
        _positive_int("each micro-batch size", s)
    if sum(sizes) != batch_size:
        raise ValueError(f"micro-batch sizes {sizes} add up to {sum(sizes)}, not to the batch "
                         f"size {batch_size}")
    return sizes


def micro_batch_weights(sizes: Sequence[int]) -> list[float]:
    """The factor each micro-batch's *mean* loss is multiplied by: its share n_i / N of the
    examples. Then the weighted sum of the means is the mean over the whole batch."""
    sizes = list(sizes)
    if not sizes:
        raise ValueError("give at least one micro-batch size")
    for s in sizes:
        _positive_int("each micro-batch size", s)
    total = sum(sizes)
    return [s / total for s in sizes]


def accumulate_gradients(model: nn.Module, loss_fn: Callable[..., torch.Tensor],
                         inputs: torch.Tensor, targets: torch.Tensor,
                         micro_batches: int | Sequence[int], zero_grad: bool = True) -> float:
    """Backward passes over micro-batches of (``inputs``, ``targets``), split along the first
    dimension, leaving in ``.grad`` the gradient of the mean loss over the whole batch.

    ``loss_fn(model, x, y)`` returns the *mean* loss over the examples of one micro-batch
    (e.g. ``dlbook.lm.lm_loss``); each is scaled by its share n_i / N before ``backward``, so
    unequal micro-batches are weighted correctly. (With a per-token mean and masked tokens,
    weight by counted tokens instead.) Only one micro-batch's activations are alive at a time.
    ``zero_grad=False`` adds to gradients already there. Returns the mean loss of the batch."""
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise ValueError("inputs and targets must be tensors with the batch along dimension 0")
    if inputs.dim() == 0 or inputs.shape[0] != targets.shape[0]:
        raise ValueError(f"inputs and targets need the same batch size along dimension 0, got "
                         f"{tuple(inputs.shape)} and {tuple(targets.shape)}")
    sizes = micro_batch_sizes(inputs.shape[0], micro_batches)
    if zero_grad:
        model.zero_grad(set_to_none=True)
    total = 0.0
    for x, y, w in zip(inputs.split(sizes), targets.split(sizes), micro_batch_weights(sizes)):
        loss = loss_fn(model, x, y)
        if loss.dim() != 0:
            raise ValueError("loss_fn must return the mean loss of the micro-batch (a scalar), "
                             f"got shape {tuple(loss.shape)}")
        (loss * w).backward()            # d(w·loss_i)/dθ adds up to d(mean loss)/dθ
        total += w * loss.item()
    return total


# ---------------------------------------------------------------- activation checkpointing

def segments(n_layers: int, every: int) -> list[range]:
    """Consecutive segments of ``every`` layers (the last may be shorter): the layers whose
    activations are recomputed together. ``segments(5, 2)`` is [0:2, 2:4, 4:5]."""
    _positive_int("n_layers", n_layers)
    _positive_int("every", every)
    if every > n_layers:
        raise ValueError(f"every={every} is more than the {n_layers} layers: use "
                         f"every={n_layers} for a single segment")
    return [range(i, min(i + every, n_layers)) for i in range(0, n_layers, every)]


class Checkpointed(nn.Module):
    """A :class:`dlbook.gpt.GPT` whose blocks run in checkpointed segments of ``every``
    blocks (``every=None``: no checkpointing). It shares the model's parameters, computes the
    same logits and, in backward, the same gradients; the forward pass keeps only each
    segment's input, and each segment's forward is run again when the backward pass reaches
    it (``torch.utils.checkpoint.checkpoint`` with ``use_reentrant=False``)."""

    def __init__(self, model: nn.Module, every: int | None = 1) -> None:
        super().__init__()
        if not hasattr(model, "blocks") or not hasattr(model, "tok_emb"):
            raise ValueError("Checkpointed wraps a dlbook.gpt.GPT (it needs .tok_emb, .blocks, "
                             f".norm_f and .lm_head), got {type(model).__name__}")
        self.model = model
        self.every = every
        self.segments = ([range(0, len(model.blocks))] if every is None
                         else segments(len(model.blocks), every))

    def _run(self, first: int, last: int, x: torch.Tensor) -> torch.Tensor:
        for block in self.model.blocks[first:last]:
            x = block(x)
        return x

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        m = self.model
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.is_floating_point():
            raise ValueError("expected idx to be integer token ids of shape (batch, seq)")
        if idx.shape[1] > m.config.context_length:
            raise ValueError(f"{idx.shape[1]} positions exceed context_length="
                             f"{m.config.context_length}")
        x = m.tok_emb(idx)
        if m.pos_emb is not None:
            x = x + m.pos_emb(torch.arange(idx.shape[1], device=idx.device))
        x = m.drop(x)
        for seg in self.segments:
            if self.every is None or not torch.is_grad_enabled():
                x = self._run(seg.start, seg.stop, x)
            else:
                x = checkpoint(self._run, seg.start, seg.stop, x, use_reentrant=False)
        return m.lm_head(m.norm_f(x))


def checkpoint_memory(n_layers: int, every: int, input_bytes: float,
                      block_bytes: float) -> float:
    """Chen et al.'s cost model of checkpointing in segments of k = ``every`` layers: the
    ⌈L/k⌉ segment inputs stay alive, and while the backward pass works through one segment its
    k layers' activations are back: ⌈L/k⌉·x + k·a bytes (x a layer's input, a the bytes one
    layer saves for backward)."""
    n_segments = len(segments(n_layers, every))
    for name, v in (("input_bytes", input_bytes), ("block_bytes", block_bytes)):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative number of bytes, got {v!r}")
    return n_segments * input_bytes + min(every, n_layers) * block_bytes


def best_segment(n_layers: int, input_bytes: float = 1.0, block_bytes: float = 1.0) -> int:
    """The segment size k that minimises :func:`checkpoint_memory` (the smallest one on a tie).
    Near √(L·x/a): √L when a layer saves as much as its input, 1 when it saves much more."""
    return min(range(1, n_layers + 1),
               key=lambda k: (checkpoint_memory(n_layers, k, input_bytes, block_bytes), k))


# ----------------------------------------------------------------------------- offloading

def offload_bytes(n_params: float, gradient_bytes: int = 4, weight_bytes: int = 2
                  ) -> dict[str, float]:
    """Bytes one training step moves between GPU and CPU when the optimizer runs on the CPU
    (ZeRO-Offload, Ren et al. 2021): every gradient goes down (``gradient_bytes``, fp32 as the
    CPU's Adam wants them; 2 if sent in 16 bits), and the updated 16-bit weights come back up.
    The fp32 master weights and Adam's moments never cross."""
    if not isinstance(n_params, (int, float)) or isinstance(n_params, bool) or n_params <= 0:
        raise ValueError(f"n_params must be a positive number, got {n_params!r}")
    for name, v in (("gradient_bytes", gradient_bytes), ("weight_bytes", weight_bytes)):
        if v not in (1, 2, 4, 8):
            raise ValueError(f"{name} must be 1, 2, 4 or 8 bytes per value, got {v!r}")
    down, up = n_params * gradient_bytes, n_params * weight_bytes
    return {"to CPU (gradients)": down, "to GPU (weights)": up, "total": down + up}


# ------------------------------------------------------------------------- measuring memory

class _LiveTensors(TorchDispatchMode):
    """Every storage that an operator creates, kept as a weak reference with its size; after
    each operator the bytes still alive are summed, and the largest sum is the peak."""

    def __init__(self, skip: set[int]) -> None:
        super().__init__()
        self.skip = skip
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.now = 0
        self.peak = 0

    def update(self) -> None:
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            del self.live[key]
        self.now = sum(b for _, b in self.live.values())
        self.peak = max(self.peak, self.now)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            del self.live[key]           # first, so that a reused address counts again
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.skip and key not in self.live:
                    self.live[key] = (StorageWeakRef(storage), storage.nbytes())
        self.update()
        return out


def peak_bytes(fn: Callable[[], Any], device: torch.device | str = "cpu",
               exclude: Iterable[torch.Tensor] = ()) -> tuple[int, int, Any]:
    """Run ``fn()`` and return (peak, end, what fn returned): the bytes of tensors created
    during the call that are alive at its peak, and those still alive when it returns.

    On a CUDA device these are ``torch.cuda.max_memory_allocated`` and ``memory_allocated``
    minus what was allocated before the call (the caching allocator's block sizes included).
    Elsewhere an operator-level tracker sums the storages that operators create and that are
    still referenced, checked after every operator (``exclude``: storages not to count, such
    as parameters touched in place). Tensors made by ``torch.empty`` outside an operator and
    CPU memory that is not a tensor are not seen."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        out = fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base,
                torch.cuda.memory_allocated(device) - base, out)
    tracker = _LiveTensors({t.untyped_storage().data_ptr() for t in exclude})
    with tracker:
        out = fn()
    tracker.update()
    return tracker.peak, tracker.now, out
