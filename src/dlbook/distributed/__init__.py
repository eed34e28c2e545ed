"""Training on many processes (Part VI): every strategy written by hand with
``torch.distributed`` collectives, each equal to a single-process run.

The public names are re-exported here::

    from dlbook.distributed import launch, DDP, ShardedOptimizer, FSDP
    from dlbook.distributed import ColumnParallelLinear, RowParallelLinear, TensorParallelBlock
    from dlbook.distributed import gpipe_schedule, one_f_one_b_schedule, run_schedule
    from dlbook.distributed import ring_all_reduce, ring_attention, propose_layout

The modules, one per section: ``launch`` and ``collectives`` (6.1), ``ddp`` (6.2), ``zero``
(6.3), ``tensor`` (6.4), ``pipeline`` (6.5), ``context``, ``mesh``, ``layout`` and ``fault``
(6.6); ``runs`` holds the experiments of 6.2 and 6.3. gloo runs them on the CPU; with one GPU
per rank the same code runs on NCCL.
"""

from dlbook.distributed.comm import Traffic
from dlbook.distributed.context import merge_partials, ring_attention
from dlbook.distributed.ddp import DDP, allreduce_gradients, broadcast_module, unique_parameters
from dlbook.distributed.launch import (WorkerError, default_backend, init_process_group, launch,
                                       local_device)
from dlbook.distributed.layout import Cluster, Layout, estimate_layout, propose_layout
from dlbook.distributed.pipeline import (Stage, bubble_fraction, gpipe_schedule,
                                         one_f_one_b_schedule, run_schedule, simulate, split_gpt)
from dlbook.distributed.tensor import (ColumnParallelLinear, CopyToParallelRegion,
                                       ReduceFromParallelRegion, RowParallelLinear,
                                       TensorParallelAttention, TensorParallelBlock,
                                       TensorParallelMLP)
from dlbook.distributed.zero import FSDP, ShardedOptimizer, bytes_per_parameter, local_bytes

# 6.1's module is also a script (``torchrun ... -m dlbook.distributed.collectives``): importing
# it here would make Python warn that it was imported before it ran, so its names load on use
_COLLECTIVES = ("bus_bandwidth", "ring_all_gather", "ring_all_reduce", "ring_all_reduce_time",
                "ring_reduce_scatter")


def __getattr__(name: str):
    if name in _COLLECTIVES:
        from dlbook.distributed import collectives
        return getattr(collectives, name)
    raise AttributeError(f"module 'dlbook.distributed' has no attribute {name!r}")

__all__ = ["Cluster", "ColumnParallelLinear", "CopyToParallelRegion", "DDP", "FSDP", "Layout",
           "ReduceFromParallelRegion", "RowParallelLinear", "ShardedOptimizer", "Stage",
           "TensorParallelAttention", "TensorParallelBlock", "TensorParallelMLP", "Traffic",
           "WorkerError", "allreduce_gradients", "broadcast_module", "bubble_fraction",
           "bus_bandwidth", "bytes_per_parameter", "default_backend", "estimate_layout",
           "gpipe_schedule", "init_process_group", "launch", "local_bytes", "local_device",
           "merge_partials", "one_f_one_b_schedule", "propose_layout", "ring_all_gather",
           "ring_all_reduce", "ring_all_reduce_time", "ring_attention", "ring_reduce_scatter",
           "run_schedule", "simulate", "split_gpt", "unique_parameters"]
