"""Checks for the exercises of section 6.5, Pipeline parallelism.

All run in one process: formulas, and schedules as lists of ``("F", i)`` / ``("B", i)``
actions. The bubble fraction must be right to three significant figures; counts of
micro-batches and bytes must be exact (bytes to three significant figures in GB); a student's
1F1B stage schedule must equal the book's on every (stage, stages, micro-batches) tried; loss
weights must be right within 1e-9.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from dlbook import check
from dlbook.distributed import pipeline as pp


def bubble(answer: Any) -> check.Result:
    """The bubble fraction of a pipeline of p = 8 stages with m = 32 micro-batches:
    7 / 39 ≈ 0.179, to three significant figures."""
    return check.number(answer, pp.bubble_fraction(8, 32), name="bubble fraction", digits=3,
                        hint="Every stage idles while the first micro-batch fills the pipeline "
                             "and while the last one drains it; divide that idle time by the "
                             "whole span, which is m + p - 1 action slots, not m.")


def micro_batches_for_bubble(answer: Any) -> check.Result:
    """The fewest micro-batches that bring the bubble of an 8-stage pipeline to 5 % or less:
    7 / (m + 7) <= 1/20 gives m >= 133, exactly."""
    want = next(m for m in range(1, 10_000) if Fraction(7, m + 7) <= Fraction(1, 20))
    return check.number(answer, want, name="micro-batches for a 5 % bubble", rtol=0, atol=0,
                        hint="Solve (p - 1) / (m + p - 1) <= 0.05 for the whole number m; the "
                             "total span counts the p - 1 fill and drain slots too.")


def _reference_stage(stage: int, n_stages: int, n_micro: int) -> list[tuple[str, int]]:
    return pp.one_f_one_b_schedule(n_stages, n_micro)[stage]


_SIZES = [(s, p, m) for p, m in ((2, 1), (2, 3), (3, 2), (4, 4), (4, 8), (5, 3), (8, 16),
                                 (6, 1))
          for s in range(p)]


def one_f_one_b(fn: Any) -> check.Result:
    """``fn(stage, n_stages, n_micro)``: stage ``stage``'s 1F1B actions, a list of
    ``("F", i)`` and ``("B", i)``; compared with the book's schedule on 34 cases, also with
    fewer micro-batches than stages."""
    hint = ("Stage s first runs p - 1 - s warm-up forwards (no more than there are "
            "micro-batches), then pairs each further forward with the oldest backward, then "
            "runs the backwards that remain.")

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for s, p, m in _SIZES:
            got = f(s, p, m)
            if got is None:
                return "returned None: did you forget the `return` statement?"
            got = [tuple(a) for a in got]
            want = _reference_stage(s, p, m)
            if got != want:
                try:
                    pp.validate_schedule([got])
                    problem = "runs every action once, but not in 1F1B's order"
                except ValueError:
                    problem = ("does not run the forward and the backward of every "
                               "micro-batch once, each forward before its backward")
                return f"wrong for stage {s} of {p} stages with {m} micro-batches: it {problem}."
        return None

    return check.condition(fn, test, name="1F1B schedule of one stage", hint=hint)


def activation_memory(answer: Any) -> check.Result:
    """Activation gigabytes that stage 0 of an 8-stage pipeline holds at its peak with
    m = 64 micro-batches of 1.5 GB each: GPipe 64 × 1.5 = 96, 1F1B 8 × 1.5 = 12, as a pair
    (gpipe, one_f_one_b), each to three significant figures."""
    hint = ("Count the micro-batches whose forward has run on stage 0 and whose backward has "
            "not yet: GPipe runs every forward first; 1F1B starts backwards once the first "
            "micro-batch has come back through all p stages.")

    def test(a: Any) -> str | None:
        if not isinstance(a, (tuple, list)) or len(a) != 2:
            return f"expected a pair (gpipe_gb, one_f_one_b_gb), got {type(a).__name__}."
        for label, got, want in (("GPipe", a[0], 96.0), ("1F1B", a[1], 12.0)):
            value = check.as_number(got)
            if value is None:
                return f"the {label} entry is not a number."
            if abs(value - want) > 0.5 * 10 ** (math.floor(math.log10(want)) - 2):  # 3 figures
                return f"the {label} entry {value:g} GB is not right."
        return None

    return check.condition(answer, test, name="activation memory of stage 0", hint=hint)


def loss_weights(answer: Any) -> check.Result:
    """Weights of the mean losses of micro-batches with 4, 4 and 2 sequences so that their
    weighted sum is the mean loss of the 10-sequence batch: 0.4, 0.4, 0.2 (within 1e-6)."""
    return check.tensor(answer, [0.4, 0.4, 0.2], name="micro-batch loss weights", rtol=0,
                        atol=1e-6,
                        hint="Each micro-batch's loss is already a mean over its own "
                             "sequences; weight it by its share of the batch's sequences, "
                             "not by 1 / (number of micro-batches).")
