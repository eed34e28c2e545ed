"""Checks for the exercises of section 2.3, Training an MLP end to end."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from dlbook import check


def mlp_parameters(answer: Any) -> check.Result:
    """Exercise: the number of trainable parameters of the MLP 64 → 128 → 64 → 10."""
    sizes = (64, 128, 64, 10)
    expected = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes, sizes[1:]))
    return check.number(answer, expected, name="parameters of 64-128-64-10", rtol=0, atol=0.5,
                        hint="each nn.Linear(n_in, n_out) holds an n_out×n_in weight matrix "
                             "and n_out biases; add the three layers.")


def _batches_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def batches_per_epoch(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(n, batch_size, drop_last)`` returns len(DataLoader) for n examples."""
    cases = [(1078, 64, False), (1078, 64, True), (4000, 100, False), (4000, 100, True),
             (10, 32, False), (10, 32, True), (1, 1, True), (999, 1000, False)]
    return check.function(fn, _batches_per_epoch, cases, name="batches per epoch",
                          hint="without drop_last a smaller last batch is kept (round up); "
                               "with drop_last it is thrown away (round down).")


def _accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return (logits.argmax(dim=-1) == y).float().mean().item()


def accuracy(fn: Callable[..., Any]) -> check.Result:
    """Exercise: ``fn(logits, y)`` returns the fraction of rows whose arg-max is the label."""
    gen = torch.Generator().manual_seed(23)
    cases = []
    for n, k in [(5, 3), (64, 10), (1, 4), (100, 2)]:
        logits = torch.randn(n, k, generator=gen)
        y = torch.randint(0, k, (n,), generator=gen)
        y[: n // 2] = logits[: n // 2].argmax(dim=-1)  # make about half of them right
        cases.append((logits, y))
    return check.function(fn, _accuracy, cases, name="accuracy",
                          hint="compare logits.argmax(dim=-1) with y, and average the matches "
                               "as floats (a Python float or a 0-d tensor in [0, 1]).")


_SPLITS = ("training set", "validation set", "test set")


def choose_weight_decay(answer: Any) -> check.Result:
    """Exercise: which split's accuracy should decide between five weight-decay values?"""
    return check.choice(answer, "validation set", _SPLITS, name="split for model selection",
                        hint="the split you choose on can no longer give an unbiased estimate, "
                             "and the training accuracy rewards memorising.")
