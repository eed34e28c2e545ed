"""Checks for the exercises of section 3.1, Convolution.

References are computed here from the question's numbers (with PyTorch's own functions where
there is one), so nothing prints a solution. The precision each exercise asks for (and states):

* ``output_size``, ``separable_parameters`` and ``receptive_field``: exact whole numbers;
* ``small_correlation`` and ``maxpool_gradient``: exact (the entries are whole numbers; an
  error below 1e-6 is accepted);
* ``conv1d_strided``: within a relative 1e-4 of ``F.conv1d`` (float32 arithmetic passes).

The known mistakes (an off-by-one in the output size, a forgotten dilation or bias, a flipped
kernel, an assignment instead of a sum) get a message of their own, which names the mistake,
not the answer.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any, Callable

import torch
import torch.nn.functional as F

from dlbook import check


def _whole(answer: Any) -> int | None:
    """A whole number from an int, a float with no fraction or a one-element tensor/array."""
    v = check.as_number(answer)
    if v is None or not math.isfinite(v) or not v.is_integer():
        return None
    return int(v)


def _exact(answer: Any, expected: int, mistakes: dict[int, str], *, name: str,
           hint: str) -> check.Result:
    """An exact whole-number answer; ``mistakes`` maps known wrong answers to their message."""
    def test(a: Any) -> str | None:
        got = _whole(a)
        if got is None:
            return "give a single whole number."
        if got == expected:
            return None
        return mistakes.get(got, f"{got} is not right.")

    return check.condition(answer, test, name=name, hint=hint)


# --- output size -------------------------------------------------------------------------------

#: The layer of the output-size exercise: a 32 × 32 input, kernel 5, stride 2, padding 2,
#: dilation 2.
OUT_N, OUT_K, OUT_S, OUT_P, OUT_D = 32, 5, 2, 2, 2


def output_size(answer: Any) -> check.Result:
    """Output height of the exercise's layer (exact)."""
    n, k, s, p, d = OUT_N, OUT_K, OUT_S, OUT_P, OUT_D
    want = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p,
                    dilation=d).shape[-1]
    span = d * (k - 1) + 1
    mistakes = {
        want - 1: "that is one too few: the window at position 0 is an output too.",
        (n + 2 * p - k) // s + 1: "that is the size without dilation: a dilated kernel "
                                  "spans more than k inputs.",
        -(-(n + 2 * p - span) // s) + 1: "that rounds up: a window that would stick out of "
                                         "the padded input is not computed.",
        (n - span) // s + 1: "that ignores the padding.",
        (n + 2 * p - span) + 1: "that ignores the stride.",
    }
    mistakes.pop(want, None)
    return _exact(answer, want, mistakes, name="output size",
                  hint="first work out how many inputs the dilated kernel spans, then count "
                       "the window positions that fit in the padded input.")


# --- parameters of a depthwise-separable block -------------------------------------------------

SEP_C_IN, SEP_C_OUT, SEP_K = 64, 128, 3


def separable_parameters(answer: Any) -> check.Result:
    """Parameters of a depthwise 3×3 convolution on 64 channels followed by a pointwise 1×1
    convolution to 128 channels, both with bias (exact)."""
    c, m, k = SEP_C_IN, SEP_C_OUT, SEP_K
    block = torch.nn.Sequential(torch.nn.Conv2d(c, c, k, groups=c), torch.nn.Conv2d(c, m, 1))
    want = sum(p.numel() for p in block.parameters())
    mistakes = {
        want - c - m: "that leaves out the biases (one per output channel of each layer).",
        m * c * k * k + m: "that is a standard 3×3 convolution from 64 to 128 channels, not "
                           "the separable block.",
        c * c * k * k + c + m * c + m: "the depthwise layer has groups = 64: each of its "
                                       "filters sees one channel, not all 64.",
        c * k * k + m * c: "that leaves out the biases.",
        c * k * k + c: "that is only the depthwise layer.",
        m * c + m: "that is only the pointwise layer.",
    }
    return _exact(answer, want, mistakes, name="separable parameters",
                  hint="count each layer on its own: a filter has (input channels of its "
                       "group) × k_h × k_w weights, and each output channel has one bias.")


# --- receptive field ---------------------------------------------------------------------------

#: The stack of the receptive-field exercise, as (kernel, stride, dilation) per layer; the
#: fourth is a 2 × 2 max pooling with stride 2.
RF_LAYERS = [(3, 1, 1), (3, 2, 1), (3, 1, 2), (2, 2, 1), (3, 1, 1)]


def _field(layers: list[tuple[int, int, int]]) -> int:
    r, jump = 1, 1
    for k, s, d in layers:
        r += d * (k - 1) * jump
        jump *= s
    return r


def receptive_field(answer: Any) -> check.Result:
    """Receptive field (side, in input pixels) of one output of RF_LAYERS (exact)."""
    want = _field(RF_LAYERS)
    no_jump = 1 + sum(d * (k - 1) for k, s, d in RF_LAYERS)
    mistakes = {
        no_jump: "that adds every layer's widening in input pixels; after a stride, one step "
                 "of a layer's kernel covers several input pixels.",
        _field([(k, s, 1) for k, s, _ in RF_LAYERS]): "that leaves out the dilation of the "
                                                      "third layer.",
        _field([layer for i, layer in enumerate(RF_LAYERS) if i != 3]): "the pooling layer "
                                                                       "widens the field too.",
        _field([(k, s, d) for k, s, d in RF_LAYERS[::-1]]): "that runs through the stack in "
                                                            "the wrong order.",
    }
    mistakes.pop(want, None)
    return _exact(answer, want, mistakes, name="receptive field",
                  hint="go through the layers from the input up, keeping track of two "
                       "numbers: the field so far and the input distance between "
                       "neighbouring outputs of the current layer.")


# --- a small cross-correlation by hand ---------------------------------------------------------

CORR_X = torch.tensor([[1.0, 2.0, 0.0, 1.0], [0.0, 1.0, 3.0, -1.0], [2.0, -1.0, 1.0, 0.0]])
CORR_K = torch.tensor([[1.0, 0.0], [2.0, -1.0]])


def _as_matrix(a: Any) -> torch.Tensor | None:
    t = check.as_float_tensor(a)
    return t.squeeze() if t is not None and t.numel() > 1 else t


def small_correlation(answer: Any) -> check.Result:
    """``F.conv2d`` of CORR_X with CORR_K, no padding, stride 1 (exact)."""
    x, k = CORR_X.double()[None, None], CORR_K.double()[None, None]
    want = F.conv2d(x, k)[0, 0]
    flipped = F.conv2d(x, k.flip(-1, -2))[0, 0]
    full = F.conv2d(x, k, padding=1)[0, 0]

    def test(a: Any) -> str | None:
        got = _as_matrix(a)
        if got is None:
            return "give a 2-D tensor or a nested list of numbers."
        if got.shape == full.shape:
            return f"shape {tuple(got.shape)}: without padding the output is smaller than the " \
                   "input, not larger."
        if got.shape != want.shape:
            return f"shape {tuple(got.shape)} is not the output size of a 2 × 2 kernel on a " \
                   "3 × 4 input without padding."
        if torch.allclose(got, flipped, atol=1e-6) and not torch.allclose(got, want, atol=1e-6):
            return "those are the values of a true convolution, with the kernel flipped; " \
                   "conv2d computes a cross-correlation."
        if not torch.allclose(got, want, rtol=0, atol=1e-6):
            bad = int((~torch.isclose(got, want, rtol=0, atol=1e-6)).sum())
            return f"{bad} of {want.numel()} entries are wrong."
        return None

    return check.condition(answer, test, name="small correlation",
                           hint="place the kernel on the top-left 2 × 2 window, multiply entry "
                                "by entry and add; then slide it one column or one row.")


# --- writing a strided 1-D convolution ---------------------------------------------------------

def _conv1d_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
    """(x, w, b, stride) in float64: channels in and out that differ and that are equal, odd
    and even lengths, strides 1 to 3, a kernel of size 1."""
    g = torch.Generator().manual_seed(31)
    cases = []
    for B, c_in, c_out, L, k, s in [(2, 3, 4, 11, 3, 2), (1, 2, 2, 9, 4, 1), (3, 1, 3, 10, 2, 3),
                                    (2, 4, 2, 7, 1, 2), (1, 3, 3, 8, 3, 1)]:
        cases.append((torch.randn(B, c_in, L, generator=g, dtype=torch.float64),
                      torch.randn(c_out, c_in, k, generator=g, dtype=torch.float64),
                      torch.randn(c_out, generator=g, dtype=torch.float64), s))
    return cases


def _reference_conv1d(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                      stride: int) -> torch.Tensor:
    return F.conv1d(x, w, b, stride=stride)


def conv1d_strided(fn: Callable[..., Any]) -> check.Result:
    """``fn(x, w, b, stride)`` must equal ``F.conv1d(x, w, b, stride=stride)`` for x (B, C_in,
    L), w (C_out, C_in, k), b (C_out,), without padding (relative 1e-4)."""
    return check.function(fn, _reference_conv1d, _conv1d_cases(), name="conv1d_strided",
                          rtol=1e-4, atol=1e-5,
                          hint="output position i starts at input position stride·i; there "
                               "are ⌊(L − k)/stride⌋ + 1 of them. Each output channel sums "
                               "over every input channel and every kernel tap, without "
                               "flipping the kernel, and then adds its bias.")


# --- the gradient of a max pooling by hand -----------------------------------------------------

POOL_X = torch.tensor([[1.0, 0.0, 2.0], [3.0, 5.0, 1.0], [0.0, 4.0, 6.0]])
POOL_DY = torch.tensor([[1.0, 2.0], [3.0, 4.0]])


def maxpool_gradient(answer: Any) -> check.Result:
    """dL/dX for ``Y = max_pool2d(POOL_X, 2, stride=1)`` and upstream POOL_DY (exact)."""
    x = POOL_X.double()[None, None].requires_grad_()
    F.max_pool2d(x, 2, stride=1).backward(POOL_DY.double()[None, None])
    want = x.grad[0, 0]
    avg = x.detach().clone().requires_grad_()
    F.avg_pool2d(avg, 2, stride=1).backward(POOL_DY.double()[None, None])
    assigned = torch.zeros(3, 3, dtype=torch.float64)  # each window overwrites, not adds
    for (i, j), g in zip(product(range(2), range(2)), POOL_DY.double().reshape(-1)):
        u, v = divmod(int(POOL_X[i:i + 2, j:j + 2].argmax()), 2)
        assigned[i + u, j + v] = g

    def test(a: Any) -> str | None:
        got = _as_matrix(a)
        if got is None or got.shape != want.shape:
            shape = None if got is None else tuple(got.shape)
            return f"dX has the shape of X, (3, 3); got {shape}."
        if torch.allclose(got, avg.grad[0, 0], atol=1e-6):
            return "that spreads each gradient over its window, as average pooling does."
        if torch.allclose(got, assigned, atol=1e-6):
            return "an entry that is the maximum of several windows gets each of their " \
                   "gradients: they add up, they do not overwrite each other."
        if not torch.allclose(got, want, rtol=0, atol=1e-6):
            bad = int((~torch.isclose(got, want, rtol=0, atol=1e-6)).sum())
            return f"{bad} of 9 entries are wrong."
        return None

    return check.condition(answer, test, name="max-pool gradient",
                           hint="find the arg-max of each of the four overlapping windows; "
                                "only that entry of the window receives the window's upstream "
                                "gradient.")
