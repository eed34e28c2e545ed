"""The exercise checks of section 6.2 (``dlbook.exercises.data_parallel``): see exercise_harness."""

import numpy as np
import torch
import pytest
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import data_parallel as ex


def _average(grads):  # the book's solution
    n = len(grads)
    mean = [sum(rank[i] for rank in grads) / n for i in range(len(grads[0]))]
    return [[m.clone() for m in mean] for _ in range(n)]


def _average_stack(grads):  # right: stack the ranks and take the mean, as tuples
    return [tuple(torch.stack(ts).mean(0) for ts in zip(*grads)) for _ in grads]


def _sum(grads):  # forgets to divide
    total = [sum(rank[i] for rank in grads) for i in range(len(grads[0]))]
    return [total for _ in grads]


def _only_one(grads):  # returns a single list, not one per rank
    return [sum(rank[i] for rank in grads) / len(grads) for i in range(len(grads[0]))]


def _mean_of_first(grads):  # broadcasts rank 0's gradients instead of averaging
    return [[g.clone() for g in grads[0]] for _ in grads]


def _divide_by_two(grads):  # hard-codes two ranks
    mean = [sum(rank[i] for rank in grads) / 2 for i in range(len(grads[0]))]
    return [mean for _ in grads]


def _warmup(step, base_lr, k, warmup_steps):
    return base_lr * (1 + (k - 1) * min(step, warmup_steps) / warmup_steps)


def _warmup_interp(step, base_lr, k, warmup_steps):  # right: np.interp between the two ends
    return float(np.interp(step, [0, warmup_steps], [base_lr, k * base_lr]))


def _warmup_from_zero(step, base_lr, k, warmup_steps):  # starts at 0, not base_lr
    return k * base_lr * min(step, warmup_steps) / warmup_steps


def _warmup_never_ends(step, base_lr, k, warmup_steps):  # keeps rising after warm-up
    return base_lr * (1 + (k - 1) * step / warmup_steps)


def _warmup_to_k(step, base_lr, k, warmup_steps):  # rises to k, not k * base_lr
    return base_lr + (k - base_lr) * min(step, warmup_steps) / warmup_steps


def _buckets(sizes, limit):
    out, cur, total = [], [], 0
    for i in reversed(range(len(sizes))):
        if cur and total + sizes[i] > limit:
            out.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += sizes[i]
    return out + [cur] if cur else out


def _buckets_while(sizes, limit):  # right: written with a while loop and tuples
    i, out = len(sizes) - 1, []
    while i >= 0:
        bucket, total = [i], sizes[i]
        i -= 1
        while i >= 0 and total + sizes[i] <= limit:
            bucket.append(i)
            total += sizes[i]
            i -= 1
        out.append(tuple(bucket))
    return out


def _buckets_forward(sizes, limit):  # walks from the first parameter
    out, cur, total = [], [], 0
    for i in range(len(sizes)):
        if cur and total + sizes[i] > limit:
            out.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += sizes[i]
    return out + [cur] if cur else out


def _buckets_after_overflow(sizes, limit):  # closes a bucket only after it overflowed
    out, cur, total = [], [], 0
    for i in reversed(range(len(sizes))):
        cur.append(i)
        total += sizes[i]
        if total > limit:
            out.append(cur)
            cur, total = [], 0
    return out + [cur] if cur else out


def _buckets_empty_first(sizes, limit):  # may leave an empty bucket for a huge parameter
    out, cur, total = [], [], 0
    for i in reversed(range(len(sizes))):
        if total + sizes[i] > limit:
            out.append(cur)
            cur, total = [], 0
        cur.append(i)
        total += sizes[i]
    return out + [cur]


CASES = [
    Case(ex.average_gradients, solution=_average, takes_function=True, right=[_average_stack],
         wrong=[_sum, _only_one, _mean_of_first, _divide_by_two]),
    Case(ex.scaled_learning_rate, solution=3.2, right=[3.20, np.float32(3.2), torch.tensor(3.2),
                                                       0.1 * 8192 / 256],
         wrong=[0.1 * 32 / 256, 0.1 * 32 * 64 / 256, 0.1 * 32 * 4 / 256, 0.1 * 8192, 0.1]),
    Case(ex.warmup_lr, solution=_warmup, takes_function=True, right=[_warmup_interp],
         wrong=[_warmup_from_zero, _warmup_never_ends, _warmup_to_k]),
    Case(ex.bucket_layout, solution=_buckets, takes_function=True, right=[_buckets_while],
         wrong=[_buckets_forward, _buckets_after_overflow, _buckets_empty_first]),
    Case(ex.averaging_weights_fails, solution="Adam", right=["adam", " ADAM "],
         wrong=["SGD", "SGD with momentum", "adam optimizer"]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)
