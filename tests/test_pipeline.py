"""dlbook.distributed.pipeline: the schedules, their simulation, and the pipelines on 2 and 4
processes against one process (float64, SGD, tight equality)."""

from __future__ import annotations

import functools

import pytest
import torch

from dlbook.distributed import pipeline as pp
from dlbook.distributed.launch import launch
from dlbook.gpt import GPT, GPTConfig, init_weights_

SIZES = [(p, m) for p in (1, 2, 3, 4, 6) for m in (1, 2, 3, 4, 5, 8, 13)]


# ------------------------------------------------------------------------------ one process

@pytest.mark.parametrize("make", [pp.gpipe_schedule, pp.one_f_one_b_schedule])
def test_schedules_run_every_action_once_and_never_deadlock(make):
    for p, m in SIZES:
        schedule = make(p, m)
        assert len(schedule) == p
        for actions in schedule:
            assert sorted(actions) == sorted([("F", i) for i in range(m)] +
                                             [("B", i) for i in range(m)])
        timeline = pp.simulate(schedule)
        assert len(timeline) == 2 * p * m


@pytest.mark.parametrize("make", [pp.gpipe_schedule, pp.one_f_one_b_schedule])
@pytest.mark.parametrize("times", [(1.0, 2.0), (1.0, 1.0), (0.3, 0.7)])
def test_simulated_bubble_is_the_formula(make, times):
    for p, m in SIZES:
        timeline = pp.simulate(make(p, m), *times)
        assert pp.measured_bubble(timeline) == pytest.approx(pp.bubble_fraction(p, m), abs=1e-12)
        span = max(e["end"] for e in timeline)
        assert span == pytest.approx((m + p - 1) * sum(times))


def test_one_f_one_b_holds_at_most_p_minus_s_micro_batches():
    for p, m in SIZES:
        gpipe, ofob = pp.gpipe_schedule(p, m), pp.one_f_one_b_schedule(p, m)
        for s in range(p):
            assert pp.peak_in_flight(gpipe[s]) == m
            assert pp.peak_in_flight(ofob[s]) == min(p - s, m)
    assert pp.one_f_one_b_schedule(2, 3) == [
        [("F", 0), ("F", 1), ("B", 0), ("F", 2), ("B", 1), ("B", 2)],
        [("F", 0), ("B", 0), ("F", 1), ("B", 1), ("F", 2), ("B", 2)]]


def test_simulate_finds_a_deadlock_and_a_malformed_schedule():
    bad = [[("F", 0), ("B", 0), ("F", 1), ("B", 1)], [("F", 0), ("F", 1), ("B", 0), ("B", 1)]]
    with pytest.raises(ValueError, match="deadlock"):
        pp.simulate(bad)
    with pytest.raises(ValueError, match="once"):
        pp.simulate([[("F", 0), ("F", 0), ("B", 0), ("B", 0)]])
    with pytest.raises(ValueError, match="before its forward"):
        pp.simulate([[("B", 0), ("F", 0)]])


def test_bubble_fraction_and_inputs():
    assert pp.bubble_fraction(4, 8) == pytest.approx(3 / 11)
    assert pp.bubble_fraction(1, 5) == 0.0
    for bad in [(0, 4), (4, 0), (2.0, 4), (True, 4)]:
        with pytest.raises(ValueError):
            pp.bubble_fraction(*bad)
    assert pp.stage_bounds(7, 3) == [(0, 3), (3, 5), (5, 7)]
    with pytest.raises(ValueError, match="at most 2 stages"):
        pp.stage_bounds(2, 3)


@pytest.mark.parametrize("n_stages", [1, 2, 3])
@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_stages_chained_are_the_model(n_stages, style):
    make = GPTConfig.gpt2 if style == "gpt2" else GPTConfig.llama
    config = make(vocab_size=40, context_length=12, d_model=16, n_layers=3, n_heads=2,
                  tie_embeddings=False)
    model = init_weights_(GPT(config).double(), seed=3)
    idx = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(1))
    x = idx
    stages = pp.split_gpt(model, n_stages)
    for stage in stages:
        x = stage(x)
    assert torch.equal(x, model(idx))
    ids = [id(p) for s in stages for p in s.parameters()]
    assert sorted(ids) == sorted(id(p) for p in model.parameters())  # each parameter once


def test_tied_embeddings_are_refused():
    model = GPT(GPTConfig.gpt2(vocab_size=40, context_length=8, d_model=16, n_layers=2,
                               n_heads=2))
    with pytest.raises(ValueError, match="tie_embeddings=False"):
        pp.split_gpt(model, 2)
    assert len(pp.split_gpt(model, 1)) == 1


# ------------------------------------------------------------------------------ processes

