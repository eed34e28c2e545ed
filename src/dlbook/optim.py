"""Optimizers, learning-rate schedules and regularizers written from scratch (section 1.5).

Each optimizer is a ``torch.optim.Optimizer`` subclass named like its PyTorch counterpart and
takes the same main arguments, so it drops into any training loop (and works with
``torch.optim.lr_scheduler``). Its ``_update`` method is the update rule, line for line as in
the book's equations; the tests check that every one matches ``torch.optim`` step for step.
Left out, to keep the code readable: SGD's ``dampening``, Adagrad's ``lr_decay``, RMSprop's
``centered``, Adam's ``amsgrad``, and the ``maximize``/``foreach``/``fused`` switches.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable, Iterable

import torch
from torch import nn

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


class _FromScratch(torch.optim.Optimizer):
    """Calls ``_update`` on every parameter that has a gradient."""

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None
             ) -> torch.Tensor | None:
        """Update every parameter once; ``closure`` re-evaluates the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            # the group's hyper-parameters, not extras such as "initial_lr"
            hyper = {k: group[k] for k in self.defaults}
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise ValueError(
                        f"{type(self).__name__} does not support sparse "
                        "gradients; use dense ones (nn.Embedding(sparse=False))")
                self._update(p, p.grad, self.state[p], **hyper)
        return loss

    def _update(self, p: torch.Tensor, g: torch.Tensor, state: dict,
                **hyper: Any) -> None:
        raise NotImplementedError


class SGD(_FromScratch):
    """SGD with heavy-ball or Nesterov momentum, as ``torch.optim.SGD``.

    b ← μ·b + g (so b = g on the first step);  p ← p − lr·b,
    or, with Nesterov, p ← p − lr·(g + μ·b).
    """

    def __init__(self, params: Params, lr: float = 1e-3,
                 momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False) -> None:
        _require(lr >= 0.0, f"Invalid learning rate: {lr}")
        _require(momentum >= 0.0, f"Invalid momentum value: {momentum}")
        _require(weight_decay >= 0.0,
                 f"Invalid weight_decay value: {weight_decay}")
        _require(not nesterov or momentum > 0,
                 "Nesterov momentum requires a momentum")
        super().__init__(params, dict(lr=lr, momentum=momentum,
                                      weight_decay=weight_decay,
                                      nesterov=nesterov))

    def _update(self, p, g, state, *, lr, momentum, weight_decay, nesterov):
        g = g + weight_decay * p          # gradient of the penalty wd/2·|p|²
        if momentum > 0:
            b = momentum * state.get("momentum_buffer", 0) + g
            state["momentum_buffer"] = b
            g = g + momentum * b if nesterov else b
        p.sub_(lr * g)


class Adagrad(_FromScratch):
    """AdaGrad, as ``torch.optim.Adagrad`` with ``lr_decay=0``.

    G ← G + g²;  p ← p − lr·g / (√G + ε).
    """

    def __init__(self, params: Params, lr: float = 1e-2,
                 weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10) -> None:
        _require(lr >= 0.0, f"Invalid learning rate: {lr}")
        _require(weight_decay >= 0.0,
                 f"Invalid weight_decay value: {weight_decay}")
        _require(initial_accumulator_value >= 0.0,
                 "Invalid initial_accumulator_value value: "
                 f"{initial_accumulator_value}")
        _require(eps >= 0.0, f"Invalid epsilon value: {eps}")
        super().__init__(params, dict(
            lr=lr, weight_decay=weight_decay, eps=eps,
            initial_accumulator_value=initial_accumulator_value))

    def _update(self, p, g, state, *, lr, weight_decay, eps,
                initial_accumulator_value):
        g = g + weight_decay * p
        G = state.get("sum", initial_accumulator_value) + g * g
        state["sum"] = G
        p.sub_(lr * g / (G.sqrt() + eps))


