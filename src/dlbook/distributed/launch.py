"""Starting processes for the book's distributed sections, with no hang ever.

Two ways to start ``world_size`` cooperating processes on one machine:

* from a notebook cell, :func:`launch` runs an *importable* function in fresh processes (the
  ``spawn`` start method), one per rank, inside an initialised process group, and returns what
  each rank returned;
* from a shell (or a ``!`` line in a cell), ``torchrun --standalone --nproc-per-node=N -m
  dlbook....`` starts modules that call :func:`init_process_group` themselves.

Both put a timeout on everything: the process group's collectives give up after ``timeout``
seconds, and :func:`launch` watches its workers, so a rank that dies or hangs ends the call with
a clear error (naming the rank and its last traceback line) instead of a frozen notebook.
gloo runs on the CPU; on a machine with one GPU per rank the same code uses NCCL.
"""

from __future__ import annotations

import datetime
import os
import pickle
import shutil
import socket
import sys
import tempfile
import time
import traceback
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

#: seconds a collective may wait for the other ranks before it raises
DEFAULT_TIMEOUT = 30.0


def default_backend(world_size: int | None = None) -> str:
    """``"nccl"`` when there is a CUDA GPU for every rank, else ``"gloo"``."""
    if world_size is None:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available() and torch.cuda.device_count() >= world_size:
        return "nccl"
    return "gloo"


def local_device() -> torch.device:
    """The device this rank computes on: its own GPU under NCCL, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return torch.device("cpu")


def init_process_group(backend: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                       threads: int | None = 1) -> tuple[int, int]:
    """Join the process group described by the environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``, as ``torchrun`` and :func:`launch` set them), with a
    timeout on every collective. Returns ``(rank, world_size)``."""
    for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if var not in os.environ:
            raise ValueError(f"the environment variable {var} is not set: start this code with "
                             "torchrun --standalone --nproc-per-node=N, or with "
                             "dlbook.distributed.launch(fn, N)")
    if timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    if threads is not None:
        torch.set_num_threads(threads)  # N processes on a few cores: one thread each
    world_size = int(os.environ["WORLD_SIZE"])
    backend = backend or default_backend(world_size)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", os.environ["RANK"])))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout))
    return dist.get_rank(), dist.get_world_size()


def free_port() -> int:
    """A TCP port on the loopback address that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, fn: Callable[..., Any], args: tuple,
            kwargs: dict, folder: str, backend: str | None, timeout: float, init: bool,
            threads: int | None, env: dict[str, str]) -> None:
    os.environ.update(env)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size))
    sys.stdout = open(os.path.join(folder, f"{rank}.out"), "w", buffering=1)  # shown later
    try:
        if init:
            init_process_group(backend, timeout, threads)
        elif threads is not None:
            torch.set_num_threads(threads)
        result = fn(*args, **kwargs)
        with open(os.path.join(folder, f"{rank}.tmp"), "wb") as f:
            torch.save(result, f)
        os.replace(os.path.join(folder, f"{rank}.tmp"), os.path.join(folder, f"{rank}.pt"))
    except BaseException:
        with open(os.path.join(folder, f"{rank}.err"), "w") as f:
            f.write(traceback.format_exc())
        sys.stdout.flush()
        os._exit(1)  # don't wait in atexit handlers for peers that may be gone
    sys.stdout.flush()
    if dist.is_initialized():
        try:
            dist.barrier()  # every rank has written its result
        except Exception:  # a peer already left: nothing to wait for
            pass
    # leave at once: the interpreter's exit can spend seconds joining the threads of
    # libraries (process groups, checkpoint writers) whose work is done
    os._exit(0)


class WorkerError(RuntimeError):
    """A rank raised, died or hung; the message names it and quotes its error."""


