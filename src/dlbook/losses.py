"""Loss functions derived from likelihoods, computed so that they never overflow (section 1.3).

Every loss here is a negative log-likelihood averaged over the examples (mean reduction):

* :func:`mse` and :func:`gaussian_nll` — a Gaussian around the prediction (regression);
* :func:`binary_cross_entropy_with_logits` — a Bernoulli with ``p = sigmoid(z)`` (yes/no);
* :func:`cross_entropy` — a categorical with ``p = softmax(z)`` (one of C classes).

Around the cross-entropy: :func:`entropy` of a target distribution, :func:`kl_divergence` from
the target to the prediction (``cross_entropy = entropy + kl_divergence``) and
:func:`perplexity`, ``exp(cross_entropy)``, the effective number of classes the model hesitates
between (all in nats, with the natural logarithm).

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
    if isinstance(x, torch.Tensor) and not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}; convert it "
                         f"with {name}.float()")
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a floating-point tensor, got {type(x).__name__}; "
                         "convert it with torch.as_tensor(..., dtype=torch.float32)")


def _check_dim(z: torch.Tensor, dim: int) -> None:
    if z.ndim == 0 or not -z.ndim <= dim < z.ndim:
        raise ValueError(f"dim={dim} is out of range for a tensor of shape {tuple(z.shape)}")
    if z.shape[dim] == 0:
        raise ValueError(f"cannot normalise over an empty dimension (shape {tuple(z.shape)})")


def _check_pair(a_name: str, a: torch.Tensor, b_name: str, b: torch.Tensor) -> None:
    """Two tensors of one loss must have the same shape and live on the same device."""
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has shape {tuple(a.shape)} but {b_name} "
                         f"{tuple(b.shape)}; make them equal (e.g. {a_name}.squeeze(-1)) "
                         "instead of broadcasting")
    if a.device != b.device:
        raise ValueError(f"{a_name} is on {a.device} but {b_name} on {b.device}; move one "
                         f"with .to({a_name}.device)")
    if a.numel() == 0:
        raise ValueError(f"{a_name} is empty: a mean over no examples is undefined")


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
    _check_pair("pred", pred, "target", target)
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
    _check_pair("mean", mean, "target", target)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, torch.Tensor)):
        raise ValueError(f"sigma must be a positive number or tensor, got {sigma!r}")
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
    _check_pair("logits", logits, "targets", targets)
    return (softplus(logits) - targets * logits).mean()


def binary_cross_entropy_with_logits_grad(logits: torch.Tensor,
                                          targets: torch.Tensor) -> torch.Tensor:
    """The hand-derived gradient of :func:`binary_cross_entropy_with_logits`:
    ``(sigmoid(z) - y) / n`` for ``n`` logits."""
    _check_float("logits", logits)
    _check_float("targets", targets)
    _check_pair("logits", logits, "targets", targets)
    return (torch.sigmoid(logits) - targets) / logits.numel()


def _class_targets(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Validate (batch, classes) logits and their targets; return the targets ready to use.

    Class indices of any integer dtype (uint8, int32, ...) come back as int64; probability
    targets (float, the logits' shape, rows summing to 1) come back unchanged.
    """
    _check_float("logits", logits)
    if logits.ndim != 2:
        raise ValueError(f"expected logits of shape (batch, classes), got {tuple(logits.shape)}; "
                         "for one example use logits[None]")
    if logits.shape[0] == 0:
        raise ValueError("the batch is empty: a mean over no examples is undefined")
    if not isinstance(targets, torch.Tensor):
        raise ValueError(f"targets must be a tensor, got {type(targets).__name__}; "
                         "use torch.tensor(...)")
    if targets.device != logits.device:
        raise ValueError(f"targets are on {targets.device} but logits on {logits.device}; "
                         "move them with targets.to(logits.device)")
    if targets.is_floating_point():
        if targets.shape != logits.shape:
            raise ValueError(f"targets are {targets.dtype} of shape {tuple(targets.shape)}: "
                             "class indices must be an integer tensor of shape "
                             f"({logits.shape[0]},) (convert with .long()); probability targets "
                             f"need the logits' shape {tuple(logits.shape)}")
        _check_rows_are_distributions("targets", targets)
        return targets
    if targets.dtype == torch.bool or targets.is_complex():
        raise ValueError(f"targets are {targets.dtype}: class indices must be integers "
                         "(convert with .long()); for yes/no labels with one logit use "
                         "binary_cross_entropy_with_logits with targets.float()")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"expected integer class targets of shape ({logits.shape[0]},), got "
                         f"{tuple(targets.shape)}; one-hot targets must be float")
    targets = targets.long()
    low, high = int(targets.min()), int(targets.max())
    if low < 0 or high >= logits.shape[1]:
        raise ValueError(f"class targets must lie in [0, {logits.shape[1] - 1}], got values from "
                         f"{low} to {high}")
    return targets


