"""Checks for the exercises of section 2.3, Training an MLP end to end.

Precision each exercise asks for: the parameter count and the batches per epoch are whole
numbers and must be exact; the accuracy is a fraction in [0, 1] that must be right to within
1e-6 (float32 arithmetic is fine); the split is a string, compared without regard to capitals,
surrounding words such as "the" and "set", or abbreviations such as "val".
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

import torch

from dlbook import check

_SIZES = (64, 128, 64, 10)
_N_PARAMETERS = sum(n_in * n_out + n_out for n_in, n_out in zip(_SIZES, _SIZES[1:]))
#: What the usual slips give, and a hint for each (a hint, not the count).
_PARAMETER_SLIPS = {
    sum(n_in * n_out for n_in, n_out in zip(_SIZES, _SIZES[1:])): "the biases are missing.",
    _N_PARAMETERS - _SIZES[-1]: "one layer's biases are missing.",
    sum(n_in * n_out + n_out for n_in, n_out in zip(_SIZES[:-1], _SIZES[1:-1])):
        "a layer is missing: 64 → 128 → 64 → 10 has three nn.Linear layers.",
    sum(n_in * n_out + n_in for n_in, n_out in zip(_SIZES, _SIZES[1:])):
        "a layer has one bias per output, not per input.",
}


def mlp_parameters(answer: Any) -> check.Result:
    """Exercise: the number of trainable parameters of the MLP 64 → 128 → 64 → 10 (exact)."""
    slip = _PARAMETER_SLIPS.get(_as_whole_number(answer))
    return check.number(answer, _N_PARAMETERS, name="parameters of 64-128-64-10", rtol=0,
                        atol=0,
                        hint=slip or "count the weights and the biases of each of the three "
                                     "nn.Linear layers, then add them up.")


def _as_whole_number(answer: Any) -> int | None:
    try:
        value = float(check.to_cpu(answer)) if not isinstance(answer, bool) else None
    except (TypeError, ValueError, RuntimeError, OverflowError):
        return None
    return int(value) if value is not None and math.isfinite(value) and value == int(value) \
        else None


def _batches_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def batches_per_epoch(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(n, batch_size, drop_last)`` returns len(DataLoader) for n examples."""
    cases = [(1078, 64, False), (1078, 64, True), (4000, 100, False), (4000, 100, True),
             (10, 32, False), (10, 32, True), (1, 1, True), (999, 1000, False),
             (64, 64, False), (129, 64, True), (10**6 + 1, 1000, False)]
    return check.function(fn, _batches_per_epoch, cases, name="batches per epoch", rtol=0,
                          atol=0,
                          hint="count the full batches first; then ask what happens to the "
                               "examples left over, with and without drop_last, and check the "
                               "case where batch_size divides n.")


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(dim=-1) == y).double().mean().item()


def accuracy(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(logits, y)`` returns the fraction of rows whose arg-max is the label."""
    gen = torch.Generator().manual_seed(23)
    cases = []
    for n, k in [(5, 3), (64, 10), (1, 4), (100, 2), (10, 10)]:
        logits = torch.randn(n, k, generator=gen)
        y = torch.randint(0, k, (n,), generator=gen)
        y[: n // 2] = logits[: n // 2].argmax(dim=-1)  # make about half of them right
        cases.append((logits, y))
    return check.function(fn, _accuracy, cases, name="accuracy", rtol=0, atol=1e-6,
                          hint="a row's predicted class is the index of its largest logit, and "
                               "the accuracy is a fraction of the rows in [0, 1], not a count.")


_SPLITS = ("training set", "validation set", "test set")
_SPLIT_WORDS = {"training": "training set", "train": "training set",
                "validation": "validation set", "valid": "validation set",
                "val": "validation set", "dev": "validation set",
                "development": "validation set", "held-out validation": "validation set",
                "test": "test set", "testing": "test set"}


def _split_name(answer: Any) -> Any:
    """"The Validation set", "val", "validation data" → "validation set"; else unchanged."""
    if not isinstance(answer, str):
        return answer
    words = re.sub(r"[^a-z\- ]", " ", answer.lower()).split()
    while words and words[0] in ("the", "a", "on"):
        words = words[1:]
    while words and words[-1] in ("set", "split", "data", "dataset", "examples"):
        words = words[:-1]
    return _SPLIT_WORDS.get(" ".join(words), answer)


def choose_weight_decay(answer: Any) -> check.Result:
    """Exercise: which split's accuracy should decide between five weight-decay values?"""
    return check.choice(_split_name(answer), "validation set", _SPLITS,
                        name="split for model selection",
                        hint="the split you choose on can no longer give an unbiased estimate, "
                             "and the training accuracy rewards memorising.")
