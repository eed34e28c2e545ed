"""Loss functions derived from likelihoods, computed so that they never overflow (section 1.3).

Every loss here is a negative log-likelihood averaged over the examples (mean reduction):

* :func:`mse` and :func:`gaussian_nll` — a Gaussian around the prediction (regression);
* :func:`binary_cross_entropy_with_logits` — a Bernoulli with ``p = sigmoid(z)`` (yes/no);
* :func:`cross_entropy` — a categorical with ``p = softmax(z)`` (one of C classes).

The classification losses take *logits* ``z``, not probabilities: the log of a probability is
computed directly from ``z`` with the log-sum-exp trick (:func:`logsumexp`), which is exact where
``log(softmax(z))`` would give ``-inf``. Each function matches its ``torch.nn.functional``
namesake; :func:`cross_entropy_grad` and :func:`binary_cross_entropy_with_logits_grad` give the
hand-derived gradients ``(softmax(z) - y) / N`` and ``(sigmoid(z) - y) / N`` for the sections
that backpropagate by hand.
"""

from __future__ import annotations

import math

import torch

from dlbook import activations


def _check_float(name: str, x: object) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating-point tensor, got {kind}; convert it with "
                         "torch.as_tensor(..., dtype=torch.float32)")


def _check_dim(z: torch.Tensor, dim: int) -> None:
    if z.ndim == 0 or not -z.ndim <= dim < z.ndim:
        raise ValueError(f"dim={dim} is out of range for a tensor of shape {tuple(z.shape)}")
    if z.shape[dim] == 0:
        raise ValueError(f"cannot normalise over an empty dimension (shape {tuple(z.shape)})")


def _shift(z: torch.Tensor, dim: int) -> torch.Tensor:
    """The max along ``dim`` (kept), as a constant; 0 where it is not finite (rows of -inf)."""
    m = z.detach().amax(dim=dim, keepdim=True)
    return torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def logsumexp(z: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """``log(sum(exp(z)))`` along ``dim``, shifted by the max so nothing overflows.

    ``log Σ exp(z_i) = m + log Σ exp(z_i - m)`` with ``m = max z_i``: the largest term
    becomes ``exp(0) = 1``, so no ``exp`` overflows, and the sum is at least 1, so its
    log is never -inf. ``m`` is treated as a constant; the gradient is still exactly
    ``softmax(z)``.
    """
    _check_float("z", z)
    _check_dim(z, dim)
    m = _shift(z, dim)
    out = m + torch.log(torch.exp(z - m).sum(dim=dim, keepdim=True))
    return out if keepdim else out.squeeze(dim)


def softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``exp(z_k) / Σ_j exp(z_j)`` along ``dim``: logits to probabilities that sum to 1.

    The one implementation is Section 1.2's :func:`dlbook.activations.softmax` (max-shifted,
    so no ``exp`` overflows); this adds the choice of dimension.
    """
    _check_float("z", z)
    _check_dim(z, dim)
    return activations.softmax(z.movedim(dim, -1)).movedim(-1, dim)


def log_softmax(z: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``log(softmax(z)) = z - logsumexp(z)``: finite even where softmax rounds to 0.

    Written as ``(z - m) - log Σ exp(z - m)`` so that the large ``m`` cancels before any
    rounding (``1000 - 1001.3133`` in float32 would lose the last digits).
    """
    _check_float("z", z)
    _check_dim(z, dim)
    shifted = z - _shift(z, dim)
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


def softplus(z: torch.Tensor) -> torch.Tensor:
    """``log(1 + exp(z))`` for any ``z``: the log-sum-exp of the pair ``(0, z)``."""
    _check_float("z", z)
    return logsumexp(torch.stack([torch.zeros_like(z), z], dim=-1), dim=-1)