def _check_rows_are_distributions(name: str, q: torch.Tensor) -> None:
    """Each row of ``q`` must be a probability distribution: entries >= 0 that sum to 1."""
    if q.numel() == 0:
        raise ValueError(f"{name} is empty")
    tol = max(1e-3, 16 * torch.finfo(q.dtype).eps)
    if not bool((q >= 0).all()) or not bool(((q.sum(dim=-1) - 1).abs() <= tol).all()):
        raise ValueError(f"each row of {name} must be a probability distribution (entries >= 0 "
                         "that sum to 1); for logits use softmax(...) first")


def nll_loss(log_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log_probs[i, targets[i]]``: the negative log-likelihood of the true classes."""
    if isinstance(targets, torch.Tensor) and targets.is_floating_point():
        raise ValueError(f"nll_loss takes integer class targets of shape (batch,), got "
                         f"{targets.dtype}; convert with .long()")
    targets = _class_targets(log_probs, targets)
    rows = torch.arange(log_probs.shape[0], device=log_probs.device)
    return -log_probs[rows, targets].mean()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean categorical negative log-likelihood with ``p = softmax(logits)``.

    ``logits`` has shape (batch, classes). ``targets`` is either an integer tensor of
    class indices, shape (batch,), and then the loss is ``logsumexp(z) - z[target]`` per
    example, or a float tensor of target probabilities with the logits' shape, for
    ``-Σ_k q_k log p_k``.
    """
    targets = _class_targets(logits, targets)
    log_p = log_softmax(logits, dim=-1)
    if targets.is_floating_point():
        return -(targets * log_p).sum(dim=-1).mean()
    return nll_loss(log_p, targets)


def cross_entropy_grad(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The hand-derived gradient of :func:`cross_entropy`: ``(softmax(z) - y) / batch``,
    where ``y`` is the one-hot encoding of integer targets (or the target probabilities)."""
    y = _class_targets(logits, targets)
    if not y.is_floating_point():
        y = torch.nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
    return (softmax(logits, dim=-1) - y) / logits.shape[0]


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Mean entropy ``H(q) = -Σ_k q_k log q_k`` of the rows of ``probs`` (batch, classes).

    In nats (natural logarithm). ``0 · log 0`` counts as 0, its limit, so a one-hot row has
    entropy 0 and a uniform row over C classes ``log C``, the largest possible.
    """
    _check_float("probs", probs)
    if probs.ndim != 2:
        raise ValueError(f"expected probs of shape (batch, classes), got {tuple(probs.shape)}; "
                         "for one distribution use probs[None]")
    _check_rows_are_distributions("probs", probs)
    return -torch.xlogy(probs, probs).sum(dim=-1).mean()


def kl_divergence(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean ``KL(q || p) = Σ_k q_k (log q_k - log p_k)`` with ``p = softmax(logits)``.

    ``targets`` ``q`` as for :func:`cross_entropy` (class indices or probabilities). It is
    never negative, 0 exactly when ``p = q``, and ``cross_entropy - entropy(q)``; it equals
    ``F.kl_div(log_softmax(logits), q, reduction="batchmean")``.
    """
    q = _class_targets(logits, targets)
    if not q.is_floating_point():
        return cross_entropy(logits, q)               # one-hot q: H(q) = 0
    return (torch.xlogy(q, q) - q * log_softmax(logits, dim=-1)).sum(dim=-1).mean()


def perplexity(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``exp(cross_entropy(logits, targets))``: the effective number of classes the model
    hesitates between; ``C`` for a uniform prediction over ``C`` classes, 1 for a perfect one.

    For class indices it is ``1 / geometric mean of p(true class)``.
    """
    return torch.exp(cross_entropy(logits, targets))
