"""dlbook.distributed.launch: ranks start, return, and never hang the caller."""

import subprocess
import sys
import time

import pytest
from dist_workers import (collective_times_out, rank_one_exits, rank_one_hangs,
                          rank_one_raises, rank_sum)

from dlbook.distributed.launch import WorkerError, init_process_group, launch


def test_ranks_return_their_results_and_print_from_rank_zero(capsys):
    assert launch(rank_sum, 2) == [3.0, 3.0]
    assert capsys.readouterr().out == "rank 0 of 2\n"
    assert launch(rank_sum, 3, show="all") == [6.0, 6.0, 6.0]
    assert capsys.readouterr().out.splitlines() == [f"[rank {r}] rank {r} of 3" for r in range(3)]


def test_a_dead_rank_ends_the_call_with_its_name():
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"rank 1 of 2 died \(exit code 3\)"):
        launch(rank_one_exits, 2)
    assert time.monotonic() - start < 60


def test_a_raising_rank_is_quoted():
    with pytest.raises(WorkerError, match="rank 1 of 2 failed with ArithmeticError: rank one "
                                          "gave up"):
        launch(rank_one_raises, 2)


def test_a_hung_rank_is_stopped_at_the_timeout():
    start = time.monotonic()
    with pytest.raises(WorkerError, match=r"still running after 6 s"):
        launch(rank_one_hangs, 2, timeout=6)
    assert time.monotonic() - start < 20


def test_every_collective_has_a_timeout():
    out = launch(collective_times_out, 2, collective_timeout=3, timeout=50)
    assert out[0].startswith("raised after"), out
    assert int(out[0].split()[2]) < 15


def test_bad_arguments():
    with pytest.raises(ValueError, match="world_size"):
        launch(rank_sum, 0)
    with pytest.raises(ValueError, match="show"):
        launch(rank_sum, 2, show="everyone")
    local = lambda: 0  # noqa: E731
    with pytest.raises(ValueError, match="cannot import it"):
        launch(local, 2)


def test_init_process_group_names_the_missing_variable(monkeypatch):
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ValueError, match="RANK is not set.*torchrun"):
        init_process_group()


def test_torchrun_stops_every_rank_when_one_dies(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text(
        "import os, torch, torch.distributed as dist\n"
        "from dlbook.distributed.launch import init_process_group\n"
        "rank, world = init_process_group(timeout=10)\n"
        "if rank == 1:\n    os._exit(5)\n"
        "dist.all_reduce(torch.ones(1))\n")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", str(script)], capture_output=True, text=True,
                          timeout=90, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0
    assert time.monotonic() - start < 60
