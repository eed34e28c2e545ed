"""python -m dlbook.bench runs on the CPU and measures what it says (tiny sizes)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dlbook import bench


def test_bench_runs_on_the_cpu_and_fills_every_table(capsys):
    results = bench.main(["--device", "cpu", "--quick", "--no-compile"])
    out = capsys.readouterr().out
    assert "MFU of a training step" in out and "Causal attention" in out
    mfu = results["mfu"]
    assert {r["mode"] for r in mfu} == {"fp32", "bf16 autocast"}
    assert all(r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1.5 for r in mfu)
    # the saved activations of a block agree with the formula within 5 %
    assert all(abs(r["measured"] / r["predicted"] - 1) < 0.05 for r in results["memory"])
    kernels = {r["kernel"] for r in results["attention"]}
    assert {"PyTorch math kernel", "dlbook.flash (Python tiles)"} <= kernels
    # what each kernel keeps for backward: the math kernel grows like T², the tiled one like T
    by = {(r["kernel"], r["T"]): r["saved"] for r in results["attention"]}
    assert by[("PyTorch math kernel", 512)] / by[("PyTorch math kernel", 256)] > 3
    assert by[("dlbook.flash (Python tiles)", 512)] / by[("dlbook.flash (Python tiles)", 256)] < 2.5


def test_bench_is_a_module_with_help():
    done = subprocess.run([sys.executable, "-m", "dlbook.bench", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "--quick" in done.stdout


def test_peak_flops_on_cpu_is_measured():
    import torch
    peak, source = bench.peak_flops(torch.device("cpu"))
    assert peak > 1e8 and "measured" in source


def test_bad_device_is_a_clear_error():
    with pytest.raises(ValueError):
        bench.main(["--device", "tpu"])
