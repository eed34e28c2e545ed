"""Making deep networks trainable (section 2.4): initialisation and normalisation from scratch.

* Initialisation: :func:`fans`, :func:`gain`, :func:`xavier_normal_`, :func:`xavier_uniform_`,
  :func:`kaiming_normal_`, :func:`kaiming_uniform_`. They draw exactly what ``torch.nn.init``
  draws (same formula, same random calls), so with the same seed they give the same tensor.
* Normalisation: :func:`batchnorm_forward` / :func:`batchnorm_backward`,
  :func:`layernorm_forward` / :func:`layernorm_backward` and :func:`rmsnorm_forward` /
  :func:`rmsnorm_backward`, with the backward pass written out by hand;
  :class:`BatchNormFunction`, :class:`LayerNormFunction` and :class:`RMSNormFunction` plug that
  backward into autograd; :class:`BatchNorm1d`, :class:`LayerNorm` and :class:`RMSNorm` are the
  layers (running statistics included) that behave like ``nn.BatchNorm1d``, ``nn.LayerNorm``
  and ``nn.RMSNorm``.
* Experiments: :class:`DeepMLP` (plain or residual, with or without normalisation),
  :func:`init_weights_`, :func:`scale_residual_branches_`, :func:`weight_grad_norms` and
  :func:`effective_rank`.

Every public function checks its inputs and raises a ``ValueError`` that says how to fix a
wrong shape, a dtype or device mix or a bad ``eps``; the checks live in small private helpers
so that the functions the book shows read like their derivation.
"""

from __future__ import annotations

import math
import numbers
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from dlbook.utils import check_like

# --------------------------------------------------------------------------------------------
# Input checks (private: one call at the top of each public function)
# --------------------------------------------------------------------------------------------


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_eps(eps: object, *, allow_zero: bool = True) -> None:
    if not _is_number(eps) or not math.isfinite(float(eps)) or eps < 0 or \
            (eps == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"eps must be a finite number {bound} (e.g. 1e-5), got {eps!r}")


def _check_tensor(t: object, name: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} is {t.dtype}: convert with {name}.float() (or .double())")


def _check_like(t: torch.Tensor, name: str, x: torch.Tensor, x_name: str = "x") -> None:
    """``t`` must have the dtype and device of ``x`` (no silent promotion, no device error)."""
    _check_tensor(t, name)
    check_like(t, name, x, x_name)


def _check_norm_inputs(x: object, gamma: object, beta: object, eps: object, *,
                       batch: bool, shift: bool = True) -> None:
    """Checks shared by the normalisations: x, the affine parameters and eps.

    ``batch=True`` (batch norm) normalises over dim 0 of a (B, D) input, else over the last
    dimension; ``shift=False`` (RMS norm) has no beta and does not subtract a mean. With
    ``eps = 0`` a constant group would divide by zero: that is an error.
    """
    _check_tensor(x, "x")
    if batch and x.ndim != 2:
        raise ValueError(f"expected x of shape (batch, features), got {tuple(x.shape)}")
    if x.ndim < 1 or x.shape[-1] < 1 or (batch and x.shape[0] < 1):
        raise ValueError(f"expected x of shape (..., features) with at least one feature and "
                         f"one example, got {tuple(x.shape)}")
    d = x.shape[-1]
    for name, p in (("gamma", gamma), ("beta", beta))[:2 if shift else 1]:
        _check_like(p, name, x)
        if p.shape != (d,):
            raise ValueError(f"expected {name} of shape ({d},) to match x's {d} features, got "
                             f"{tuple(p.shape)}")
    _check_eps(eps)
    if eps == 0:
        with torch.no_grad():
            spread = x.var(dim=0 if batch else -1, correction=0) if shift \
                else x.pow(2).mean(dim=-1)
        if bool((spread == 0).any()):
            raise ValueError("with eps=0 a constant (or all-zero) group of x divides by zero; "
                             "use eps > 0, e.g. 1e-5")


def _check_backward(dy: object, cache: object) -> None:
    if not (isinstance(cache, tuple) and len(cache) == 3
            and all(isinstance(c, torch.Tensor) for c in cache)):
        raise ValueError("cache must be the NormCache returned by the matching forward function")
    _check_tensor(dy, "dy")
    if dy.dtype != cache[0].dtype or dy.device != cache[0].device:
        raise ValueError(f"dy is {dy.dtype} on {dy.device} but the forward pass ran in "
                         f"{cache[0].dtype} on {cache[0].device}: convert with "
                         f"dy.to(cache.xhat)")
    if dy.shape != cache[0].shape:
        raise ValueError(f"expected dy of shape {tuple(cache[0].shape)} (the forward output's), "
                         f"got {tuple(dy.shape)}")


