"""dlbook.distributed.tensor: Megatron's column- and row-parallel layers, a split Transformer
block (with and without sequence parallelism) and PyTorch's DTensor version, each compared with
the same float64 block on one process (forward, backward, one SGD step), on 2 and 4 ranks;
the activation bytes each rank keeps against Korthikanti et al.'s formulas."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch import nn

from dlbook import calc
from dlbook.distributed import tensor as tp
from dlbook.distributed.launch import launch
from dlbook.gpt import Block, GPTConfig

TOL = 1e-12
DIFFS = ("output", "input_grad", "weight_grads", "updated_weights")

GELU = dict(vocab_size=8, context_length=16, d_model=16, n_heads=4, n_layers=1)
LLAMA = dict(vocab_size=8, context_length=16, d_model=32, n_heads=4, n_kv_heads=2, n_layers=1,
             norm="rmsnorm", mlp="swiglu", positions="rope", bias=False, d_ff=48)
GELU_4 = dict(vocab_size=8, context_length=16, d_model=24, n_heads=4, n_layers=1, d_ff=40)
ENCODER = dict(vocab_size=8, context_length=16, d_model=32, n_heads=8, n_kv_heads=4,
               n_layers=1, causal=False, d_ff=64)


# ---------------------------------------------------------- workers only the tests need

def _layers_and_errors() -> dict:
    """Each rank: the two layers against nn.Linear (x replicated, float64), the f/g operators'
    gradients, and the ValueErrors a wrong split raises."""
    rank, t = dist.get_rank(), dist.get_world_size()
    g = torch.Generator().manual_seed(3)
    out: dict = {}
    full, full2 = nn.Linear(6, 8, dtype=torch.float64), nn.Linear(8, 6, dtype=torch.float64)
    with torch.no_grad():                       # the same layers on every rank
        for p in [*full.parameters(), *full2.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(3, 5, 6, generator=g, dtype=torch.float64)
    for gather in (False, True):
        col = tp.ColumnParallelLinear.from_linear(full, gather_output=gather)
        y = col(x)
        want = full(x) if gather else full(x).chunk(t, -1)[rank]
        out[f"column gather={gather}"] = float((y - want).abs().max().detach())
    h = torch.randn(3, 5, 8, generator=g, dtype=torch.float64)
    for parallel in (True, False):
        row = tp.RowParallelLinear.from_linear(full2, input_is_parallel=parallel)
        y = row(h.chunk(t, -1)[rank] if parallel else h)
        out[f"row input_is_parallel={parallel}"] = float((y - full2(h)).abs().max().detach())
    # f then g: forward the identity of a sum, backward each rank's gradient summed
    a = torch.full((2,), float(rank + 1), dtype=torch.float64, requires_grad=True)
    tp.copy_to_parallel_region(a).mul(rank + 1).sum().backward()
    out["f grad"] = a.grad.tolist()                           # sum over r of (r + 1)
    b = torch.full((2,), float(rank + 1), dtype=torch.float64, requires_grad=True)
    s = tp.reduce_from_parallel_region(b)
    s.sum().backward()
    out["g value"], out["g grad"] = s.tolist(), b.grad.tolist()
    errors = []
    for make in (lambda: tp.ColumnParallelLinear(4, 2 * t + 1),
                 lambda: tp.RowParallelLinear(2 * t + 1, 4),
                 lambda: tp.RowParallelLinear(2 * t, 4, input_is_parallel=False,
                                              sequence_parallel=True),
                 lambda: tp.TensorParallelAttention(8 * t, 2 * t + 1),
                 lambda: tp.TensorParallelAttention(8 * t, 2 * t, n_kv_heads=1),
                 lambda: tp.TensorParallelMLP(8, 8, kind="relu"),
                 lambda: tp.TensorParallelBlock.from_block(
                     Block(GPTConfig(**dict(GELU, dropout=0.1)))),
                 lambda: tp.scatter_to_parallel_region(torch.zeros(2, 3)),
                 lambda: tp.reduce_scatter_to_sequence_parallel_region(torch.zeros(2, 3))):
        try:
            make()
            errors.append("no error")
        except ValueError as exc:
            errors.append(str(exc))
    out["errors"] = errors
    return out


DTENSOR_CALLS = [("dtensor", dict(config=GELU, vocab_size=12, seed=6)),
                 ("dtensor", dict(config=GELU, vocab_size=12, seed=6, sequence_parallel=True)),
                 ("dtensor", dict(config=LLAMA, vocab_size=10, batch=1, seq=6, seed=7,
                                  sequence_parallel=True))]


def _two_ranks() -> dict:
    return dict(
        layers=_layers_and_errors(),
        dtensor=tp.run_many(DTENSOR_CALLS),
        runs=tp.run_many([
            ("block", dict(config=GELU, batch=2, seq=8, seed=1)),
            ("block", dict(config=GELU, batch=2, seq=8, seed=1, sequence_parallel=True)),
            ("block", dict(config=LLAMA, batch=3, seq=6, seed=2)),
            ("block", dict(config=LLAMA, batch=3, seq=6, seed=2, sequence_parallel=True)),
            ("block", dict(config=ENCODER, batch=1, seq=10, seed=5, sequence_parallel=True)),
        ]),
        memory=[tp.measure_activation_bytes(MEMORY_SHAPES, sequence_parallel=sp)
                for sp in (False, True)])


MEMORY_SHAPES = [dict(batch=2, seq=16, d_model=32, n_heads=4),
                 dict(batch=1, seq=8, d_model=48, n_heads=8)]


def _four_ranks() -> dict:
    return dict(
        runs=tp.run_many([
            ("block", dict(config=GELU_4, batch=2, seq=8, seed=3)),
            ("block", dict(config=GELU_4, batch=2, seq=8, seed=3, sequence_parallel=True)),
            ("block", dict(config=dict(LLAMA, n_heads=8, n_kv_heads=4), batch=1, seq=12, seed=4,
                           sequence_parallel=True, lr=0.5)),
            # two groups of two ranks, 0-1 and 2-3, inside the world of four
            ("block", dict(config=LLAMA, batch=2, seq=6, seed=8, sequence_parallel=True,
                           tp_size=2)),
        ]),
        memory=[tp.measure_activation_bytes(MEMORY_SHAPES, sequence_parallel=sp)
                for sp in (False, True)],
        memory_groups=[tp.measure_activation_bytes(MEMORY_SHAPES, sequence_parallel=sp,
                                                   tp_size=2) for sp in (False, True)],
        dtensor=tp.run_many([("dtensor", dict(config=dict(GELU_4, d_ff=48), vocab_size=8,
                                              seed=9, sequence_parallel=True))]))


def _expected_bytes(shape: dict, t: int, sp: bool) -> float:
    """Korthikanti's terms in float64 without dropout, plus what autograd keeps besides:
    each norm's mean and 1/std per position and the s × s boolean causal mask."""
    s, b, h, a = shape["seq"], shape["batch"], shape["d_model"], shape["n_heads"]
    formula = tp.activation_bytes_per_rank(s, b, h, a, t, sequence_parallel=sp,
                                           bytes_per_value=8, dropout=False)
    return formula + 2 * 2 * s * b * 8 / (t if sp else 1) + s * s


