"""dlbook.cost: GPU-hours, energy, CO₂ and dollars against the formulas written out, on random
configurations, and against Patterson et al.'s published GPT-3 numbers."""

import math

import numpy as np
import pytest

from dlbook import calc, cost


@pytest.mark.parametrize("seed", range(5))
def test_chain_matches_formulas(seed):
    rng = np.random.default_rng(seed)
    flops = float(10 ** rng.uniform(18, 25))
    gpu = str(rng.choice(sorted(cost.TDP_WATTS)))
    mfu, pue = float(rng.uniform(0.1, 0.7)), float(rng.uniform(1.0, 1.6))
    grid, price = float(rng.uniform(0, 800)), float(rng.uniform(0.5, 5))
    hours = flops / (calc.GPUS[gpu].bf16_flops * mfu) / 3600
    assert math.isclose(cost.gpu_hours(flops, gpu, mfu), hours, rel_tol=1e-12)
    assert math.isclose(cost.gpu_hours(flops, calc.GPUS[gpu], mfu), hours, rel_tol=1e-12)
    r = cost.run_cost(flops, gpu, mfu, pue=pue, grid_g_per_kwh=grid, price_per_hour=price)
    kwh = hours * cost.TDP_WATTS[gpu] * pue / 1000
    assert math.isclose(r.kwh, kwh, rel_tol=1e-12)
    assert math.isclose(r.co2_kg, kwh * grid / 1000, rel_tol=1e-12, abs_tol=1e-12)
    assert math.isclose(r.dollars, hours * price, rel_tol=1e-12)
    assert math.isclose(r.gpu_years, hours / 8760, rel_tol=1e-12)


def test_patterson_gpt3_is_consistent():
    p = cost.PATTERSON_GPT3
    assert math.isclose(calc.training_flops(175e9, 300e9), 3.15e23, rel_tol=1e-12)
    assert math.isclose(p["n_gpus"] * p["days"] * 24, p["gpu_hours"], rel_tol=0.001)
    kwh = cost.energy_kwh(p["gpu_hours"], p["watts"], p["pue"])
    assert math.isclose(kwh / 1000, p["mwh"], rel_tol=0.005)
    assert math.isclose(cost.co2_kg(p["mwh"] * 1000, p["grid_g_per_kwh"]) / 1000, p["tco2e"],
                        rel_tol=0.002)
    # the achieved throughput per V100 implied by the table, about 25 TFLOP/s (20 % MFU)
    per_gpu = p["flops"] / (p["gpu_hours"] * 3600)
    assert 0.15 < per_gpu / calc.GPUS["V100"].bf16_flops < 0.25


@pytest.mark.parametrize("call", [
    lambda: cost.gpu_hours(-1.0, "A100", 0.4),
    lambda: cost.gpu_hours(1e20, "TPU", 0.4),
    lambda: cost.gpu_hours(1e20, "A100", 40),
    lambda: cost.gpu_hours(1e20, "A100", 0),
    lambda: cost.energy_kwh(10, 400, 0.9),
    lambda: cost.energy_kwh(10, 0, 1.1),
    lambda: cost.co2_kg(10, -1),
    lambda: cost.dollar_cost(10, 0),
    lambda: cost.run_cost(1e20, "H200", 0.4, pue=1.1, grid_g_per_kwh=400, price_per_hour=2),
])
def test_bad_inputs_raise(call):
    with pytest.raises(ValueError):
        call()


def test_zero_carbon_grid():
    assert cost.co2_kg(100.0, 0) == 0.0
