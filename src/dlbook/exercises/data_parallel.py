"""Checks for the exercises of section 6.2, Data parallelism.

Averaged gradients and bucket layouts are checked exactly (or within 1e-12 in float64) on
random inputs; the learning rate from the linear scaling rule needs three significant figures;
the warm-up schedule must match Goyal et al.'s within 1e-9 at every step checked.
"""

from __future__ import annotations

from typing import Any

import torch

from dlbook import check

F64 = torch.float64


def _grad_cases() -> list[list[list[torch.Tensor]]]:
    g = torch.Generator().manual_seed(62)
    cases = []
    for n_ranks, shapes in ((2, [(3,), (2, 4)]), (4, [(5, 2), (1,), (3, 3, 2)]), (3, [(7,)])):
        cases.append([[torch.randn(s, generator=g, dtype=F64) for s in shapes]
                      for _ in range(n_ranks)])
    return cases


def average_gradients(fn: Any) -> check.Result:
    """``fn(grads)``: ``grads[r][i]`` is rank r's gradient of parameter i; return the same
    structure after an all-reduce that averages, every rank holding the mean of all ranks'."""
    hint = ("Every rank ends with the same tensors: for parameter i, the sum of grads[r][i] "
            "over all ranks r divided by the number of ranks. Return one list per rank.")

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for case in _grad_cases():
            copies = [[t.clone() for t in rank] for rank in case]
            out = f(copies)
            if out is None:
                return "returned None: did you forget the `return` statement?"
            if not isinstance(out, (list, tuple)) or len(out) != len(case):
                return (f"should return one list of gradients per rank ({len(case)} ranks), "
                        f"got {type(out).__name__} of length {len(out) if hasattr(out, '__len__') else '?'}.")
            for r, rank_out in enumerate(out):
                if not isinstance(rank_out, (list, tuple)) or len(rank_out) != len(case[0]):
                    return f"rank {r}'s entry should hold {len(case[0])} gradients."
                for i, got in enumerate(rank_out):
                    want = sum(rank[i] for rank in case) / len(case)
                    got = torch.as_tensor(got, dtype=F64)
                    if got.shape != want.shape:
                        return f"gradient {i} of rank {r} has shape {tuple(got.shape)}, " \
                               f"expected {tuple(want.shape)}."
                    if not torch.allclose(got, want, rtol=1e-12, atol=1e-12):
                        total = sum(rank[i] for rank in case)
                        if torch.allclose(got, total, rtol=1e-12, atol=1e-12):
                            return ("the gradients are summed but not divided by the number of "
                                    "ranks.")
                        return f"gradient {i} of rank {r} is wrong with {len(case)} ranks."
        return None

    return check.condition(fn, test, name="average_gradients", hint=hint)


def scaled_learning_rate(answer: Any) -> check.Result:
    """Goyal et al.'s rule, lr = 0.1 · (global batch / 256), for micro-batches of 32,
    4 accumulation steps and 64 ranks: global batch 8192, lr 3.2."""
    return check.number(answer, 0.1 * 32 * 4 * 64 / 256, name="learning rate", digits=3,
                        hint="First the global batch: every optimizer step sees micro-batch × "
                             "accumulation steps × ranks examples. Then scale 0.1 by how many "
                             "times 256 that is.")


def _warmup_reference(step: int, base_lr: float, k: float, warmup_steps: int) -> float:
    return base_lr * (1 + (k - 1) * min(step, warmup_steps) / warmup_steps)


def warmup_lr(fn: Any) -> check.Result:
    """``fn(step, base_lr, k, warmup_steps)``: Goyal et al.'s gradual warm-up, from ``base_lr``
    at step 0 rising linearly to ``k · base_lr`` at ``warmup_steps``, constant after."""
    inputs = [(s, lr, k, w) for lr, k, w in ((0.1, 32.0, 100), (0.05, 8.0, 7), (1.0, 1.0, 10))
              for s in (0, 1, w // 2, w - 1, w, w + 1, 3 * w)]
    return check.function(fn, _warmup_reference, inputs, name="warmup_lr", rtol=1e-9, atol=1e-12,
                          hint="At step 0 the rate is base_lr, at warmup_steps it is k·base_lr, "
                               "in between it rises by the same amount each step, and after "
                               "warm-up it stays at k·base_lr.")


def _bucket_reference(sizes: list[int], limit: int) -> list[list[int]]:
    buckets: list[list[int]] = []
    current: list[int] = []
    total = 0
    for i in reversed(range(len(sizes))):
        if current and total + sizes[i] > limit:
            buckets.append(current)
            current, total = [], 0
        current.append(i)
        total += sizes[i]
    if current:
        buckets.append(current)
    return buckets


def _bucket_cases() -> list[tuple[list[int], int]]:
    g = torch.Generator().manual_seed(621)
    cases = [([100, 200, 300], 1000), ([100, 200, 300], 300), ([5000, 10, 10], 100),
             ([10, 10, 5000], 100), ([4, 4, 4, 4], 8), ([1], 1)]
    for n in (5, 12, 30):
        sizes = torch.randint(1, 3000, (n,), generator=g).tolist()
        cases.append((sizes, int(torch.randint(500, 6000, (1,), generator=g))))
    return cases


def bucket_layout(fn: Any) -> check.Result:
    """``fn(sizes, limit)`` -> buckets of parameter indices, as ``DDP(bucket_size_mb=...)``
    builds them: walk the parameters from the last to the first, start a new bucket when the
    next one would take the current bucket over ``limit`` bytes (a parameter larger than the
    limit gets a bucket of its own)."""
    hint = ("Go through the indices in reverse (backward produces the last layer's gradients "
            "first). Close the current bucket before adding a parameter that would overflow it, "
            "but never leave a bucket empty.")

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for sizes, limit in _bucket_cases():
            out = f(list(sizes), limit)
            if out is None:
                return "returned None: did you forget the `return` statement?"
            try:
                got = [[int(i) for i in b] for b in out]
            except TypeError:
                return f"should return a list of lists of indices, got {type(out).__name__}."
            want = _bucket_reference(sizes, limit)
            if sorted(i for b in got for i in b) != list(range(len(sizes))):
                return (f"for sizes {sizes} every parameter must be in exactly one bucket; got "
                        f"{got}.")
            if got != want:
                return f"for sizes {sizes} and limit {limit} expected {want}, got {got}."
        return None

    return check.condition(fn, test, name="bucket_layout", hint=hint)


def averaging_weights_fails(answer: Any) -> check.Result:
    """Which optimizer's step, taken on each rank's own gradient and followed by averaging the
    weights, is *not* the same as averaging the gradients first?"""
    options = ["SGD", "SGD with momentum", "Adam"]
    if isinstance(answer, str):  # the spelling of the name does not matter
        answer = {o.lower(): o for o in options}.get(answer.strip().lower(), answer)
    return check.choice(answer, "Adam", options,
                        name="the optimizer",
                        hint="Averaging commutes with any update that is linear in the "
                             "gradients. Momentum is a running sum of gradients; which update "
                             "divides by a square root of squared gradients?")
