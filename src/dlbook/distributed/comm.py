"""Counting what the collectives of ``dlbook.distributed`` move.

The data-parallel and sharding classes (``DDP``, ``ShardedOptimizer``, ``FSDP``) send every
collective through :func:`record`, so a :class:`Traffic` meter can add up the bytes each rank
sends, with the usual ring-algorithm volumes for a group of N ranks and a tensor of n bytes:
all-reduce 2(N−1)/N·n, all-gather and reduce-scatter (N−1)/N·n (n = the full, unsharded size),
broadcast and reduce (N−1)/N·n (pipelined ring or tree, the bandwidth term only).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

_METERS: list["Traffic"] = []

#: bytes each rank sends, per byte of the full tensor, for a group of ``n`` ranks
VOLUME = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "broadcast": lambda n: (n - 1) / n,
    "reduce": lambda n: (n - 1) / n,
}


def record(op: str, full_bytes: int, world_size: int) -> None:
    """Tell every active :class:`Traffic` meter that ``op`` ran on a tensor of ``full_bytes``
    (the whole tensor, not a shard) in a group of ``world_size`` ranks."""
    if op not in VOLUME:
        raise ValueError(f"unknown collective {op!r}; expected one of {sorted(VOLUME)}")
    for meter in _METERS:
        meter.calls[op] += 1
        meter.sent[op] += VOLUME[op](world_size) * full_bytes


class Traffic:
    """``with Traffic() as t: ...`` counts collective calls and the bytes this rank sends.

    ``t.sent`` and ``t.calls`` are dicts by collective; ``t.total`` is the bytes in all."""

    def __init__(self) -> None:
        self.sent: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    @property
    def total(self) -> float:
        return sum(self.sent.values())

    def __enter__(self) -> "Traffic":
        _METERS.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _METERS.remove(self)
