"""dlbook.distributed.collectives: the ring collectives against torch.distributed and a
single-process reference on 2, 3 and 4 ranks, the ring's schedule, the cost models and the bus
bandwidth (one launch per world size; each launch runs many checks)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from dlbook.distributed import collectives as C
from dlbook.distributed.launch import launch

NUMELS = {2: [0, 1, 2, 3, 7, 64, 1001],
          3: [1, 2, 4, 5, 9, 30, 1000],
          4: [0, 3, 8, 13, 4099]}


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ring_collectives_equal_torch_distributed_and_the_single_process_sum(world_size):
    results = launch(C.check_ring_collectives, world_size, NUMELS[world_size], seed=world_size,
                     timeout=90)
    assert len(results) == world_size
    for r in results:
        assert r["cases"] == len(NUMELS[world_size]) * 3 * 3
        assert r["exact"], "max, min, int64 sums, reduce-scatter and all-gather are exact"
        assert r["bytes_match"], "each rank sends 2(N-1)/N of the tensor"
        assert r["worst_relative"]["float64"] < 1e-14
        assert r["worst_relative"]["float32"] < 1e-6
    if world_size == 2:  # a sum of two numbers is the same in either order
        assert results[0]["worst_relative"]["float64"] == 0.0


def test_the_six_collectives_and_subgroups_match_their_definitions():
    n = 4
    results = launch(C.collectives_demo, n)
    inputs = [C.demo_input(r, n) for r in range(n)]
    total = torch.stack(inputs).sum(0)
    for r, out in enumerate(results):
        for name, (before, _) in out.items():
            if name != "all_gather":
                assert torch.equal(before, inputs[r]), name
        assert torch.equal(out["broadcast"][1], inputs[0])
        assert torch.equal(out["all_reduce"][1], total)
        assert torch.equal(out["reduce"][1], total) if r == 0 else out["reduce"][1] is None
        assert torch.equal(out["reduce_scatter"][1], total[r:r + 1])
        assert torch.equal(out["all_gather"][1], torch.stack([t[0] for t in inputs]))
        assert torch.equal(out["all_to_all"][1], torch.stack([t[r] for t in inputs]))
        pair = r // 2 * 2
        assert torch.equal(out["pairs"][1], inputs[pair] + inputs[pair + 1])


def test_the_timing_worker_returns_one_positive_median_per_size():
    times = launch(C.time_all_reduce, 1, [4, 4096], 2)[0]  # one rank: the code path, cheaply
    assert len(times) == 2 and all(t > 0 for t in times)


def test_torchrun_prints_one_line_per_rank_in_order():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node=2", "-m", "dlbook.distributed.collectives"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "rank 0 of 2, backend gloo: all_reduce of rank + 1 gives 3",
        "rank 1 of 2, backend gloo: all_reduce of rank + 1 gives 3"]
    assert "Warning" not in done.stderr, done.stderr  # the notebook shows both streams


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
def test_the_ring_schedule_reduces_then_gathers_every_chunk(n):
    states = C.ring_all_reduce_states(n)
    assert len(states) == 2 * (n - 1) + 1
    everyone = frozenset(range(n))
    # after the reduce-scatter phase rank r holds the complete chunk r ...
    assert all(states[n - 1][r][r] == everyone for r in range(n))
    # ... and before it no chunk is complete (for n > 1)
    if n > 1:
        assert all(len(states[n - 2][r][c]) < n for r in range(n) for c in range(n))
    # at the end every rank holds every chunk complete
    assert all(s == everyone for row in states[-1] for s in row)
    for step in range(n - 1):  # a permutation: each rank sends one chunk, each chunk once
        sends = [C.reduce_scatter_chunks(r, step, n)[0] for r in range(n)]
        assert sorted(sends) == list(range(n))
        gathers = [C.all_gather_chunks(r, step, n)[0] for r in range(n)]
        assert sorted(gathers) == list(range(n))


def test_the_cost_models():
    alpha, beta, nbytes = 5e-6, 1e10, 1e8
    for n in (2, 3, 8, 64):
        ring = C.ring_all_reduce_time(nbytes, n, alpha, beta)
        assert math.isclose(ring, 2 * (n - 1) * alpha + 2 * (n - 1) / n * nbytes / beta)
        assert math.isclose(C.naive_all_reduce_time(nbytes, n, alpha, beta),
                            2 * (n - 1) * (alpha + nbytes / beta))
        assert math.isclose(C.tree_all_reduce_time(nbytes, n, alpha, beta),
                            2 * math.ceil(math.log2(n)) * (alpha + nbytes / beta))
        # the bandwidth term of the ring approaches 2 n / beta, whatever the number of ranks
        assert C.ring_all_reduce_time(nbytes, n, 0.0, beta) < 2 * nbytes / beta
    assert C.ring_all_reduce_time(nbytes, 1, alpha, beta) == 0.0
    # the tree wins for tiny messages on many ranks, the ring for large ones
    assert C.tree_all_reduce_time(8, 64, alpha, beta) < C.ring_all_reduce_time(8, 64, alpha, beta)
    assert C.ring_all_reduce_time(1e9, 64, alpha, beta) < C.tree_all_reduce_time(1e9, 64, alpha,
                                                                                 beta)


def test_fit_alpha_beta_recovers_the_model_from_its_own_times():
    gen = torch.Generator().manual_seed(0)
    sizes = [2 ** k for k in range(10, 27)]
    for n, alpha, beta in ((2, 3e-5, 2e9), (4, 1e-4, 5e8), (8, 2e-6, 4e11)):
        exact = [C.ring_all_reduce_time(s, n, alpha, beta) for s in sizes]
        a, b = C.fit_alpha_beta(sizes, exact, n)
        assert math.isclose(a, alpha, rel_tol=1e-9) and math.isclose(b, beta, rel_tol=1e-9)
        noisy = torch.tensor(exact) * (1 + 0.05 * torch.randn(len(sizes), generator=gen,
                                                                dtype=torch.float64))
        a, b = C.fit_alpha_beta(sizes, noisy, n)
        assert 0.7 * alpha < a < 1.3 * alpha and 0.7 * beta < b < 1.3 * beta


def test_bus_bandwidth_follows_nccl_tests():
    n_bytes, seconds = 1e9, 0.01
    algbw = n_bytes / seconds
    assert math.isclose(C.bus_bandwidth(n_bytes, seconds, 8), algbw * 14 / 8)
    assert math.isclose(C.bus_bandwidth(n_bytes, seconds, 8, "all_gather"), algbw * 7 / 8)
    assert math.isclose(C.bus_bandwidth(n_bytes, seconds, 8, "reduce_scatter"), algbw * 7 / 8)
    assert C.bus_bandwidth(n_bytes, seconds, 8, "broadcast") == algbw
    assert C.bus_bandwidth(n_bytes, seconds, 1) == 0.0
    # the ring's bus bandwidth is the link bandwidth beta when latency is negligible
    for n in (2, 5, 16):
        t = C.ring_all_reduce_time(n_bytes, n, 0.0, 2.5e10)
        assert math.isclose(C.bus_bandwidth(n_bytes, t, n), 2.5e10)


def test_bad_inputs_raise_value_errors_that_name_the_fix():
    t = torch.zeros(6)
    with pytest.raises(ValueError, match="torch.Tensor"):
        C.ring_all_reduce([1.0, 2.0])
    with pytest.raises(ValueError, match="contiguous"):
        C.ring_all_reduce(torch.zeros(4, 4).t())
    with pytest.raises(ValueError, match="op must be one of"):
        C.ring_all_reduce(t, op="mean")
    with pytest.raises(ValueError, match="init_process_group"):
        C.ring_all_reduce(t)
    with pytest.raises(ValueError, match="init_process_group"):
        C.ring_all_gather(t)
    with pytest.raises(ValueError, match="op must be one of"):
        C.bus_bandwidth(1e6, 1e-3, 4, "allreduce")
    with pytest.raises(ValueError, match="seconds > 0"):
        C.bus_bandwidth(1e6, 0.0, 4)
    with pytest.raises(ValueError, match="world_size"):
        C.ring_all_reduce_time(1e6, 0, 1e-6, 1e9)
    with pytest.raises(ValueError, match="beta > 0"):
        C.naive_all_reduce_time(1e6, 4, 1e-6, 0.0)
    with pytest.raises(ValueError, match="n_bytes"):
        C.tree_all_reduce_time(-1, 4, 1e-6, 1e9)
    with pytest.raises(ValueError, match="two"):
        C.fit_alpha_beta([1.0], [1.0], 2)
    with pytest.raises(ValueError, match="positive"):
        C.fit_alpha_beta([1.0, 2.0], [1.0, 0.0], 2)
    with pytest.raises(ValueError, match="world_size"):
        C.ring_all_reduce_states(0)
