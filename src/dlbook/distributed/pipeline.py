"""Pipeline parallelism by hand (section 6.5): a GPT cut into stages, one per rank, and two
schedules that feed micro-batches through them with point-to-point sends and receives.

* :func:`split_gpt` cuts a :class:`dlbook.gpt.GPT` into consecutive :class:`Stage` modules: the
  first holds the embeddings, the last the final norm and the output head.
* :func:`gpipe_schedule` (all forwards, then all backwards) and :func:`one_f_one_b_schedule`
  (one forward, one backward, in a steady state) list each stage's actions ``("F", i)`` and
  ``("B", i)``; :func:`simulate` plays a schedule with given action times, and
  :func:`run_schedule` executes it on one rank with ``dist.isend`` / ``dist.recv``.
* Each micro-batch's loss is divided by the number of micro-batches, so the summed gradients
  are those of the whole batch's mean loss (forgetting it gives ``n_micro`` times the gradient).
* :func:`pipeline_worker` and :func:`torch_pipeline_worker` are what
  :func:`dlbook.distributed.launch.launch` runs on every rank: our schedules, and PyTorch's
  ``torch.distributed.pipelining`` ones; :func:`reference_step` is the one-process run both
  must equal.

The bubble, the idle share of every stage's time, is ``(p - 1) / (m + p - 1)`` for ``p``
stages and ``m`` micro-batches (:func:`bubble_fraction`); :func:`measured_bubble` reads it from
a recorded timeline.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional as F

from dlbook.distributed.launch import local_device
from dlbook.gpt import GPT, GPTConfig, init_weights_

__all__ = ["Stage", "split_gpt", "stage_bounds", "gpipe_schedule", "one_f_one_b_schedule",
           "SCHEDULES", "validate_schedule", "simulate", "bubble_fraction", "measured_bubble",
           "peak_in_flight", "lm_loss", "run_schedule", "reference_step", "pipeline_worker",
           "torch_pipeline_worker", "experiments_worker", "draw_timeline"]

Action = tuple[str, int]          # ("F", i) or ("B", i): forward or backward of micro-batch i


# ------------------------------------------------------------------------------ the stages

def stage_bounds(n_layers: int, n_stages: int) -> list[tuple[int, int]]:
    """Blocks ``[start, end)`` of each stage: as equal as possible, earlier stages get the
    extra block when ``n_layers`` does not divide evenly."""
    if not isinstance(n_stages, int) or n_stages < 1:
        raise ValueError(f"n_stages must be a positive integer, got {n_stages!r}")
    if n_stages > n_layers:
        raise ValueError(f"cannot cut {n_layers} blocks into {n_stages} stages: use at most "
                         f"{n_layers} stages or a deeper model")
    base, extra = divmod(n_layers, n_stages)
    bounds, start = [], 0
    for s in range(n_stages):
        end = start + base + (s < extra)
        bounds.append((start, end))
        start = end
    return bounds


class Stage(nn.Module):
    """Blocks ``start..end-1`` of a GPT; the first stage also embeds the token ids, the last
    also applies the final norm and the output head. The modules are the model's own (no copy),
    so a step on the stages is a step on the model."""

    def __init__(self, model: GPT, start: int, end: int, first: bool, last: bool) -> None:
        super().__init__()
        self.first, self.last = first, last
        self.start, self.end = start, end
        if first:
            self.tok_emb, self.pos_emb, self.drop = model.tok_emb, model.pos_emb, model.drop
        self.blocks = nn.ModuleList(model.blocks[start:end])
        if last:
            self.norm_f, self.lm_head = model.norm_f, model.lm_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """First stage: token ids (B, T) in; others: activations (B, T, d) in. Last stage:
        logits (B, T, vocab) out; others: activations (B, T, d) out."""
        if self.first:
            idx = x
            x = self.tok_emb(idx)
            if self.pos_emb is not None:
                x = x + self.pos_emb(torch.arange(idx.shape[1], device=idx.device))
            x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        if self.last:
            x = self.lm_head(self.norm_f(x))
        return x


def split_gpt(model: GPT, n_stages: int) -> list[Stage]:
    """Cut ``model`` into ``n_stages`` consecutive stages (see :class:`Stage`).

    A model with tied embeddings is refused: its one matrix would live on the first stage (as
    the embedding) and on the last (as the head), and the two copies' gradients would need an
    extra all-reduce between those two ranks after every backward pass."""
    if not isinstance(model, GPT):
        raise ValueError(f"split_gpt cuts a dlbook.gpt.GPT, got {type(model).__name__}")
    if model.config.tie_embeddings and n_stages > 1:
        raise ValueError("tied embeddings put one matrix on the first and the last stage: "
                         "build the model with tie_embeddings=False")
    bounds = stage_bounds(model.config.n_layers, n_stages)
    return [Stage(model, a, b, first=s == 0, last=s == n_stages - 1)
            for s, (a, b) in enumerate(bounds)]


# ------------------------------------------------------------------------------ schedules

def _check_sizes(n_stages: int, n_micro: int) -> None:
    for name, value in (("n_stages", n_stages), ("n_micro", n_micro)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def gpipe_schedule(n_stages: int, n_micro: int) -> list[list[Action]]:
    """GPipe (Huang et al. 2019): every stage runs all forwards, then all backwards."""
    _check_sizes(n_stages, n_micro)
    one = [("F", i) for i in range(n_micro)] + [("B", i) for i in range(n_micro)]
    return [list(one) for _ in range(n_stages)]


def one_f_one_b_schedule(n_stages: int, n_micro: int) -> list[list[Action]]:
    """1F1B (PipeDream-Flush, Narayanan et al. 2021): stage ``s`` runs ``p - 1 - s`` warm-up
    forwards, then alternates one forward and one backward, then drains the backwards. So it
    holds at most ``p - s`` micro-batches' activations instead of all ``m``."""
    _check_sizes(n_stages, n_micro)
    schedules = []
    for s in range(n_stages):
        warmup = min(n_stages - 1 - s, n_micro)
        actions: list[Action] = [("F", i) for i in range(warmup)]
        for i in range(n_micro - warmup):
            actions += [("F", warmup + i), ("B", i)]
        actions += [("B", i) for i in range(n_micro - warmup, n_micro)]
        schedules.append(actions)
    return schedules