def _check_runs(runs: list[dict]) -> None:
    for run in runs:
        for key in DIFFS:
            assert run[key] < TOL, (key, run)
        assert run["local_parameters"] < run["parameters"]


def _check_logs(run: dict, numel: int, sp: bool) -> None:
    if sp:
        assert run["forward"] == [("all-gather", numel), ("reduce-scatter", numel)] * 2
        assert run["backward"] == [("all-gather", numel), ("all-gather", numel),
                                   ("reduce-scatter", numel)] * 2
    else:  # one all-reduce each way per sub-layer
        assert run["forward"] == [("all-reduce", numel)] * 2
        assert run["backward"] == [("all-reduce", numel)] * 2


def _check_memory(memory: list[list[dict]], t: int) -> None:
    for sp, rows in zip((False, True), memory):
        for row in rows:
            shape = {k: row[k] for k in ("batch", "seq", "d_model", "n_heads")}
            assert row["tp_size"] == t
            assert row["per_rank"] == _expected_bytes(shape, t, sp), (sp, row)
            assert row["single"] == _expected_bytes(shape, 1, False), row


# ----------------------------------------------------------------------------- the tests

def test_two_ranks_equal_one_device():
    results = launch(_two_ranks, 2, timeout=150)
    for rank, res in enumerate(results):
        layers = res["layers"]
        for key, diff in layers.items():
            if key.startswith(("column", "row")):
                assert diff < TOL, (rank, key, diff)
        assert layers["f grad"] == [3.0, 3.0]              # 1 + 2 from the two ranks
        assert layers["g value"] == [3.0, 3.0] and layers["g grad"] == [1.0, 1.0]
        assert "no error" not in layers["errors"], layers["errors"]
        assert any("divisible" in e for e in layers["errors"])
        _check_runs(res["runs"])
        _check_memory(res["memory"], 2)
        _check_dtensor(res["dtensor"])  # parallelize_module and loss_parallel
    runs = results[0]["runs"]
    _check_logs(runs[0], 2 * 8 * 16, sp=False)
    _check_logs(runs[1], 2 * 8 * 16, sp=True)
    _check_logs(runs[2], 3 * 6 * 32, sp=False)
    # every rank computes the same whole-model numbers
    assert results[0]["runs"][0]["output"] == pytest.approx(results[1]["runs"][0]["output"],
                                                            abs=TOL)


