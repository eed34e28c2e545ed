"""Collectives from point-to-point messages, and what they cost (section 6.1).

* :func:`ring_all_reduce` sums (or takes the max or min of) a tensor across all ranks of the
  default process group with nothing but sends to the right neighbour and receives from the
  left one: a reduce-scatter phase of ``N - 1`` steps, then an all-gather phase of ``N - 1``
  steps, each step moving one of ``N`` chunks. :func:`ring_reduce_scatter` and
  :func:`ring_all_gather` are its two halves on their own. The chunk each rank sends at each
  step comes from :func:`reduce_scatter_chunks` and :func:`all_gather_chunks`, which
  :func:`ring_all_reduce_states` also uses to draw the schedule without any processes.
* The alpha-beta model: a message of ``n`` bytes takes ``alpha + n / beta`` seconds.
  :func:`ring_all_reduce_time`, :func:`naive_all_reduce_time` and :func:`tree_all_reduce_time`
  apply it; :func:`fit_alpha_beta` recovers ``alpha`` and ``beta`` from measurements.
* :func:`bus_bandwidth` converts a measured time to the "bus bandwidth" of nccl-tests, which
  is comparable across collectives and numbers of ranks.
* Workers for :func:`dlbook.distributed.launch.launch`: :func:`collectives_demo`,
  :func:`check_ring_collectives` and :func:`time_all_reduce`.

``python -m dlbook.distributed.collectives`` (under torchrun) prints one line per rank.
"""

from __future__ import annotations

import math
import statistics
import time
from typing import Any, Callable

import torch
import torch.distributed as dist

from dlbook.distributed.launch import init_process_group, local_device

#: the reductions ring_all_reduce knows: name -> (in-place combine, torch.distributed op)
OPS: dict[str, tuple[Callable[[torch.Tensor, torch.Tensor], Any], Any]] = {
    "sum": (lambda acc, x: acc.add_(x), dist.ReduceOp.SUM),
    "product": (lambda acc, x: acc.mul_(x), dist.ReduceOp.PRODUCT),
    "max": (lambda acc, x: torch.maximum(acc, x, out=acc), dist.ReduceOp.MAX),
    "min": (lambda acc, x: torch.minimum(acc, x, out=acc), dist.ReduceOp.MIN),
}

#: bus bandwidth = algorithm bandwidth x this factor (nccl-tests' PERFORMANCE.md)
BUS_FACTORS: dict[str, Callable[[int], float]] = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
}


# ------------------------------------------------------------------ the ring's schedule

def reduce_scatter_chunks(rank: int, step: int, world_size: int) -> tuple[int, int]:
    """``(send, receive)``: the chunks rank ``rank`` sends right and receives from the left
    (and adds to its own) at step ``step`` of the reduce-scatter phase.

    Every rank sends the chunk it received one step earlier, so a chunk travels round the
    ring collecting one contribution per hop; after ``N - 1`` steps rank ``r`` holds the
    complete reduction of chunk ``r``."""
    return (rank - step - 1) % world_size, (rank - step - 2) % world_size


def all_gather_chunks(rank: int, step: int, world_size: int) -> tuple[int, int]:
    """``(send, receive)`` at step ``step`` of the all-gather phase: rank ``r`` starts by
    sending its complete chunk ``r`` and then forwards what it has just received."""
    return (rank - step) % world_size, (rank - step - 1) % world_size


def ring_all_reduce_states(world_size: int) -> list[list[list[frozenset[int]]]]:
    """Which ranks' contributions each rank holds in each chunk, before the first step and
    after each of the ``2 (N - 1)`` steps of ring all-reduce: ``states[t][rank][chunk]`` is a
    set of ranks. A simulation, in one process, of the schedule that :func:`ring_all_reduce`
    runs (used to draw it)."""
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    n = world_size
    held = [[frozenset([r]) for _ in range(n)] for r in range(n)]
    states = [held]
    for phase, schedule in (("reduce", reduce_scatter_chunks), ("gather", all_gather_chunks)):
        for step in range(n - 1):
            new = [list(row) for row in held]
            for r in range(n):
                send, _ = schedule(r, step, n)
                right = (r + 1) % n
                _, recv = schedule(right, step, n)
                assert recv == send, "the neighbours disagree on the chunk"
                new[right][recv] = held[r][send] | held[right][recv] if phase == "reduce" \
                    else held[r][send]
            held = new
            states.append(held)
    return states