SCHEDULES: dict[str, Callable[[int, int], list[list[Action]]]] = {
    "gpipe": gpipe_schedule, "1f1b": one_f_one_b_schedule}


def validate_schedule(schedule: Sequence[Sequence[Action]]) -> tuple[int, int]:
    """(n_stages, n_micro) of a schedule in which every stage runs F and B of each
    micro-batch once, each forward before its backward; else a ``ValueError`` saying which
    stage breaks the rule. (It does not check for deadlocks: :func:`simulate` does.)"""
    if not isinstance(schedule, (list, tuple)) or not schedule:
        raise ValueError("a schedule is a list with one list of actions per stage")
    n_micro = sum(1 for a in schedule[0] if tuple(a)[0] == "F")
    for s, actions in enumerate(schedule):
        actions = [tuple(a) for a in actions]
        want = {("F", i) for i in range(n_micro)} | {("B", i) for i in range(n_micro)}
        if len(actions) != 2 * n_micro or set(actions) != want:
            raise ValueError(f"stage {s} must run ('F', i) and ('B', i) once for every "
                             f"micro-batch i in 0..{n_micro - 1}")
        if any(actions.index(("B", i)) < actions.index(("F", i)) for i in range(n_micro)):
            raise ValueError(f"stage {s} runs a backward before its forward")
    return len(schedule), n_micro


