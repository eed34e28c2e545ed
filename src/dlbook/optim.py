"""Optimizers, learning-rate schedules, gradient clipping and regularizers written from scratch
(section 1.5).

Each optimizer is a ``torch.optim.Optimizer`` subclass named like its PyTorch counterpart and
takes the same main arguments, so it drops into any training loop (and works with
``torch.optim.lr_scheduler``). Its ``_update`` method is the update rule, line for line as in
the book's equations; the tests check that every one matches ``torch.optim`` step for step.
Left out, to keep the code readable: SGD's ``dampening``, Adagrad's ``lr_decay``, RMSprop's
``centered``, Adam's ``amsgrad``, and the ``maximize``/``foreach``/``fused`` switches.

Arguments are checked by small private helpers (``_check_*``) called in one line at the top of
each function, so that the code the book shows reads like the derivation; a bad argument raises
a ``ValueError`` that says what to pass instead.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Any, Callable, Iterable

import torch
from torch import nn

Params = Iterable[torch.Tensor] | Iterable[dict[str, Any]]


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _is_real(x: Any) -> bool:
    """A real number (int, float, NumPy scalar or one-element tensor), not a bool."""
    if isinstance(x, torch.Tensor):
        return x.numel() == 1 and not x.is_complex() and x.dtype != torch.bool
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _check_number(name: str, x: Any, low: float = -math.inf, high: float = math.inf, *,
                  open_high: bool = False, message: str | None = None,
                  example: str = "") -> None:
    """``x`` is a finite real number in [low, high], or in [low, high) with ``open_high``."""
    if _is_real(x) and math.isfinite(float(x)) and low <= float(x) and (
            float(x) < high if open_high else float(x) <= high):
        return
    where = f"≥ {low:g}" if high == math.inf else \
        f"in [{low:g}, {high:g}{')' if open_high else ']'}"
    hint = f", e.g. {example}" if example else ""
    raise ValueError(f"{message or 'Invalid ' + name}: {x!r} ({name} must be a finite number "
                     f"{where}{hint})")


def _check_int(name: str, x: Any, low: int) -> None:
    if isinstance(x, bool) or not isinstance(x, numbers.Integral) or x < low:
        raise ValueError(f"{name} must be an integer ≥ {low}, got {x!r}")


# --- optimizers ------------------------------------------------------------------------------

# PyTorch's wording for a bad hyper-parameter, and the range each one must lie in.
_HYPER = {
    "lr": ("Invalid learning rate", 0.0, math.inf, False, "lr=1e-3"),
    "momentum": ("Invalid momentum value", 0.0, 1.0, True, "momentum=0.9"),
    "weight_decay": ("Invalid weight_decay value", 0.0, math.inf, False, "weight_decay=1e-2"),
    "eps": ("Invalid epsilon value", 0.0, math.inf, False, "eps=1e-8"),
    "alpha": ("Invalid alpha value", 0.0, 1.0, False, "alpha=0.99"),
    "initial_accumulator_value": ("Invalid initial_accumulator_value value", 0.0, math.inf,
                                  False, "initial_accumulator_value=0.0"),
}


def _check_hyperparameters(group: dict[str, Any]) -> None:
    """Every hyper-parameter of a parameter group lies in its range (see ``_HYPER``)."""
    for name, (message, low, high, open_high, example) in _HYPER.items():
        if name in group:
            _check_number(name, group[name], low, high, open_high=open_high, message=message,
                          example=example)
    if "betas" in group:
        betas = group["betas"]
        _require(isinstance(betas, (tuple, list)) and len(betas) == 2,
                 f"betas must be a pair (beta1, beta2), e.g. betas=(0.9, 0.999); got {betas!r}")
        for i, beta in enumerate(betas):
            _check_number(f"betas[{i}]", beta, 0.0, 1.0, open_high=True,
                          message=f"Invalid beta parameter at index {i}", example="0.9")
    _require(not group.get("nesterov") or float(group.get("momentum", 0)) > 0,
             "Nesterov momentum requires a momentum: pass momentum > 0 with nesterov=True")


def _check_params(params: Any) -> list:
    """``params`` as a list: an iterable of tensors or of parameter-group dicts."""
    _require(not isinstance(params, nn.Module),
             "pass the model's parameters, model.parameters(), not the model itself")
    _require(not isinstance(params, torch.Tensor),
             "params must be an iterable of tensors, e.g. model.parameters() or [w]; "
             "wrap a single tensor in a list")
    try:
        params = list(params)
    except TypeError:
        raise ValueError(f"params must be an iterable of tensors, e.g. model.parameters(); "
                         f"got {type(params).__name__}") from None
    for p in params:
        tensors = p.get("params", []) if isinstance(p, dict) else [p]
        tensors = [tensors] if isinstance(tensors, torch.Tensor) else tensors
        for t in tensors:
            _require(isinstance(t, torch.Tensor),
                     f"params must hold tensors (or dicts of them), got {type(t).__name__}")
    return params


def _check_gradient(optimizer: torch.optim.Optimizer, p: torch.Tensor) -> None:
    name = type(optimizer).__name__
    _require(not p.grad.is_sparse, f"{name} does not support sparse gradients; use dense ones "
             "(nn.Embedding(sparse=False)) or torch.optim.SparseAdam")
    _require(not p.is_complex(), f"{name} does not support complex parameters (its squares "
             "would be complex too); use torch.optim, which treats them as pairs of reals")


class _FromScratch(torch.optim.Optimizer):
    """Calls ``_update`` on every parameter that has a gradient."""

    def __init__(self, params: Params, defaults: dict[str, Any]) -> None:
        super().__init__(_check_params(params), defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """As in PyTorch, and the group's hyper-parameters are checked too."""
        _check_hyperparameters({**self.defaults, **param_group})
        super().add_param_group(param_group)

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
                _check_gradient(self, p)
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

    def __init__(self, params: Params, lr: float = 1e-3, momentum: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
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

    def __init__(self, params: Params, lr: float = 1e-2, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10) -> None:
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, eps=eps,
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

    def __init__(self, params: Params, lr: float = 1e-2, alpha: float = 0.99,
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
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
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0) -> None:
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

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
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


# --- test surfaces and trajectories -------------------------------------------------------

def rosenbrock(xy: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    """Rosenbrock's banana valley (a − x)² + b·(y − x²)², minimum 0 at (a, a²); xy: (..., 2)."""
    _require(isinstance(xy, torch.Tensor),
             f"expected a tensor of points of shape (..., 2), got {type(xy).__name__}")
    _require(xy.ndim >= 1 and xy.shape[-1] == 2,
             f"expected points of shape (..., 2), got {tuple(xy.shape)}")
    x, y = xy[..., 0], xy[..., 1]
    return (a - x) ** 2 + b * (y - x**2) ** 2


def _check_trajectories(start: Iterable[float], steps: int, settings: Any) -> torch.Tensor:
    """The start point as a float64 vector, after checking the arguments."""
    _check_int("steps", steps, 0)
    _require(isinstance(settings, (list, tuple)) and len(settings) > 0 and
             all(isinstance(s, dict) for s in settings),
             "settings must be a list of dicts of hyper-parameters, e.g. [{'lr': 0.01}] "
             f"(one dict per run); got {settings!r:.60}")
    try:
        x0 = torch.tensor(list(start), dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"start must be a sequence of numbers, e.g. (-1.2, 1.0); got "
                         f"{start!r:.60}") from None
    _require(x0.ndim == 1 and x0.numel() >= 1 and bool(torch.isfinite(x0).all()),
             "start must be a flat sequence of finite numbers, e.g. (-1.2, 1.0); got "
             f"{start!r:.60}")
    return x0


def trajectories(make_optimizer: Callable[..., torch.optim.Optimizer],
                 f: Callable[[torch.Tensor], torch.Tensor], start: Iterable[float], steps: int,
                 settings: list[dict[str, Any]]) -> torch.Tensor:
    """Minimise ``f`` from ``start`` once per hyper-parameter setting, all runs side by side.

    Each setting (a dict such as ``{"lr": 0.01, "momentum": 0.9}``) gets its own copy of the
    point in its own parameter group of one optimizer; the groups never interact, so this equals
    separate runs, only faster. Returns the visited points, shape (len(settings), steps + 1,
    dim), in float64; a run that overflows is cut, and its later rows are nan.
    """
    x0 = _check_trajectories(start, steps, settings)
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

def _check_schedule(t: Any, lr: Any, **positive: Any) -> None:
    """t is a step (an integer ≥ 0), lr a rate ≥ 0, and each of ``positive`` an integer ≥ 1."""
    _check_int("t", t, 0)
    _check_number("lr", lr, 0.0, example="lr=0.1")
    for name, value in positive.items():
        _check_int(name, value, 1)


def step_lr(t: int, lr: float, step_size: int, gamma: float = 0.1) -> float:
    """Multiply by ``gamma`` every ``step_size`` steps (``StepLR``): lr·γ^⌊t/s⌋."""
    _check_schedule(t, lr, step_size=step_size)
    _check_number("gamma", gamma, 0.0, example="gamma=0.1")
    return lr * gamma ** (t // step_size)


def cosine_lr(t: int, lr: float, t_max: int, eta_min: float = 0.0) -> float:
    """Half a cosine from ``lr`` at t = 0 to ``eta_min`` at t = t_max (``CosineAnnealingLR``);
    past t_max it rises again, as PyTorch's does."""
    _check_schedule(t, lr, t_max=t_max)
    _check_number("eta_min", eta_min, 0.0, example="eta_min=0.0")
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2


def linear_warmup_lr(t: int, lr: float, warmup: int, start_factor: float = 0.01) -> float:
    """Ramp linearly from ``start_factor·lr`` to ``lr`` over ``warmup`` steps (``LinearLR``)."""
    _check_schedule(t, lr, warmup=warmup)
    _require(_is_real(start_factor) and 0 < float(start_factor) <= 1,
             f"start_factor must be in (0, 1], got {start_factor!r}")
    return lr * (start_factor + (1 - start_factor) * min(t, warmup) / warmup)


def _check_warmup_cosine(warmup: Any, total: Any) -> None:
    _check_int("warmup", warmup, 0)
    _check_int("total", total, 1)
    _require(total > warmup, f"total ({total}) must be larger than warmup ({warmup})")


def warmup_cosine_lr(t: int, lr: float, warmup: int, total: int,
                     start_factor: float = 0.01, eta_min: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine down to
    ``eta_min`` at step ``total``."""
    _check_warmup_cosine(warmup, total)
    if t < warmup:
        return linear_warmup_lr(t, lr, warmup, start_factor)
    return cosine_lr(t - warmup, lr, total - warmup, eta_min)


# --- gradient clipping ---------------------------------------------------------------------

def _grads_to_clip(parameters: torch.Tensor | Iterable[torch.Tensor], max_norm: Any
                   ) -> list[torch.Tensor]:
    """The gradients that exist (``p.grad`` not None), after checking the arguments."""
    _require(not isinstance(parameters, nn.Module),
             "pass model.parameters(), not the model itself")
    _require(_is_real(max_norm) and float(max_norm) >= 0,   # nan fails; inf only measures
             f"max_norm must be a number ≥ 0, e.g. max_norm=1.0; got {max_norm!r}")
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    try:
        parameters = list(parameters)
    except TypeError:
        raise ValueError("parameters must be a tensor or an iterable of tensors, e.g. "
                         f"model.parameters(); got {type(parameters).__name__}") from None
    for p in parameters:
        _require(isinstance(p, torch.Tensor), "parameters must hold tensors, e.g. "
                 f"model.parameters(); got {type(p).__name__}")
        _require(p.grad is None or not p.grad.is_sparse,
                 "clip_grad_norm_ needs dense gradients (nn.Embedding(sparse=False))")
    return [p.grad for p in parameters if p.grad is not None]


def _check_finite(total: torch.Tensor, error_if_nonfinite: bool) -> None:
    _require(not error_if_nonfinite or bool(torch.isfinite(total)),
             f"the global gradient norm is {total.item()}, so it cannot be clipped; look for "
             "a diverging loss (or pass error_if_nonfinite=False to scale by it anyway)")


@torch.no_grad()
def clip_grad_norm_(parameters: torch.Tensor | Iterable[torch.Tensor], max_norm: float,
                    error_if_nonfinite: bool = False) -> torch.Tensor:
    """Scale all gradients by one common factor so that their global norm is at most
    ``max_norm``; return the global norm from before, as ``torch.nn.utils.clip_grad_norm_``.

    The global norm treats all gradients as one long vector, ‖g‖ = √(Σₖ ‖g⁽ᵏ⁾‖²); parameters
    whose ``.grad`` is None are skipped. ``max_norm=math.inf`` only measures the norm. A nan
    or inf norm cannot be clipped: as in PyTorch, the gradients are then scaled by nan (and the
    returned norm shows it) unless ``error_if_nonfinite=True``, which raises a ValueError.
    """
    grads = _grads_to_clip(parameters, max_norm)
    if not grads:
        return torch.tensor(0.0)
    device = grads[0].device
    norms = torch.stack([g.norm().to(device) for g in grads])   # ‖g⁽ᵏ⁾‖, one per tensor
    total = norms.norm()                                         # √(Σₖ ‖g⁽ᵏ⁾‖²)
    _check_finite(total, error_if_nonfinite)
    scale = (max_norm / (total + 1e-6)).clamp(max=1.0)         # 1 if already short enough
    for g in grads:
        g.mul_(scale.to(g.device))
    return total


# --- regularization ------------------------------------------------------------------------

def _check_dropout(x: Any, p: Any) -> None:
    _require(isinstance(x, torch.Tensor), f"x must be a tensor, got {type(x).__name__}")
    _require(x.is_floating_point() or x.is_complex(),
             f"x is {str(x.dtype).removeprefix('torch.')}: dropout scales by 1/(1 − p), "
             "so convert it with .float() first")
    _check_p(p)


def _check_p(p: Any) -> None:
    _require(_is_real(p) and 0.0 <= float(p) <= 1.0,
             f"dropout probability has to be between 0 and 1, but got {p!r}")


def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Inverted dropout: zero each entry with probability p, scale the
    rest by 1/(1 − p), so that E[dropout(x)] = x; the identity in eval."""
    _check_dropout(x, p)
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
        _check_p(p)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _check_early_stopping(patience: Any, min_delta: Any) -> None:
    _require(isinstance(patience, int) and not isinstance(patience, bool) and patience >= 1,
             f"patience must be a positive integer, got {patience!r}")
    _require(_is_real(min_delta) and 0 <= float(min_delta) < math.inf,
             f"min_delta must be non-negative, got {min_delta!r}")


def _check_val_loss(val_loss: Any, model: Any) -> float:
    """The loss as a float (nan stays nan: it never counts as an improvement)."""
    _require(_is_real(val_loss), "val_loss must be a single number (a float or a one-element "
             f"tensor, e.g. loss.item()); got {val_loss!r:.60}")
    _require(model is None or isinstance(model, nn.Module),
             f"model must be an nn.Module or None, got {type(model).__name__}")
    return float(val_loss)


class EarlyStopping:
    """Keep the best validation loss; say when ``patience`` epochs in a row
    brought no improvement.

    Call ``stop = stopper.step(val_loss, model)`` once per epoch. An epoch
    improves when its loss is below the best so far by more than
    ``min_delta``; ``best_epoch`` (counted from 0) and ``best_state`` (a
    copy of ``model.state_dict()``) belong to the best epoch.
    """

    def __init__(self, patience: int = 10, min_delta: float = 0.0) -> None:
        _check_early_stopping(patience, min_delta)
        self.patience, self.min_delta = patience, min_delta
        self.best_loss, self.best_epoch, self.best_state = math.inf, -1, None
        self.epoch, self.stopped_epoch = -1, None

    def step(self, val_loss: float, model: nn.Module | None = None) -> bool:
        """Record one epoch; True once ``patience`` epochs did not improve
        (a nan loss never improves)."""
        val_loss = _check_val_loss(val_loss, model)
        self.epoch += 1
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.best_epoch = val_loss, self.epoch
            if model is not None:
                self.best_state = copy.deepcopy(model.state_dict())
        waited = self.epoch - self.best_epoch
        if self.stopped_epoch is None and waited >= self.patience:
            self.stopped_epoch = self.epoch
        return self.stopped_epoch is not None
