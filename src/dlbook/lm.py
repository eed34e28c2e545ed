"""Training helpers for language models (sections 4.1, 4.3–4.5): batches of shifted windows,
the loss, a warm-up + cosine learning-rate schedule, and a short AdamW training loop.

Section 4.5 writes the loop out line by line; the other sections call :func:`train_lm`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dlbook.utils import progress

__all__ = ["get_batch", "lm_loss", "cosine_lr", "train_lm", "evaluate_loss"]


def get_batch(tokens: torch.Tensor, batch_size: int, context_length: int,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of a 1-D token tensor: inputs x (B, T) and targets y (B, T),
    y being x shifted one token to the left (y[:, t] is the token that follows x[:, :t+1])."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1 or tokens.is_floating_point():
        raise ValueError("expected tokens as a 1-D integer tensor, e.g. torch.tensor(tok.encode(text))")
    for name, value in (("batch_size", batch_size), ("context_length", context_length)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if len(tokens) < context_length + 1:
        raise ValueError(f"need more than context_length={context_length} tokens, "
                         f"got {len(tokens)}")
    starts = torch.randint(len(tokens) - context_length, (batch_size,), generator=generator)
    offsets = torch.arange(context_length)
    x = tokens[starts[:, None] + offsets]
    y = tokens[starts[:, None] + offsets + 1]
    return x, y


def lm_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy of ``model(x)`` against targets ``y`` (ignore_index -100)."""
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                           ignore_index=-100)


def cosine_lr(step: int, max_lr: float, warmup_steps: int, total_steps: int,
              min_lr: float = 0.0) -> float:
    """Linear warm-up to ``max_lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at
    ``total_steps`` (and ``min_lr`` after it)."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress_ = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress_))


@torch.no_grad()
def evaluate_loss(model: nn.Module, tokens: torch.Tensor, batch_size: int, context_length: int,
                  batches: int = 8, seed: int = 0) -> float:
    """Mean loss over ``batches`` fixed random batches of ``tokens`` (same windows every call)."""
    was_training = model.training
    model.eval()
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    total = 0.0
    for _ in range(batches):
        x, y = get_batch(tokens, batch_size, context_length, g)
        total += lm_loss(model, x.to(device), y.to(device)).item()
    model.train(was_training)
    return total / batches


def train_lm(model: nn.Module, tokens: torch.Tensor, *, steps: int, batch_size: int, lr: float,
             context_length: int | None = None, warmup_steps: int = 0,
             min_lr: float | None = None, weight_decay: float = 0.1, grad_clip: float | None = 1.0,
             betas: tuple[float, float] = (0.9, 0.95), seed: int = 0,
             eval_tokens: torch.Tensor | None = None, eval_every: int | None = None,
             eval_batches: int = 8, show_progress: bool = True) -> dict[str, Any]:
    """Train ``model`` on random windows of ``tokens`` with AdamW (weight decay on matrices only),
    warm-up + cosine decay and gradient clipping. Returns the history:
    ``{"step": [...], "train": [...], "val": [...], "lr": [...]}`` (val at ``eval_every``)."""
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    if context_length is None:
        context_length = model.config.context_length
    device = next(model.parameters()).device
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=betas)
    min_lr = lr / 10 if min_lr is None else min_lr
    g = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"step": [], "train": [], "val_step": [], "val": [], "lr": []}
    model.train()
    bar = progress(range(steps), desc="training", total=steps) if show_progress else range(steps)
    for step in bar:
        rate = cosine_lr(step, lr, warmup_steps, steps, min_lr)
        for group in opt.param_groups:
            group["lr"] = rate
        x, y = get_batch(tokens, batch_size, context_length, g)
        loss = lm_loss(model, x.to(device), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        history["step"].append(step)
        history["train"].append(loss.item())
        history["lr"].append(rate)
        last = step == steps - 1
        if eval_tokens is not None and eval_every and ((step + 1) % eval_every == 0 or last):
            history["val_step"].append(step + 1)
            history["val"].append(evaluate_loss(model, eval_tokens, batch_size, context_length,
                                                eval_batches))
    model.eval()
    return history
