"""Making deep networks trainable (section 2.4): initialisation and normalisation from scratch.

* Initialisation: :func:`fans`, :func:`gain`, :func:`xavier_normal_`, :func:`xavier_uniform_`,
  :func:`kaiming_normal_`, :func:`kaiming_uniform_`. They draw exactly what ``torch.nn.init``
  draws (same formula, same random calls), so with the same seed they give the same tensor.
* Normalisation: :func:`batchnorm_forward` / :func:`batchnorm_backward` and
  :func:`layernorm_forward` / :func:`layernorm_backward`, with the backward pass written out by
  hand; :class:`BatchNormFunction` and :class:`LayerNormFunction` plug that backward into
  autograd; :class:`BatchNorm1d` and :class:`LayerNorm` are the layers (running statistics
  included) that behave like ``nn.BatchNorm1d`` and ``nn.LayerNorm``.
* Experiments: :class:`DeepMLP` (plain or residual, with or without normalisation),
  :func:`init_weights_`, :func:`weight_grad_norms`.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------

_GAINS = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0)}


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape (out, in, *kernel), as PyTorch counts them.

    A linear layer's weight (out, in) has fan-in ``in`` and fan-out ``out``; a convolution's
    kernel dimensions multiply both (every weight sees ``in * k`` inputs).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions (out, in, ...), got "
                         f"shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def gain(nonlinearity: str) -> float:
    """The factor that scales the init's std for an activation (as ``nn.init.calculate_gain``).

    ReLU keeps half of the second moment, so it needs ``sqrt(2)``; ``tanh`` uses PyTorch's
    empirical 5/3; linear and sigmoid use 1.
    """
    if nonlinearity not in _GAINS:
        raise ValueError(f"nonlinearity must be one of {sorted(_GAINS)}, got {nonlinearity!r}")
    return _GAINS[nonlinearity]


def _check_weight(w: torch.Tensor) -> None:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise ValueError("expected a floating-point weight tensor, e.g. nn.Linear(...).weight")


def xavier_normal_(w: torch.Tensor, gain: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot and Bengio's init, in place: ``w ~ N(0, gain² · 2 / (fan_in + fan_out))``."""
    _check_weight(w)
    fan_in, fan_out = fans(w.shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.normal_(0.0, std, generator=generator)


def xavier_uniform_(w: torch.Tensor, gain: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot and Bengio's init, uniform: ``U(-a, a)``, a = gain·sqrt(6 / (fan_in + fan_out)).

    ``U(-a, a)`` has variance ``a² / 3``, the same as :func:`xavier_normal_`'s.
    """
    _check_weight(w)
    fan_in, fan_out = fans(w.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.uniform_(-bound, bound, generator=generator)


def _kaiming_std(w: torch.Tensor, nonlinearity: str, mode: str) -> float:
    _check_weight(w)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' (forward signal) or 'fan_out' (backward "
                         f"signal), got {mode!r}")
    fan_in, fan_out = fans(w.shape)
    return gain(nonlinearity) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def kaiming_normal_(w: torch.Tensor, nonlinearity: str = "relu", mode: str = "fan_in",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """He et al.'s init, in place: ``w ~ N(0, gain² / fan)``; for ReLU ``Var[w] = 2 / fan_in``."""
    std = _kaiming_std(w, nonlinearity, mode)
    with torch.no_grad():
        return w.normal_(0.0, std, generator=generator)


def kaiming_uniform_(w: torch.Tensor, nonlinearity: str = "relu", mode: str = "fan_in",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """He et al.'s init, uniform: ``U(-a, a)`` with ``a = sqrt(3) · gain / sqrt(fan)``."""
    bound = math.sqrt(3.0) * _kaiming_std(w, nonlinearity, mode)
    with torch.no_grad():
        return w.uniform_(-bound, bound, generator=generator)


# --------------------------------------------------------------------------------------------
# Batch normalisation and layer normalisation, forward and backward by hand
# --------------------------------------------------------------------------------------------


class NormCache(NamedTuple):
    """What a normalisation's backward pass needs from its forward pass."""

    xhat: torch.Tensor     # the normalised input (x - mean) / sqrt(var + eps)
    inv_std: torch.Tensor  # 1 / sqrt(var + eps), one per normalised group
    gamma: torch.Tensor    # the scale, one per feature


def _check_affine(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> None:
    d = x.shape[-1]
    if gamma.shape != (d,) or beta.shape != (d,):
        raise ValueError(f"expected gamma and beta of shape ({d},) to match x's {d} features, "
                         f"got {tuple(gamma.shape)} and {tuple(beta.shape)}")


def batchnorm_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                      eps: float = 1e-5) -> tuple[torch.Tensor, NormCache]:
    """Batch norm in training mode: normalise each feature over the batch, then scale and shift.

    ``x`` has shape (N, D). Uses the biased variance (divide by N), as PyTorch does in the
    normalisation. Returns ``(y, cache)`` for :func:`batchnorm_backward`.
    """
    if x.ndim != 2:
        raise ValueError(f"expected x of shape (batch, features), got {tuple(x.shape)}")
    _check_affine(x, gamma, beta)
    mean = x.mean(dim=0)
    var = x.var(dim=0, correction=0)
    inv_std = torch.rsqrt(var + eps)
    xhat = (x - mean) * inv_std
    return gamma * xhat + beta, NormCache(xhat, inv_std, gamma)


def batchnorm_backward(dy: torch.Tensor, cache: NormCache
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients ``(dx, dgamma, dbeta)`` of batch norm, given ``dy = dLoss/dy`` of shape (N, D).

    ``dx = (γ / (N σ)) (N dy - Σ dy - x̂ Σ(dy x̂))``, sums over the batch (section 2.4).
    """
    xhat, inv_std, gamma = cache
    if dy.shape != xhat.shape:
        raise ValueError(f"expected dy of shape {tuple(xhat.shape)}, got {tuple(dy.shape)}")
    n = dy.shape[0]
    dbeta = dy.sum(dim=0)
    dgamma = (dy * xhat).sum(dim=0)
    dx = (gamma * inv_std / n) * (n * dy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def layernorm_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                      eps: float = 1e-5) -> tuple[torch.Tensor, NormCache]:
    """Layer norm: normalise each example over its last dimension (D features), scale, shift.

    ``x`` has shape (..., D); every leading index is normalised on its own, so the result does
    not depend on the batch. Returns ``(y, cache)`` for :func:`layernorm_backward`.
    """
    if x.ndim < 1:
        raise ValueError("expected x of shape (..., features), got a scalar")
    _check_affine(x, gamma, beta)
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, correction=0)
    inv_std = torch.rsqrt(var + eps)
    xhat = (x - mean) * inv_std
    return gamma * xhat + beta, NormCache(xhat, inv_std, gamma)


def layernorm_backward(dy: torch.Tensor, cache: NormCache
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients ``(dx, dgamma, dbeta)`` of layer norm, given ``dy`` of shape (..., D).

    With ``g = γ dy``: ``dx = (1 / (D σ)) (D g - Σ g - x̂ Σ(g x̂))``, sums over the features
    of each example; ``dγ`` and ``dβ`` sum over every leading index.
    """
    xhat, inv_std, gamma = cache
    if dy.shape != xhat.shape:
        raise ValueError(f"expected dy of shape {tuple(xhat.shape)}, got {tuple(dy.shape)}")
    d = dy.shape[-1]
    g = gamma * dy
    dx = (inv_std / d) * (d * g - g.sum(dim=-1, keepdim=True)
                          - xhat * (g * xhat).sum(dim=-1, keepdim=True))
    dgamma = (dy * xhat).reshape(-1, d).sum(dim=0)
    dbeta = dy.reshape(-1, d).sum(dim=0)
    return dx, dgamma, dbeta


class BatchNormFunction(torch.autograd.Function):
    """Batch norm whose gradient is :func:`batchnorm_backward`, not autograd's own."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):  # noqa: D102
        y, cache = batchnorm_forward(x, gamma, beta, eps)
        ctx.save_for_backward(*cache)
        return y

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        dx, dgamma, dbeta = batchnorm_backward(dy, NormCache(*ctx.saved_tensors))
        return dx, dgamma, dbeta, None


class LayerNormFunction(torch.autograd.Function):
    """Layer norm whose gradient is :func:`layernorm_backward`, not autograd's own."""

    @staticmethod
    def forward(ctx, x, gamma, beta, eps=1e-5):  # noqa: D102
        y, cache = layernorm_forward(x, gamma, beta, eps)
        ctx.save_for_backward(*cache)
        return y

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        dx, dgamma, dbeta = layernorm_backward(dy, NormCache(*ctx.saved_tensors))
        return dx, dgamma, dbeta, None


class BatchNorm1d(nn.Module):
    """Batch norm over the batch for inputs (N, D), like ``nn.BatchNorm1d(D)``.

    Training mode normalises with the batch's mean and biased variance and updates the running
    averages ``r ← (1 - momentum) r + momentum · batch_stat``, where the running variance uses
    the *unbiased* batch variance (divide by N - 1), as PyTorch does. Eval mode normalises
    with the running averages, so an example's output no longer depends on its batch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        if num_features < 1 or not 0.0 <= momentum <= 1.0 or eps <= 0:
            raise ValueError(f"need num_features >= 1, 0 <= momentum <= 1 and eps > 0, got "
                             f"{num_features}, {momentum}, {eps}")
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))   # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))    # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 2 or x.shape[1] != self.weight.shape[0]:
            raise ValueError(f"expected x of shape (batch, {self.weight.shape[0]}), got "
                             f"{tuple(x.shape)}")
        if not self.training:
            inv_std = torch.rsqrt(self.running_var + self.eps)
            return self.weight * (x - self.running_mean) * inv_std + self.bias
        if x.shape[0] < 2:
            raise ValueError("batch norm in training mode needs at least 2 examples per batch "
                             "(one example has no variance); use model.eval() for one example")
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * x.mean(dim=0))
            self.running_var.mul_(1 - m).add_(m * x.var(dim=0, correction=1))
        return BatchNormFunction.apply(x, self.weight, self.bias, self.eps)


class LayerNorm(nn.Module):
    """Layer norm over the last dimension, like ``nn.LayerNorm(D)``: same in train and eval."""

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        if num_features < 1 or eps <= 0:
            raise ValueError(f"need num_features >= 1 and eps > 0, got {num_features}, {eps}")
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 1 or x.shape[-1] != self.weight.shape[0]:
            raise ValueError(f"expected x of shape (..., {self.weight.shape[0]}), got "
                             f"{tuple(x.shape)}")
        return LayerNormFunction.apply(x, self.weight, self.bias, self.eps)


# --------------------------------------------------------------------------------------------
# A deep MLP to experiment with, and what the section measures in it
# --------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": lambda h: h}


class DeepMLP(nn.Module):
    """``depth`` hidden layers of ``width`` units, plain or residual, with optional norm.

    The input layer maps to ``width`` units, ``h_0 = W_in x + b_in``; then each hidden layer
    ``l`` computes ``f_l(h) = W_l φ(norm_l(h)) + b_l`` and either replaces (plain) or adds to
    (residual) the signal:  ``h_l = f_l(h_{l-1})``  or  ``h_l = h_{l-1} + f_l(h_{l-1})``.
    The output layer reads ``W_out φ(h_depth) + b_out``. ``norm`` is None, ``"batch"`` or
    ``"layer"`` (this module's :class:`BatchNorm1d` and :class:`LayerNorm`).
    """

    def __init__(self, depth: int, width: int, *, in_features: int = 40, out_features: int = 10,
                 activation: str = "relu", norm: str | None = None,
                 residual: bool = False) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"need depth >= 1 and width >= 1, got depth={depth}, width={width}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got "
                             f"{activation!r}")
        if norm not in (None, "batch", "layer"):
            raise ValueError(f"norm must be None, 'batch' or 'layer', got {norm!r}")
        self.act, self.residual = _ACTIVATIONS[activation], residual
        self.inp = nn.Linear(in_features, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        make = {None: lambda: nn.Identity(), "batch": lambda: BatchNorm1d(width),
                "layer": lambda: LayerNorm(width)}[norm]
        self.norms = nn.ModuleList(make() for _ in range(depth))
        self.out = nn.Linear(width, out_features)

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the hidden signals ``[h_0, h_1, ..., h_depth]`` (for measurements)."""
        if x.ndim != 2 or x.shape[1] != self.inp.in_features:
            raise ValueError(f"expected x of shape (batch, {self.inp.in_features}), got "
                             f"{tuple(x.shape)}")
        h = self.inp(x)
        hs = [h]
        for linear, norm in zip(self.hidden, self.norms):
            f = linear(self.act(norm(h)))
            h = h + f if self.residual else f
            hs.append(h)
        return self.out(self.act(h)), hs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]

    def linears(self) -> list[nn.Linear]:
        """Every linear layer from input to output, in order."""
        return [self.inp, *self.hidden, self.out]


def init_weights_(model: nn.Module, init: Callable[[torch.Tensor], object],
                  generator: torch.Generator | None = None) -> nn.Module:
    """Apply ``init(weight)`` to every ``nn.Linear`` weight of ``model`` and zero its bias.

    ``init`` takes a weight tensor (and, if given, ``generator=...``) and fills it in place,
    e.g. :func:`kaiming_normal_` or ``lambda w, **kw: w.normal_(0, 0.01, **kw)``.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                if generator is None:
                    init(module.weight)
                else:
                    init(module.weight, generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
    return model


def weight_grad_norms(model: DeepMLP, x: torch.Tensor, y: torch.Tensor,
                      loss_fn: Callable = F.cross_entropy) -> torch.Tensor:
    """Frobenius norm of ``dLoss/dW`` for every linear layer of ``model`` on one batch.

    Returns a 1-D tensor, input layer first and output layer last. The model's gradients are
    cleared before and after; like any forward pass in training mode, it updates the running
    statistics of batch-norm layers.
    """
    if not isinstance(model, DeepMLP):
        raise ValueError(f"expected a DeepMLP, got {type(model).__name__}")
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    norms = torch.stack([lin.weight.grad.norm() for lin in model.linears()]).detach()
    model.zero_grad(set_to_none=True)
    return norms