def simulate(schedule: Sequence[Sequence[Action]], forward_time: float = 1.0,
             backward_time: float = 2.0) -> list[dict[str, Any]]:
    """Play a schedule with fixed action times: each stage runs its actions in order, a forward
    as soon as the previous stage has sent that micro-batch's activation, a backward as soon as
    the next stage has sent its gradient. Returns the timeline, one dict per action
    (``stage``, ``kind``, ``micro``, ``start``, ``end``); raises ``ValueError`` if the schedule
    deadlocks (some stage waits for an action that can never run)."""
    p, m = validate_schedule(schedule)
    done: dict[tuple[int, str, int], float] = {}
    position, clock = [0] * p, [0.0] * p
    timeline = []
    while any(position[s] < 2 * m for s in range(p)):
        progressed = False
        for s in range(p):
            while position[s] < 2 * m:
                kind, i = schedule[s][position[s]]
                if kind == "F":
                    need = (s - 1, "F", i) if s > 0 else None
                else:
                    need = (s + 1, "B", i) if s < p - 1 else (s, "F", i)
                if need is not None and need not in done:
                    break
                start = max(clock[s], done[need] if need else 0.0)
                end = start + (forward_time if kind == "F" else backward_time)
                done[(s, kind, i)] = clock[s] = end
                timeline.append(dict(stage=s, kind=kind, micro=i, start=start, end=end))
                position[s] += 1
                progressed = True
        if not progressed:
            waiting = {s: schedule[s][position[s]] for s in range(p) if position[s] < 2 * m}
            raise ValueError(f"the schedule deadlocks: stages wait at {waiting}")
    return sorted(timeline, key=lambda e: (e["stage"], e["start"]))


def bubble_fraction(n_stages: int, n_micro: int) -> float:
    """The idle share of each stage's time in GPipe and 1F1B: (p - 1) / (m + p - 1)."""
    _check_sizes(n_stages, n_micro)
    return (n_stages - 1) / (n_micro + n_stages - 1)


def measured_bubble(timeline: Sequence[dict[str, Any]]) -> float:
    """1 - (time spent computing) / (stages × span of the whole step), from a timeline of
    dicts with ``stage``, ``start`` and ``end`` (all stages on one clock)."""
    if not timeline:
        raise ValueError("the timeline is empty")
    stages = {e["stage"] for e in timeline}
    span = max(e["end"] for e in timeline) - min(e["start"] for e in timeline)
    busy = sum(e["end"] - e["start"] for e in timeline)
    return 1.0 - busy / (len(stages) * span)


def peak_in_flight(actions: Sequence[Action]) -> int:
    """The most micro-batches whose activations one stage holds at once: +1 at each
    forward, -1 at each backward."""
    held = peak = 0
    for kind, _ in actions:
        held += 1 if kind == "F" else -1
        peak = max(peak, held)
    return peak


# ------------------------------------------------------------------------------ one rank

