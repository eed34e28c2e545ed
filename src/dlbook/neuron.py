"""The artificial neuron and the perceptron learning rule (section 1.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def step(z: torch.Tensor) -> torch.Tensor:
    """Heaviside step: 1.0 where ``z >= 0``, else 0.0 (the perceptron's activation).

    A floating-point ``z`` keeps its dtype, and a NaN stays NaN (``torch.heaviside`` would
    quietly turn it into 0); an integer or boolean ``z`` gives float32.
    """
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"expected z to be a torch.Tensor, got {type(z).__name__}; wrap it "
                         f"with torch.tensor(...)")
    if not z.is_floating_point():
        return (z >= 0).float()
    return torch.where(z.isnan(), z, (z >= 0).to(z.dtype))


@dataclass
class PerceptronRun:
    """What :func:`perceptron_fit` returns: final weights and the story of the run."""

    w: torch.Tensor
    b: torch.Tensor
    mistakes: list[int] = field(default_factory=list)  # mistakes made in each epoch
    converged: bool = False
    cycle_start: int | None = None  # earlier epoch whose start state repeated: never ends


def perceptron_fit(X: torch.Tensor, y: torch.Tensor, *, lr: float = 1.0, epochs: int = 50,
                   w0: torch.Tensor | None = None, b0: float = 0.0) -> PerceptronRun:
    """Rosenblatt's rule: for each example, ``update = lr * (y - step(w·x + b))``, then
    ``w += update * x`` and ``b += update`` (``update`` is 0 when the prediction is right).

    Stops when an epoch makes no mistake (converged), or when the weights at the start
    of an epoch equal those at the start of an earlier one: the rule is deterministic,
    so from then on it repeats the same epochs forever and can never converge.
    """
    X, y, w, b = _perceptron_inputs(X, y, lr, epochs, w0, b0)
    run = PerceptronRun(w, b)
    seen: dict[tuple, int] = {}
    for epoch in range(epochs):
        state = tuple(w.tolist()) + (b.item(),)
        if state in seen:
            run.cycle_start = seen[state]
            break
        seen[state] = epoch
        errors = 0
        for xi, yi in zip(X, y):
            update = lr * (yi - step(w @ xi + b))
            if update != 0:
                w = w + update * xi
                b = b + update
                errors += 1
        run.mistakes.append(errors)
        if errors == 0:
            run.converged = True
            break
    run.w, run.b = w, b
    return run


def _perceptron_inputs(X: torch.Tensor, y: torch.Tensor, lr: float, epochs: int,
                       w0: torch.Tensor | None, b0: float
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate :func:`perceptron_fit`'s arguments; return X, y (as X's dtype), w and b."""
    for name, t in (("X", X), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"expected {name} to be a torch.Tensor, got {type(t).__name__}; "
                             f"wrap it with torch.tensor(...)")
    if not X.is_floating_point():
        raise ValueError(f"X is {X.dtype}: convert it with X.float()")
    if X.ndim != 2:
        raise ValueError(f"expected X of shape (n, d), got {tuple(X.shape)}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError("X contains nan or inf: the perceptron needs finite inputs")
    if y.shape != (X.shape[0],):
        raise ValueError(f"expected y of shape ({X.shape[0]},) to match X, "
                         f"got {tuple(y.shape)}")
    if y.is_complex() or not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("perceptron labels must be 0 or 1")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < float("inf"):
        raise ValueError(f"need a number lr > 0, got lr={lr!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"need an integer epochs >= 1, got epochs={epochs!r}")
    if isinstance(b0, bool) or not isinstance(b0, (int, float)):
        raise ValueError(f"b0 must be a number, got {b0!r}")
    if w0 is None:
        w = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device)
    elif not isinstance(w0, torch.Tensor) or not w0.is_floating_point() \
            or w0.shape != (X.shape[1],):
        got = tuple(w0.shape) if isinstance(w0, torch.Tensor) else type(w0).__name__
        raise ValueError(f"expected w0 to be a floating-point tensor of shape "
                         f"({X.shape[1]},), got {got}")
    else:
        w = w0.detach().clone().to(X.device, X.dtype)
    b = torch.tensor(float(b0), dtype=X.dtype, device=X.device)
    return X, y.to(X.device, X.dtype), w, b
