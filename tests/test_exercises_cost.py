"""The exercise checks of section 7.4 (``dlbook.exercises.cost``): see exercise_harness."""

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook import calc, cost, dedup
from dlbook.exercises import cost as ex


def _co2(gpu_hours, watts, pue, grid):  # the book's solution
    return gpu_hours * watts / 1000 * pue * grid / 1e6


def _co2_library(gpu_hours, watts, pue, grid):  # right: with dlbook.cost
    return cost.co2_kg(cost.energy_kwh(gpu_hours, watts, pue), grid) / 1000


def _co2_no_pue(gpu_hours, watts, pue, grid):  # forgets the data centre's overhead
    return gpu_hours * watts / 1000 * grid / 1e6


def _co2_kg(gpu_hours, watts, pue, grid):  # returns kilograms
    return gpu_hours * watts / 1000 * pue * grid / 1e3


def _co2_watts(gpu_hours, watts, pue, grid):  # treats watt-hours as kWh
    return gpu_hours * watts * pue * grid / 1e6


def _lsh(s, bands, rows):
    return 1 - (1 - s ** rows) ** bands


def _lsh_library(s, bands, rows):  # right: the module's vectorised version
    return float(dedup.lsh_probability(s, bands, rows))


def _lsh_swapped(s, bands, rows):  # rows and bands swapped
    return 1 - (1 - s ** bands) ** rows


def _lsh_all(s, bands, rows):  # needs every band to match
    return s ** (bands * rows)


def _lsh_one_band(s, bands, rows):  # forgets the other bands
    return s ** rows


CASES = [
    Case(ex.gpt3_flops, solution=6 * 175e9 * 300e9,
         right=[3.15e23, calc.training_flops(175e9, 300e9), torch.tensor(3.15e23), 3.1500e23],
         wrong=[6 * 17.5e9 * 300e9, 2 * 175e9 * 300e9, 3.14e22, 175e9 * 300e9]),
    Case(ex.a100_gpu_hours, solution=6 * 70e9 * 1.4e12 / (312e12 * 0.4) / 3600,
         right=[1.31e6, cost.gpu_hours(calc.training_flops(70e9, 1.4e12), "A100", 0.4),
                np.float64(1_308_761)],
         wrong=[6 * 70e9 * 1.4e12 / 312e12 / 3600, 6 * 70e9 * 1.4e12 / (312e12 * 0.4),
                6 * 70e9 * 1.4e12 / (312e12 * 0.4) / 60]),
    Case(ex.training_co2, solution=_co2, takes_function=True, right=[_co2_library],
         wrong=[_co2_no_pue, _co2_kg, _co2_watts]),
    Case(ex.lsh_probability, solution=_lsh, takes_function=True, right=[_lsh_library],
         wrong=[_lsh_swapped, _lsh_all, _lsh_one_band]),
    Case(ex.chinchilla_tokens, solution=20 * math.sqrt(3.15e23 / 120),
         right=[1.02e12, calc.chinchilla_optimal(3.15e23)[1], 1.025e12],
         wrong=[math.sqrt(3.15e23 / 120), 20 * 175e9, 300e9, 20 * math.sqrt(3.15e23 / 6)]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)
