"""Checks for the exercises of section 5.4, Attention at scale and the speed of a step.

Arithmetic intensities and ridge points are ratios of published or given numbers and must be
right to three significant figures; byte and tile counts are whole numbers and must be exact.
The online-softmax merge is called on float64 states (some with scores near 1000, where a
plain ``exp`` overflows, and one empty state with ``m = -inf``) and must give the running
maximum exactly and ``m + log(l)`` equal to ``torch.logsumexp`` within a relative error of
1e-9.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dlbook import check

F64 = torch.float64


def matmul_intensity(answer: Any) -> check.Result:
    """FLOPs per byte of a bf16 matmul (2048 × 8192) @ (8192 × 1024) that reads both inputs
    and writes the output once: 2·m·k·n / (2·(m·k + k·n + m·n)) ≈ 630.15."""
    m, k, n = 2048, 8192, 1024
    expected = 2 * m * k * n / (2 * (m * k + k * n + m * n))
    return check.number(answer, expected, name="arithmetic intensity of the matmul", digits=3,
                        hint="FLOPs: a multiply and an add for each of the m·k·n products. "
                             "Bytes: every element of A, B and the output C moves once, two "
                             "bytes each in bf16.")


def ridge_point(answer: Any) -> check.Result:
    """Ridge point of an H200: 989 TFLOP/s dense bf16 over 4.8 TB/s ≈ 206 FLOP/byte."""
    return check.number(answer, 989e12 / 4.8e12, name="ridge point of the H200", digits=3,
                        hint="The roofline bends where intensity × bandwidth reaches the peak: "
                             "divide the peak FLOP/s by the bytes per second (1 TB = 10¹² "
                             "bytes), and use the dense, not the sparse, peak.")


def _merge_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Pairs of (m, l) states of blocks of scores: small, large (near 1000), very different
    maxima, and an empty first state (m = -inf, l = 0)."""
    g = torch.Generator().manual_seed(54)
    cases = []
    for shift1, shift2, n in ((0.0, 0.0, 5), (1000.0, 990.0, 4), (-30.0, 40.0, 3),
                              (500.0, 500.0, 6)):
        a = shift1 + 3 * torch.randn(n, 7, generator=g, dtype=F64)
        b = shift2 + 3 * torch.randn(n, 5, generator=g, dtype=F64)
        ma, mb = a.amax(-1), b.amax(-1)
        cases.append((ma, torch.exp(a - ma[:, None]).sum(-1),
                      mb, torch.exp(b - mb[:, None]).sum(-1)))
    b = torch.randn(3, 4, generator=g, dtype=F64)
    mb = b.amax(-1)
    cases.append((torch.full((3,), -math.inf, dtype=F64), torch.zeros(3, dtype=F64),
                  mb, torch.exp(b - mb[:, None]).sum(-1)))
    return cases


def online_merge(fn: Any) -> check.Result:
    """``fn(m1, l1, m2, l2) -> (m, l)``: the online-softmax state of two blocks together,
    m = max(m1, m2) and l = l1·exp(m1 - m) + l2·exp(m2 - m); checked on five pairs of states
    against ``logsumexp`` of the concatenated scores (relative error 1e-9)."""
    hint = ("Take the larger of the two maxima as the new m, and rescale each partial sum "
            "from its own maximum to the new one: multiply l1 by exp(m1 - m), which is at most "
            "1, and likewise l2.")

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for i, (m1, l1, m2, l2) in enumerate(_merge_cases()):
            want_m = torch.maximum(m1, m2)
            want_lse = torch.logaddexp(m1 + torch.log(l1), m2 + torch.log(l2))
            out = f(m1.clone(), l1.clone(), m2.clone(), l2.clone())
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                return f"should return a pair (m, l), got {type(out).__name__}."
            m, l = (torch.as_tensor(t, dtype=F64) for t in out)
            if m.shape != want_m.shape or l.shape != want_m.shape:
                return f"returned shapes {tuple(m.shape)} and {tuple(l.shape)} for input {i}; " \
                       f"expected {tuple(want_m.shape)} for both."
            if not torch.isfinite(l).all():
                return f"l is not finite for input {i} (scores near 1000 overflow exp)."
            if not torch.equal(m, want_m):
                return f"m is not the running maximum for input {i}."
            if not torch.allclose(m + torch.log(l), want_lse, rtol=1e-9, atol=1e-9):
                return f"m + log(l) is not the log-sum-exp of both blocks for input {i}."
        return None

    return check.condition(fn, test, name="online-softmax merge", hint=hint)


def attention_matrix_bytes(answer: Any) -> check.Result:
    """Bytes of one layer's attention probabilities for batch 8, 32 heads, T = 8192 in bf16:
    8·32·8192²·2 = 34,359,738,368, exactly."""
    return check.number(answer, 8 * 32 * 8192 ** 2 * 2, name="bytes of the attention matrix",
                        rtol=0, atol=0,
                        hint="Each head of each sequence has a T × T matrix of probabilities; "
                             "multiply by batch and heads, and by 2 bytes per bf16 number.")


def causal_tiles(answer: Any) -> check.Result:
    """Tiles FlashAttention computes for causal attention with T = 4096 and 128 × 128 tiles:
    32 query tiles, tile i sees key tiles 0..i, so 32·33/2 = 528, exactly."""
    return check.number(answer, 528, name="tiles with causal skipping", rtol=0, atol=0,
                        hint="Count per row of tiles: query tile i (from 0) needs key tiles 0 "
                             "to i, including the diagonal one, which is masked but computed.")