def log_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """``log(sigmoid(z)) = -softplus(-z)``: finite where ``sigmoid(z)`` rounds to 0."""
    return -softplus(-z)


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error ``mean((pred - target)^2)``: the Gaussian negative
    log-likelihood, up to a scale and a constant.

    The shapes must be equal: ``(n, 1)`` against ``(n,)`` would silently broadcast to
    ``(n, n)`` and compare every prediction with every target.
    """
    _check_float("pred", pred)
    _check_float("target", target)
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but target "
                         f"{tuple(target.shape)}; make them equal (e.g. "
                         "pred.squeeze(-1)) instead of broadcasting")
    return ((pred - target) ** 2).mean()


def gaussian_nll(mean: torch.Tensor, target: torch.Tensor,
                 sigma: float | torch.Tensor) -> torch.Tensor:
    """Mean of ``-log N(target; mean, sigma^2)``, that is of
    ``(target - mean)^2 / (2 sigma^2) + log sigma + log(2 pi) / 2``.

    ``sigma`` (the noise's standard deviation, > 0) is a number or a tensor that
    broadcasts against ``mean``. With a fixed ``sigma`` this is ``mse / (2 sigma^2)``
    plus a constant.
    """
    _check_float("mean", mean)
    _check_float("target", target)
    if mean.shape != target.shape:
        raise ValueError(f"mean has shape {tuple(mean.shape)} but target "
                         f"{tuple(target.shape)}; make them equal")
    sigma = torch.as_tensor(sigma, dtype=mean.dtype, device=mean.device)
    if not bool((sigma > 0).all()):
        raise ValueError("sigma must be positive (it is a standard deviation)")
    const = 0.5 * math.log(2 * math.pi)
    nll = 0.5 * ((target - mean) / sigma) ** 2 + torch.log(sigma) + const
    return nll.mean()


def binary_cross_entropy_with_logits(logits: torch.Tensor,
                                     targets: torch.Tensor) -> torch.Tensor:
    """Mean Bernoulli negative log-likelihood with ``p = sigmoid(logits)``.

    ``-[y log p + (1 - y) log(1 - p)]`` simplifies to ``softplus(z) - y z``, which needs
    no ``log`` of a probability and so stays finite for any logit. ``targets`` holds 0/1
    labels (or probabilities) as floats, in the same shape as ``logits``.
    """
    _check_float("logits", logits)
    _check_float("targets", targets)
    if logits.shape != targets.shape:
        raise ValueError(f"logits have shape {tuple(logits.shape)} but targets "
                         f"{tuple(targets.shape)}; they must match (one target per "
                         "logit)")
    return (softplus(logits) - targets * logits).mean()


def binary_cross_entropy_with_logits_grad(logits: torch.Tensor,
                                          targets: torch.Tensor) -> torch.Tensor:
    """The hand-derived gradient of :func:`binary_cross_entropy_with_logits`:
    ``(sigmoid(z) - y) / n`` for ``n`` logits."""
    _check_float("logits", logits)
    if logits.shape != targets.shape:
        raise ValueError(f"logits have shape {tuple(logits.shape)} but targets "
                         f"{tuple(targets.shape)}; they must match")
    return (torch.sigmoid(logits) - targets) / logits.numel()


def _check_class_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    _check_float("logits", logits)
    if logits.ndim != 2:
        raise ValueError(f"expected logits of shape (batch, classes), got {tuple(logits.shape)}; "
                         "for one example use logits[None]")
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a tensor, got {type(targets).__name__}")
    if targets.is_floating_point():
        if targets.shape != logits.shape:
            raise ValueError(f"probability targets must have the logits' shape "
                             f"{tuple(logits.shape)}, got {tuple(targets.shape)}; class indices "
                             "must be an integer tensor of shape (batch,)")
        return
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"expected integer class targets of shape ({logits.shape[0]},), got "
                         f"{tuple(targets.shape)}; one-hot targets must be float")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= logits.shape[1]):
        raise ValueError(f"class targets must lie in [0, {logits.shape[1] - 1}], got values from "
                         f"{int(targets.min())} to {int(targets.max())}")


def nll_loss(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log_probs[i, targets[i]]``: the negative log-likelihood of the true classes."""
    _check_class_targets(log_probs, targets)
    if targets.is_floating_point():
        raise ValueError("nll_loss takes integer class targets of shape (batch,)")
    rows = torch.arange(log_probs.shape[0], device=log_probs.device)
    return -log_probs[rows, targets].mean()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean categorical negative log-likelihood with ``p = softmax(logits)``.

    ``logits`` has shape (batch, classes). ``targets`` is either an integer tensor of
    class indices, shape (batch,), and then the loss is ``logsumexp(z) - z[target]`` per
    example, or a float tensor of target probabilities with the logits' shape, for
    ``-Σ_k q_k log p_k``.
    """
    _check_class_targets(logits, targets)
    log_p = log_softmax(logits, dim=-1)
    if targets.is_floating_point():
        return -(targets * log_p).sum(dim=-1).mean()
    return nll_loss(log_p, targets)


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The hand-derived gradient of :func:`cross_entropy`: ``(softmax(z) - y) / batch``,
    where ``y`` is the one-hot encoding of integer targets (or the target probabilities)."""
    _check_class_targets(logits, targets)
    y = targets
    if not targets.is_floating_point():
        y = torch.nn.functional.one_hot(targets, logits.shape[1]).to(logits.dtype)
    return (softmax(logits, dim=-1) - y) / logits.shape[0]
