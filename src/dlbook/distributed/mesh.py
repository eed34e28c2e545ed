"""A 2-D device mesh: FSDP across, tensor parallelism inside (section 6.6).

Four processes form a 2 × 2 grid, ``init_device_mesh(device, (2, 2), mesh_dim_names=("dp",
"tp"))``. Ranks in one row (``mesh["tp"]``) hold the two halves of every weight matrix:
Megatron's column-then-row split of the MLP (section 6.4), written with
``parallelize_module`` and ``ColwiseParallel`` / ``RowwiseParallel``. Ranks in one column
(``mesh["dp"]``) see different halves of the batch and shard what they hold once more with
FSDP2's ``fully_shard(..., mesh=mesh["dp"])`` (section 6.3). On a GPU cluster the ``tp``
dimension lives inside a node (NVLink) and ``dp`` across nodes.

The model is a stack of pre-norm residual MLP blocks, GPT's ``x + mlp(norm(x))`` without the
attention, in float64 with SGD, so that the run can be compared with one process on the full
batch to round-off.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from dlbook.distributed.launch import local_device
from dlbook.gpt import MLP, GPTConfig

__all__ = ["MLPBlock", "MLPStack", "make_stack", "data", "train_single", "train_2d",
           "tp_plan"]

F64 = torch.float64


class MLPBlock(nn.Module):
    """``x + mlp(norm(x))``: the second half of a GPT block."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mlp(self.norm(x))


class MLPStack(nn.Module):
    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MLPBlock(config) for _ in range(config.n_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x


def make_stack(d_model: int = 16, n_layers: int = 2, seed: int = 0) -> MLPStack:
    """A float64 stack whose weights come from its own generator (the same on every rank)."""
    config = GPTConfig(vocab_size=1, context_length=1, d_model=d_model, n_layers=n_layers,
                       n_heads=1)
    model = MLPStack(config).to(F64)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=F64))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g, dtype=F64))
    return model


def data(batch: int = 8, seq: int = 4, d_model: int = 16, seed: int = 1
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed regression batch (inputs and targets of shape (batch, seq, d_model))."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, seq, d_model, generator=g, dtype=F64)
    return x, torch.tanh(x.flip(-1))


def train_single(steps: int = 3, lr: float = 0.1, d_model: int = 16, n_layers: int = 2
                 ) -> dict[str, Any]:
    """The reference: one process, the full batch. Returns losses and final weights."""
    model = make_stack(d_model, n_layers)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = data(d_model=d_model)
    losses = []
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    return {"losses": losses, "final": {k: v.detach().clone()
                                        for k, v in model.state_dict().items()}}


def tp_plan(model: MLPStack) -> dict[str, Any]:
    """Megatron's MLP split for every block: ``fc`` by columns, ``proj`` by rows (one
    all-reduce per block, in the forward pass)."""
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel
    plan: dict[str, Any] = {}
    for i in range(len(model.blocks)):
        plan[f"blocks.{i}.mlp.fc"] = ColwiseParallel()
        plan[f"blocks.{i}.mlp.proj"] = RowwiseParallel()
    return plan


def train_2d(steps: int = 3, lr: float = 0.1, d_model: int = 16, n_layers: int = 2,
             dp: int = 2, tp: int = 2) -> dict[str, Any]:
    """Worker for ``dp · tp`` ranks: TP inside each row of the mesh, FSDP2 across; each DP
    group trains on its slice of the batch. Returns the mean loss of every step, the final
    weights gathered to full tensors, and what one rank stores of the first weight matrix."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor.parallel import parallelize_module

    warnings.filterwarnings("ignore", message=".*FSDP2-wrapped module.*")
    logging.getLogger("torch.distributed.tensor._redistribute").setLevel(logging.ERROR)
    if dist.get_world_size() != dp * tp:
        raise ValueError(f"train_2d needs dp·tp = {dp * tp} ranks, got {dist.get_world_size()}")
    mesh = init_device_mesh(local_device().type, (dp, tp), mesh_dim_names=("dp", "tp"))
    device = local_device()
    model = make_stack(d_model, n_layers).to(device)
    parallelize_module(model, mesh["tp"], tp_plan(model))        # split inside a row
    for block in model.blocks:
        fully_shard(block, mesh=mesh["dp"])                      # shard again down a column
    fully_shard(model, mesh=mesh["dp"])
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    x, y = data(d_model=d_model)
    row = mesh["dp"].get_local_rank()
    x, y = x.chunk(dp)[row].to(device), y.chunk(dp)[row].to(device)
    losses = []
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()                      # FSDP averages the gradients over the dp group
        opt.step()
        opt.zero_grad()
        mean = loss.detach().clone()
        dist.all_reduce(mean, group=mesh["dp"].get_group())
        losses.append(float(mean) / dp)
    w = model.blocks[0].mlp.fc.weight
    local = {"global shape": tuple(w.shape), "local shape": tuple(w.to_local().shape),
             "placements": str(w.placements)}
    final = {k: v.full_tensor().cpu() for k, v in model.state_dict().items()}
    return {"losses": losses, "final": final, "local": local,
            "coordinate": tuple(mesh.get_coordinate())}
