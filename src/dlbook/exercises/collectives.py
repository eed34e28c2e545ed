"""Checks for the exercises of section 6.1, Processes and collectives.

Byte counts, times and bandwidths follow from the alpha-beta model and nccl-tests' definitions
and must be right to three significant figures. A reduce-scatter schedule is checked by
simulating the ring in one process on 2 to 8 ranks: each rank's chunks count how often each
rank's contribution was added, and after ``N - 1`` steps rank ``r`` must hold chunk ``r`` with
every contribution exactly once; the exercise's ring runs to the left (rank ``r`` sends to
``r - 1``), the other way round from the section's. The choice of collectives must name the
right one for each of six situations.
"""

from __future__ import annotations

from typing import Any

import torch

from dlbook import check


def ring_bytes(answer: Any) -> check.Result:
    """Bytes each of 8 GPUs sends in a ring all-reduce of the bf16 gradients of a model with
    1.3e9 parameters: 2 (N - 1) / N * 2.6e9 = 4.55e9."""
    n_bytes, n = 1.3e9 * 2, 8
    return check.number(answer, 2 * (n - 1) / n * n_bytes, name="bytes sent per GPU", digits=3,
                        hint="Count bytes, not parameters (bf16 has 2 bytes each). Each of the "
                             "two phases takes N - 1 steps, and each step sends one chunk of "
                             "n / N bytes.")


def ring_time(answer: Any) -> check.Result:
    """Seconds for a ring all-reduce of 1e8 bytes on 16 ranks with alpha = 20 us and beta =
    25 GB/s: 2·15·2e-5 + 2·15/16·1e8/2.5e10 = 8.1e-3."""
    n_bytes, n, alpha, beta = 1e8, 16, 20e-6, 25e9
    expected = 2 * (n - 1) * alpha + 2 * (n - 1) / n * n_bytes / beta
    return check.number(answer, expected, name="ring all-reduce time in seconds", digits=3,
                        hint="There are 2(N - 1) messages, each paying the latency alpha once "
                             "and carrying n / N bytes at beta bytes per second; give the "
                             "answer in seconds (1 us = 1e-6 s, 1 GB/s = 1e9 bytes/s).")


def _simulate(schedule: Any, n: int) -> str | None:
    """Run ``schedule`` as the reduce-scatter phase of a ring running to the left (rank ``r``
    sends to ``r - 1`` and receives from ``r + 1``) on ``n`` simulated ranks; None if right."""
    # counts[r][c][k]: how many times rank k's contribution to chunk c is in rank r's copy
    counts = [[torch.eye(n, dtype=torch.int64)[r] for _ in range(n)] for r in range(n)]
    for step in range(n - 1):
        moves = []
        for r in range(n):
            pair = schedule(r, step, n)
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                return f"should return a pair (send, receive), got {pair!r:.40}."
            send, recv = (int(v) for v in pair)
            if pair[0] != send or pair[1] != recv or not (0 <= send < n and 0 <= recv < n):
                return f"returned {pair!r} for rank {r} of {n}; chunks are whole numbers 0 to " \
                       f"{n - 1}."
            moves.append((send, recv))
        for r in range(n):
            left = (r - 1) % n
            if moves[left][1] != moves[r][0]:
                return (f"with {n} ranks at step {step}, rank {r} sends chunk {moves[r][0]} to "
                        f"rank {left}, which receives into chunk {moves[left][1]}.")
        incoming = [counts[r][moves[r][0]].clone() for r in range(n)]
        for r in range(n):
            left = (r - 1) % n
            counts[left][moves[left][1]] += incoming[r]
    everyone = torch.ones(n, dtype=torch.int64)
    for r in range(n):
        complete = [c for c in range(n) if torch.equal(counts[r][c], everyone)]
        if r not in complete:
            if complete:
                return (f"with {n} ranks, rank {r} ends with chunk {complete[0]} complete, but "
                        f"the exercise asks for chunk {r} on rank {r}.")
            worst = max(range(n), key=lambda c: int(counts[r][c].max()))
            if int(counts[r][worst].max()) > 1:
                return (f"with {n} ranks, rank {r}'s chunk {worst} counts one rank's "
                        "contribution more than once.")
            return f"with {n} ranks, rank {r} holds no complete chunk after {n - 1} steps."
    return None