def _check_features(num_features: object, eps: object) -> None:
    if not isinstance(num_features, int) or isinstance(num_features, bool) or num_features < 1:
        raise ValueError(f"num_features must be a whole number >= 1, got {num_features!r}")
    _check_eps(eps, allow_zero=False)


def _check_layer_input(x: object, weight: torch.Tensor, layer: str, *, batch: bool) -> None:
    """Input of a module with parameters ``weight`` (shape (D,)): shape, dtype and device."""
    d = weight.shape[0]
    _check_tensor(x, "x")
    if (batch and (x.ndim != 2 or x.shape[1] != d)) or x.ndim < 1 or x.shape[-1] != d:
        shape = f"(batch, {d})" if batch else f"(..., {d})"
        raise ValueError(f"expected x of shape {shape}, got {tuple(x.shape)}")
    if x.dtype != weight.dtype:
        raise ValueError(f"x is {x.dtype} but the {layer}'s parameters are {weight.dtype}: "
                         f"convert with x.to({weight.dtype}) (or the {layer} with .to(x.dtype))")
    if x.device != weight.device:
        raise ValueError(f"x is on {x.device} but the {layer} on {weight.device}: move it with "
                         f"x.to({str(weight.device)!r})")


# --------------------------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------------------------

_GAINS = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0, "relu": math.sqrt(2.0)}


