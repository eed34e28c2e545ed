"""Checks for the exercises of section 6.6, Long sequences, many dimensions, and failures.

The merge of two ring-attention partial results is called on float64 states (some with scores
near 1000, where a plain ``exp`` overflows) and must match attention over both blocks within
1e-10. Byte counts are whole numbers and must be exact; the checkpoint interval is a formula of
given numbers and must be right to three significant figures; the layout must fit the stated
memory with the fewest GPUs per model replica.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dlbook import check

F64 = torch.float64


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    s = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(s, -1) @ v, torch.logsumexp(s, -1)


def _merge_inputs() -> list[tuple[torch.Tensor, ...]]:
    """(out_a, lse_a, out_b, lse_b, want_out, want_lse) for blocks of keys of one query set;
    the scale grows the scores to near 1000 in some cases."""
    g = torch.Generator().manual_seed(66)
    cases = []
    for scale, n, ka, kb in ((1.0, 3, 4, 5), (40.0, 2, 3, 3), (1.0, 5, 1, 7), (25.0, 4, 6, 2)):
        q = scale * torch.randn(2, n, 4, generator=g, dtype=F64)
        k = scale * torch.randn(2, ka + kb, 4, generator=g, dtype=F64)
        v = torch.randn(2, ka + kb, 3, generator=g, dtype=F64)
        oa, la = _attend(q, k[:, :ka], v[:, :ka])
        ob, lb = _attend(q, k[:, ka:], v[:, ka:])
        o, l = _attend(q, k, v)
        cases.append((oa, la, ob, lb, o, l))
    return cases


def merge_partials(fn: Any) -> check.Result:
    """``fn(out_a, lse_a, out_b, lse_b) -> (out, lse)``: attention over two disjoint blocks
    of keys from the two blocks' normalised outputs and log-sum-exps; checked against attention
    over all keys on four random cases (scores up to about 1000), within 1e-10."""
    hint = ("The new log-sum-exp combines the two: log(exp(lse_a) + exp(lse_b)), computed "
            "without overflow (torch.logaddexp). Each output was normalised by its own block's "
            "sum, so weight it by the share of the total that block holds, exp(lse_x - lse), "
            "with an extra dimension to broadcast over the value features.")

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for i, (oa, la, ob, lb, want_o, want_l) in enumerate(_merge_inputs()):
            got = f(oa.clone(), la.clone(), ob.clone(), lb.clone())
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                return f"should return a pair (out, lse), got {type(got).__name__}."
            o, l = (torch.as_tensor(t, dtype=F64) for t in got)
            if tuple(o.shape) != tuple(want_o.shape) or tuple(l.shape) != tuple(want_l.shape):
                return (f"returned shapes {tuple(o.shape)} and {tuple(l.shape)} for input {i}; "
                        f"expected {tuple(want_o.shape)} and {tuple(want_l.shape)}.")
            if not (torch.isfinite(o).all() and torch.isfinite(l).all()):
                return f"the result is not finite for input {i} (large scores overflow exp)."
            if not torch.allclose(l, want_l, rtol=0, atol=1e-10):
                return f"lse is not the log-sum-exp over both blocks for input {i}."
            if not torch.allclose(o, want_o, rtol=0, atol=1e-10):
                return f"out is not attention over both blocks for input {i}."
        return None

    return check.condition(fn, test, name="merging two partial results", hint=hint)


def ring_bytes(answer: Any) -> check.Result:
    """Bytes one rank sends in the forward pass of ring attention for one layer: 8 ranks,
    a sequence of 131,072 tokens, batch 1, 8 key/value heads of size 128, bf16. Each of the
    7 steps passes a key and a value block of 16,384 tokens: 7·2·16384·8·128·2 = 469,762,048."""
    expected = 7 * 2 * (131072 // 8) * 8 * 128 * 2
    return check.number(answer, expected, name="bytes sent per rank", rtol=0, atol=0,
                        hint="A rank's block holds its share of the tokens, for keys and for "
                             "values. Count the steps at which it passes a block on: the "
                             "block it received at the last step is not sent again.")


_LAYOUT_RULES = dict(params=30e9, bytes_per_param=16, act_gb_tp1=60.0, usable_gb=72.0)


def _layout_memory_gb(tp: int, pp: int) -> float:
    r = _LAYOUT_RULES
    return r["params"] * r["bytes_per_param"] / (tp * pp) / 1e9 + r["act_gb_tp1"] / tp


def layout_fits(answer: Any) -> check.Result:
    """A pair ``(tp, pp)`` for a 30 B-parameter model (16 bytes per parameter, no ZeRO;
    60 GB of activations per GPU without TP, divided by TP and not by PP) that fits in 72 GB
    with the fewest GPUs per replica, TP at most 8: (8, 1), at 67.5 GB."""
    hint = ("Memory per GPU is the model states divided by TP·PP plus the activations divided "
            "by TP only (under 1F1B the first stage keeps PP micro-batches of its L/PP layers). "
            "Try the products TP·PP = 1, 2, 4, 8, ... in turn.")

    def test(a: Any) -> str | None:
        if not isinstance(a, (tuple, list)) or len(a) != 2:
            return f"expected a pair (tp, pp), got {a!r:.60}."
        tp, pp = (int(x) for x in a)
        if tp != a[0] or pp != a[1] or tp < 1 or pp < 1:
            return "tp and pp must be positive whole numbers."
        if tp > 8:
            return f"tp={tp} would leave the node: TP must stay within 8 GPUs."
        gb = _layout_memory_gb(tp, pp)
        if gb > _LAYOUT_RULES["usable_gb"]:
            return f"(tp={tp}, pp={pp}) needs {gb:.1f} GB per GPU, more than the 72 GB."
        best = min(t * p for t in (1, 2, 4, 8) for p in range(1, 65)
                   if _layout_memory_gb(t, p) <= _LAYOUT_RULES["usable_gb"])
        if tp * pp > best:
            return f"it fits, but uses {tp * pp} GPUs per replica; fewer are enough."
        return None

    return check.condition(answer, test, name="a layout that fits", hint=hint)


def checkpoint_interval(answer: Any) -> check.Result:
    """Young's optimal checkpoint interval √(2·C·M) in seconds for a checkpoint that takes
    C = 60 s and a mean time between failures of M = 4 h: √(2·60·14400) ≈ 1314.5 s."""
    return check.number(answer, math.sqrt(2 * 60 * 4 * 3600), name="checkpoint interval",
                        digits=3,
                        hint="Write the mean time between failures in seconds first, and put "
                             "both the checkpoint cost and the MTBF under the square root.")


_SAVE_OPTIONS = ("A", "B", "C", "D")


def atomic_save(answer: Any) -> check.Result:
    """Which way of saving survives a crash at any moment: D, a temporary file in the same
    folder, flushed and fsync-ed, then os.replace over the old checkpoint."""
    a = answer.strip().upper() if isinstance(answer, str) else answer
    return check.choice(a, "D", _SAVE_OPTIONS, name="crash-safe save",
                        hint="Ask of each one: if the process dies half-way, what is on the "
                             "disk under the checkpoint's name? And is a move from another "
                             "file system one step, or a copy?")
