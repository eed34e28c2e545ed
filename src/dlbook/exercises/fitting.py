"""Checks for the exercises of section 5.3, Fitting in memory.

The micro-batch weights are compared entry by entry (relative error 1e-6); the best
checkpoint spacing and its memory must be exact whole numbers; the bytes offload moves need
two significant figures; the largest micro-batch is a function compared with
``dlbook.calc.largest_batch`` on four configurations, exactly.
"""

from __future__ import annotations

import math
from typing import Any

from dlbook import calc, check
from dlbook.gpt import GPTConfig

ACCUMULATION_SIZES = (6, 3, 1)       # the micro-batches of exercise ex-mem-weights
SPACING_LAYERS = 100                 # the layers of exercise ex-mem-spacing
OFFLOAD_PARAMS = 13.0e9              # the parameters of exercise ex-mem-offload


def accumulation_weights(answer: Any) -> check.Result:
    """The factors (n_i / N) that the mean losses of micro-batches of 6, 3 and 1 examples are
    multiplied by, so that their gradients add up to the batch's; relative error 1e-6."""
    total = sum(ACCUMULATION_SIZES)
    return check.tensor(answer, [n / total for n in ACCUMULATION_SIZES],
                        name="micro-batch loss weights", rtol=1e-6, atol=1e-9,
                        hint="The batch's loss is the mean over all its examples. A micro-batch's "
                             "mean loss stands for n_i of them, so it counts n_i times out of N.")


def best_spacing(answer: Any) -> check.Result:
    """``(k, memory)``: the segment size k that minimises ⌈L/k⌉ + k for L = 100 layers whose
    activations are as large as their input, and that memory in units of one layer's input;
    both exact."""
    L = SPACING_LAYERS
    k_best = min(range(1, L + 1), key=lambda k: (math.ceil(L / k) + k, k))
    m_best = math.ceil(L / k_best) + k_best

    def test(ans: Any) -> str | None:
        if not isinstance(ans, (tuple, list)) or len(ans) != 2:
            return f"expected a pair (k, memory), got {type(ans).__name__} {ans!r:.60}."
        k, m = (check.as_number(a) for a in ans)
        if k is None or m is None:
            return "k and the memory must both be numbers."
        if k == m_best and m == k_best:
            return "the pair is swapped: first the segment size k, then the memory."
        if k != k_best:
            if k >= 1 and float(k).is_integer() and m == math.ceil(L / k) + k:
                return (f"with k = {k:g} the memory is indeed {m:g} layer inputs, but another k "
                        "gives less.")
            return f"k = {k:g} is not the best segment size."
        if m != m_best:
            return f"k = {k:g} is right, but {m:g} is not its memory."
        return None

    return check.condition(answer, test, name="best checkpoint spacing",
                           hint="Memory(k) = ⌈L/k⌉ + k in units of one layer's input: the segment "
                                "inputs that stay, plus one segment recomputed. The two terms "
                                "balance where k = L/k.")


def offload_traffic(answer: Any) -> check.Result:
    """Bytes one step of ZeRO-Offload moves over PCIe for N = 13.0e9 parameters: fp32
    gradients to the CPU and bf16 weights back, 6·N, to two significant figures."""
    return check.number(answer, 6 * OFFLOAD_PARAMS, name="bytes moved per step", digits=2,
                        hint="Only two things cross: every gradient (4 bytes in fp32) goes to "
                             "the CPU, and every updated weight (2 bytes in bf16) comes back. "
                             "The fp32 master weights and Adam's moments stay on the CPU.")


def _largest_cases() -> list[tuple[GPTConfig, float, int, str]]:
    return [(GPTConfig.gpt2("124M"), 24e9, 1024, "none"),
            (GPTConfig.gpt2("774M"), 24e9, 1024, "full"),
            (GPTConfig.gpt2("1.5B"), 24e9, 1024, "none"),
            (GPTConfig.llama("7B"), 141e9, 4096, "full")]


def _largest_reference(config: GPTConfig, memory_bytes: float, seq_len: int,
                       checkpointing: str) -> int:
    return calc.largest_batch(config, memory_bytes, seq_len, checkpointing=checkpointing)


def largest_micro_batch(fn: Any) -> check.Result:
    """``fn(config, memory_bytes, seq_len, checkpointing) -> b``: the largest micro-batch whose
    ``calc.training_memory(...)`` fits in 90 % of the memory (0 if none), exactly as
    ``calc.largest_batch``, on four configurations."""
    return check.function(fn, _largest_reference, _largest_cases(),
                          name="largest micro-batch", rtol=0, atol=0,
                          hint="Try b = 1, 2, 3, ... with calc.training_memory(config, b, seq_len, "
                               "checkpointing=checkpointing).fits(memory_bytes) and return the "
                               "last b that fits (0 if b = 1 does not). Pass checkpointing on.")
