"""The artificial neuron and the perceptron learning rule (section 1.1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def step(z: torch.Tensor) -> torch.Tensor:
    """Heaviside step: 1.0 where ``z >= 0``, else 0.0 (the perceptron's activation)."""
    return (z >= 0).to(z.dtype if z.is_floating_point() else torch.float32)


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
    """Rosenblatt's rule: for each example, ``u = lr * (y - step(w·x + b))``, then
    ``w += u * x`` and ``b += u`` (``u`` is 0 when the prediction is right).

    Stops when an epoch makes no mistake (converged), or when the weights at the start
    of an epoch equal those at the start of an earlier one: the rule is deterministic,
    so from then on it repeats the same epochs forever and can never converge.
    """
    if X.ndim != 2:
        raise ValueError(f"expected X of shape (n, d), got {tuple(X.shape)}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"expected y of shape ({X.shape[0]},) to match X, "
                         f"got {tuple(y.shape)}")
    if not bool(((y == 0) | (y == 1)).all()):
        raise ValueError("perceptron labels must be 0 or 1")
    if lr <= 0 or epochs < 1:
        raise ValueError(f"need lr > 0 and epochs >= 1, got lr={lr}, epochs={epochs}")
    w = torch.zeros(X.shape[1], dtype=X.dtype) if w0 is None else w0.clone().to(X.dtype)
    b = torch.tensor(float(b0), dtype=X.dtype)
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
