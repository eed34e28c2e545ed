"""Worker functions for the tests of dlbook.distributed.launch (importable by spawned ranks)."""

import os
import time

import torch
import torch.distributed as dist


def rank_sum() -> float:
    t = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(t)
    print(f"rank {dist.get_rank()} of {dist.get_world_size()}")
    return t.item()


def rank_one_exits() -> int:
    if dist.get_rank() == 1:
        os._exit(3)
    t = torch.ones(1)
    dist.all_reduce(t)   # would wait for rank 1 forever without the watch
    return 0


def rank_one_raises() -> int:
    if dist.get_rank() == 1:
        raise ArithmeticError("rank one gave up")
    t = torch.ones(1)
    dist.all_reduce(t)
    return 0


def rank_one_hangs() -> int:
    if dist.get_rank() == 1:
        time.sleep(600)
    t = torch.ones(1)
    dist.all_reduce(t)
    return 0


def collective_times_out() -> str:
    """Rank 1 never joins the all-reduce: rank 0's collective must raise after its timeout."""
    if dist.get_rank() == 1:
        time.sleep(8)
        return "slept"
    t = torch.ones(1)
    start = time.monotonic()
    try:
        dist.all_reduce(t)
    except Exception as e:  # gloo raises when the timeout passes
        return f"raised after {time.monotonic() - start:.0f} s: {type(e).__name__}"
    return "returned"
