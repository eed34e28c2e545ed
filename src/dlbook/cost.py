"""What a training run costs: GPU-hours, energy, CO₂ and money, from its FLOPs.

Section 7.4 chains four multiplications, each with one stated assumption:

* GPU-hours = C / (peak FLOP/s · MFU) / 3600, with the peaks of :data:`dlbook.calc.GPUS`;
* energy (kWh) = GPU-hours · watts per GPU / 1000 · PUE (the data centre's overhead);
* CO₂e (kg) = energy · grid intensity (g CO₂e per kWh) / 1000;
* dollars = GPU-hours · price per GPU-hour.

The GPU powers below are the vendors' maximum board powers (TDP); a GPU in a real run draws
less on average, so :data:`PATTERSON_GPT3` (a measured average) is the number to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlbook import calc

__all__ = ["TDP_WATTS", "PATTERSON_GPT3", "gpu_hours", "energy_kwh", "co2_kg", "dollar_cost",
           "RunCost", "run_cost"]

#: Maximum board power (TDP) in watts, SXM versions, from NVIDIA's V100, A100 and H100
#: datasheets (the same cards as :data:`dlbook.calc.GPUS`).
TDP_WATTS: dict[str, float] = {"V100": 300.0, "A100": 400.0, "H100": 700.0}

#: GPT-3's training as reported by Patterson et al. (2021), table 4: 3.14e23 FLOPs on
#: 10,000 V100s for 14.8 days (3,552,000 GPU-hours), 330 W average per GPU, PUE 1.10,
#: 429 g CO₂e per kWh, 1,287 MWh and 552 t CO₂e.
PATTERSON_GPT3: dict[str, float] = {
    "flops": 3.14e23, "gpu_hours": 3.552e6, "n_gpus": 10_000, "days": 14.8, "watts": 330.0,
    "pue": 1.10, "grid_g_per_kwh": 429.0, "mwh": 1287.0, "tco2e": 552.0,
}


def _positive(name: str, value: float, fix: str = "") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number{fix}, got {value!r}")


def _peak(gpu: str | calc.GPU) -> float:
    if isinstance(gpu, calc.GPU):
        return gpu.bf16_flops
    if gpu not in calc.GPUS:
        raise ValueError(f"unknown gpu {gpu!r}: use one of {sorted(calc.GPUS)} or pass a "
                         "dlbook.calc.GPU")
    return calc.GPUS[gpu].bf16_flops


def gpu_hours(flops: float, gpu: str | calc.GPU, mfu: float) -> float:
    """GPU-hours to do ``flops`` on ``gpu`` (a key of :data:`dlbook.calc.GPUS` or a
    :class:`dlbook.calc.GPU`) running at model FLOPs utilisation ``mfu``."""
    _positive("flops", flops)
    if isinstance(mfu, bool) or not isinstance(mfu, (int, float)) or not 0 < mfu <= 1:
        raise ValueError(f"mfu is a fraction of the peak in (0, 1], e.g. 0.4, got {mfu!r}")
    return calc.training_time(flops, _peak(gpu), mfu) / 3600.0


def energy_kwh(gpu_hours: float, watts: float, pue: float = 1.0) -> float:
    """Energy drawn from the grid: GPU-hours × average watts per GPU, times the power usage
    effectiveness ``pue`` (total facility power over IT power, ≥ 1)."""
    _positive("gpu_hours", gpu_hours)
    _positive("watts", watts, " (watts per GPU, e.g. 400 for an A100)")
    if isinstance(pue, bool) or not isinstance(pue, (int, float)) or pue < 1:
        raise ValueError(f"pue is facility power over IT power, at least 1 (e.g. 1.1), "
                         f"got {pue!r}")
    return gpu_hours * watts / 1000.0 * pue


def co2_kg(kwh: float, grid_g_per_kwh: float) -> float:
    """Kilograms of CO₂-equivalent for ``kwh`` at a grid intensity in g CO₂e per kWh."""
    _positive("kwh", kwh)
    if isinstance(grid_g_per_kwh, bool) or not isinstance(grid_g_per_kwh, (int, float)) \
            or grid_g_per_kwh < 0:
        raise ValueError("grid_g_per_kwh must be a number of grams per kWh, at least 0, got "
                         f"{grid_g_per_kwh!r}")
    return kwh * grid_g_per_kwh / 1000.0


def dollar_cost(gpu_hours: float, price_per_hour: float) -> float:
    """Rental cost: GPU-hours × a price per GPU-hour (an assumption: prices change monthly)."""
    _positive("gpu_hours", gpu_hours)
    _positive("price_per_hour", price_per_hour, " (dollars per GPU-hour)")
    return gpu_hours * price_per_hour


@dataclass(frozen=True)
class RunCost:
    """The cost of one run on one kind of GPU, under the assumptions it carries."""
    gpu: str
    mfu: float
    gpu_hours: float
    kwh: float
    co2_kg: float
    dollars: float

    @property
    def gpu_years(self) -> float:
        return self.gpu_hours / (24 * 365)


def run_cost(flops: float, gpu: str, mfu: float, *, pue: float, grid_g_per_kwh: float,
             price_per_hour: float, watts: float | None = None) -> RunCost:
    """All four numbers for ``flops`` on ``gpu``; ``watts`` defaults to the GPU's TDP."""
    if watts is None:
        if gpu not in TDP_WATTS:
            raise ValueError(f"no TDP on file for {gpu!r}: pass watts= or use one of "
                             f"{sorted(TDP_WATTS)}")
        watts = TDP_WATTS[gpu]
    hours = gpu_hours(flops, gpu, mfu)
    kwh = energy_kwh(hours, watts, pue)
    return RunCost(gpu, mfu, hours, kwh, co2_kg(kwh, grid_g_per_kwh),
                   dollar_cost(hours, price_per_hour))
