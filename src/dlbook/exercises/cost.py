"""Checks for the exercises of section 7.4, What it costs: compute, energy and data.

Numbers need three significant figures; functions are compared with the formulas of the
section within a relative 1e-9 on several inputs.
"""

from __future__ import annotations

from typing import Any

from dlbook import check


def gpt3_flops(answer: Any) -> check.Result:
    """Training compute of GPT-3, 6·N·D with N = 175 billion parameters and D = 300 billion
    tokens: 3.15e23 FLOPs."""
    return check.number(answer, 6 * 175e9 * 300e9, name="GPT-3's training FLOPs", digits=3,
                        hint="Training costs 6 FLOPs per parameter and token (2 forward, 4 "
                             "backward). Count the zeros: 175 billion is 1.75e11, 300 billion "
                             "is 3e11.")


def a100_gpu_hours(answer: Any) -> check.Result:
    """GPU-hours for a 70-billion-parameter model on 1.4 trillion tokens on A100s (312 TFLOP/s
    bf16 peak) at 40 % MFU: 6·70e9·1.4e12 / (312e12 · 0.4) / 3600 ≈ 1.31 million."""
    return check.number(answer, 6 * 70e9 * 1.4e12 / (312e12 * 0.4) / 3600,
                        name="A100 GPU-hours", digits=3,
                        hint="First the FLOPs (6·N·D), then the FLOPs one GPU does per second "
                             "at that MFU, then divide and turn seconds into hours.")


def _co2_reference(gpu_hours: float, watts: float, pue: float, grid: float) -> float:
    return gpu_hours * watts / 1000 * pue * grid / 1e6


def training_co2(fn: Any) -> check.Result:
    """``fn(gpu_hours, watts, pue, grid_g_per_kwh)`` -> tonnes of CO₂e."""
    inputs = [(3.552e6, 330.0, 1.1, 429.0), (1000.0, 400.0, 1.2, 300.0),
              (1.31e6, 700.0, 1.0, 50.0), (2.0, 45.0, 1.5, 800.0)]
    return check.function(fn, _co2_reference, inputs, name="training_co2", rtol=1e-9,
                          atol=1e-12,
                          hint="GPU-hours × watts is watt-hours: divide by 1000 for kWh, "
                               "multiply by the PUE for the facility's share, by the grid's "
                               "grams per kWh, and turn grams into tonnes.")


def _lsh_reference(s: float, bands: int, rows: int) -> float:
    return 1 - (1 - s ** rows) ** bands


def lsh_probability(fn: Any) -> check.Result:
    """``fn(s, bands, rows)``: probability that two documents of Jaccard similarity s become a
    candidate pair under LSH banding."""
    inputs = [(s, b, r) for s in (0.0, 0.2, 0.5, 0.8, 1.0) for b, r in ((20, 5), (32, 4), (1, 1),
                                                                       (4, 8))]
    return check.function(fn, _lsh_reference, inputs, name="lsh_probability", rtol=1e-9,
                          atol=1e-12,
                          hint="One band matches when all its rows agree. The pair is a "
                               "candidate unless every band fails to match; the bands are "
                               "independent.")


def chinchilla_tokens(answer: Any) -> check.Result:
    """Compute-optimal tokens for GPT-3's budget C = 3.15e23 FLOPs with D = 20·N and
    C = 6·N·D: N = √(C/120) ≈ 5.12e10, D ≈ 1.02e12."""
    return check.number(answer, 20 * (6 * 175e9 * 300e9 / 120) ** 0.5,
                        name="compute-optimal tokens", digits=3,
                        hint="Substitute D = 20·N into C = 6·N·D and solve for N first; the "
                             "answer is the number of tokens, not of parameters.")