def test_four_ranks_equal_one_device():
    results = launch(_four_ranks, 4, timeout=180)
    for res in results:
        _check_runs(res["runs"])
        _check_memory(res["memory"], 4)
        _check_memory(res["memory_groups"], 2)
        assert [r["tp_size"] for r in res["runs"]] == [4, 4, 4, 2]
        _check_dtensor(res["dtensor"])
    _check_logs(results[0]["runs"][1], 2 * 8 * 24, sp=True)
    _check_logs(results[3]["runs"][3], 2 * 6 * 32, sp=True)
    # a quarter of the split matrices on each rank, the norms and row biases whole
    gelu = results[0]["runs"][0]
    whole = 2 * (24 + 24) + 24 + 24            # two norms, o_proj's and proj's biases
    assert gelu["local_parameters"] == (gelu["parameters"] - whole) // 4 + whole


def _check_dtensor(runs: list[dict]) -> None:
    for run in runs:
        assert run["logits_sharded"]
        for key in ("loss", "input_grad", "weight_grads", "updated_weights"):
            assert run[key] < TOL, (key, run)
        assert run["sharded_parameters"] >= 5


# --------------------------------------------------------------- single-process checks

@pytest.mark.parametrize("s, b, h, a, t", [(2048, 4, 4096, 32, 8), (1024, 1, 768, 12, 2),
                                           (4096, 2, 12288, 96, 8), (512, 3, 256, 4, 1)])
def test_formulas_are_korthikantis(s, b, h, a, t):
    """With 16-bit values and dropout: TP s·b·h·(10 + 24/t + 5as/(ht)), TP+SP
    s·b·h/t·(34 + 5as/h); t = 1 is the single-device formula of dlbook.calc."""
    assert tp.activation_bytes_per_rank(s, b, h, a, t) == pytest.approx(
        s * b * h * (10 + 24 / t + 5 * a * s / (h * t)), rel=1e-12)
    assert tp.activation_bytes_per_rank(s, b, h, a, t, sequence_parallel=True) == \
        pytest.approx(s * b * h / t * (34 + 5 * a * s / h), rel=1e-12)
    assert tp.activation_bytes_per_rank(s, b, h, a, 1) == calc.activation_bytes_per_layer(
        s, b, h, a)


def test_inputs_are_checked_without_a_process_group():
    with pytest.raises(ValueError, match="give at least one"):
        tp.column_parallel(torch.zeros(1, 2, 3), [])
    with pytest.raises(ValueError, match="tp must be"):
        tp.activation_bytes_per_rank(16, 1, 8, 2, 0)
    if not dist.is_initialized():
        with pytest.raises(ValueError, match="process group"):
            tp.ColumnParallelLinear(4, 4)
    with pytest.raises(ValueError, match="unknown experiment"):
        tp.run_many([("nothing", {})])