def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of logits (B, T, V) against targets (B, T)."""
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class _SavedBytes:
    """Counts the bytes autograd saves for the backward pass, each storage once, leaving out
    the parameters (they are stored anyway, whatever the schedule)."""

    def __init__(self, params: Sequence[torch.Tensor]) -> None:
        self.bytes = 0
        self._seen = {(p.untyped_storage().data_ptr(), p.device) for p in params}

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        key = (t.untyped_storage().data_ptr(), t.device)
        if key not in self._seen:
            self._seen.add(key)
            self.bytes += t.untyped_storage().nbytes()
        return t


def run_schedule(stage: nn.Module, actions: Sequence[Action],
                 micro_inputs: Sequence[torch.Tensor] | None,
                 micro_targets: Sequence[torch.Tensor] | None, activation_shape: Sequence[int],
                 dtype: torch.dtype = torch.float64, loss_fn: Callable[..., torch.Tensor] = lm_loss,
                 scale_loss: bool = True, forward_seconds: float = 0.0,
                 backward_seconds: float | None = None) -> dict[str, Any]:
    """Execute this rank's ``actions`` (from a schedule) on its ``stage``, accumulating the
    gradients of its parameters; the rank is the stage's index, rank ± 1 its neighbours.

    A forward receives the activation (B, T, d) from the previous rank (the first rank reads
    ``micro_inputs[i]`` instead), runs the stage and sends the result on; the last rank computes
    ``loss_fn(logits, micro_targets[i])``, divided by the number of micro-batches when
    ``scale_loss``. Activations travel as ``dtype`` tensors of ``activation_shape``. A backward
    receives the gradient of the stage's output from the next rank (the last rank starts from
    its loss), back-propagates, and sends the gradient of the stage's input back. Sends are
    non-blocking (``isend``), so two neighbours that both send never wait for each other.

    ``forward_seconds`` (and ``backward_seconds``, default twice that) are slept inside each
    action, so that the recorded timeline shows the schedule rather than a busy CPU.
    Returns ``losses`` (last rank: each micro-batch's unscaled loss), ``timeline`` (a dict per
    action, ``start``/``end`` on the machine's monotonic clock, waiting excluded), ``peak`` (the
    most micro-batches held at once) and ``peak_bytes`` (the most bytes autograd kept for
    them, parameters not counted).
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    first, last = rank == 0, rank == world - 1
    device = local_device()
    n_micro = sum(1 for kind, _ in actions if kind == "F")
    if first and (micro_inputs is None or len(micro_inputs) != n_micro):
        raise ValueError(f"the first rank needs micro_inputs, one per micro-batch ({n_micro})")
    if last and (micro_targets is None or len(micro_targets) != n_micro):
        raise ValueError(f"the last rank needs micro_targets, one per micro-batch ({n_micro})")
    if not first and len(activation_shape) != 3:
        raise ValueError(f"activation_shape is the (batch, seq, d_model) of one micro-batch's "
                         f"activation, got {tuple(activation_shape)}")
    if backward_seconds is None:
        backward_seconds = 2 * forward_seconds
    params = list(stage.parameters())
    held: dict[int, tuple[torch.Tensor | None, torch.Tensor, int]] = {}
    sends: list[Any] = []
    losses: dict[int, float] = {}
    timeline: list[dict[str, Any]] = []
    peak = peak_bytes = 0
    for kind, i in actions:
        if kind == "F":
            if first:
                x = micro_inputs[i].to(device)
            else:
                x = torch.empty(tuple(activation_shape), dtype=dtype, device=device)
                dist.recv(x, src=rank - 1)
                x.requires_grad_(True)
            start = time.perf_counter()
            saved = _SavedBytes(params)
            with torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t):
                y = stage(x)
                if last:
                    loss = loss_fn(y, micro_targets[i].to(device))
                    losses[i] = loss.item()
                    y = loss / n_micro if scale_loss else loss
            held[i] = (x if not first else None, y, saved.bytes)
            outgoing, dst = (None, None) if last else (y.detach().contiguous(), rank + 1)
        else:
            x, y, _ = held.pop(i)
            if last:
                start = time.perf_counter()
                y.backward()
            else:
                grad = torch.empty_like(y)
                dist.recv(grad, src=rank + 1)
                start = time.perf_counter()
                y.backward(grad)
            outgoing, dst = (None, None) if first else (x.grad.contiguous(), rank - 1)
        time.sleep(forward_seconds if kind == "F" else backward_seconds)
        timeline.append(dict(stage=rank, kind=kind, micro=i, start=start, end=time.perf_counter()))
        if outgoing is not None:                    # keep the tensor alive until it is sent
            sends.append((dist.isend(outgoing, dst=dst), outgoing))
            sends = [(w, t) for w, t in sends if not w.is_completed()]
        peak = max(peak, len(held))
        peak_bytes = max(peak_bytes, sum(b for _, _, b in held.values()))
    for work, _ in sends:
        work.wait()
    return dict(losses=[losses[i] for i in sorted(losses)], timeline=timeline, peak=peak,
                peak_bytes=peak_bytes)


