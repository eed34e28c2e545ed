"""Fault tolerance: atomic checkpoints, and a job that resumes where a dead worker left it
(section 6.6).

On thousands of GPUs something fails every few hours; a job survives by saving its state
every ``k`` steps and, after a failure, starting again from the last complete checkpoint. Two
things make that exact:

* the checkpoint is written *atomically*: to a temporary file in the same folder, flushed and
  ``fsync``-ed to the disk, then renamed over the old one with ``os.replace`` (a rename within
  one file system is atomic on POSIX and Windows). A crash in the middle leaves the previous
  checkpoint intact, never half a file;
* the state is *complete*: weights, optimizer state (momentum), the step counter, and what
  decides the data (here the step number seeds each batch, so the data loader needs no state
  of its own). Resuming then replays exactly the steps that were lost, and the final weights
  are bit-for-bit those of a run that never failed.

:func:`train` is a data-parallel worker (gradients averaged with ``all_reduce``, float64, SGD
with momentum) that can be told to kill one rank at a given step. Run it with
:func:`dlbook.distributed.launch`, or as a module under torchrun, whose elastic agent restarts
the whole group after a failure (``--max-restarts``)::

    torchrun --standalone --nproc-per-node=2 --max-restarts=1 -m dlbook.distributed.fault \\
        --folder ckpt --steps 12 --every 3 --crash-at 7 --crash-once
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["save_checkpoint", "load_checkpoint", "torn_write", "make_model", "batch", "train",
           "reference_train", "torchrun_train", "CHECKPOINT"]

CHECKPOINT = "checkpoint.pt"
F64 = torch.float64


# ------------------------------------------------------------------------------ checkpoints

def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` (anything ``torch.save`` takes) to ``path`` atomically: a reader, or a
    job restarted after a crash, sees either the old file or the complete new one."""
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict (e.g. {{'model': model.state_dict(), 'step': "
                         f"s}}), got {type(state).__name__}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"the folder {folder!r} does not exist: create it with os.makedirs")
    # same folder, so that os.replace is a rename on one file system (atomic), not a copy
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())            # the bytes are on the disk, not only in a cache
        os.replace(tmp, path)               # the atomic step
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):          # make the rename itself durable (POSIX)
        dfd = os.open(folder, os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def load_checkpoint(path: str | os.PathLike) -> dict | None:
    """The state saved at ``path``, or ``None`` when there is no checkpoint yet."""
    path = os.fspath(path)
    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def torn_write(path: str | os.PathLike, state: dict, fraction: float = 0.5) -> None:
    """What a crash during a plain ``torch.save(state, path)`` leaves: the old file already
    truncated and only the first ``fraction`` of the new bytes written. For demonstrations."""
    if not 0 <= fraction < 1:
        raise ValueError(f"fraction must be in [0, 1), got {fraction!r}")
    import io
    buf = io.BytesIO()
    torch.save(state, buf)
    data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data[: int(fraction * len(data))])


# ---------------------------------------------------------------------- the training job

def make_model(seed: int = 0) -> nn.Module:
    """A small float64 MLP (8 -> 32 -> 32 -> 1) drawn from its own generator."""
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                          nn.Linear(32, 1)).to(F64)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=F64))
    return model