# ------------------------------------------------------------------ ring collectives

def _check_tensor(tensor: Any, op: str = "sum", name: str = "tensor") -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if not tensor.is_contiguous():
        raise ValueError(f"{name} must be contiguous: pass {name}.contiguous() (the ring sends "
                         "slices of its flat view)")
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
    if not dist.is_initialized():
        raise ValueError("no process group: call init_process_group() first (or run the code "
                         "with dlbook.distributed.launch)")


def _exchange(send: torch.Tensor, recv: torch.Tensor, right: int, left: int) -> int:
    """Send ``send`` to the right neighbour while receiving ``recv`` from the left one; both
    are posted before either is waited for, so no rank blocks its neighbour. Returns the
    bytes sent."""
    # An empty chunk (a tensor shorter than the ring) is not sent: the left neighbour's send
    # and this rank's receive are the same chunk, so both sides skip it together.
    ops = [dist.P2POp(dist.isend, send, right)] if send.numel() else []
    ops += [dist.P2POp(dist.irecv, recv, left)] if recv.numel() else []
    if ops:
        for request in dist.batch_isend_irecv(ops):
            request.wait()
    return send.numel() * send.element_size()


def _reduce_scatter_phase(chunks: list[torch.Tensor], combine: Callable[..., Any]) -> int:
    rank, n = dist.get_rank(), dist.get_world_size()
    sent = 0
    for step in range(n - 1):
        send, recv = reduce_scatter_chunks(rank, step, n)
        incoming = torch.empty_like(chunks[recv])
        sent += _exchange(chunks[send], incoming, (rank + 1) % n, (rank - 1) % n)
        combine(chunks[recv], incoming)
    return sent


def _all_gather_phase(chunks: list[torch.Tensor]) -> int:
    rank, n = dist.get_rank(), dist.get_world_size()
    sent = 0
    for step in range(n - 1):
        send, recv = all_gather_chunks(rank, step, n)
        sent += _exchange(chunks[send], chunks[recv], (rank + 1) % n, (rank - 1) % n)
    return sent


def ring_all_reduce(tensor: torch.Tensor, op: str = "sum") -> int:
    """Reduce ``tensor`` across all ranks of the default group, in place, like
    ``dist.all_reduce``, with only sends and receives between ring neighbours.

    The flat tensor is cut into ``N`` chunks (``tensor_split``: any length works, some chunks
    may be one element longer or empty). Returns the number of bytes this rank sent, which is
    ``2 (N - 1) / N`` times the tensor's size when its length is a multiple of ``N``."""
    _check_tensor(tensor, op)
    combine = OPS[op][0]
    chunks = list(tensor.view(-1).tensor_split(dist.get_world_size()))  # views: in place
    return _reduce_scatter_phase(chunks, combine) + _all_gather_phase(chunks)


def ring_reduce_scatter(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Rank ``r``'s chunk ``tensor.view(-1).tensor_split(N)[r]`` reduced over all ranks (a new
    tensor; ``tensor`` is unchanged): the first half of :func:`ring_all_reduce`."""
    _check_tensor(tensor, op)
    combine = OPS[op][0]
    chunks = list(tensor.detach().clone().view(-1).tensor_split(dist.get_world_size()))
    _reduce_scatter_phase(chunks, combine)
    return chunks[dist.get_rank()]


def ring_all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` (all of the same shape), concatenated along dimension 0 in rank
    order: the second half of :func:`ring_all_reduce`, with each rank starting from its own
    chunk."""
    _check_tensor(tensor)
    n, rank = dist.get_world_size(), dist.get_rank()
    if tensor.dim() == 0:
        raise ValueError("tensor must have at least one dimension: pass tensor.reshape(1)")
    out = torch.empty((n * tensor.shape[0], *tensor.shape[1:]), dtype=tensor.dtype,
                      device=tensor.device)
    chunks = list(out.chunk(n)) if tensor.shape[0] else [out] * n
    chunks[rank].copy_(tensor)
    _all_gather_phase(chunks)
    return out


