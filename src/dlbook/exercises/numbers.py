"""Checks for the exercises of section 5.2, Numbers in a computer and mixed precision.

Values of bit patterns, integers and fp16 sums must be exact: they are numbers of a binary
format, and the usual mistakes (a forgotten implicit 1, the wrong bias, the exact sum instead
of the rounded one) change them by far more than any rounding. The loss scale is any power of
two that keeps the given gradients inside fp16's normal range. ``kahan_sum`` is compared with
``math.fsum`` to a relative error of 1e-14, on inputs where the naive loop is off by 1e-13 or
more.
"""

from __future__ import annotations

import math
from typing import Any

from dlbook import check


def decode_pattern(answer: Any) -> check.Result:
    """The value of the fp16 pattern 1|10010|1001000000: sign -, exponent 18 - 15 = 3,
    mantissa 1 + 1/2 + 1/16, so -1.5625 · 8 = -12.5, exactly."""
    return check.number(answer, -12.5, name="value of 1|10010|1001000000", rtol=0, atol=0,
                        hint="fp16 has 5 exponent bits with bias 15 and 10 mantissa bits "
                             "behind an implicit leading 1; the first bit is the sign.")


def exact_integers(answer: Any) -> check.Result:
    """The largest n such that every integer 0, 1, ..., n is exact in fp16: with 10 mantissa
    bits plus the implicit one, integers are exact up to 2^11 = 2048, and 2049 is not."""
    return check.number(answer, 2048, name="largest n with 0..n exact in fp16", rtol=0, atol=0,
                        hint="An integer is exact while the gap between neighbouring numbers "
                             "is at most 1. How many significant bits does fp16 have, counting "
                             "the implicit leading 1? The answer is a power of two.")


def fp16_sum(answer: Any) -> check.Result:
    """512 in fp16 plus 0.3 a hundred times, rounding to fp16 after every addition: 0.3 is
    0.300048828125 in fp16, more than half the gap 0.5 at 512, so every addition rounds up to
    the next number, +0.5: 512 + 100 · 0.5 = 562, exactly (the exact sum is 542)."""
    return check.number(answer, 562.0, name="fp16 sum", rtol=0, atol=0,
                        hint="Between 512 and 1024 the fp16 numbers are 0.5 apart. Round "
                             "512 + 0.3 to the nearest of them, then repeat: does the sum stall, "
                             "or move by more than 0.3?")


GRAD_MIN, GRAD_MAX = 3e-9, 0.02
FP16_MAX, FP16_MIN_NORMAL = 65504.0, 2.0 ** -14


def _loss_scale_problem(answer: Any) -> str | None:
    s = check.as_number(answer)
    if s is None:
        return f"expected a single number, got {type(answer).__name__}."
    if not s > 0 or not math.isfinite(s):
        return f"got {s}; a loss scale is a positive number."
    mantissa, _ = math.frexp(s)
    if mantissa != 0.5:
        return (f"{s:g} is not a power of two, so scaling and unscaling would round the "
                "gradients.")
    if GRAD_MIN * s < FP16_MIN_NORMAL:
        return (f"with S = {s:g} the smallest gradient becomes {GRAD_MIN * s:.3g}, below fp16's "
                "smallest normal number 6.1e-05: it loses precision or flushes to zero.")
    if GRAD_MAX * s > FP16_MAX:
        return f"with S = {s:g} the largest gradient becomes {GRAD_MAX * s:.3g} > 65504: inf."
    return None


def loss_scale(answer: Any) -> check.Result:
    """A power of two S with 3e-9 · S >= 2^-14 and 0.02 · S <= 65504: any of 2^15 ... 2^21."""
    return check.condition(answer, _loss_scale_problem, name="loss scale",
                           hint="Find the smallest power of two that lifts 3e-9 to at least "
                                "2^-14, and the largest that keeps 0.02 at most 65504.")


def _kahan_inputs() -> list[tuple[list[float]]]:
    """Sums where the naive loop loses 1e-13 or more of the result and sorting does not
    always help: many tiny values after a large one, many equal values, alternating signs."""
    cases = [[1.0] + [1e-16] * 10_000, [0.1] * 20_000, [1.0] + [1e-16, -3e-17] * 5_000,
             [1e4] + [3.3e-13] * 4_000 + [1.0]]
    return [(c,) for c in cases]


def kahan(fn: Any) -> check.Result:
    """``fn(values) -> float``: Kahan summation of a list of Python floats, compared with the
    exact ``math.fsum`` to a relative error of 1e-14."""
    return check.function(fn, math.fsum, _kahan_inputs(), name="Kahan summation", rtol=1e-14,
                          atol=0,
                          hint="Keep a compensation c = 0. For each x: y = x - c; t = total + y; "
                               "c = (t - total) - y; total = t. Return total.")