def _check_shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, torch.Tensor):
        raise ValueError("fans takes a shape, not a tensor: pass w.shape")
    try:
        dims = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"expected a shape such as (out, in), got {shape!r}") from None
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in dims):
        raise ValueError(f"a shape holds whole numbers, got {shape!r}")
    if len(dims) < 2:
        raise ValueError(f"fans need a weight with at least 2 dimensions (out, in, ...), got "
                         f"shape {dims}")
    if min(dims) < 1:
        raise ValueError(f"every dimension of the weight must be >= 1, got shape {dims}")
    return dims


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of a weight of shape (out, in, *kernel), as PyTorch counts them.

    A linear layer's weight (out, in) has fan-in ``in`` and fan-out ``out``; a convolution's
    kernel dimensions multiply both (every weight sees ``in * k`` inputs).
    """
    shape = _check_shape(shape)
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


def _check_weight(w: object, generator: object, gain_: object = 1.0) -> None:
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise ValueError("expected a floating-point weight tensor, e.g. nn.Linear(...).weight")
    _check_shape(w.shape)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got "
                         f"{type(generator).__name__}")
    if not _is_number(gain_) or not math.isfinite(gain_) or gain_ <= 0:
        raise ValueError(f"gain must be a positive number such as layers.gain('relu'), got "
                         f"{gain_!r}")


def xavier_normal_(w: torch.Tensor, gain: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot and Bengio's init, in place: ``w ~ N(0, gain² · 2 / (fan_in + fan_out))``."""
    _check_weight(w, generator, gain)
    fan_in, fan_out = fans(w.shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    with torch.no_grad():
        return w.normal_(0.0, std, generator=generator)


def xavier_uniform_(w: torch.Tensor, gain: float = 1.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Glorot and Bengio's init, uniform: ``U(-a, a)``, a = gain·sqrt(6 / (fan_in + fan_out)).

    ``U(-a, a)`` has variance ``a² / 3``, the same as :func:`xavier_normal_`'s.
    """
    _check_weight(w, generator, gain)
    fan_in, fan_out = fans(w.shape)
    bound = math.sqrt(3.0) * (gain * math.sqrt(2.0 / (fan_in + fan_out)))  # torch's rounding
    with torch.no_grad():
        return w.uniform_(-bound, bound, generator=generator)


def _kaiming_std(w: torch.Tensor, nonlinearity: str, mode: str,
                 generator: torch.Generator | None) -> float:
    _check_weight(w, generator)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' (forward signal) or 'fan_out' (backward "
                         f"signal), got {mode!r}")
    fan_in, fan_out = fans(w.shape)
    return gain(nonlinearity) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def kaiming_normal_(w: torch.Tensor, nonlinearity: str = "relu", mode: str = "fan_in",
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """He et al.'s init, in place: ``w ~ N(0, gain² / fan)``; for ReLU ``Var[w] = 2 / fan_in``."""
    std = _kaiming_std(w, nonlinearity, mode, generator)
    with torch.no_grad():
        return w.normal_(0.0, std, generator=generator)


def kaiming_uniform_(w: torch.Tensor, nonlinearity: str = "relu", mode: str = "fan_in",
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """He et al.'s init, uniform: ``U(-a, a)`` with ``a = sqrt(3) · gain / sqrt(fan)``."""
    bound = math.sqrt(3.0) * _kaiming_std(w, nonlinearity, mode, generator)
    with torch.no_grad():
        return w.uniform_(-bound, bound, generator=generator)


# --------------------------------------------------------------------------------------------
# Batch normalisation, layer normalisation and RMS normalisation, forward and backward by hand
# --------------------------------------------------------------------------------------------


class NormCache(NamedTuple):
    """What a normalisation's backward pass needs from its forward pass."""

    xhat: torch.Tensor     # the normalised input, e.g. (x - mean) / sqrt(var + eps)
    inv_std: torch.Tensor  # 1 / sqrt(var + eps) (RMSNorm: 1 / rms), one per normalised group
    gamma: torch.Tensor    # the scale, one per feature


def batchnorm_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                      eps: float = 1e-5) -> tuple[torch.Tensor, NormCache]:
    """Batch norm in training mode: normalise each feature over the batch, then scale and shift.

    ``x`` has shape (B, D). Uses the biased variance (divide by B), as PyTorch does in the
    normalisation. Returns ``(y, cache)`` for :func:`batchnorm_backward`.
    """
    _check_norm_inputs(x, gamma, beta, eps, batch=True)
    mean = x.mean(dim=0)
    var = x.var(dim=0, correction=0)
    inv_std = torch.rsqrt(var + eps)
    xhat = (x - mean) * inv_std
    return gamma * xhat + beta, NormCache(xhat, inv_std, gamma)


def batchnorm_backward(dy: torch.Tensor, cache: NormCache
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients ``(dx, dgamma, dbeta)`` of batch norm, given ``dy = dLoss/dy`` of shape (B, D).

    ``dx = (γ / (B s)) (B dy - Σ dy - x̂ Σ(dy x̂))``, sums over the batch (section 2.4).
    """
    _check_backward(dy, cache)
    xhat, inv_std, gamma = cache
    b = dy.shape[0]
    dbeta = dy.sum(dim=0)
    dgamma = (dy * xhat).sum(dim=0)
    dx = (gamma * inv_std / b) * (b * dy - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def layernorm_forward(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                      eps: float = 1e-5) -> tuple[torch.Tensor, NormCache]:
    """Layer norm: normalise each example over its last dimension (D features), scale, shift.

    ``x`` has shape (..., D); every leading index is normalised on its own, so the result does
    not depend on the batch. Returns ``(y, cache)`` for :func:`layernorm_backward`.
    """
    _check_norm_inputs(x, gamma, beta, eps, batch=False)
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, keepdim=True, correction=0)
    inv_std = torch.rsqrt(var + eps)
    xhat = (x - mean) * inv_std
    return gamma * xhat + beta, NormCache(xhat, inv_std, gamma)


def layernorm_backward(dy: torch.Tensor, cache: NormCache
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients ``(dx, dgamma, dbeta)`` of layer norm, given ``dy`` of shape (..., D).

    With ``dx̂ = γ dy``: ``dx = (1 / (D s)) (D dx̂ - Σ dx̂ - x̂ Σ(dx̂ x̂))``, sums over the
    features of each example; ``dγ`` and ``dβ`` sum over every leading index.
    """
    _check_backward(dy, cache)
    xhat, inv_std, gamma = cache
    d = dy.shape[-1]
    dxhat = gamma * dy
    dx = (inv_std / d) * (d * dxhat - dxhat.sum(dim=-1, keepdim=True)
                          - xhat * (dxhat * xhat).sum(dim=-1, keepdim=True))
    dgamma = (dy * xhat).reshape(-1, d).sum(dim=0)
    dbeta = dy.reshape(-1, d).sum(dim=0)
    return dx, dgamma, dbeta


def rmsnorm_forward(x: torch.Tensor, gamma: torch.Tensor,
                    eps: float = 1e-6) -> tuple[torch.Tensor, NormCache]:
    """RMS norm: divide each example by the root mean square of its D features, then scale.

    ``y = γ x / r`` with ``r = sqrt(mean(x²) + eps)`` over the last dimension: layer norm
    without the mean subtraction and without a shift (Zhang and Sennrich, 2019). Returns
    ``(y, cache)`` for :func:`rmsnorm_backward`.
    """
    _check_norm_inputs(x, gamma, None, eps, batch=False, shift=False)
    inv_rms = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    xhat = x * inv_rms
    return gamma * xhat, NormCache(xhat, inv_rms, gamma)


def rmsnorm_backward(dy: torch.Tensor, cache: NormCache) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients ``(dx, dgamma)`` of RMS norm, given ``dy`` of shape (..., D).

    With ``dx̂ = γ dy``: ``dx = (1 / r) (dx̂ - x̂ Σ(dx̂ x̂) / D)``, the sum over the features
    of each example; ``dγ`` sums ``dy x̂`` over every leading index.
    """
    _check_backward(dy, cache)
    xhat, inv_rms, gamma = cache
    d = dy.shape[-1]
    dxhat = gamma * dy
    dx = inv_rms * (dxhat - xhat * (dxhat * xhat).sum(dim=-1, keepdim=True) / d)
    dgamma = (dy * xhat).reshape(-1, d).sum(dim=0)
    return dx, dgamma


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


class RMSNormFunction(torch.autograd.Function):
    """RMS norm whose gradient is :func:`rmsnorm_backward`, not autograd's own."""

    @staticmethod
    def forward(ctx, x, gamma, eps=1e-6):  # noqa: D102
        y, cache = rmsnorm_forward(x, gamma, eps)
        ctx.save_for_backward(*cache)
        return y

    @staticmethod
    def backward(ctx, dy):  # noqa: D102
        dx, dgamma = rmsnorm_backward(dy, NormCache(*ctx.saved_tensors))
        return dx, dgamma, None


class BatchNorm1d(nn.Module):
    """Batch norm over the batch for inputs (B, D), like ``nn.BatchNorm1d(D)``.

    Training mode normalises with the batch's mean and biased variance and updates the running
    averages ``r ← (1 - momentum) r + momentum · batch_stat``, where the running variance uses
    the *unbiased* batch variance (divide by B - 1), as PyTorch does. Eval mode normalises
    with the running averages, so an example's output no longer depends on its batch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        _check_features(num_features, eps)
        if not _is_number(momentum) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be a number in [0, 1] (PyTorch's default is 0.1), "
                             f"got {momentum!r}")
        self.eps, self.momentum = eps, momentum
        kw = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.ones(num_features, **kw))   # gamma
        self.bias = nn.Parameter(torch.zeros(num_features, **kw))    # beta
        self.register_buffer("running_mean", torch.zeros(num_features, **kw))
        self.register_buffer("running_var", torch.ones(num_features, **kw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_layer_input(x, self.weight, "batch norm", batch=True)
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

    def __init__(self, num_features: int, eps: float = 1e-5, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        _check_features(num_features, eps)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(num_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_layer_input(x, self.weight, "layer norm", batch=False)
        return LayerNormFunction.apply(x, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """RMS norm over the last dimension, like ``nn.RMSNorm(D, eps=eps)``: a scale, no shift.

    The default ``eps = 1e-6`` is LLaMA's; ``nn.RMSNorm``'s default (``eps=None``) is the
    machine epsilon of the input's dtype, so pass ``eps`` to compare the two.
    """

    def __init__(self, num_features: int, eps: float = 1e-6, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        _check_features(num_features, eps)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_layer_input(x, self.weight, "RMS norm", batch=False)
        return RMSNormFunction.apply(x, self.weight, self.eps)


# --------------------------------------------------------------------------------------------
# A deep MLP to experiment with, and what the section measures in it
# --------------------------------------------------------------------------------------------

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "linear": lambda h: h}
_NORMS: dict[str, type[nn.Module]] = {"batch": BatchNorm1d, "layer": LayerNorm, "rms": RMSNorm}


def _check_mlp_args(depth: object, width: object, in_features: object, out_features: object,
                    activation: object, norm: object, residual: object) -> None:
    for name, v in (("depth", depth), ("width", width), ("in_features", in_features),
                    ("out_features", out_features)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"need {name} >= 1 (a whole number), got {name}={v!r}")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    if not (norm is None or norm in _NORMS or (callable(norm) and not isinstance(norm, str))):
        raise ValueError(f"norm must be None, 'batch', 'layer', 'rms' or a class such as "
                         f"nn.LayerNorm, got {norm!r}")
    if not isinstance(residual, bool):
        raise ValueError(f"residual must be True or False, got {residual!r}")


class DeepMLP(nn.Module):
    """``depth`` hidden layers of ``width`` units, plain or residual, with optional norm.

    The input layer maps to ``width`` units, ``z_0 = W_in x + b_in``; then each hidden layer
    ``l`` computes ``f_l(z) = W_l φ(norm_l(z)) + b_l`` and either replaces (plain) or adds to
    (residual) the signal:  ``z_l = f_l(z_{l-1})``  or  ``z_l = z_{l-1} + f_l(z_{l-1})``.
    The output layer reads ``W_out φ(z_depth) + b_out``. ``norm`` is None, ``"batch"``,
    ``"layer"`` or ``"rms"`` (this module's :class:`BatchNorm1d`, :class:`LayerNorm` and
    :class:`RMSNorm`), or a class called as ``norm(width)``, e.g. PyTorch's fused
    ``nn.LayerNorm``. ``dtype`` and ``device`` are those of the parameters: the weights are
    drawn directly in that dtype (float64 weights drawn as float32 and converted would inherit
    float32 rounding, which differs between CPUs).
    """

    def __init__(self, depth: int, width: int, *, in_features: int = 40, out_features: int = 10,
                 activation: str = "relu", norm: str | Callable[[int], nn.Module] | None = None,
                 residual: bool = False, dtype: torch.dtype | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        _check_mlp_args(depth, width, in_features, out_features, activation, norm, residual)
        kw = {"dtype": dtype, "device": device}
        self.act, self.residual = _ACTIVATIONS[activation], residual
        self.inp = nn.Linear(in_features, width, **kw)
        self.hidden = nn.ModuleList(nn.Linear(width, width, **kw) for _ in range(depth))
        make = _NORMS.get(norm, norm) if isinstance(norm, str) else norm
        self.norms = nn.ModuleList(nn.Identity() if make is None else make(width).to(**kw)
                                   for _ in range(depth))
        self.out = nn.Linear(width, out_features, **kw)

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits and the hidden signals ``[z_0, z_1, ..., z_depth]`` (for measurements)."""
        _check_layer_input(x, self.inp.weight[0], "DeepMLP", batch=True)
        z = self.inp(x)
        zs = [z]
        for linear, norm in zip(self.hidden, self.norms):
            f = linear(self.act(norm(z)))
            z = z + f if self.residual else f
            zs.append(z)
        return self.out(self.act(z)), zs

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
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(init):
        raise ValueError("init must be a function that fills a weight in place, e.g. "
                         "layers.kaiming_normal_")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got "
                         f"{type(generator).__name__}")
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


def scale_residual_branches_(model: DeepMLP, scale: float) -> DeepMLP:
    """Multiply the last linear layer of every residual branch (weight and bias) by ``scale``.

    ``scale = 0`` starts every block as the identity (zero init, as in Goyal et al. 2017 and
    Fixup); ``scale = 1 / sqrt(depth)`` keeps the sum of ``depth`` branches at the scale of one.
    In :class:`DeepMLP` a branch has one linear layer, the hidden layer ``W_l``.
    """
    if not isinstance(model, DeepMLP) or not model.residual:
        raise ValueError("expected a residual DeepMLP, e.g. layers.DeepMLP(depth, width, "
                         "residual=True)")
    if not _is_number(scale) or not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number >= 0 (0 for zero init, "
                         f"1 / sqrt(depth) for the 1/√L rule), got {scale!r}")
    with torch.no_grad():
        for linear in model.hidden:
            linear.weight.mul_(scale)
            linear.bias.mul_(scale)
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
    if not isinstance(y, torch.Tensor) or not isinstance(x, torch.Tensor) or len(y) != len(x):
        raise ValueError("expected tensors x of shape (batch, features) and y with one target "
                         "per example")
    if loss_fn is F.cross_entropy and (y.ndim != 1 or y.dtype != torch.int64):
        raise ValueError(f"cross-entropy needs class indices y of shape ({len(x)},) and dtype "
                         f"int64, got {y.dtype} of shape {tuple(y.shape)}: convert with .long()")
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    norms = torch.stack([lin.weight.grad.norm() for lin in model.linears()]).detach()
    model.zero_grad(set_to_none=True)
    return norms


def _check_matrix(h: object) -> None:
    _check_tensor(h, "h")
    if h.ndim != 2 or min(h.shape) < 1:
        raise ValueError(f"expected a matrix h of shape (examples, features), got "
                         f"{tuple(h.shape)}")
    if not bool(torch.isfinite(h).all()):
        raise ValueError("h contains nan or inf: the representations have overflowed")
    if not bool(h.detach().ne(0).any()):
        raise ValueError("h is all zeros: its effective rank is undefined")


def effective_rank(h: torch.Tensor) -> float:
    """The effective rank ``exp(-Σ p_i log p_i)``, ``p_i = s_i / Σ s_j``, of a matrix (B, D).

    ``s_i`` are the singular values of ``h`` (Roy and Vetterli, 2007): the result lies between
    1 (every row a multiple of one vector: the representations have collapsed) and
    ``min(B, D)`` (all directions used equally), and does not change when ``h`` is scaled.
    """
    _check_matrix(h)
    s = torch.linalg.svdvals(h.detach())
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))