CONFIGS = {
    "gpt2": dict(vocab_size=37, context_length=8, d_model=16, n_layers=5, n_heads=2,
                 tie_embeddings=False),
    "llama": dict(vocab_size=29, context_length=8, d_model=16, n_layers=4, n_heads=4,
                  n_kv_heads=2, d_ff=24, norm="rmsnorm", mlp="swiglu", positions="rope",
                  bias=False, tie_embeddings=False),
}


def _batch(config: dict, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, config["context_length"])
    return (torch.randint(0, config["vocab_size"], shape, generator=g),
            torch.randint(0, config["vocab_size"], shape, generator=g))


def _experiments(world: int) -> list[tuple[str, dict, dict]]:
    """(worker, its arguments, the reference) for one launch on ``world`` processes."""
    runs = []
    for j, (name, config) in enumerate(CONFIGS.items()):
        if config["n_layers"] < world:
            continue
        n_micro = (2, 4)[j % 2] if world == 2 else (4, 8)[j % 2]
        idx, targets = _batch(config, 8, seed=10 * world + j)
        args = dict(config=config, seed=j, idx=idx, targets=targets, n_micro=n_micro,
                    lr=0.2, steps=2)
        ref = pp.reference_step(config, j, idx, targets, lr=0.2, steps=2)
        for worker in ("pipeline", "torch"):
            for schedule in ("gpipe", "1f1b"):
                runs.append((worker, dict(args, schedule=schedule), ref))
        unscaled = dict(args, schedule="1f1b", scale_loss=False, steps=1)
        runs.append(("pipeline", unscaled, pp.reference_step(config, j, idx, targets, steps=1)))
    return runs


def _gather(results: list[list[dict]], k: int, key: str) -> dict[str, torch.Tensor]:
    merged: dict[str, torch.Tensor] = {}
    for rank_results in results:
        part = rank_results[k][key]
        assert not set(part) & set(merged), "a parameter lives on two stages"
        merged.update(part)
    return merged


TIMED = ("gpipe", "1f1b")


@functools.cache
def _launched(world: int) -> tuple[list, list]:
    """One launch per world size (starting processes costs seconds): the experiments, and on
    2 processes also one timed run of each schedule. Returns (runs, results)."""
    runs = _experiments(world)
    calls = [(w, a) for w, a, _ in runs]
    if world == 2:
        config = CONFIGS["gpt2"]
        idx, targets = _batch(config, 4, seed=0)
        calls += [("pipeline", dict(config=config, seed=0, idx=idx, targets=targets, n_micro=4,
                                    schedule=s, steps=2, forward_seconds=0.03)) for s in TIMED]
    return runs, launch(pp.experiments_worker, world, calls, timeout=90)


@pytest.mark.parametrize("world", [2, 4])
def test_pipelines_equal_one_process(world):
    runs, results = _launched(world)
    checked, stage0_bytes = 0, {}
    for k, (worker, args, ref) in enumerate(runs):
        params, grads = _gather(results, k, "params"), _gather(results, k, "grads")
        assert params.keys() == ref["params"].keys()
        losses = results[-1][k]["losses"]
        if args.get("scale_loss", True):
            for name in params:
                torch.testing.assert_close(params[name], ref["params"][name], rtol=0, atol=1e-12)
                torch.testing.assert_close(grads[name], ref["grads"][name], rtol=0, atol=1e-12)
            assert losses == pytest.approx(ref["losses"], abs=1e-12)
        else:  # forgetting to divide by the number of micro-batches: n_micro times the gradient
            for name in grads:
                torch.testing.assert_close(grads[name], args["n_micro"] * ref["grads"][name],
                                           rtol=0, atol=1e-11)
        checked += 1
        if worker == "pipeline":
            peaks = [r[k]["peak"] for r in results]
            m = args["n_micro"]
            if args["schedule"] == "gpipe":
                assert peaks == [m] * world
            else:
                assert peaks == [min(world - s, m) for s in range(world)]
            bytes_held = [r[k]["peak_bytes"] for r in results]
            assert all(b > 0 for b in bytes_held)
            if args.get("scale_loss", True):
                stage0_bytes[args["seed"], args["schedule"], m] = bytes_held[0]
    assert checked == len(runs) >= 5
    for (seed, schedule, m), held in stage0_bytes.items():  # saved bytes follow the counts
        if schedule == "gpipe":
            ratio = held / stage0_bytes[seed, "1f1b", m]
            assert ratio == pytest.approx(m / min(world, m), rel=1e-12)


def test_timeline_shows_the_bubble():
    """With fixed 30/60 ms actions the measured bubble is near (p - 1) / (m + p - 1)."""
    runs, results = _launched(2)
    for k in range(len(runs), len(runs) + len(TIMED)):
        timeline = [e for r in results for e in r[k]["timeline"]]
        assert len(timeline) == 2 * 2 * 4
        assert abs(pp.measured_bubble(timeline) - pp.bubble_fraction(2, 4)) < 0.12
