"""Gradient descent on problems small enough that every number can be predicted (section 1.4).

* :func:`gradient_descent` — iterate x ← x − η ∇f(x) and keep the whole trajectory.
* :class:`Quadratic` — f(x) = ½ xᵀ A x, the model problem: the eigenvalues of A say which
  learning rates converge and how fast. :func:`quadratic_2d` builds a tilted 2-D one.
* :func:`fit_rate` — measure the contraction per step of a trajectory.
* Stochastic and mini-batch gradient descent on linear regression with the mean squared error:
  :func:`linear_regression_data`, :func:`mse` (Section 1.3's :func:`dlbook.losses.mse` of the
  predictions ``X w``), :func:`per_example_grads`, :func:`minibatch_noise`,
  :func:`minibatch_noise_theory`, :func:`sgd_linear_regression`.

Every function follows the dtype and device of its input tensors and refuses, with a
``ValueError`` that says how to fix it, what would silently give a wrong answer: integer points
(``x @ A`` would round), mixed dtypes, shapes that broadcast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from dlbook import losses
from dlbook.utils import check_like

Tensor = torch.Tensor


def _check_lr(lr: float) -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) \
            or lr <= 0:
        raise ValueError(f"the learning rate must be a positive number, got {lr!r}")


def _check_count(value: int, label: str, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{label} must be an integer >= {minimum}, got {value!r}")


def _check_float_tensor(x: object, label: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{label} must be a tensor, got {type(x).__name__}; "
                         "write e.g. torch.tensor([1.0, 2.0])")
    if not x.is_floating_point():
        raise ValueError(f"{label} is {x.dtype}: convert it with {label}.float() (integer "
                         "arithmetic would round every step)")


def _check_same_kind(tensors: dict[str, Tensor]) -> None:
    """All tensors share one dtype and one device (torch would raise a cryptic error)."""
    (first, a), *rest = tensors.items()
    for label, t in rest:
        check_like(t, label, a, first)


def _check_gd(grad: object, x0: object, lr: float, steps: int) -> Tensor:
    """Validate the arguments of gradient_descent; return x0 as a tensor."""
    if not callable(grad):
        raise ValueError("grad must be a function that maps x to the gradient at x")
    if isinstance(x0, (int, float, list, tuple)) and not isinstance(x0, bool):
        x0 = torch.as_tensor(x0)
    _check_float_tensor(x0, "x0")
    _check_lr(lr)
    _check_count(steps, "steps")
    return x0


def _check_gradient(g: object, x: Tensor) -> None:
    """grad(x) must be a tensor like x: same shape (no broadcasting), dtype and device."""
    if not isinstance(g, torch.Tensor) or g.shape != x.shape:
        got = tuple(g.shape) if isinstance(g, torch.Tensor) else type(g).__name__
        raise ValueError(f"grad(x) must return a tensor of x's shape {tuple(x.shape)}, got {got}")
    _check_same_kind({"x": x, "grad(x)": g})


def gradient_descent(grad: Callable[[Tensor], Tensor], x0: Tensor, lr: float,
                     steps: int) -> Tensor:
    """Run ``steps`` steps of x_{t+1} = x_t − lr · grad(x_t) from ``x0``.

    Returns every iterate, x_0 included, stacked: shape ``(steps + 1, *x0.shape)``.
    Keeping the whole trajectory (not just the end point) lets us compare it with theory.
    """
    xs = [_check_gd(grad, x0, lr, steps)]
    for _ in range(steps):
        g = grad(xs[-1])
        _check_gradient(g, xs[-1])
        xs.append(xs[-1] - lr * g)
    return torch.stack(xs)


@dataclass(frozen=True)
class Quadratic:
    """f(x) = ½ xᵀ A x with A symmetric positive definite; its minimum is f(0) = 0.

    Near a minimum every smooth loss looks like this, with A its Hessian, so what gradient
    descent does here it does, locally, everywhere. Points have shape ``(..., d)``.
    """

    A: Tensor

    def __post_init__(self) -> None:
        A = self.A
        if not isinstance(A, torch.Tensor) or A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError("A must be a square matrix tensor of shape (d, d), got "
                             f"{tuple(A.shape) if isinstance(A, torch.Tensor) else type(A)}")
        if not A.is_floating_point():
            raise ValueError(f"A must be a floating-point tensor, got dtype {A.dtype}")
        if not torch.allclose(A, A.T):
            raise ValueError("A must be symmetric (A == A.T); use (A + A.T) / 2")
        if float(torch.linalg.eigvalsh(A)[0]) <= 0:
            raise ValueError("A must be positive definite (all eigenvalues > 0)")

    def _matrix_for(self, x: Tensor) -> Tensor:
        _check_float_tensor(x, "x")
        if x.ndim == 0 or x.shape[-1] != self.A.shape[0]:
            raise ValueError(f"expected points of shape (..., {self.A.shape[0]}), "
                             f"got {tuple(x.shape)}")
        return self.A.to(device=x.device, dtype=x.dtype)

    def __call__(self, x: Tensor) -> Tensor:
        """The value ½ xᵀ A x at each point."""
        return 0.5 * ((x @ self._matrix_for(x)) * x).sum(-1)

    def grad(self, x: Tensor) -> Tensor:
        """The gradient A x at each point (A is symmetric, so x @ A is the same)."""
        return x @ self._matrix_for(x)

    @property
    def eigenvalues(self) -> Tensor:
        """The curvatures along the principal axes, smallest first."""
        return torch.linalg.eigvalsh(self.A)

    @property
    def condition_number(self) -> float:
        """κ = λ_max / λ_min: how much more curved the steepest direction is than the flattest."""
        lam = self.eigenvalues
        return float(lam[-1] / lam[0])

    @property
    def max_lr(self) -> float:
        """2 / λ_max: gradient descent converges from every start exactly when 0 < lr < this."""
        return float(2 / self.eigenvalues[-1])

    @property
    def best_lr(self) -> float:
        """2 / (λ_min + λ_max): the fixed learning rate with the fastest worst-case rate."""
        lam = self.eigenvalues
        return float(2 / (lam[0] + lam[-1]))

    def rate(self, lr: float) -> float:
        """max_i |1 − lr·λ_i|: the factor by which the slowest component shrinks per step."""
        _check_lr(lr)
        return float((1 - lr * self.eigenvalues).abs().max())


def quadratic_2d(lam_min: float, lam_max: float, angle: float = 0.0,
                 dtype: torch.dtype = torch.float64) -> Quadratic:
    """A 2-D quadratic with curvatures ``lam_min`` ≤ ``lam_max`` along axes turned by ``angle``.

    A = R diag(lam_min, lam_max) Rᵀ with R the rotation by ``angle`` (radians), so the
    eigenvectors are R's columns: the valley floor points along (cos angle, sin angle).
    """
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool)
               for v in (lam_min, lam_max, angle)) or not 0 < lam_min <= lam_max < math.inf:
        raise ValueError(f"need numbers 0 < lam_min <= lam_max, got {lam_min!r}, {lam_max!r} "
                         f"(angle {angle!r})")
    c, s = math.cos(angle), math.sin(angle)
    R = torch.tensor([[c, -s], [s, c]], dtype=dtype)
    A = R @ torch.diag(torch.tensor([lam_min, lam_max], dtype=dtype)) @ R.T
    return Quadratic((A + A.T) / 2)


def _check_trajectory(trajectory: object, start: int) -> None:
    if not isinstance(trajectory, torch.Tensor) or trajectory.ndim < 1:
        raise ValueError("trajectory must be a tensor of iterates, "
                         "shape (steps + 1, ...)")
    _check_count(start, "start")
    if trajectory.shape[0] - start < 2:
        raise ValueError(f"need at least 2 iterates after start={start}, "
                         f"got {max(trajectory.shape[0] - start, 0)}")


def fit_rate(trajectory: Tensor, start: int = 0) -> float:
    """The contraction per step ρ that best fits ‖x_t‖ ≈ C ρ^t for t ≥ ``start``.

    A least-squares line through (t, log ‖x_t‖) has slope log ρ. The minimum must be at
    the origin (subtract it first otherwise); ρ < 1 means convergence, ρ > 1 divergence.
    """
    _check_trajectory(trajectory, start)
    x = trajectory[start:].double()
    norms = x.reshape(x.shape[0], -1).norm(dim=1)          # ‖x_t‖ (|x_t| in 1-D)
    if not bool((norms > 0).all() & norms.isfinite().all()):
        raise ValueError("every iterate must have a finite, non-zero norm to fit a rate")
    t = torch.arange(norms.numel(), dtype=torch.float64, device=norms.device)
    t_c, logs_c = t - t.mean(), norms.log() - norms.log().mean()
    slope = (t_c * logs_c).sum() / (t_c**2).sum()           # least-squares slope
    return float(slope.exp())


# --- Stochastic and mini-batch gradient descent on linear regression -------------------------

def linear_regression_data(n: int, d: int, noise: float = 0.5, *,
                           generator: torch.Generator | None = None,
                           dtype: torch.dtype = torch.float32,
                           ) -> tuple[Tensor, Tensor, Tensor]:
    """Synthetic regression data y = X w_true + noise · ε with X, w_true, ε standard normal.

    Returns ``(X, y, w_true)`` with shapes (n, d), (n,), (d,), all of ``dtype``.
    """
    _check_count(n, "n", 1)
    _check_count(d, "d", 1)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < math.inf:
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype, got {dtype!r}")
    X = torch.randn(n, d, generator=generator, dtype=dtype)
    w_true = torch.randn(d, generator=generator, dtype=dtype)
    y = X @ w_true + noise * torch.randn(n, generator=generator, dtype=dtype)
    return X, y, w_true


def _check_xyw(X: Tensor, y: Tensor, w: Tensor) -> None:
    for label, t in (("X", X), ("y", y), ("w", w)):
        _check_float_tensor(t, label)
    if X.ndim != 2:
        raise ValueError(f"expected X of shape (n, d), got {tuple(X.shape)}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"expected y of shape ({X.shape[0]},), got {tuple(y.shape)}")
    if w.shape != (X.shape[1],):
        raise ValueError(f"expected w of shape ({X.shape[1]},), got {tuple(w.shape)}")
    _check_same_kind({"X": X, "y": y, "w": w})


def mse(X: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """The mean squared error L(w) = (1/n) Σ (x_iᵀ w − y_i)² of the linear model X w.

    Section 1.3's :func:`dlbook.losses.mse` of the predictions, as ``nn.MSELoss`` computes it.
    """
    _check_xyw(X, y, w)
    return losses.mse(X @ w, y)


def per_example_grads(X: Tensor, y: Tensor, w: Tensor) -> Tensor:
    """The gradient of each example's loss (x_iᵀ w − y_i)²: row i is 2 (x_iᵀ w − y_i) x_i.

    Their mean over the rows is the full gradient ∇L(w); shape (n, d).
    """
    _check_xyw(X, y, w)
    return 2 * (X @ w - y)[:, None] * X


def _check_grads(G: Tensor, batch_size: int) -> int:
    """Validate per-example gradients (n, d) and a batch size 1 ≤ B ≤ n; return n."""
    _check_float_tensor(G, "G")
    if G.ndim != 2 or G.shape[0] == 0:
        raise ValueError(f"expected per-example gradients G of shape (n, d) with n >= 1, "
                         f"got {tuple(G.shape)}")
    _check_count(batch_size, "batch_size", 1)
    if batch_size > G.shape[0]:
        raise ValueError(f"batch_size {batch_size} exceeds the number of examples "
                         f"{G.shape[0]}")
    return G.shape[0]


def minibatch_noise(G: Tensor, batch_size: int, trials: int = 1000, *,
                    generator: torch.Generator | None = None) -> float:
    """Monte-Carlo estimate of E ‖g_B − ḡ‖², the noise of a mini-batch gradient.

    ``G`` holds per-example gradients (n, d); ḡ is their mean and g_B the mean of
    ``batch_size`` rows drawn without replacement, as one batch of a shuffled epoch is.
    """
    n = _check_grads(G, batch_size)
    _check_count(trials, "trials", 1)
    picks = torch.rand(trials, n, generator=generator).argsort(dim=1).to(G.device)
    mask = torch.zeros(trials, n, dtype=G.dtype, device=G.device)
    mask.scatter_(1, picks[:, :batch_size], 1.0)           # row k marks batch k
    g_batch = mask @ G / batch_size                         # (trials, d)
    return float(((g_batch - G.mean(0)) ** 2).sum(1).mean())


def minibatch_noise_theory(G: Tensor, batch_size: int) -> float:
    """E ‖g_B − ḡ‖² = (tr Σ / B) · (n − B) / (n − 1) for B rows drawn without replacement.

    tr Σ = (1/n) Σ_i ‖g_i − ḡ‖² is the spread of the per-example gradients; the second factor
    (the finite-population correction) makes the noise vanish when B = n.
    """
    n = _check_grads(G, batch_size)
    if n == 1:
        return 0.0
    trace = float(((G - G.mean(0)) ** 2).sum(1).mean())
    return trace / batch_size * (n - batch_size) / (n - 1)


def _check_sgd(X: Tensor, y: Tensor, w0: Tensor | None, batch_size: int, lr: object,
               epochs: int, log_every: int | None) -> None:
    _check_float_tensor(X, "X")
    if X.ndim != 2:
        raise ValueError(f"expected X of shape (n, d), got {tuple(X.shape)}")
    w = torch.zeros(X.shape[1], dtype=X.dtype, device=X.device) if w0 is None else w0
    _check_xyw(X, y, w)
    _check_count(batch_size, "batch_size", 1)
    _check_count(epochs, "epochs")
    if batch_size > X.shape[0]:
        raise ValueError(f"batch_size {batch_size} exceeds the number of examples "
                         f"{X.shape[0]}")
    if not callable(lr):
        _check_lr(lr)
    if log_every is not None:
        _check_count(log_every, "log_every", 1)


def sgd_linear_regression(X: Tensor, y: Tensor, *, batch_size: int,
                          lr: float | Callable[[int], float], epochs: int,
                          w0: Tensor | None = None, log_every: int | None = None,
                          replacement: bool = False,
                          generator: torch.Generator | None = None,
                          ) -> tuple[list[int], list[float], Tensor]:
    """Mini-batch SGD on the mean squared error of a linear model y ≈ X w.

    Each epoch shuffles the examples and steps once per batch of ``batch_size`` (an
    incomplete last batch is dropped): w ← w − η_t g_B, g_B = (2/B) X_Bᵀ (X_B w − y_B).
    ``batch_size`` = 1 is stochastic gradient descent, = n is full-batch gradient descent.
    With ``replacement=True`` the n examples of an "epoch" are drawn independently instead,
    so the same example can come twice and another not at all.
    ``lr`` is a number or a schedule ``lr(t)`` of the step t = 0, 1, .... The full-data
    loss is logged every ``log_every`` examples (default: once an epoch; at least once a
    step).

    Returns ``(examples_seen, losses, w)``.
    """
    _check_sgd(X, y, w0, batch_size, lr, epochs, log_every)
    n, d = X.shape
    w = torch.zeros(d, dtype=X.dtype, device=X.device) if w0 is None else w0
    log_steps = max(1, (log_every or n) // batch_size)   # steps between two logged losses
    seen, history = [0], [float(mse(X, y, w))]
    step = 0
    for _ in range(epochs):
        if replacement:
            order = torch.randint(n, (n,), generator=generator).to(X.device)
        else:
            order = torch.randperm(n, generator=generator).to(X.device)
        X_shuffled, y_shuffled = X[order], y[order]
        for start in range(0, n - batch_size + 1, batch_size):
            Xb = X_shuffled[start:start + batch_size]
            yb = y_shuffled[start:start + batch_size]
            grad = 2 / batch_size * Xb.T @ (Xb @ w - yb)
            w = w - (lr(step) if callable(lr) else lr) * grad
            step += 1
            if step % log_steps == 0:
                seen.append(step * batch_size)
                history.append(float(mse(X, y, w)))
    return seen, history, w
