"""Checks for the exercises of section 6.3, Sharding: ZeRO and FSDP.

Bytes, parameter counts and communication volumes need three significant figures; the simulated
reduce-scatter is called on float64 tensors from 2, 3 and 4 ranks and must give every rank its
piece of the mean within 1e-12.
"""

from __future__ import annotations

from typing import Any

import torch

from dlbook import check

F64 = torch.float64


def zero2_bytes(answer: Any) -> check.Result:
    """Bytes per parameter per GPU, mixed precision with Adam (2 + 2 + 12), ZeRO stage 2 on 64
    GPUs: 2 + (2 + 12) / 64 = 2.21875."""
    return check.number(answer, 2 + 14 / 64, name="bytes per parameter", digits=3,
                        hint="Stage 2 shards the optimizer state and the gradients, not the "
                             "16-bit weights: which of the 2 + 2 + 12 bytes are divided by the "
                             "number of GPUs?")


def largest_model(answer: Any) -> check.Result:
    """Parameters whose model states (16 bytes each) fit in 80 GB (10⁹ bytes) per GPU under
    ZeRO-3 on 64 GPUs, activations ignored: 80e9 · 64 / 16 = 3.2e11."""
    return check.number(answer, 80e9 * 64 / 16, name="parameters", digits=3,
                        hint="Under stage 3 every one of the 16 bytes of a parameter is split "
                             "over the GPUs; the whole cluster's memory holds the states once.")


def zero3_traffic(answer: Any) -> check.Result:
    """Bytes one rank sends per step for a 7e9-parameter model with bf16 weights and gradients
    under ZeRO-3 on 8 ranks: two all-gathers and one reduce-scatter, each (N−1)/N of 2 bytes ×
    7e9, so 3 · 7/8 · 1.4e10 = 3.675e10."""
    return check.number(answer, 3 * 7 / 8 * 7e9 * 2, name="bytes sent per rank", digits=3,
                        hint="Count the collectives: the weights are gathered for the forward "
                             "pass and again for the backward pass, and the gradients are "
                             "reduce-scattered once; each moves (N-1)/N of the full tensor's "
                             "bytes per rank, 2 bytes per value.")


def _rs_cases() -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(63)
    return [[torch.randn(n * 3, generator=g, dtype=F64) for _ in range(n)] for n in (2, 3, 4)] + \
        [[torch.randn(8, generator=g, dtype=F64) for _ in range(4)]]


def reduce_scatter_mean(fn: Any) -> check.Result:
    """``fn(grads)``: ``grads[r]`` is rank r's full flat gradient (length divisible by the number
    of ranks N); return a list whose entry r is piece r (of N equal pieces) of the mean over the
    ranks: what each rank keeps after FSDP's reduce-scatter."""
    hint = ("Average the ranks' full gradients, cut the average into N equal, consecutive "
            "pieces, and give piece r to rank r (torch.chunk does the cutting).")

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for case in _rs_cases():
            out = f([t.clone() for t in case])
            if out is None:
                return "returned None: did you forget the `return` statement?"
            n = len(case)
            want = (sum(case) / n).chunk(n)
            if not isinstance(out, (list, tuple)) or len(out) != n:
                return f"should return one piece per rank ({n} ranks)."
            for r, (got, w) in enumerate(zip(out, want)):
                got = torch.as_tensor(got, dtype=F64).reshape(-1)
                if got.shape != w.shape:
                    return (f"rank {r} of {n} should keep {w.numel()} values, got "
                            f"{got.numel()}.")
                if not torch.allclose(got, w, rtol=1e-12, atol=1e-12):
                    if torch.allclose(got, w * n, rtol=1e-12, atol=1e-12):
                        return "the pieces hold the sum over ranks, not the mean."
                    return f"rank {r}'s piece is wrong with {n} ranks."
        return None

    return check.condition(fn, test, name="reduce_scatter_mean", hint=hint)


def more_traffic_than_ddp(answer: Any) -> check.Result:
    """Which ZeRO stage sends more bytes per step than DDP (if the first two are implemented
    with a reduce-scatter and an all-gather)? Stage 3: 1.5×."""
    options = [1, 2, 3]
    if isinstance(answer, str) and answer.strip().isdigit():
        answer = int(answer.strip())
    return check.choice(answer, 3, options, name="the stage",
                        hint="An all-reduce is a reduce-scatter followed by an all-gather. "
                             "Which stage needs the full weights at a second moment, so gathers "
                             "them twice?")
