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
    """The derivative of tanh at z = 1, as a number (three significant figures suffice)."""
    return check.number(answer, 1 - math.tanh(1.0) ** 2, name="tanh'(1)", digits=3,
                        hint="the text writes tanh'(z) in terms of tanh(z) itself; put in "
                             "tanh(1) ≈ 0.7616, and mind the square.")


def _softmax_inputs() -> list[torch.Tensor]:
    return [
        torch.tensor([1.0, 2.0, 3.0]),
        torch.tensor([0.5]),
        torch.tensor([1000.0, 1001.0, 1002.0]),
        torch.tensor([-1000.0, 0.0, 1000.0]),
        torch.tensor([[-2.0, 0.0, 2.0, 4.0], [800.0, -800.0, 0.0, 1.0]]),
        torch.tensor([[[3.0, -1.0], [-700.0, -699.0]], [[0.0, 0.0], [10.0, 30.0]]],
                     dtype=torch.float64),
    ]


def _on_flat_logits(fn: Callable[[torch.Tensor], Any]) -> Callable[..., Any]:
    """``fn`` called on ``flat.view(shape)``, its result flattened back after a shape check.

    The check passes every test input flat, with its shape, so that a message quoting an input
    fits on one line; ``fn`` still sees the logits in their real shape (a view, so a change in
    place still shows).
    """
    def on_flat(flat: torch.Tensor, shape: tuple[int, ...]) -> Any:
        out = fn(flat.view(shape))
        if out is None or out is Ellipsis:
            return out
        out = torch.as_tensor(out)
        if tuple(out.shape) != shape:
            raise ValueError(f"returned shape {tuple(out.shape)} for logits of shape {shape}")
        return out.reshape(-1)

    return on_flat


def softmax(fn: Callable[[torch.Tensor], torch.Tensor]) -> check.Result:
    """A numerically stable softmax over the last dimension of a tensor (relative precision
    1e-4, which float32 arithmetic meets)."""
    answer = fn if check.unanswered(fn) or not callable(fn) else _on_flat_logits(fn)
    return check.function(answer, _on_flat_logits(lambda z: torch.softmax(z.double(), dim=-1)),
                          [(z.reshape(-1), tuple(z.shape)) for z in _softmax_inputs()],
                          name="stable softmax", rtol=1e-4, atol=1e-7,
                          hint="exp(1000) is inf in floating point. Softmax does not change when "
                               "the same number is subtracted from every entry of a row: which "
                               "number keeps every exponent <= 0? Work along the last dimension "
                               "only, and do not change z in place.")


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


#: "to three decimals": within half a unit of the third decimal
_THREE_DECIMALS = 5e-4 + 1e-9


def gelu_minimum(answer: Any) -> check.Result:
    """``(z_min, gelu(z_min))``: where exact GELU is smallest, and its value there, both to
    three decimals."""
    z_star = _gelu_argmin()

    def test(ans: Any) -> str | None:
        pair = None if isinstance(ans, (str, bytes, dict)) else check.as_float_tensor(ans)
        if pair is None or pair.numel() != 2:
            return "expected a pair (z_min, gelu_min)."
        z, value = (float(v) for v in pair.reshape(2))
        if not abs(z - z_star) <= _THREE_DECIMALS:
            return f"z_min = {z:.4g} is not where GELU is smallest (to three decimals)."
        if not abs(value - _gelu(z_star)) <= _THREE_DECIMALS:
            return f"gelu_min = {value:.4g} is not GELU's smallest value (to three decimals)."
        return None

    return check.condition(answer, test, name="GELU minimum",
                           hint="at the minimum the derivative Φ(z) + z Φ'(z) is zero; it is "
                                "negative to the left of the minimum and positive between it "
                                "and 0. The value asked for is GELU(z_min) = z_min Φ(z_min).")


def _normalise_name(name: Any) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def non_monotonic(answer: Any) -> check.Result:
    """The set of names (from ``NAMES``) of the activations that are not monotonic."""
    expected = {"gelu", "silu"}

    def test(ans: Any) -> str | None:
        if isinstance(ans, (str, bytes)) or not hasattr(ans, "__iter__"):
            return "expected a set of names such as {'relu', 'tanh'}, not one string."
        names = {_normalise_name(a) for a in ans}
        unknown = names - set(NAMES)
        if unknown:
            return f"{sorted(unknown)} are not among the names {list(NAMES)}."
        if names != expected:
            right = len(names & expected)
            missing = ", and some are missing" if expected - names else ""
            return (f"of the {len(names)} names you gave, {right} "
                    f"{'is' if right == 1 else 'are'} right{missing}.")
        return None

    return check.condition(answer, test, name="non-monotonic activations",
                           hint="a function is monotonic when its derivative never changes sign; "
                                "look at the dashed derivative curves in the grid figure, or "
                                "evaluate each derivative at a few negative z.")


def collapse(answer: Any) -> check.Result:
    """``(W, b)`` of the single linear layer equal to the exercise's two stacked layers:
    ``W`` of shape (1, 2) (or the two numbers as shape (2,)), ``b`` one number, exact to 1e-4."""
    W = COLLAPSE_W2 @ COLLAPSE_W1
    b = COLLAPSE_W2 @ COLLAPSE_B1 + COLLAPSE_B2

    def test(ans: Any) -> str | None:
        if not isinstance(ans, (tuple, list)) or len(ans) != 2:
            return "expected a pair (W, b)."
        got_W, got_b = check.as_float_tensor(ans[0]), check.as_float_tensor(ans[1])
        if got_W is None or got_b is None:
            return "W and b should hold numbers (tensors, arrays, lists or numbers)."
        if tuple(got_W.shape) == (2, 1):
            return ("W has shape (2, 1): a layer from 2 inputs to 1 output has a weight of "
                    "shape (out, in) = (1, 2), as nn.Linear stores it. Is W transposed?")
        if tuple(got_W.shape) not in {(1, 2), (2,)} or got_b.numel() != 1:
            return f"W should have shape (1, 2) and b hold one number, got shapes " \
                   f"{tuple(got_W.shape)} and {tuple(got_b.shape)}."
        if not torch.allclose(got_W.reshape(1, 2), W.double(), rtol=0, atol=1e-4):
            return "W is not right."
        if not torch.allclose(got_b.reshape(1), b.double(), rtol=0, atol=1e-4):
            return "W is right but b is not."
        return None

    return check.condition(answer, test, name="collapsed layer",
                           hint="apply layer 2 to layer 1's output, W2 (W1 x + b1) + b2, and "
                                "multiply out: which matrix multiplies x, and which constant is "
                                "left?")
