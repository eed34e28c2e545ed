"""Training on many processes (Part VI): every strategy written by hand with
``torch.distributed`` collectives, each equal to a single-process run.

The public names are re-exported here::

    from dlbook.distributed import launch, DDP, ShardedOptimizer, FSDP

gloo runs them on the CPU; with one GPU per rank the same code runs on NCCL.
"""

from dlbook.distributed.comm import Traffic
from dlbook.distributed.ddp import DDP, allreduce_gradients, broadcast_module, unique_parameters
from dlbook.distributed.launch import (WorkerError, default_backend, init_process_group, launch,
                                       local_device)
from dlbook.distributed.zero import FSDP, ShardedOptimizer, bytes_per_parameter, local_bytes

__all__ = ["DDP", "FSDP", "ShardedOptimizer", "Traffic", "WorkerError", "allreduce_gradients",
           "broadcast_module", "bytes_per_parameter", "default_backend", "init_process_group",
           "launch", "local_bytes", "local_device", "unique_parameters"]