# ------------------------------------------------------------------ the alpha-beta model

def _check_model(n_bytes: float, world_size: int, alpha: float, beta: float) -> None:
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if n_bytes < 0:
        raise ValueError(f"n_bytes must be >= 0, got {n_bytes}")
    if alpha < 0 or beta <= 0:
        raise ValueError(f"need alpha >= 0 seconds and beta > 0 bytes per second, got "
                         f"alpha={alpha}, beta={beta}")


def ring_all_reduce_time(n_bytes: float, world_size: int, alpha: float, beta: float) -> float:
    """Seconds for ring all-reduce of ``n_bytes`` on ``world_size`` ranks when a message of
    ``m`` bytes takes ``alpha + m / beta``: ``2(N-1)`` steps of one chunk of ``n/N`` bytes,
    ``2(N-1) alpha + 2(N-1)/N * n / beta``."""
    _check_model(n_bytes, world_size, alpha, beta)
    n = world_size
    return 2 * (n - 1) * alpha + 2 * (n - 1) / n * n_bytes / beta


def naive_all_reduce_time(n_bytes: float, world_size: int, alpha: float, beta: float) -> float:
    """Seconds for the parameter-server pattern: ``N - 1`` ranks send their whole tensor to
    rank 0, whose link takes them one after another, and rank 0 sends the sum back to each:
    ``2(N-1) (alpha + n / beta)``."""
    _check_model(n_bytes, world_size, alpha, beta)
    return 2 * (world_size - 1) * (alpha + n_bytes / beta)


def tree_all_reduce_time(n_bytes: float, world_size: int, alpha: float, beta: float) -> float:
    """Seconds for a binary-tree reduce to the root followed by a broadcast down the same tree,
    whole tensors, not pipelined: ``2 ceil(log2 N) (alpha + n / beta)``. Few steps (good for
    small messages), but every step moves all ``n`` bytes."""
    _check_model(n_bytes, world_size, alpha, beta)
    return 2 * math.ceil(math.log2(world_size)) * (alpha + n_bytes / beta)


def fit_alpha_beta(n_bytes: Any, seconds: Any, world_size: int) -> tuple[float, float]:
    """``(alpha, beta)`` of the ring model fitted to measured all-reduce times, by least
    squares on the *relative* error (so that 1 KB and 64 MB messages count alike).

    The ring model is linear in ``n``: ``t = a + b n`` with ``a = 2(N-1) alpha`` and
    ``b = 2(N-1) / (N beta)``."""
    x = torch.as_tensor(n_bytes, dtype=torch.float64).flatten()
    t = torch.as_tensor(seconds, dtype=torch.float64).flatten()
    if x.numel() != t.numel() or x.numel() < 2:
        raise ValueError(f"need at least two (size, time) pairs of equal length, got "
                         f"{x.numel()} sizes and {t.numel()} times")
    if not bool((t > 0).all()):
        raise ValueError("every time must be positive seconds")
    if not isinstance(world_size, int) or world_size < 2:
        raise ValueError(f"world_size must be an int >= 2, got {world_size!r}")
    design = torch.stack([torch.ones_like(x), x], dim=1) / t[:, None]
    a, b = torch.linalg.lstsq(design, torch.ones_like(t)[:, None]).solution.flatten().tolist()
    n = world_size
    return a / (2 * (n - 1)), 2 * (n - 1) / (n * b)


