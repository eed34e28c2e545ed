"""Numbers in a computer (section 5.2): floating-point formats bit by bit, rounding, summation
and loss scaling.

Everything here is exact or follows the IEEE 754 rules by construction, so the notebook can
check PyTorch against it: :func:`encode` rounds a Python float to any of the formats of
:data:`FORMATS` (round to nearest, ties to even) with exact integer arithmetic, :func:`decode`
turns a bit pattern back into its value, :func:`round_mantissa` emulates TF32 (and any shorter
mantissa) on float32 tensors, :func:`kahan_sum` is compensated summation in a chosen dtype, and
:class:`LossScaler` is the dynamic loss scaling of ``torch.amp.GradScaler`` written out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Sequence

import torch

__all__ = ["Format", "FORMATS", "encode", "decode", "float_bits", "round_to",
           "round_mantissa", "sequential_sum", "kahan_sum", "LossScaler"]


@dataclass(frozen=True)
class Format:
    """A binary floating-point format: 1 sign bit, ``exponent_bits``, ``mantissa_bits``.

    ``finite_only`` marks the "fn" formats such as fp8 E4M3FN: no infinities, and only the
    pattern with every exponent and mantissa bit set is NaN, so the top exponent holds normal
    numbers too. Every other format follows IEEE 754: the top exponent is kept for inf and NaN.
    """

    name: str
    exponent_bits: int
    mantissa_bits: int
    finite_only: bool = False
    dtype: torch.dtype | None = None
    used_for: str = ""

    @property
    def bits(self) -> int:
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def bias(self) -> int:
        return 2 ** (self.exponent_bits - 1) - 1

    @property
    def max_exponent(self) -> int:
        """The exponent of the largest finite numbers."""
        top = 2 ** self.exponent_bits - 1            # all ones
        return (top if self.finite_only else top - 1) - self.bias

    @property
    def min_exponent(self) -> int:
        """The exponent of the smallest normal numbers (field value 1)."""
        return 1 - self.bias

    @property
    def max_normal(self) -> float:
        m = self.mantissa_bits
        largest = 2 ** (m + 1) - (2 if self.finite_only else 1)   # fn: all ones is NaN
        return math.ldexp(largest, self.max_exponent - m)

    @property
    def min_normal(self) -> float:
        return math.ldexp(1.0, self.min_exponent)

    @property
    def min_subnormal(self) -> float:
        return math.ldexp(1.0, self.min_exponent - self.mantissa_bits)

    @property
    def eps(self) -> float:
        """Machine epsilon: the gap between 1 and the next larger number, 2^-mantissa_bits."""
        return math.ldexp(1.0, -self.mantissa_bits)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("fp32", 8, 23, dtype=torch.float32, used_for="master weights, optimizer, sums"),
    Format("tf32", 8, 10, dtype=None, used_for="fp32 matmul inputs on tensor cores"),
    Format("fp16", 5, 10, dtype=torch.float16, used_for="mixed precision with loss scaling"),
    Format("bf16", 8, 7, dtype=torch.bfloat16, used_for="mixed precision, no scaling needed"),
    Format("fp8_e4m3fn", 4, 3, finite_only=True, dtype=torch.float8_e4m3fn,
           used_for="fp8 weights and activations"),
    Format("fp8_e5m2", 5, 2, dtype=torch.float8_e5m2, used_for="fp8 gradients"),
)}


def _format(fmt: Format | str) -> Format:
    if isinstance(fmt, Format):
        return fmt
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {list(FORMATS)}")
    return FORMATS[fmt]


def _nan_bits(f: Format) -> int:
    if f.finite_only:
        return 2 ** (f.exponent_bits + f.mantissa_bits) - 1
    return ((2 ** f.exponent_bits - 1) << f.mantissa_bits) | (1 << (f.mantissa_bits - 1))


def _round_half_even(q: Fraction) -> int:
    n = math.floor(q)
    rest = q - n
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and n % 2 == 1):
        n += 1
    return n


def encode(x: float, fmt: Format | str) -> int:
    """The bit pattern (an int) of ``x`` rounded to ``fmt``: round to nearest, ties to even.

    A value that rounds above the largest finite number becomes inf; the "fn" formats, which
    have no inf, saturate to their largest number instead (as PyTorch's cast does, and as
    Micikevicius et al. 2022 recommend). Exact: the rounding uses fractions, not another float.
    """
    f = _format(fmt)
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"expected a Python float, got {type(x).__name__}")
    x = float(x)
    m, e = f.mantissa_bits, f.exponent_bits
    sign = 1 if math.copysign(1.0, x) < 0 else 0
    top = sign << (e + m)
    if math.isnan(x):
        return _nan_bits(f)
    saturated = top | (_nan_bits(f) - 1 if f.finite_only else (2 ** e - 1) << m)
    if math.isinf(x):
        return saturated
    a = Fraction(abs(x))
    if a == 0:
        return top
    exponent = max(math.frexp(abs(x))[1] - 1, f.min_exponent)   # subnormals share min_exponent
    quantum = Fraction(2) ** (exponent - m)
    n = _round_half_even(a / quantum)              # the value is n * quantum
    if n >= 2 ** (m + 1):                          # rounding carried into the next binade
        n //= 2
        exponent += 1
    value = n * Fraction(2) ** (exponent - m)
    if value > Fraction(f.max_normal):
        return saturated
    if n < 2 ** m:                                 # subnormal (or zero): exponent field 0
        return top | n
    return top | ((exponent + f.bias) << m) | (n - 2 ** m)


def _parse_bits(bits: int | str, f: Format) -> int:
    if isinstance(bits, str):
        digits = bits.replace("|", "").replace(" ", "").replace("_", "")
        if len(digits) != f.bits or set(digits) - {"0", "1"}:
            raise ValueError(f"expected {f.bits} binary digits for {f.name} (sign|exponent|"
                             f"mantissa, e.g. {float_bits(1.0, f)!r}), got {bits!r}")
        return int(digits, 2)
    if isinstance(bits, bool) or not isinstance(bits, int) or not 0 <= bits < 2 ** f.bits:
        raise ValueError(f"expected an integer from 0 to 2**{f.bits} - 1 for {f.name}, "
                         f"got {bits!r}")
    return bits


def decode(bits: int | str, fmt: Format | str) -> float:
    """The value of a bit pattern of ``fmt``, given as an int or a string of 0s and 1s
    (separators ``|``, spaces and ``_`` are ignored), as a Python float (exact)."""
    f = _format(fmt)
    b = _parse_bits(bits, f)
    m, e = f.mantissa_bits, f.exponent_bits
    sign = -1.0 if b >> (e + m) else 1.0
    field = (b >> m) & (2 ** e - 1)
    mant = b & (2 ** m - 1)
    if f.finite_only and field == 2 ** e - 1 and mant == 2 ** m - 1:
        return math.nan
    if not f.finite_only and field == 2 ** e - 1:
        return sign * math.inf if mant == 0 else math.nan
    if field == 0:                                  # subnormal: no implicit leading 1
        return sign * math.ldexp(mant, f.min_exponent - m)
    return sign * math.ldexp(2 ** m + mant, field - f.bias - m)


def float_bits(x: float, fmt: Format | str) -> str:
    """``x`` rounded to ``fmt`` as ``"sign|exponent|mantissa"``, e.g. ``"0|01111|0000000000"``
    for 1.0 in fp16."""
    f = _format(fmt)
    s = format(encode(x, f), f"0{f.bits}b")
    return f"{s[0]}|{s[1:1 + f.exponent_bits]}|{s[1 + f.exponent_bits:]}"


def round_to(x: float, fmt: Format | str) -> float:
    """``x`` rounded to the nearest number of ``fmt`` (ties to even), as a Python float."""
    f = _format(fmt)
    return decode(encode(x, f), f)


def round_mantissa(t: torch.Tensor, mantissa_bits: int) -> torch.Tensor:
    """Round a float32 tensor to ``mantissa_bits`` mantissa bits (ties to even), keeping fp32's
    exponent: ``round_mantissa(t, 10)`` is TF32, ``round_mantissa(t, 7)`` is bf16 (as float32).
    """
    if not isinstance(t, torch.Tensor) or t.dtype != torch.float32:
        raise ValueError("expected a float32 tensor; convert with t.float() first")
    if isinstance(mantissa_bits, bool) or not isinstance(mantissa_bits, int) or \
            not 1 <= mantissa_bits <= 23:
        raise ValueError(f"mantissa_bits must be a whole number from 1 to 23, got "
                         f"{mantissa_bits!r}")
    drop = 23 - mantissa_bits
    if drop == 0:
        return t.clone()
    b = t.contiguous().view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    lsb = (b >> drop) & 1                          # ties go to the even neighbour
    rounded = (b + (1 << (drop - 1)) - 1 + lsb) & ~((1 << drop) - 1) & 0xFFFFFFFF
    out = ((rounded + 2 ** 31) % 2 ** 32 - 2 ** 31).to(torch.int32).view(torch.float32)
    return torch.where(torch.isfinite(t), out, t)


def _values(values: Iterable[float] | torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype!r}")
    t = values if isinstance(values, torch.Tensor) else torch.tensor(list(values),
                                                                      dtype=torch.float64)
    if t.dim() != 1:
        raise ValueError(f"expected a 1-D sequence of numbers, got shape {tuple(t.shape)}")
    return list(t.to(dtype).unbind())


def sequential_sum(values: Sequence[float] | torch.Tensor,
                   dtype: torch.dtype = torch.float32) -> float:
    """Add the values one by one into an accumulator of ``dtype``, rounding after every
    addition (each value is first rounded to ``dtype``): the naive loop."""
    total = torch.zeros((), dtype=dtype)
    for v in _values(values, dtype):
        total = total + v
    return float(total)


def kahan_sum(values: Sequence[float] | torch.Tensor,
              dtype: torch.dtype = torch.float32) -> float:
    """Kahan's compensated sum with every operation in ``dtype``: ``c`` carries the low-order
    part that each addition to ``total`` lost into the next one (Kahan, 1965)."""
    total = torch.zeros((), dtype=dtype)
    c = torch.zeros((), dtype=dtype)
    for v in _values(values, dtype):
        y = v - c                    # the value, corrected by what was lost last time
        t = total + y                # big + small: low-order bits of y are lost ...
        c = (t - total) - y          # ... and recovered here (algebraically zero)
        total = t
    return float(total)


class LossScaler:
    """Dynamic loss scaling as ``torch.amp.GradScaler`` does it, written out.

    ``scale(loss)`` multiplies the loss by the current scale S (a power of two); ``step``
    divides the gradients by S, and skips the optimizer step if any is inf or NaN; ``update``
    halves S after a skipped step and doubles it after ``growth_interval`` good steps in a row.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000) -> None:
        if not init_scale > 0 or not growth_factor > 1 or not 0 < backoff_factor < 1:
            raise ValueError("need init_scale > 0, growth_factor > 1 and 0 < backoff_factor < 1")
        if isinstance(growth_interval, bool) or not isinstance(growth_interval, int) or \
                growth_interval < 1:
            raise ValueError(f"growth_interval must be a positive integer, got "
                             f"{growth_interval!r}")
        self.scale_value = float(init_scale)
        self.growth_factor, self.backoff_factor = growth_factor, backoff_factor
        self.growth_interval = growth_interval
        self.good_steps = 0
        self.found_inf = False

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self.scale_value

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Unscale the gradients in place; take the step only if all are finite. Returns
        whether the step was taken."""
        inv = 1.0 / self.scale_value
        self.found_inf = False
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad.mul_(inv)
                    self.found_inf |= not bool(torch.isfinite(p.grad).all())
        if not self.found_inf:
            optimizer.step()
        return not self.found_inf

    def update(self) -> None:
        if self.found_inf:
            self.scale_value *= self.backoff_factor
            self.good_steps = 0
        else:
            self.good_steps += 1
            if self.good_steps == self.growth_interval:
                self.scale_value *= self.growth_factor
                self.good_steps = 0
