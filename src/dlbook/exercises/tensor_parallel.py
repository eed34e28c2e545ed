"""Checks for the exercises of section 6.4, Tensor and sequence parallelism.

The split MLP is a function of plain tensors that simulates the ranks as lists of shards; it
is called on float64 inputs for 1, 2 and 4 simulated ranks and must equal the unsplit MLP
within 1e-10. Byte counts follow from the ring volumes of section 6.1 and Korthikanti et al.'s
formulas and must be right to three significant figures. The placement of the all-reduce is a
choice among four; the split dimensions are a dict naming 0 or 1 for each of six layers.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from dlbook import check

F64 = torch.float64


def _mlp(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.gelu(x @ a, approximate="tanh") @ b


def _mlp_cases() -> list[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]]:
    g = torch.Generator().manual_seed(64)
    cases = []
    for t, (n, h, f) in ((1, (3, 4, 8)), (2, (5, 6, 8)), (4, (2, 8, 16)), (2, (4, 3, 12))):
        x = torch.randn(n, h, generator=g, dtype=F64)
        a = torch.randn(h, f, generator=g, dtype=F64)
        b = torch.randn(f, h, generator=g, dtype=F64)
        cases.append((x, list(a.chunk(t, dim=1)), list(b.chunk(t, dim=0))))
    return cases


def megatron_mlp(fn: Any) -> check.Result:
    """``fn(x, a_shards, b_shards)``: GeLU(x A) B computed rank by rank, with A split by
    columns (``a_shards[r]`` is (h, f/t)) and B by rows (``b_shards[r]`` is (f/t, h)); each
    simulated rank applies GeLU (tanh form) to its own slice, and the partial products are
    summed (the all-reduce). Checked against the unsplit MLP for t = 1, 2, 4 within 1e-10."""
    hint = ("Rank r can finish GeLU(x A_r) on its own, because GeLU acts on each column "
            "separately. Its product with B_r is a full-size (n, h) partial result; the "
            "all-reduce adds the t partial results.")

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for i, (x, a_shards, b_shards) in enumerate(_mlp_cases()):
            want = _mlp(x, torch.cat(a_shards, 1), torch.cat(b_shards, 0))
            got = f(x.clone(), [s.clone() for s in a_shards], [s.clone() for s in b_shards])
            if got is None:
                return "returned None: did you forget the `return` statement?"
            got = torch.as_tensor(got, dtype=F64)
            if tuple(got.shape) != tuple(want.shape):
                return (f"returned shape {tuple(got.shape)} for {len(a_shards)} ranks; "
                        f"expected {tuple(want.shape)}, the shape of x.")
            if not torch.allclose(got, want, rtol=1e-10, atol=1e-10):
                return f"gives a wrong value for {len(a_shards)} simulated rank(s) (case {i})."
        return None

    return check.condition(fn, test, name="split MLP", hint=hint)


def tp_bytes_per_layer(answer: Any) -> check.Result:
    """Bytes each of t = 8 GPUs sends for one Transformer layer's forward and backward pass
    under tensor parallelism (no sequence parallelism), batch 8, sequence 2048, h = 8192,
    bf16: four ring all-reduces of b·s·h·2 bytes, each sending 2(t - 1)/t of it:
    4 · 2·7/8 · 2.68e8 ≈ 1.88e9."""
    b, s, h, t = 8, 2048, 8192, 8
    expected = 4 * 2 * (t - 1) / t * b * s * h * 2
    return check.number(answer, expected, name="bytes sent per GPU per layer", digits=3,
                        hint="Count the all-reduces: one after the attention and one after the "
                             "MLP in the forward pass, the same two in the backward pass. Each "
                             "is of the activations, b·s·h values of 2 bytes, and a ring "
                             "all-reduce sends 2(t - 1)/t of the tensor's bytes per GPU.")


def sp_activation_bytes(answer: Any) -> check.Result:
    """Korthikanti et al.'s activation bytes per layer and GPU with tensor and sequence
    parallelism, s = 4096, b = 2, h = 8192, a = 64, t = 4:
    s·b·h/t·(34 + 5·a·s/h) = 16,777,216 · 194 = 3,254,779,904."""
    s, b, h, a, t = 4096, 2, 8192, 64, 4
    return check.number(answer, s * b * h / t * (34 + 5 * a * s / h),
                        name="activation bytes per GPU and layer", digits=3,
                        hint="With sequence parallelism every term is divided by t, the 34 as "
                             "well as the attention term 5·a·s/h; compute 5·a·s/h first.")


_PLACES = ("A", "B", "C", "D")


def allreduce_placement(answer: Any) -> check.Result:
    """Where Megatron's MLP Z = GeLU(X A) B, A split by columns and B by rows, communicates in
    the forward pass: B, one all-reduce of the partial products X·A_r·B_r -> Z."""
    a = answer.strip().upper() if isinstance(answer, str) else answer
    return check.choice(a, "B", _PLACES, name="place of the all-reduce",
                        hint="Ask what rank r holds after each step. After X·A_r it has whole "
                             "columns of X·A, so GeLU needs nothing from the others; after "
                             "multiplying by its rows B_r it has a partial sum of every entry "
                             "of Z.")


_LAYERS = {"q_proj": 0, "k_proj": 0, "v_proj": 0, "o_proj": 1, "fc": 0, "proj": 1}


def split_dims(answer: Any) -> check.Result:
    """The dimension of each ``nn.Linear`` weight (shape (out_features, in_features)) that
    Megatron splits in a GPT-2 block: the output dimension 0 for the column-parallel q, k, v
    and fc, the input dimension 1 for the row-parallel o_proj and proj."""
    hint = ("nn.Linear stores its weight as (out_features, in_features). A column-parallel "
            "layer gives each rank some of the outputs (its heads, its hidden units); a "
            "row-parallel one takes some of the inputs, the ones the rank before produced.")

    def test(d: Any) -> str | None:
        if not isinstance(d, dict):
            return f"expected a dict from layer name to 0 or 1, got {type(d).__name__}."
        missing = sorted(set(_LAYERS) - set(d))
        if missing:
            return f"give a dimension for every layer; missing: {missing}."
        for name, dim in d.items():
            if name not in _LAYERS:
                return f"{name!r} is not one of the layers {sorted(_LAYERS)}."
            if isinstance(dim, bool) or dim not in (0, 1, -1, -2):
                return f"the dimension of {name} should be 0 or 1, got {dim!r}."
        wrong = sorted(n for n in _LAYERS if int(d[n]) % 2 != _LAYERS[n])
        if wrong:
            return f"{len(wrong)} of the 6 layers are split along the wrong dimension."
        return None

    return check.condition(answer, test, name="split dimensions", hint=hint)