class RMSprop(_FromScratch):
    """RMSProp, as ``torch.optim.RMSprop`` (not centred).

    v ← α·v + (1 − α)·g²;  p ← p − lr·g / (√v + ε),
    or, with momentum, b ← μ·b + g / (√v + ε);  p ← p − lr·b.
    """

    def __init__(self, params: Params, lr: float = 1e-2,
                 alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0) -> None:
        _require(lr >= 0.0, f"Invalid learning rate: {lr}")
        _require(eps >= 0.0, f"Invalid epsilon value: {eps}")
        _require(momentum >= 0.0, f"Invalid momentum value: {momentum}")
        _require(weight_decay >= 0.0,
                 f"Invalid weight_decay value: {weight_decay}")
        _require(alpha >= 0.0, f"Invalid alpha value: {alpha}")
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps,
                                      weight_decay=weight_decay,
                                      momentum=momentum))

    def _update(self, p, g, state, *, lr, alpha, eps, weight_decay,
                momentum):
        g = g + weight_decay * p
        v = alpha * state.get("square_avg", 0) + (1 - alpha) * g * g
        state["square_avg"] = v
        step = g / (v.sqrt() + eps)       # ε is added after the square root
        if momentum > 0:
            step = momentum * state.get("momentum_buffer", 0) + step
            state["momentum_buffer"] = step
        p.sub_(lr * step)