def batch(step: int, size: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The global batch of ``step``, a function of the step alone: a resumed job sees the
    same data as the one that never stopped."""
    g = torch.Generator().manual_seed(10_000 * seed + step)
    x = torch.randn(size, 8, generator=g, dtype=F64)
    return x, torch.sin(x.sum(-1, keepdim=True))


def _optimizer(model: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def reference_train(steps: int = 12, lr: float = 0.05, seed: int = 0) -> dict[str, torch.Tensor]:
    """The same training on one process with the full batch: the final ``state_dict``."""
    model = make_model(seed)
    opt = _optimizer(model, lr)
    for step in range(1, steps + 1):
        x, y = batch(step, seed=seed)
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train(folder: str, steps: int = 12, every: int = 3, crash_at: int | None = None,
          crash_rank: int = 1, crash_once: bool = False, lr: float = 0.05,
          seed: int = 0) -> dict[str, Any]:
    """Data-parallel training worker with checkpoints every ``every`` steps in ``folder``.

    Starts from the checkpoint there if there is one. Rank ``crash_rank`` dies (``os._exit``,
    as a killed process would) when it reaches step ``crash_at``; with ``crash_once`` only the
    first time (a marker file remembers), so a restarted group gets past it. Returns the step
    it resumed from, the losses it computed and the final ``state_dict`` (CPU tensors).
    """
    if not isinstance(every, int) or every < 1 or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps and every must be positive integers, got {steps!r}, {every!r}")
    rank, world = dist.get_rank(), dist.get_world_size()
    if 16 % world:
        raise ValueError(f"the global batch of 16 must split evenly over {world} ranks")
    path = os.path.join(folder, CHECKPOINT)
    model = make_model(seed)
    opt = _optimizer(model, lr)
    start = 0
    state = load_checkpoint(path)
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = state["step"]
    losses = {}
    for step in range(start + 1, steps + 1):
        if step == crash_at and rank == crash_rank:
            marker = os.path.join(folder, "crashed")
            if not (crash_once and os.path.exists(marker)):
                open(marker, "w").close()
                sys.stdout.flush()
                os._exit(1)                       # no cleanup, no goodbye: a dead node
        x, y = batch(step, seed=seed)
        x, y = x.chunk(world)[rank], y.chunk(world)[rank]
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        for p in model.parameters():              # DDP by hand: average the gradients
            dist.all_reduce(p.grad)
            p.grad /= world
        opt.step()
        opt.zero_grad()
        mean_loss = loss.detach().clone()
        dist.all_reduce(mean_loss)
        losses[step] = float(mean_loss) / world
        if step % every == 0:
            if rank == 0:
                save_checkpoint(path, {"model": model.state_dict(),
                                       "optimizer": opt.state_dict(), "step": step})
            dist.barrier()                        # nobody runs ahead of a half-written file
    final = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"resumed_from": start, "losses": losses, "final": final}


# ------------------------------------------------------------------- under torchrun (elastic)

def _join(attempt: int, timeout: float = 30.0) -> None:
    """Join the process group of this attempt. Under torchrun's agent store every attempt's
    keys get their own prefix, so a restarted group never reads the addresses its dead
    predecessors published."""
    from dlbook.distributed.launch import default_backend, init_process_group
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        init_process_group(timeout=timeout)
        return
    import datetime
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    wait = datetime.timedelta(seconds=timeout)
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world,
                          is_master=False, timeout=wait)
    dist.init_process_group(default_backend(world), store=dist.PrefixStore(
        f"/dlbook/attempt_{attempt}", store), rank=rank, world_size=world, timeout=wait)


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="checkpointed data-parallel training")
    parser.add_argument("--folder", required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--crash-at", type=int, default=None)
    parser.add_argument("--crash-once", action="store_true")
    args = parser.parse_args(argv)
    restart = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    _join(restart)
    out = train(args.folder, args.steps, args.every, args.crash_at, crash_once=args.crash_once)
    if dist.get_rank() == 0:
        print(f"[fault] attempt {restart}: resumed from step {out['resumed_from']}, "
              f"finished step {args.steps}", flush=True)
        save_checkpoint(os.path.join(args.folder, "final.pt"), out["final"])
    dist.destroy_process_group()


def torchrun_train(folder: str, steps: int = 12, every: int = 3, crash_at: int | None = None,
                   nproc: int = 2, max_restarts: int = 1, timeout: float = 120.0
                   ) -> dict[str, Any]:
    """Run :func:`train` under ``torchrun --max-restarts``, crashing once at ``crash_at``.
    Returns torchrun's exit code, the worker's own ``[fault]`` lines (torchrun's log lines
    carry PIDs and times) and the final weights (``None`` if the job failed)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}",
           "-m", "dlbook.distributed.fault", "--folder", folder, "--steps", str(steps),
           "--every", str(every)]
    if crash_at is not None:
        cmd += ["--crash-at", str(crash_at), "--crash-once"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # a session of its own, so that a timeout stops torchrun *and* its workers
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        raise RuntimeError(f"torchrun did not finish within {timeout:g} s and was stopped; "
                           f"its last output:\n{log[-2000:]}") from None
    lines = [l for l in log.splitlines() if l.startswith("[fault]")]
    final = load_checkpoint(os.path.join(folder, "final.pt")) if proc.returncode == 0 else None
    return {"returncode": proc.returncode, "lines": lines, "final": final, "log": log}


if __name__ == "__main__":
    _main()
