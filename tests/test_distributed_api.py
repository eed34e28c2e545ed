"""The public names of dlbook.distributed that other code and outside checks rely on."""

import inspect

import torch

import dlbook.distributed as D


def test_contract_names_are_exported():
    for name in ("DDP", "ShardedOptimizer", "FSDP", "ColumnParallelLinear", "RowParallelLinear",
                 "TensorParallelBlock", "gpipe_schedule", "one_f_one_b_schedule", "run_schedule",
                 "ring_attention", "ring_all_reduce", "launch", "propose_layout"):
        assert hasattr(D, name), name
    assert set(D.__all__) <= set(dir(D)) | set(D._COLLECTIVES)


def test_signatures_follow_the_contract():
    assert list(inspect.signature(D.DDP).parameters) == ["module", "bucket_size_mb"]
    assert inspect.signature(D.DDP).parameters["bucket_size_mb"].default is None
    assert list(inspect.signature(D.FSDP).parameters) == ["module", "compute_dtype"]
    params = inspect.signature(D.ShardedOptimizer).parameters
    assert list(params)[:2] == ["params", "optimizer_cls"] and "kwargs" in params
    assert issubclass(D.ShardedOptimizer, torch.optim.Optimizer)
    for cls in (D.DDP, D.FSDP):
        assert hasattr(cls, "finish_gradient_synchronization")
    assert hasattr(D.FSDP, "gather_full_params")