# ------------------------------------------------------------------------------ workers

def _build(config: dict[str, Any] | GPTConfig, seed: int) -> GPT:
    config = config if isinstance(config, GPTConfig) else GPTConfig(**config)
    return init_weights_(GPT(config).to(torch.float64), seed)


def _micro(t: torch.Tensor, n_micro: int) -> list[torch.Tensor]:
    if t.shape[0] % n_micro:
        raise ValueError(f"a batch of {t.shape[0]} does not split into {n_micro} equal "
                         "micro-batches: choose n_micro dividing the batch size")
    return list(t.chunk(n_micro))


def reference_step(config: dict[str, Any] | GPTConfig, seed: int, idx: torch.Tensor,
                   targets: torch.Tensor, lr: float = 0.1, steps: int = 1) -> dict[str, Any]:
    """The one-process run a pipeline must equal: ``steps`` SGD steps on the whole batch's
    mean loss, in float64. Returns ``losses`` (one per step), ``grads`` (of the last step) and
    ``params`` (after the last step), by parameter name."""
    model = _build(config, seed)
    losses = []
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        loss = lm_loss(model(idx), targets)
        loss.backward()
        losses.append(loss.item())
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    return dict(losses=losses, grads=grads, params=params)


def _own(model: GPT, stage: nn.Module) -> list[tuple[str, nn.Parameter]]:
    mine = {id(p) for p in stage.parameters()}
    return [(n, p) for n, p in model.named_parameters() if id(p) in mine]