def bus_bandwidth(n_bytes: float, seconds: float, world_size: int,
                  op: str = "all_reduce") -> float:
    """Bus bandwidth in bytes per second, as nccl-tests reports it: the algorithm bandwidth
    ``n_bytes / seconds`` times a factor that makes it the rate at which each rank's link
    carries data (``2(N-1)/N`` for all-reduce, ``(N-1)/N`` for all-gather, reduce-scatter and
    all-to-all, 1 for broadcast and reduce). ``n_bytes`` is the size of the whole tensor: the
    input of all-reduce and reduce-scatter, the output of all-gather."""
    if op not in BUS_FACTORS:
        raise ValueError(f"op must be one of {sorted(BUS_FACTORS)}, got {op!r}")
    if not isinstance(world_size, int) or isinstance(world_size, bool) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if n_bytes < 0 or seconds <= 0:
        raise ValueError(f"need n_bytes >= 0 and seconds > 0, got {n_bytes} and {seconds}")
    return n_bytes / seconds * BUS_FACTORS[op](world_size)


# ------------------------------------------------------------------ workers for launch()

def demo_input(rank: int, n: int) -> torch.Tensor:
    """The demo's input on rank ``rank``: the ``n`` whole numbers ``10 rank + 1, ...``, so
    that every value shows which rank it came from."""
    if n < 1 or rank < 0:
        raise ValueError(f"need rank >= 0 and n >= 1, got rank={rank}, n={n}")
    return (10 * rank + torch.arange(1, n + 1)).to(torch.float64)


