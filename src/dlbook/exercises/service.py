"""Checks for the exercises of section 7.6, From notebook to service.

The number of sequences that fit is a whole number and must be exact; the static-batching
latencies are compared exactly with :func:`dlbook.serve.simulate_batching` on hand-made and
random cases; the number of requests in flight needs three significant figures and the
checkpoint interval two.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dlbook import calc, check
from dlbook.gpt import GPTConfig
from dlbook.serve import simulate_batching


def _fitting_sequences() -> int:
    config = GPTConfig.llama("8B")
    weights = 2 * calc.parameter_count(config)
    per_sequence = calc.kv_cache_bytes(config, batch_size=1, seq_len=8192)
    return int((80e9 - weights) // per_sequence)


def sequences_that_fit(answer: Any) -> check.Result:
    """Llama 3 8B in bf16 on an 80 GB GPU: how many sequences of 8192 tokens does the
    key/value cache of the memory left after the weights hold? (59)"""
    expected = _fitting_sequences()
    hint = ("Subtract the weights (2 bytes per parameter) from 80e9 bytes, then divide by the "
            "cache of one sequence: keys and values, every layer, the key/value heads (not the "
            "query heads), 2 bytes each. Only whole sequences count.")

    def test(a: Any) -> str | None:
        value = check.as_number(a)
        if value is None:
            return f"expected a whole number, got {type(a).__name__}."
        if value != int(value):
            return f"{value} is not a whole number of sequences."
        if int(value) != expected:
            return f"{int(value)} sequences is not right."
        return None

    return check.condition(answer, test, name="sequences", hint=hint)


def _static_reference(lengths: list[int], max_batch: int) -> list[int]:
    stats = simulate_batching(np.zeros(len(lengths), dtype=np.int64), lengths, max_batch,
                              "static")
    return stats.latency.tolist()


def _static_cases() -> list[tuple[list[int], int]]:
    rng = np.random.default_rng(76)
    cases = [([3, 1, 2], 2), ([5], 1), ([2, 2, 2, 2], 4), ([1, 7, 1, 1, 3], 2)]
    for _ in range(4):
        n = int(rng.integers(1, 12))
        cases.append((rng.integers(1, 20, n).tolist(), int(rng.integers(1, 5))))
    return cases


def static_latencies(fn: Any) -> check.Result:
    """``fn(lengths, max_batch)``: all requests arrive at step 0 and are served in order by
    static batching, ``max_batch`` at a time; return each request's latency in steps."""
    hint = ("Cut the requests, in order, into groups of max_batch. A group runs as long as its "
            "longest request, and starts only when the group before it has finished; a request "
            "is done when its own tokens are.")

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for lengths, max_batch in _static_cases():
            got = f(list(lengths), max_batch)
            if got is None:
                return "returned None: did you forget the `return` statement?"
            want = _static_reference(lengths, max_batch)
            got = [int(x) for x in np.asarray(got).reshape(-1)]
            if got != want:
                return f"wrong latencies for lengths={lengths}, max_batch={max_batch}."
        return None

    return check.condition(fn, test, name="static_latencies", hint=hint)


def requests_in_flight(answer: Any) -> check.Result:
    """Little's law: 20 requests per second, each streaming 200 tokens at 25 tokens per second,
    keep 20 · 200 / 25 = 160 requests in flight."""
    return check.number(answer, 20 * 200 / 25, name="requests in flight", digits=3,
                        hint="Little's law: in flight = arrival rate × time each request "
                             "stays. How long does one request take to stream its tokens?")


def checkpoint_interval(answer: Any) -> check.Result:
    """Young's interval sqrt(2 · C · M) for a 90 s checkpoint and 6 h between pre-emptions,
    in minutes (32.9)."""
    return check.number(answer, math.sqrt(2 * 90 * 6 * 3600) / 60, name="interval (minutes)",
                        digits=2,
                        hint="Put both times in seconds before taking the square root of "
                             "2 · C · M, then convert the result to minutes.")