def pipeline_worker(config: dict[str, Any], seed: int, idx: torch.Tensor, targets: torch.Tensor,
                    n_micro: int, schedule: str = "1f1b", lr: float = 0.1, steps: int = 1,
                    scale_loss: bool = True, forward_seconds: float = 0.0,
                    backward_seconds: float | None = None) -> dict[str, Any]:
    """One rank of a hand-written pipeline: build the model (same seed on every rank), keep
    this rank's stage, and run ``steps`` SGD steps with the named schedule ("gpipe" or "1f1b").
    Only the last step sleeps ``forward_seconds`` / ``backward_seconds`` per action: the first
    step also pays one-time start-up costs, which would distort its timeline.
    Returns this rank's ``params`` (after the steps) and ``grads`` (of the last step) by the
    model's parameter names, ``losses`` (each step's mean loss, last rank), and the last step's
    ``timeline``, ``peak`` and ``peak_bytes`` (see :func:`run_schedule`)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {schedule!r}")
    rank, world = dist.get_rank(), dist.get_world_size()
    model = _build(config, seed).to(local_device())
    stage = split_gpt(model, world)[rank]
    own = _own(model, stage)
    actions = SCHEDULES[schedule](world, n_micro)[rank]
    inputs, micro_targets = _micro(idx, n_micro), _micro(targets, n_micro)
    shape = (inputs[0].shape[0], inputs[0].shape[1], model.config.d_model)
    step_losses = []
    for step in range(steps):
        for _, p in own:
            p.grad = None
        dist.barrier()                              # every rank starts the step together
        timed = step == steps - 1                   # earlier steps warm up
        out = run_schedule(stage, actions, inputs, micro_targets, shape,
                           scale_loss=scale_loss, forward_seconds=forward_seconds if timed else 0.0,
                           backward_seconds=backward_seconds if timed else 0.0)
        if out["losses"]:
            step_losses.append(sum(out["losses"]) / n_micro)
        grads = {n: p.grad.clone() for n, p in own}
        with torch.no_grad():
            for _, p in own:
                p -= lr * p.grad
    return dict(params={n: p.detach().cpu().clone() for n, p in own},
                grads={n: g.cpu() for n, g in grads.items()}, losses=step_losses,
                timeline=out["timeline"], peak=out["peak"], peak_bytes=out["peak_bytes"])


def torch_pipeline_worker(config: dict[str, Any], seed: int, idx: torch.Tensor,
                          targets: torch.Tensor, n_micro: int, schedule: str = "1f1b",
                          lr: float = 0.1, steps: int = 1) -> dict[str, Any]:
    """The same pipeline with PyTorch's ``torch.distributed.pipelining``: our stage wrapped in
    a ``PipelineStage``, run by ``ScheduleGPipe`` or ``Schedule1F1B``, which split the batch
    into ``n_micro`` micro-batches and (``scale_grads=True``) divide the gradients by
    ``n_micro``. Returns this rank's ``params``, ``grads`` and ``losses`` as
    :func:`pipeline_worker` does."""
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

    classes = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}
    if schedule not in classes:
        raise ValueError(f"schedule must be one of {list(classes)}, got {schedule!r}")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = local_device()
    model = _build(config, seed).to(device)
    stage = split_gpt(model, world)[rank]
    own = _own(model, stage)
    pipe_stage = PipelineStage(stage, rank, world, device)
    runner = classes[schedule](pipe_stage, n_microbatches=n_micro, loss_fn=lm_loss,
                               scale_grads=True)
    step_losses = []
    for _ in range(steps):
        for _, p in own:
            p.grad = None
        micro_losses: list[torch.Tensor] = []
        if rank == 0:
            runner.step(idx.to(device))
        elif rank == world - 1:
            runner.step(target=targets.to(device), losses=micro_losses)
            step_losses.append(float(torch.stack(micro_losses).detach().mean()))
        else:
            runner.step()
        grads = {n: p.grad.clone() for n, p in own}
        with torch.no_grad():
            for _, p in own:
                p -= lr * p.grad
    return dict(params={n: p.detach().cpu().clone() for n, p in own},
                grads={n: g.cpu() for n, g in grads.items()}, losses=step_losses)


def experiments_worker(calls: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Several runs in one launch (starting processes costs seconds): ``calls`` is a list of
    ``(name, keyword arguments)``, name "pipeline" (:func:`pipeline_worker`) or "torch"
    (:func:`torch_pipeline_worker`); returns their results in order."""
    workers = {"pipeline": pipeline_worker, "torch": torch_pipeline_worker}
    results = []
    for name, kwargs in calls:
        if name not in workers:
            raise ValueError(f"name must be one of {list(workers)}, got {name!r}")
        results.append(workers[name](**kwargs))
        dist.barrier()
    return results


# ------------------------------------------------------------------------------ a picture

def draw_timeline(ax: Any, timeline: Sequence[dict[str, Any]], title: str = "",
                  unit: float = 1.0) -> None:
    """Draw a timeline (from :func:`simulate` or :func:`run_schedule`) as one row of boxes per
    stage: forwards light, backwards dark, each labelled with its micro-batch; white is the
    bubble. ``unit`` divides the times (e.g. 1e-3 for milliseconds)."""
    import matplotlib.pyplot as plt

    t0 = min(e["start"] for e in timeline)
    n_micro = 1 + max(e["micro"] for e in timeline)
    colors = plt.get_cmap("tab10")
    for e in timeline:
        start, width = (e["start"] - t0) / unit, (e["end"] - e["start"]) / unit
        color = colors(e["micro"] % 10)
        ax.barh(e["stage"], width, left=start, height=0.8, color=color,
                alpha=0.45 if e["kind"] == "F" else 1.0, edgecolor="black", linewidth=0.5)
        if n_micro <= 16:
            ax.text(start + width / 2, e["stage"], f"{e['kind']}{e['micro']}", ha="center",
                    va="center", fontsize=8)
    stages = sorted({e["stage"] for e in timeline})
    ax.set_yticks(stages, [f"stage {s}" for s in stages])
    ax.invert_yaxis()
    ax.set_title(title)