def collectives_demo() -> dict[str, Any]:
    """Run each of the six collectives once on small whole-number tensors (``10 r + 1, ...``
    on rank ``r``) and return ``{name: (before, after)}`` for this rank, plus an all-reduce in
    two subgroups (ranks ``[0, 1]`` and ``[2, 3]`` when there are four ranks). ``after`` is
    ``None`` where the collective leaves nothing defined on this rank (reduce off the root)."""
    rank, n = dist.get_rank(), dist.get_world_size()
    device = local_device()
    out: dict[str, Any] = {}

    x = demo_input(rank, n).to(device)
    before = x.clone()
    dist.broadcast(x, src=0)
    out["broadcast"] = (before.cpu(), x.cpu())

    x = demo_input(rank, n).to(device)
    before = x.clone()
    dist.reduce(x, dst=0, op=dist.ReduceOp.SUM)
    out["reduce"] = (before.cpu(), x.cpu() if rank == 0 else None)

    x = demo_input(rank, n).to(device)
    before = x.clone()
    dist.all_reduce(x, op=dist.ReduceOp.SUM)
    out["all_reduce"] = (before.cpu(), x.cpu())

    x = demo_input(rank, n).to(device)
    mine = torch.empty(1, dtype=x.dtype, device=device)
    dist.reduce_scatter(mine, list(x.chunk(n)), op=dist.ReduceOp.SUM)
    out["reduce_scatter"] = (x.cpu(), mine.cpu())

    x = demo_input(rank, n)[:1].to(device)  # one number per rank
    gathered = [torch.empty_like(x) for _ in range(n)]
    dist.all_gather(gathered, x)
    out["all_gather"] = (x.cpu(), torch.cat(gathered).cpu())

    x = demo_input(rank, n).to(device)
    received = [torch.empty(1, dtype=x.dtype, device=device) for _ in range(n)]
    dist.all_to_all(received, list(x.chunk(n)))
    out["all_to_all"] = (x.cpu(), torch.cat(received).cpu())

    if n % 2 == 0:  # process groups: every rank creates every group, in the same order
        groups = [dist.new_group([r, r + 1]) for r in range(0, n, 2)]
        x = demo_input(rank, n).to(device)
        before = x.clone()
        dist.all_reduce(x, group=groups[rank // 2])
        out["pairs"] = (before.cpu(), x.cpu())
    return out


def _random_tensor(numel: int, dtype: torch.dtype, generator: torch.Generator) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.randn(numel, generator=generator, dtype=torch.float64).to(dtype)
    return torch.randint(-1000, 1000, (numel,), generator=generator, dtype=dtype)


def check_ring_collectives(numels: list[int], seed: int = 0) -> dict[str, Any]:
    """Compare :func:`ring_all_reduce`, :func:`ring_reduce_scatter` and
    :func:`ring_all_gather` with ``torch.distributed``'s collectives and with a single-process
    reference (every rank can make every rank's input from the shared seed), for each length
    in ``numels``, each dtype (float64, float32, int64) and each op (sum, max, min).

    Returns, on every rank: the number of cases, the largest difference from the reference per
    dtype (relative to the largest value of the tensor), whether max, min and integer sums
    were exact, and whether the bytes sent matched ``2(N-1)/N`` of the tensor."""
    rank, n = dist.get_rank(), dist.get_world_size()
    device = local_device()
    worst = {"float64": 0.0, "float32": 0.0}
    exact = True
    bytes_match = True
    cases = 0
    for i, numel in enumerate(numels):
        for dtype in (torch.float64, torch.float32, torch.int64):
            inputs = [_random_tensor(numel, dtype, torch.Generator().manual_seed(
                seed * 1_000_003 + 1000 * i + 10 * r + (dtype == torch.float32)))
                for r in range(n)]
            for op in ("sum", "max", "min"):
                reference = {"sum": lambda ts: torch.stack(ts).to(torch.float64).sum(0),
                             "max": lambda ts: torch.stack(ts).amax(0),
                             "min": lambda ts: torch.stack(ts).amin(0)}[op](inputs)
                mine = inputs[rank].clone().to(device)
                sent = ring_all_reduce(mine, op)
                theirs = inputs[rank].clone().to(device)
                dist.all_reduce(theirs, op=OPS[op][1])
                pieces = mine.cpu().tensor_split(n)
                scattered = ring_reduce_scatter(inputs[rank].to(device), op).cpu()
                gathered = ring_all_gather(inputs[rank].to(device)).cpu()
                cases += 1
                if numel % n == 0:
                    bytes_match &= sent == 2 * (n - 1) * numel // n * mine.element_size()
                exact &= torch.equal(gathered, torch.cat(inputs))
                exact &= torch.equal(scattered, pieces[rank])
                if op == "sum" and dtype.is_floating_point:
                    scale = max(1.0, float(reference.abs().max())) if numel else 1.0
                    for got in (mine.cpu(), theirs.cpu()):
                        diff = float((got.to(torch.float64) - reference).abs().max()) \
                            if numel else 0.0
                        key = str(dtype).removeprefix("torch.")
                        worst[key] = max(worst[key], diff / scale)
                else:  # integers, max and min have no rounding: equal, bit for bit
                    exact &= torch.equal(mine.cpu(), reference.to(dtype))
                    exact &= torch.equal(theirs.cpu(), reference.to(dtype))
    return {"cases": cases, "world_size": n, "worst_relative": worst, "exact": bool(exact),
            "bytes_match": bool(bytes_match)}


def time_all_reduce(sizes: list[int], repeats: int = 5) -> list[float]:
    """Median seconds of ``dist.all_reduce`` of a float32 tensor of each size in bytes (the
    slowest rank's time of each call, after one warm-up call)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = local_device()
    medians = []
    for size in sizes:
        if size < 4 or size % 4:
            raise ValueError(f"sizes must be positive multiples of 4 bytes, got {size}")
        x = torch.ones(size // 4, dtype=torch.float32, device=device)
        times = []
        for k in range(repeats + 1):
            dist.barrier()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            dist.all_reduce(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64,
                                   device=device)
            dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            if k:  # the first call is a warm-up
                times.append(float(elapsed))
        medians.append(statistics.median(times))
    return medians


# ------------------------------------------------------------------ under torchrun

def main() -> None:
    """One line per rank, printed by rank 0 in rank order: rank, world size, backend, and the
    all-reduced sum of the ranks' ``rank + 1`` (which is ``N (N + 1) / 2``)."""
    rank, world_size = init_process_group()
    x = torch.tensor([rank + 1.0], device=local_device())
    dist.all_reduce(x)
    line = (f"rank {rank} of {world_size}, backend {dist.get_backend()}: all_reduce of "
            f"rank + 1 gives {x.item():g}")
    lines: list[Any] = [None] * world_size
    dist.all_gather_object(lines, line)  # every rank's line, so that rank 0 prints in order
    if rank == 0:
        print("\n".join(lines), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
