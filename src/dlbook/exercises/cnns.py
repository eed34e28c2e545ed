"""Checks for the exercises of section 3.2, Convolutional networks in practice.

Precision each exercise asks for: the parameter count, the flattened length and the receptive
field are whole numbers and must be exact; the two functions are compared with the right
result within 1e-6 (float32 arithmetic is fine) on several inputs, chosen so that the usual
mistakes (the inverse permutation, reordered rows, a shift to the wrong side or by one amount
for every row) give a different result.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from dlbook import check


def _whole(answer: Any) -> int | None:
    """``answer`` as an int when it is a whole number (int, float, one-element tensor)."""
    value = None if isinstance(answer, bool) else check.as_number(answer)
    return int(value) if value is not None and math.isfinite(value) and value == int(value) \
        else None


# --- LeNet's parameters ------------------------------------------------------------------------

def _conv(c_in: int, c_out: int, k: int = 3) -> int:
    return c_out * (c_in * k * k + 1)


_C1, _C2, _HIDDEN = 4, 8, 20
_LENET = _conv(1, _C1) + _conv(_C1, _C2) + (_C2 * 2 * 2 + 1) * _HIDDEN + (_HIDDEN + 1) * 10
#: The usual slips, and a hint for each (a hint, not the count).
_LENET_SLIPS = {
    _LENET - (_C1 + _C2 + _HIDDEN + 10): "the biases are missing: every output channel and "
                                          "every unit has one.",
    _LENET - _conv(_C1, _C2) + _conv(1, _C2): "a filter of conv 2 spans all input channels, "
                                              "not one.",
    _LENET - (_C2 * 4 + 1) * _HIDDEN + (_C2 * 16 + 1) * _HIDDEN:
        "the classifier reads the maps after the *second* pooling.",
    _LENET - (_C2 * 4 + 1) * _HIDDEN + (_C2 * 64 + 1) * _HIDDEN:
        "each 2 × 2 pooling halves the side of the maps.",
    _LENET - (_C2 * 4 + 1) * _HIDDEN + (4 + 1) * _HIDDEN:
        "the linear layer reads every channel's map, not one map.",
    _LENET + 2 * (_C1 + _C2): "this network has no batch norm (batch_norm=False).",
}


def lenet_parameters(answer: Any) -> check.Result:
    """Exercise: trainable parameters of lenet(channels=(4, 8), hidden=20, batch_norm=False)."""
    slip = _LENET_SLIPS.get(_whole(answer))
    return check.number(answer, _LENET, name="parameters of the small LeNet", rtol=0, atol=0,
                        hint=slip or "count each layer with eq. (eq-cnns-params) or "
                                     "weights-times-outputs plus biases; the sizes of the "
                                     "feature maps follow from eq. (eq-cnns-size).")


# --- the paper's ConvBase ----------------------------------------------------------------------

def _size(n: int, k: int, s: int, p: int) -> int:
    return (n + 2 * p - k) // s + 1


_CONVBASE = 25 * _size(_size(_size(40, 5, 2, 1), 3, 2, 1), 3, 2, 1)  # 25 channels × 5
_CONVBASE_SLIPS = {
    _size(_size(_size(40, 5, 2, 1), 3, 2, 1), 3, 2, 1): "that is the number of positions; the "
                                                        "linear layer reads every channel.",
    25 * 4: "the formula has a + 1 after the floor: check each layer's output size.",
    25 * 6: "round down (floor), not up, in eq. (eq-cnns-size).",
    25 * 10: "there are three convolutions, each with stride 2.",
    25 * 40: "each convolution with stride 2 roughly halves the length.",
}


def convbase_flatten(answer: Any) -> check.Result:
    """Exercise: the flattened length that ConvBase's linear layer reads (exact)."""
    slip = _CONVBASE_SLIPS.get(_whole(answer))
    return check.number(answer, _CONVBASE, name="ConvBase's linear inputs", rtol=0, atol=0,
                        hint=slip or "apply eq. (eq-cnns-size) once per convolution, then "
                                     "multiply by the number of channels.")


# --- undoing the shuffle -------------------------------------------------------------------

def _unshuffled(weight: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    return weight[:, perm]


def _unshuffle_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, perm) pairs; no permutation is its own inverse, so W[:, argsort(perm)] and
    W[:, perm] differ, and the weights are not square, so rows and columns cannot be mixed up
    silently."""
    gen = torch.Generator().manual_seed(32)
    cases = []
    for hidden, n in [(5, 7), (3, 4), (100, 40), (1, 6)]:
        while True:
            perm = torch.randperm(n, generator=gen)
            if not torch.equal(perm[perm], torch.arange(n)):
                break
        cases.append((torch.randn(hidden, n, generator=gen, dtype=torch.float64), perm))
    return cases


def unshuffle_first_layer(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(weight, perm)`` gives the first-layer weight W' with W' x[perm] = W x."""
    return check.function(fn, _unshuffled, _unshuffle_cases(), name="unshuffle the first layer",
                          rtol=0, atol=1e-6,
                          hint="write out (W' x')_i with x'_j = x[perm[j]] and ask which column "
                               "of W must multiply x[perm[j]]; the rows (hidden units) stay "
                               "as they are.")


# --- receptive field -------------------------------------------------------------------------

_LAYERS = [(5, 1), (2, 2), (3, 1), (2, 2), (3, 1), (2, 2)]  # (taps, stride) of cnn1d


def _receptive(layers: list[tuple[int, int]]) -> int:
    r, j = 1, 1
    for k, s in layers:
        r, j = r + (k - 1) * j, j * s
    return r


_RECEPTIVE = _receptive(_LAYERS)
_RECEPTIVE_SLIPS = {
    _receptive([(5, 1), (3, 1), (3, 1)]): "the poolings widen the window too (2 taps each).",
    1 + sum(k - 1 for k, _ in _LAYERS): "each layer adds (k − 1) times the current spacing of "
                                         "its inputs, which every pooling doubles.",
    5 * 3 * 3: "receptive fields add up, they do not multiply.",
    _receptive(_LAYERS[:-1]): "include the last pooling: the question is about its outputs.",
    40: "one output does not see the whole signal: count the window layer by layer.",
}


def receptive_field(answer: Any) -> check.Result:
    """Exercise: the receptive field, in input positions, of one output of cnn1d's features."""
    slip = _RECEPTIVE_SLIPS.get(_whole(answer))
    return check.number(answer, _RECEPTIVE, name="receptive field", rtol=0, atol=0,
                        hint=slip or "track the window width r and the spacing j of the "
                                     "outputs through the six layers.")


# --- shifting each row --------------------------------------------------------------------------

def _shift_rows(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.roll(row, int(k)) for row, k in zip(x, s)])


def _shift_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Rows with different shifts of both signs, none a multiple of the length except one."""
    gen = torch.Generator().manual_seed(33)
    cases = []
    for b, n, shifts in [(4, 10, [3, -2, 0, 7]), (3, 40, [5, -5, 1]), (2, 6, [6, -1]),
                         (5, 8, [-3, 2, 9, 1, -7])]:
        x = torch.randn(b, n, generator=gen, dtype=torch.float64)
        cases.append((x, torch.tensor(shifts)))
    return cases


def shift_rows(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(x, s)`` shifts row i of x circularly to the right by s[i]."""
    return check.function(fn, _shift_rows, _shift_cases(), name="shift each row", rtol=0,
                          atol=1e-6,
                          hint="out[i, t] = x[i, (t - s[i]) mod L]: build the source index of "
                               "every entry (broadcast s against torch.arange(L)) and gather, "
                               "or roll each row by its own shift.")