class Adam(_FromScratch):
    """Adam, as ``torch.optim.Adam``: weight decay is an L2 penalty.

    m ← β₁·m + (1 − β₁)·g;   m̂ = m / (1 − β₁ᵗ);
    v ← β₂·v + (1 − β₂)·g²;  v̂ = v / (1 − β₂ᵗ);   p ← p − lr·m̂ / (√v̂ + ε).
    """

    decoupled = False        # AdamW sets this: decay the weights directly

    def __init__(self, params: Params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        _require(lr >= 0.0, f"Invalid learning rate: {lr}")
        _require(eps >= 0.0, f"Invalid epsilon value: {eps}")
        for i in (0, 1):
            _require(0.0 <= betas[i] < 1.0,
                     f"Invalid beta parameter at index {i}: {betas[i]}")
        _require(weight_decay >= 0.0,
                 f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def _update(self, p, g, state, *, lr, betas, eps, weight_decay):
        (beta1, beta2), t = betas, state.get("step", 0) + 1
        if self.decoupled:
            p.mul_(1 - lr * weight_decay)   # AdamW: shrink p, outside m, v
        else:
            g = g + weight_decay * p        # Adam: L2 term, later ÷ √v̂
        m = beta1 * state.get("exp_avg", 0) + (1 - beta1) * g
        v = beta2 * state.get("exp_avg_sq", 0) + (1 - beta2) * g * g
        state.update(step=t, exp_avg=m, exp_avg_sq=v)
        m_hat, v_hat = m / (1 - beta1**t), v / (1 - beta2**t)
        p.sub_(lr * m_hat / (v_hat.sqrt() + eps))


class AdamW(Adam):
    """AdamW, as ``torch.optim.AdamW``: p ← (1 − lr·wd)·p, then Adam."""

    decoupled = True

    def __init__(self, params: Params, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps,
                         weight_decay=weight_decay)


# --- test surfaces and trajectories -------------------------------------------------------

def rosenbrock(xy: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    """Rosenbrock's banana valley (a − x)² + b·(y − x²)², minimum 0 at (a, a²); xy: (..., 2)."""
    if xy.shape[-1] != 2:
        raise ValueError(f"expected points of shape (..., 2), got {tuple(xy.shape)}")
    x, y = xy[..., 0], xy[..., 1]
    return (a - x) ** 2 + b * (y - x**2) ** 2


def trajectories(make_optimizer: Callable[..., torch.optim.Optimizer],
                 f: Callable[[torch.Tensor], torch.Tensor], start: Iterable[float], steps: int,
                 settings: list[dict[str, Any]]) -> torch.Tensor:
    """Minimise ``f`` from ``start`` once per hyper-parameter setting, all runs side by side.

    Each setting (a dict such as ``{"lr": 0.01, "momentum": 0.9}``) gets its own copy of the
    point in its own parameter group of one optimizer; the groups never interact, so this equals
    separate runs, only faster. Returns the visited points, shape (len(settings), steps + 1,
    dim), in float64; a run that overflows is cut, and its later rows are nan.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not settings:
        raise ValueError("settings must hold at least one dict of hyper-parameters, e.g. [{}]")
    x0 = torch.tensor(list(start), dtype=torch.float64)
    points = [x0.clone().requires_grad_() for _ in settings]
    opt = make_optimizer([{"params": [p], **s} for p, s in zip(points, settings)])
    path = torch.full((len(settings), steps + 1, x0.numel()), math.nan, dtype=torch.float64)
    path[:, 0] = x0
    alive = torch.ones(len(settings), dtype=torch.bool)
    for t in range(1, steps + 1):
        opt.zero_grad()
        f(torch.stack(points)).sum().backward()   # each point gets the gradient of its own f
        opt.step()
        with torch.no_grad():
            now = torch.stack(points)
            alive &= torch.isfinite(now).all(dim=1) & (now.abs() < 1e6).all(dim=1)
            path[alive, t] = now[alive]
            for i in (~alive).nonzero().flatten().tolist():
                points[i].zero_()                  # park a diverged run so it stays finite
    return path


def trajectory(make_optimizer: Callable[..., torch.optim.Optimizer],
               f: Callable[[torch.Tensor], torch.Tensor], start: Iterable[float], steps: int,
               **hyper: Any) -> torch.Tensor:
    """One run of :func:`trajectories`: the visited points, shape (steps + 1, dim)."""
    return trajectories(make_optimizer, f, start, steps, [hyper])[0]


# --- learning-rate schedules (closed forms of torch.optim.lr_scheduler) -------------------

def step_lr(t: int, lr: float, step_size: int, gamma: float = 0.1) -> float:
    """Multiply by ``gamma`` every ``step_size`` steps (``StepLR``): lr·γ^⌊t/s⌋."""
    _require(step_size >= 1, f"step_size must be a positive integer, got {step_size}")
    return lr * gamma ** (t // step_size)


def cosine_lr(t: int, lr: float, t_max: int, eta_min: float = 0.0) -> float:
    """Half a cosine from ``lr`` at t = 0 to ``eta_min`` at t = t_max (``CosineAnnealingLR``)."""
    _require(t_max >= 1, f"t_max must be a positive integer, got {t_max}")
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2


def linear_warmup_lr(t: int, lr: float, warmup: int, start_factor: float = 0.01) -> float:
    """Ramp linearly from ``start_factor·lr`` to ``lr`` over ``warmup`` steps (``LinearLR``)."""
    _require(warmup >= 1, f"warmup must be a positive integer, got {warmup}")
    _require(0 < start_factor <= 1, f"start_factor must be in (0, 1], got {start_factor}")
    return lr * (start_factor + (1 - start_factor) * min(t, warmup) / warmup)


def warmup_cosine_lr(t: int, lr: float, warmup: int, total: int,
                     start_factor: float = 0.01, eta_min: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine down to
    ``eta_min`` at step ``total``."""
    _require(total > warmup,
             f"total ({total}) must be larger than warmup ({warmup})")
    if t < warmup:
        return linear_warmup_lr(t, lr, warmup, start_factor)
    return cosine_lr(t - warmup, lr, total - warmup, eta_min)


# --- regularization ------------------------------------------------------------------------

def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout: zero each entry with probability p, scale the
    rest by 1/(1 − p), so that E[dropout(x)] = x; the identity in eval."""
    _require(0.0 <= p <= 1.0,
             f"dropout probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return torch.zeros_like(x)
    # draw on the generator's device (a CPU generator works for a GPU x too)
    where = x.device if generator is None else generator.device
    u = torch.rand(x.shape, generator=generator, device=where).to(x.device)
    keep = u >= p                                  # P(keep) = 1 − p
    return x * keep / (1 - p)


class Dropout(nn.Module):
    """The module form of :func:`dropout`, active only in training mode
    (like ``nn.Dropout``)."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        _require(0.0 <= p <= 1.0,
                 f"dropout probability has to be between 0 and 1, but got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class EarlyStopping:
    """Keep the best validation loss; say when ``patience`` epochs in a row
    brought no improvement.

    Call ``stop = stopper.step(val_loss, model)`` once per epoch. An epoch
    improves when its loss is below the best so far by more than
    ``min_delta``; ``best_epoch`` (counted from 0) and ``best_state`` (a
    copy of ``model.state_dict()``) belong to the best epoch.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0) -> None:
        _require(isinstance(patience, int) and patience >= 1,
                 f"patience must be a positive integer, got {patience!r}")
        _require(min_delta >= 0,
                 f"min_delta must be non-negative, got {min_delta}")
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch, self.best_state = math.inf, -1, None
        self.epoch, self.stopped_epoch = -1, None

    def step(self, val_loss: float, model: nn.Module | None = None) -> bool:
        """Record one epoch; True once ``patience`` epochs did not improve."""
        self.epoch += 1
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch = float(val_loss), self.epoch
            if model is not None:
                self.best_state = copy.deepcopy(model.state_dict())
        waited = self.epoch - self.best_epoch
        if self.stopped_epoch is None and waited >= self.patience:
            self.stopped_epoch = self.epoch
        return self.stopped_epoch is not None