def reduce_scatter_schedule(fn: Any) -> check.Result:
    """``fn(rank, step, world_size) -> (send, receive)`` for the reduce-scatter phase of a ring
    all-reduce that sends to the left neighbour (``rank - 1``), such that rank ``r`` ends with
    chunk ``r`` complete; simulated on 2, 3, 4, 5 and 8 ranks."""

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for n in (2, 3, 4, 5, 8):
            problem = _simulate(f, n)
            if problem:
                return problem
        return None

    return check.condition(fn, test, name="reduce-scatter schedule",
                           hint="Here data flows from rank r + 1 to rank r. A rank should pass "
                                "on the chunk it has just added to, so that each chunk collects "
                                "one contribution per hop; count backwards from the last step, "
                                "at which rank r must receive chunk r.")


def bus_bandwidth(answer: Any) -> check.Result:
    """Bus bandwidth in GB/s of an all-reduce of 1e9 bytes on 8 GPUs in 3.9 ms:
    1e9 / 3.9e-3 * 2·7/8 / 1e9 = 448.7."""
    n_bytes, seconds, n = 1e9, 3.9e-3, 8
    return check.number(answer, n_bytes / seconds * 2 * (n - 1) / n / 1e9,
                        name="bus bandwidth in GB/s", digits=3,
                        hint="First the algorithm bandwidth, size over time; then the factor "
                             "nccl-tests uses for all-reduce, which depends on N. Answer in "
                             "GB/s, 1 GB = 1e9 bytes.")


#: situation -> the collective it needs (the answer of which_collective)
_SITUATIONS = {
    "average gradients": "all_reduce",
    "initial weights": "broadcast",
    "gradient shards": "reduce_scatter",
    "weight shards": "all_gather",
    "tokens to experts": "all_to_all",
    "loss for logging": "reduce",
}

_SITUATION_HINTS = {
    "average gradients": "every rank needs the same sum of everyone's tensor.",
    "initial weights": "one rank has the data and every rank needs a copy of it.",
    "gradient shards": "every rank contributes a whole tensor and keeps only its own summed "
                       "part.",
    "weight shards": "every rank contributes its own part and needs the whole tensor, with "
                     "nothing added up.",
    "tokens to experts": "every rank sends a different piece to each other rank.",
    "loss for logging": "only one rank needs the sum.",
}

COLLECTIVES = ("broadcast", "reduce", "all_reduce", "reduce_scatter", "all_gather", "all_to_all")


def _normalise(name: Any) -> Any:
    if not isinstance(name, str):
        return name
    name = name.strip().lower().removeprefix("dist.").removeprefix("torch.distributed.")
    return name.replace("-", "_").replace(" ", "_")


def which_collective(answer: Any) -> check.Result:
    """A dict from each of six situations to one of the six collectives' names
    (``"broadcast"``, ``"reduce"``, ``"all_reduce"``, ``"reduce_scatter"``, ``"all_gather"``,
    ``"all_to_all"``; dashes, spaces and a ``dist.`` prefix are allowed)."""

    def test(a: Any) -> str | None:
        if not isinstance(a, dict):
            return f"expected a dict from situation to collective, got {type(a).__name__}."
        missing = [k for k in _SITUATIONS if k not in a]
        if missing:
            return f"the dict lacks the situation {missing[0]!r}; keep the keys as given."
        for key, value in a.items():
            if key in _SITUATIONS and _normalise(value) not in COLLECTIVES:
                return f"{value!r} (for {key!r}) is not one of {list(COLLECTIVES)}."
        wrong = [k for k in _SITUATIONS if _normalise(a[k]) != _SITUATIONS[k]]
        if wrong:
            return (f"{len(wrong)} of {len(_SITUATIONS)} are not right; the first is "
                    f"{wrong[0]!r}: {_SITUATION_HINTS[wrong[0]]}")
        return None

    return check.condition(answer, test, name="which collective")
