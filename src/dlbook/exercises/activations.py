"""Checks for the exercises of section 1.2, Activation functions.

Each check prints ✅ for a right answer, ❌ with a hint for a wrong one, and ⏳ while the answer
is still ``...``; it returns a truthy :class:`dlbook.check.Result` only when the answer is right.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from dlbook import check

#: The element-wise activations of the section, by the names the exercises use.
NAMES = ("sigmoid", "tanh", "relu", "leaky_relu", "elu", "gelu", "silu")

# The two linear layers of the "collapse" exercise (the notebook prints the same numbers).
COLLAPSE_W1 = torch.tensor([[1.0, 2.0], [0.0, 1.0], [-1.0, 1.0]])
COLLAPSE_B1 = torch.tensor([0.0, 1.0, -1.0])
COLLAPSE_W2 = torch.tensor([[1.0, -1.0, 2.0]])
COLLAPSE_B2 = torch.tensor([0.5])


def tanh_derivative(answer: Any) -> check.Result:
    """The derivative of tanh at z = 1, as a number."""
    return check.number(answer, 1 - math.tanh(1.0) ** 2, name="tanh'(1)", rtol=1e-3,
                        hint="differentiate tanh = sinh / cosh with the quotient rule and write "
                             "the result in terms of tanh itself; then put in z = 1.")


def _softmax_inputs() -> list[torch.Tensor]:
    return [
        torch.tensor([1.0, 2.0, 3.0]),
        torch.tensor([0.5]),
        torch.tensor([1000.0, 1001.0, 1002.0]),
        torch.tensor([-1000.0, 0.0, 1000.0]),
        torch.tensor([[-2.0, 0.0, 2.0, 4.0], [800.0, -800.0, 0.0, 1.0]]),
    ]


def softmax(fn: Callable[[torch.Tensor], torch.Tensor]) -> check.Result:
    """A numerically stable softmax over the last dimension of a tensor."""
    return check.function(fn, lambda z: torch.softmax(z, dim=-1), _softmax_inputs(),
                          name="stable softmax", rtol=1e-5, atol=1e-7,
                          hint="exp(1000) overflows to inf. Softmax does not change when the "
                               "same number is subtracted from every entry: subtract each row's "
                               "largest entry (amax with keepdim=True) before exp, and sum over "
                               "dim=-1 only.")


def _gelu(z: float) -> float:
    return z * 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _gelu_grad(z: float) -> float:
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    return cdf + z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _gelu_argmin() -> float:
    lo, hi = -2.0, 0.0  # gelu' < 0 at -2 and > 0 at 0: bisect on the sign change
    for _ in range(80):
        mid = (lo + hi) / 2
        if _gelu_grad(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def gelu_minimum(answer: Any) -> check.Result:
    """``(z_min, gelu(z_min))``: where exact GELU is smallest, and its value there."""
    z_star = _gelu_argmin()

    def test(ans: Any) -> str | None:
        if not isinstance(ans, (tuple, list)) or len(ans) != 2:
            return "expected a pair (z_min, gelu_min)."
        z, value = (float(a) for a in ans)
        if not math.isclose(z, z_star, rel_tol=0, abs_tol=2e-3):
            return f"z_min = {z:.4g} is not where GELU is smallest."
        if not math.isclose(value, _gelu(z_star), rel_tol=0, abs_tol=1e-4):
            return f"gelu_min = {value:.4g} is not GELU's smallest value."
        return None

    return check.condition(answer, test, name="GELU minimum",
                           hint="at the minimum the derivative Phi(z) + z phi(z) is zero; it is "
                                "negative to the left of the minimum and positive between it and "
                                "0, so bisection on [-2, 0] finds it (or minimise gelu with "
                                "autograd).")


def non_monotonic(answer: Any) -> check.Result:
    """The set of names (from ``NAMES``) of the activations that are not monotonic."""
    expected = {"gelu", "silu"}

    def test(ans: Any) -> str | None:
        if isinstance(ans, str) or not hasattr(ans, "__iter__"):
            return "expected a set of names such as {'relu', 'tanh'}."
        names = {str(a).lower() for a in ans}
        unknown = names - set(NAMES)
        if unknown:
            return f"{sorted(unknown)} are not among the names {list(NAMES)}."
        if names != expected:
            return f"right names: {len(names & expected)} of the {len(names)} you gave; the " \
                   f"answer has {len(expected)} names."
        return None

    return check.condition(answer, test, name="non-monotonic activations",
                           hint="a function is monotonic when its derivative never changes sign; "
                                "look at the dashed derivative curves in the grid figure, or "
                                "evaluate each derivative at a few negative z.")


def collapse(answer: Any) -> check.Result:
    """``(W, b)`` of the single linear layer equal to the exercise's two stacked layers."""
    W = COLLAPSE_W2 @ COLLAPSE_W1
    b = COLLAPSE_W2 @ COLLAPSE_B1 + COLLAPSE_B2

    def test(ans: Any) -> str | None:
        if not isinstance(ans, (tuple, list)) or len(ans) != 2:
            return "expected a pair (W, b)."
        got_W = torch.as_tensor(ans[0], dtype=torch.float32).reshape(-1)
        got_b = torch.as_tensor(ans[1], dtype=torch.float32).reshape(-1)
        if got_W.numel() != 2 or got_b.numel() != 1:
            return f"W should hold 2 numbers (shape (1, 2)) and b one number, got " \
                   f"{got_W.numel()} and {got_b.numel()}."
        if not torch.allclose(got_W, W.reshape(-1), atol=1e-4):
            return "W is not right."
        if not torch.allclose(got_b, b.reshape(-1), atol=1e-4):
            return "W is right but b is not."
        return None

    return check.condition(answer, test, name="collapsed layer",
                           hint="apply layer 2 to layer 1's output: W2 (W1 x + b1) + b2, then "
                                "read off the matrix that multiplies x and the constant.")