def launch(fn: Callable[..., Any], world_size: int = 2, *args: Any, timeout: float = 60.0,
           collective_timeout: float = DEFAULT_TIMEOUT, backend: str | None = None,
           init: bool = True, threads: int | None = 1, show: str | None = "0",
           env: dict[str, str] | None = None, **kwargs: Any) -> list[Any]:
    """Run ``fn(*args, **kwargs)`` in ``world_size`` new processes, one per rank, and return
    the list of their return values (rank 0 first).

    Each process joins a process group (gloo on the CPU, NCCL when every rank has a GPU) whose
    collectives time out after ``collective_timeout`` seconds, unless ``init=False``. ``fn``
    must be importable (defined in a module, not in the notebook), as must its arguments and
    result. What the ranks print is captured and shown afterwards: rank 0's (``show="0"``),
    every rank's with a ``[rank r]`` prefix (``show="all"``) or none (``show=None``).
    If a rank raises or exits, the others are stopped and :class:`WorkerError` quotes the
    failure; if the ranks are still running after ``timeout`` seconds, they are stopped and
    :class:`WorkerError` says which ones hung.
    """
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be a positive int, got {world_size!r}")
    if getattr(fn, "__module__", "__main__") == "__main__" or "<locals>" in getattr(
            fn, "__qualname__", ""):
        raise ValueError(f"{getattr(fn, '__name__', fn)!r} is defined in the notebook (or "
                         "inside a function), so the new processes cannot import it: define "
                         "it in a module (as dlbook.distributed's workers are) and import it")
    if show not in (None, "0", "all"):
        raise ValueError(f"show must be '0', 'all' or None, got {show!r}")
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    folder = tempfile.mkdtemp(prefix="dlbook-launch-")
    ctx = mp.get_context("spawn")
    port = free_port()
    extra = dict(env or {})
    extra.setdefault("OMP_NUM_THREADS", str(threads or 1))
    procs = [ctx.Process(target=_worker, daemon=True,
                         args=(r, world_size, port, fn, args, kwargs, folder, backend,
                               collective_timeout, init, threads, extra))
             for r in range(world_size)]
    try:
        for p in procs:
            p.start()
        deadline = time.monotonic() + timeout
        failed = None
        while True:
            codes = [p.exitcode for p in procs]
            bad = [r for r, c in enumerate(codes) if c not in (None, 0)]
            if bad:
                failed = bad
                break
            if all(c == 0 for c in codes):
                break
            if time.monotonic() > deadline:
                hung = [r for r, c in enumerate(codes) if c is None]
                _stop(procs)
                raise WorkerError(
                    f"rank(s) {hung} of {world_size} still running after {timeout:g} s: a "
                    "collective is probably waiting for a rank that never calls it (every "
                    "rank must make the same collective calls in the same order); all ranks "
                    "were stopped")
            time.sleep(0.02)
        if failed:
            time.sleep(0.5)  # let the other ranks fail too, and write their errors
            codes = [p.exitcode for p in procs]  # before we stop the rest ourselves
            _stop(procs)
            raise WorkerError(_describe_failure(codes, folder, world_size))
        if show is not None:
            for r in range(world_size) if show == "all" else [0]:
                text = open(os.path.join(folder, f"{r}.out")).read()
                if show == "all":
                    text = "".join(f"[rank {r}] {line}\n" for line in text.splitlines())
                print(text, end="")
        results = []
        for r in range(world_size):
            with open(os.path.join(folder, f"{r}.pt"), "rb") as f:
                results.append(torch.load(f, weights_only=False))
        return results
    finally:
        _stop(procs)
        shutil.rmtree(folder, ignore_errors=True)


#: words in the error of a rank that only lost its peer (a symptom, not the cause)
_PEER_LOST = ("Connection reset", "Connection closed", "Broken pipe", "peer", "Timed out",
              "timed out", "Socket Timeout")


def _describe_failure(codes: list[int | None], folder: str, world_size: int) -> str:
    """Name the rank that caused the failure: one that died without a Python error, or one
    whose error is not just 'my peer went away'."""
    failed = [r for r, c in enumerate(codes) if c not in (None, 0)]
    errors = {}
    for r in failed:
        path = os.path.join(folder, f"{r}.err")
        if os.path.exists(path):
            errors[r] = open(path).read().strip()
    died = [r for r in failed if r not in errors]
    if died:
        r = died[0]
        code = codes[r]
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        return (f"rank {r} of {world_size} died ({how}) without a Python error (killed, out "
                "of memory, or os._exit); the other ranks were stopped")
    causes = [r for r in failed if not any(w in errors[r].splitlines()[-1] for w in _PEER_LOST)]
    r = (causes or failed)[0]
    last = errors[r].splitlines()[-1] if errors[r] else "(no message)"
    return (f"rank {r} of {world_size} failed with {last}; the other ranks were stopped.\n"
            f"--- rank {r}'s traceback ---\n{errors[r]}")


def _stop(procs: list[Any]) -> None:
    procs = [p for p in procs if p.pid is not None]  # only those that started
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join(timeout=5)
