"""Activation functions written from their formulas, with hand-derived derivatives (section 1.2).

Each function ``f`` comes with ``f_grad``, its derivative worked out on paper, so that the book
can check the calculus against autograd instead of taking it on trust. Everything is built from
elementary tensor operations (``exp``, ``erf``, ``where``) and written to be numerically stable:
no ``exp`` of a large positive number is ever computed, so huge inputs give finite outputs.

The derivative at a kink (ReLU and Leaky ReLU at 0) follows PyTorch's convention: the slope of
the left piece, so that both libraries agree at every point. A NaN input gives NaN, and infinite
inputs give what PyTorch gives, in every function; a derivative at NaN is NaN too (autograd's
backward passes are less careful there: the one of ``F.relu`` returns 1 at NaN).

The last part holds the small tools the section's experiments use: collapsing a stack of linear
layers into one, building and training small networks (many shallow ones at once, side by side),
finding dead units, and a ReLU network that draws a given broken line without any training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _check(z: torch.Tensor, name: str = "z") -> None:
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"expected {name} to be a torch.Tensor, got {type(z).__name__}; "
                         f"wrap it with torch.tensor(...)")
    if not z.is_floating_point():
        raise ValueError(f"expected {name} to be a floating-point tensor, got {z.dtype}; "
                         f"convert it with {name}.float()")


def _keep_nan(z: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out``, but NaN wherever ``z`` is NaN (a comparison such as ``z > 0`` loses it)."""
    return torch.where(z.isnan(), z, out)


# --- The sigmoid family -------------------------------------------------------------------

def sigmoid(z: torch.Tensor) -> torch.Tensor:
    """The logistic sigmoid ``1 / (1 + exp(-z))``, squashing any real number into (0, 1).

    Written with ``e = exp(-|z|) <= 1``: ``1 / (1 + e)`` for ``z >= 0`` and
    ``e / (1 + e)`` for ``z < 0`` are the same function, and neither can overflow.
    """
    _check(z)
    e = torch.exp(-z.abs())
    return torch.where(z >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_grad(z: torch.Tensor) -> torch.Tensor:
    """``sigmoid'(z) = sigmoid(z) * (1 - sigmoid(z))``: at most 1/4, reached at ``z = 0``."""
    s = sigmoid(z)
    return s * (1 - s)


def tanh(z: torch.Tensor) -> torch.Tensor:
    """The hyperbolic tangent ``(e^z - e^-z) / (e^z + e^-z)``, a sigmoid on (-1, 1).

    Dividing through by ``e^|z|`` gives ``sign(z) (1 - e) / (1 + e)`` with
    ``e = exp(-2|z|) <= 1``, which never overflows. ``expm1`` computes ``m = e - 1``
    without the cancellation of ``1 - e`` for tiny ``z``; then ``1 + e = 2 + m``.
    """
    _check(z)
    m = torch.expm1(-2 * z.abs())
    return -torch.sign(z) * m / (2 + m)


def tanh_grad(z: torch.Tensor) -> torch.Tensor:
    """``tanh'(z) = 1 - tanh(z)^2``: at most 1, reached at ``z = 0``."""
    t = tanh(z)
    return 1 - t * t


# --- The rectifier family ------------------------------------------------------------------

def relu(z: torch.Tensor) -> torch.Tensor:
    """The rectified linear unit ``max(0, z)``: 0 where ``z < 0``, else ``z`` (NaN stays NaN)."""
    _check(z)
    return torch.where(z < 0, torch.zeros_like(z), z)


def relu_grad(z: torch.Tensor) -> torch.Tensor:
    """``relu'(z)``: 1 for ``z > 0``, 0 otherwise (0 at the kink, as in PyTorch; NaN at NaN)."""
    _check(z)
    return _keep_nan(z, (z > 0).to(z.dtype))


def _check_slope(slope: float) -> None:
    if not isinstance(slope, (int, float)) or isinstance(slope, bool) or not 0 <= slope < 1:
        raise ValueError(f"the negative slope must be a number in [0, 1), got {slope!r}")


def leaky_relu(z: torch.Tensor, slope: float = 0.01) -> torch.Tensor:
    """Leaky ReLU: ``z`` for ``z > 0``, ``slope * z`` otherwise (PyTorch's default slope 0.01)."""
    _check(z)
    _check_slope(slope)
    return torch.where(z > 0, z, slope * z)


def leaky_relu_grad(z: torch.Tensor, slope: float = 0.01) -> torch.Tensor:
    """``1`` for ``z > 0``, ``slope`` otherwise: never exactly zero when ``slope > 0``."""
    _check(z)
    _check_slope(slope)
    return _keep_nan(z, torch.where(z > 0, torch.ones_like(z), torch.full_like(z, slope)))


def _check_alpha(alpha: float) -> None:
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not alpha > 0:
        raise ValueError(f"alpha must be a positive number, got {alpha!r}")


def elu(z: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Exponential linear unit: ``z`` for ``z > 0``, ``alpha (e^z - 1)`` otherwise.

    The negative branch is evaluated at ``min(z, 0)`` so that ``exp`` never sees a large
    positive number (``torch.where`` computes both branches everywhere).
    """
    _check(z)
    _check_alpha(alpha)
    return torch.where(z > 0, z, alpha * torch.expm1(z.clamp(max=0)))


def elu_grad(z: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """``1`` for ``z > 0``, ``alpha e^z`` (equal to ``elu(z) + alpha``) otherwise."""
    _check(z)
    _check_alpha(alpha)
    negative = alpha * torch.exp(z.clamp(max=0))
    return torch.where(z > 0, torch.ones_like(z), negative)


# --- Smooth rectifiers: GELU and SiLU ------------------------------------------------------

def normal_cdf(z: torch.Tensor) -> torch.Tensor:
    """``Phi(z)``, the standard normal's cumulative distribution: ``(1 + erf(z / sqrt 2)) / 2``."""
    _check(z)
    return 0.5 * (1 + torch.erf(z / math.sqrt(2)))


def normal_pdf(z: torch.Tensor) -> torch.Tensor:
    """``Phi'(z) = exp(-z^2 / 2) / sqrt(2 pi)``, the standard normal density."""
    _check(z)
    return torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def gelu(z: torch.Tensor) -> torch.Tensor:
    """Gaussian error linear unit, exact form: ``z * Phi(z)``."""
    return z * normal_cdf(z)


def gelu_grad(z: torch.Tensor) -> torch.Tensor:
    """``gelu'(z) = Phi(z) + z Phi'(z)`` (the product rule; ``Phi'`` is the normal density)."""
    return normal_cdf(z) + z * normal_pdf(z)


def gelu_tanh(z: torch.Tensor) -> torch.Tensor:
    """The tanh approximation of GELU: ``z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))``.

    It avoids ``erf``, which was slow on some hardware; PyTorch offers it as
    ``F.gelu(z, approximate="tanh")`` and GPT-2 was trained with it.
    """
    _check(z)
    return 0.5 * z * (1 + tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z ** 3)))


def silu(z: torch.Tensor) -> torch.Tensor:
    """Sigmoid linear unit (Swish with beta = 1): ``z * sigmoid(z)``."""
    return z * sigmoid(z)


def silu_grad(z: torch.Tensor) -> torch.Tensor:
    """``silu'(z) = sigmoid(z) (1 + z (1 - sigmoid(z)))``."""
    s = sigmoid(z)
    return s * (1 + z * (1 - s))


# --- Softmax: a vector-to-vector activation ------------------------------------------------

def _check_vector(z: torch.Tensor) -> None:
    _check(z)
    if z.ndim == 0:
        raise ValueError("softmax needs at least one dimension (a vector of logits), got a "
                         "0-d tensor; use z.reshape(1) or z.unsqueeze(0)")


def softmax(z: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension: ``exp(z_i) / sum_j exp(z_j)``.

    Subtracting the largest entry first changes nothing (the factor ``exp(-max)``
    cancels) but keeps every exponent <= 0, so ``exp`` cannot overflow.
    """
    _check_vector(z)
    e = torch.exp(z - z.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def softmax_jacobian(z: torch.Tensor) -> torch.Tensor:
    """The Jacobian ``dp/dz = diag(p) - p p^T`` of :func:`softmax`, shape (..., n, n)."""
    p = softmax(z)
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


def softmax_backward(p: torch.Tensor, grad_p: torch.Tensor) -> torch.Tensor:
    """Backpropagate through softmax without building the Jacobian.

    Given the output ``p`` and the gradient ``g = dL/dp``, returns
    ``dL/dz = (diag(p) - p p^T) g = p * (g - <g, p>)``: O(n) work, not O(n^2).
    """
    _check_vector(p)
    _check(grad_p, "grad_p")
    if p.shape != grad_p.shape:
        raise ValueError(f"p and grad_p must have the same shape, got {tuple(p.shape)} "
                         f"and {tuple(grad_p.shape)}")
    return p * (grad_p - (grad_p * p).sum(dim=-1, keepdim=True))


# --- A registry: formula, derivative and PyTorch's own version side by side -----------------

@dataclass(frozen=True)
class Activation:
    """An element-wise activation: our formula, our derivative and PyTorch's reference."""

    name: str
    fn: Callable[[torch.Tensor], torch.Tensor]
    grad: Callable[[torch.Tensor], torch.Tensor]
    reference: Callable[[torch.Tensor], torch.Tensor]


ACTIVATIONS: dict[str, Activation] = {a.name: a for a in [
    Activation("sigmoid", sigmoid, sigmoid_grad, torch.sigmoid),
    Activation("tanh", tanh, tanh_grad, torch.tanh),
    Activation("relu", relu, relu_grad, F.relu),
    Activation("leaky_relu", leaky_relu, leaky_relu_grad, F.leaky_relu),
    Activation("elu", elu, elu_grad, F.elu),
    Activation("gelu", gelu, gelu_grad, F.gelu),
    Activation("silu", silu, silu_grad, F.silu),
]}


# --- Tools for the section's experiments ---------------------------------------------------


def collapse_linear(layers: Sequence[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor]:
    """The single affine map ``x -> W x + b`` equal to applying ``layers`` in turn.

    Layer ``k`` maps ``x`` to ``W_k x + b_k``. Composing it after the map ``(W, b)`` built
    so far gives ``W_k (W x + b) + b_k = (W_k W) x + (W_k b + b_k)``, so the whole stack
    is again one matrix and one vector. Returns detached tensors (``W`` of shape
    (out, in), ``b`` of shape (out,)).
    """
    layers = _check_linear_stack(layers)
    first = layers[0].weight
    W = torch.eye(layers[0].in_features, dtype=first.dtype, device=first.device)
    b = torch.zeros(layers[0].in_features, dtype=first.dtype, device=first.device)
    with torch.no_grad():
        for layer in layers:
            W = layer.weight @ W
            b = layer.weight @ b if layer.bias is None else layer.weight @ b + layer.bias
    return W, b


def _check_linear_stack(layers: Sequence[nn.Linear]) -> list[nn.Linear]:
    layers = list(layers)
    if not layers:
        raise ValueError("collapse_linear needs at least one nn.Linear layer")
    for i, layer in enumerate(layers):
        if not isinstance(layer, nn.Linear):
            raise ValueError(f"layer {i} is a {type(layer).__name__}, not an nn.Linear: "
                             f"only a stack of purely linear layers collapses to one")
        if i and layer.in_features != layers[i - 1].out_features:
            raise ValueError(f"layer {i} expects {layer.in_features} inputs but the "
                             f"layers before it give {layers[i - 1].out_features} outputs")
        if layer.weight.dtype != layers[0].weight.dtype:
            raise ValueError(f"layer {i} is {layer.weight.dtype} but layer 0 is "
                             f"{layers[0].weight.dtype}: convert them all, e.g. with .double()")
    return layers


def mlp(sizes: Sequence[int], activation: Callable[[], nn.Module], *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None) -> nn.Sequential:
    """A fully connected network ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    ``activation`` is a factory such as ``nn.ReLU`` (the class, not an instance ``nn.ReLU()``);
    one is placed after every linear layer but the last, so the output is unbounded: logits
    for a classifier, values for a regression. The layers are ``nn.Linear`` with PyTorch's
    default initialisation, drawn from the global generator (seed it first), and have the
    given ``dtype`` and ``device`` (PyTorch's defaults, float32 on the CPU, when ``None``).
    This is the book's one multi-layer perceptron builder, used from Section 1.2 on.
    """
    sizes = list(sizes)
    if len(sizes) < 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                             for s in sizes):
        raise ValueError(f"sizes must hold at least two positive integers (input and output "
                         f"widths), got {sizes!r}")
    if isinstance(activation, nn.Module) or not callable(activation):
        raise ValueError(f"activation must be a factory that makes a module, such as nn.ReLU "
                         f"(without parentheses), got {activation!r}")
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out, dtype=dtype, device=device))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _check_same_dtype(model: nn.Module, x: torch.Tensor) -> None:
    dtype = _model_dtype(model)
    if dtype is not None and dtype != x.dtype:
        fix = "model.double()" if x.dtype == torch.float64 else f"x.to({dtype})"
        raise ValueError(f"the model is {dtype} but x is {x.dtype}: convert one of them, "
                         f"e.g. with {fix}")


def hidden_preactivations(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    """The pre-activations ``z = W h + b`` of every hidden layer of ``model`` on inputs ``x``.

    Returns one tensor of shape (n, width) per ``nn.Linear`` except the last (the output layer).
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"expected an nn.Sequential (e.g. from dlbook.activations.mlp), got "
                         f"{type(model).__name__}")
    _check(x, "x")
    linears = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no nn.Linear layer")
    if x.ndim != 2 or x.shape[1] != model[linears[0]].in_features:
        raise ValueError(f"expected x of shape (n, {model[linears[0]].in_features}), got "
                         f"{tuple(x.shape)}")
    _check_same_dtype(model, x)
    out: list[torch.Tensor] = []
    h = x
    with torch.no_grad():
        for i, module in enumerate(model):
            h = module(h)
            if i in linears[:-1]:
                out.append(h)
    return out


def dead_units(z: torch.Tensor) -> torch.Tensor:
    """Which units are dead on a data set: a boolean mask of shape (width,).

    ``z`` holds one hidden layer's pre-activations, shape (n, width). A unit is dead when
    its pre-activation is <= 0 for *every* input: a ReLU then outputs 0 and passes back a
    zero gradient for every example, so gradient descent never changes its weights.
    """
    _check(z)
    if z.ndim != 2:
        raise ValueError(f"expected pre-activations of shape (n, width), "
                         f"got {tuple(z.shape)}")
    if bool(z.isnan().any()):
        raise ValueError("the pre-activations contain nan: a unit is neither dead nor alive "
                         "there; look for the nan in the inputs or the weights")
    return (z <= 0).all(dim=0)


def _check_training(x: torch.Tensor, y: torch.Tensor, steps: int, lr: float, optimizer: str,
                    *, min_steps: int) -> None:
    """The checks that :func:`fit_regression` and :func:`fit_shallow` share."""
    _check(x, "x")
    _check(y, "y")
    if x.ndim != 2:
        raise ValueError(f"expected x of shape (n, d), got {tuple(x.shape)}; a single input "
                         f"feature is x.unsqueeze(1)")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y must hold the same number of examples, got {x.shape[0]} "
                         f"and {y.shape[0]}")
    if y.dtype != x.dtype:
        raise ValueError(f"y is {y.dtype} but x is {x.dtype}: convert with y.to(x.dtype)")
    if not bool(torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("x or y contains nan or inf: the loss would be nan from the start")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < min_steps \
            or isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"need an integer steps >= {min_steps} and a number lr > 0, "
                         f"got steps={steps!r}, lr={lr!r}")
    if optimizer not in {"sgd", "adam"}:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")


def _make_optimizer(name: str, params: Iterable[torch.Tensor], lr: float
                    ) -> torch.optim.Optimizer:
    return (torch.optim.SGD if name == "sgd" else torch.optim.Adam)(params, lr=lr)


def fit_regression(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int,
                   lr: float, optimizer: str = "adam") -> list[float]:
    """Fit ``model`` to ``(x, y)`` by full-batch gradient descent on the mean squared error.

    ``optimizer`` is ``"sgd"`` (plain gradient descent) or ``"adam"``; both are the subject of
    sections 1.4 and 1.5, used here as a tool. ``y`` must have the shape of ``model(x)``
    (``(n, 1)`` for one output). Returns the loss before every step.
    """
    _check_training(x, y, steps, lr, optimizer, min_steps=1)
    if _model_dtype(model) is None:
        raise ValueError("the model has no floating-point parameters to train")
    _check_same_dtype(model, x)
    with torch.no_grad():
        shape = tuple(model(x).shape)
    if shape != tuple(y.shape):
        fix = " (y.unsqueeze(1) or y.reshape(-1, 1))" if shape == (*y.shape, 1) else ""
        raise ValueError(f"the model outputs shape {shape} but y has shape {tuple(y.shape)}: "
                         f"give y the shape of the output{fix}; mse_loss would broadcast "
                         f"them silently")
    opt = _make_optimizer(optimizer, model.parameters(), lr)
    losses = []
    for _ in range(steps):
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def fit_shallow(x: torch.Tensor, y: torch.Tensor, widths: Sequence[int],
                activation: Callable[[], nn.Module], *, steps: int, lr: float,
                optimizer: str = "adam", seed: int = 0,
                progress: str | None = None) -> list[nn.Sequential]:
    """Train one network ``x -> Linear -> activation -> Linear`` per entry of ``widths``.

    The networks share nothing, so we place all their hidden units side by side in one
    wide layer and add up their mean squared errors: each network still gets exactly the
    gradient it would get alone, and since SGD and Adam update every parameter on its own,
    exactly the training run it would have alone. One wide layer costs far less than many
    tiny ones. Weights start as ``nn.Linear`` starts them, uniform in ``±1/sqrt(fan_in)``,
    drawn from ``seed``, in the dtype of ``x``. The learning rate falls from ``lr`` to 0
    along a cosine, so the last steps settle. Returns the trained networks as ordinary
    ``nn.Sequential`` models, in the order of ``widths`` (with ``steps=0``: the networks as
    initialised). ``progress`` names a progress bar, if wanted.
    """
    widths = _check_fit_shallow(x, y, widths, activation, steps, lr, optimizer)
    k, n_in, n_hidden = len(widths), x.shape[1], sum(widths)
    # owner[u] = j: hidden unit u belongs to network j
    owner = torch.repeat_interleave(torch.arange(k), torch.tensor(widths)).to(x.device)
    fan_in_2 = torch.tensor(widths, dtype=x.dtype, device=x.device)  # of each output layer
    uniform = _uniform_sampler(seed, x)
    W1 = (uniform(n_hidden, n_in) / math.sqrt(n_in)).requires_grad_()    # hidden layers
    b1 = (uniform(n_hidden) / math.sqrt(n_in)).requires_grad_()
    v = (uniform(n_hidden) / fan_in_2[owner].sqrt()).requires_grad_()    # output layers
    c = (uniform(k) / fan_in_2.sqrt()).requires_grad_()
    act = activation()
    opt = _make_optimizer(optimizer, [W1, b1, v, c], lr)
    for step in _maybe_progress(range(steps), progress):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        # Network j's prediction (column j of out, shape (n, k)) sums its own units only.
        out = c.expand(x.shape[0], k).index_add(1, owner, act(x @ W1.T + b1) * v)
        loss = ((out - y) ** 2).mean(dim=0).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return _split_networks(W1, b1, v, c, widths, activation)


def _check_fit_shallow(x: torch.Tensor, y: torch.Tensor, widths: Sequence[int],
                       activation: Callable[[], nn.Module], steps: int, lr: float,
                       optimizer: str) -> list[int]:
    _check_training(x, y, steps, lr, optimizer, min_steps=0)
    if y.shape != (x.shape[0], 1):
        raise ValueError(f"expected x of shape (n, d) and y of shape (n, 1), got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    widths = list(widths)
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                         for w in widths):
        raise ValueError(f"widths must be a non-empty list of positive integers, "
                         f"got {widths!r}")
    if isinstance(activation, nn.Module) or not callable(activation):
        raise ValueError(f"activation must be a factory that makes a module, such as nn.ReLU "
                         f"(without parentheses), got {activation!r}")
    return widths


def _uniform_sampler(seed: int, like: torch.Tensor) -> Callable[..., torch.Tensor]:
    """Draws uniform numbers in [-1, 1) from ``seed``, on ``like``'s device and dtype (drawn on
    the CPU, so that a seed gives the same networks on every device)."""
    gen = torch.Generator().manual_seed(seed)

    def uniform(*shape: int) -> torch.Tensor:
        return (2 * torch.rand(*shape, generator=gen) - 1).to(like.device, like.dtype)

    return uniform


def _maybe_progress(steps: range, progress: str | None) -> Iterable[int]:
    if progress is None:
        return steps

    from dlbook.utils import progress as progress_bar

    return progress_bar(steps, desc=progress)


def _split_networks(W1: torch.Tensor, b1: torch.Tensor, v: torch.Tensor, c: torch.Tensor,
                    widths: list[int], activation: Callable[[], nn.Module]
                    ) -> list[nn.Sequential]:
    """Cut the side-by-side parameters of :func:`fit_shallow` into one network per width."""
    models, start = [], 0
    with torch.no_grad():
        for j, width in enumerate(widths):
            model = nn.Sequential(nn.Linear(W1.shape[1], width), activation(),
                                  nn.Linear(width, 1)).to(W1.device, W1.dtype)
            model[0].weight.copy_(W1[start:start + width])
            model[0].bias.copy_(b1[start:start + width])
            model[2].weight.copy_(v[start:start + width].unsqueeze(0))
            model[2].bias.copy_(c[j:j + 1])
            models.append(model)
            start += width
    return models


def relu_interpolant(knots: torch.Tensor, values: torch.Tensor) -> nn.Sequential:
    """A one-hidden-layer ReLU network joining the points ``(knots[i], values[i])``.

    With slopes ``s_i = (values[i+1] - values[i]) / (knots[i+1] - knots[i])`` and
    ``s_{-1} = 0``, the broken line through m + 1 points is, for ``x >= knots[0]``,
    ``values[0] + sum_i (s_i - s_{i-1}) relu(x - knots[i])`` over ``i = 0 .. m-1``: each
    hidden unit switches on at one knot and bends the line by the change of slope there.
    So m hidden units suffice for m line segments, with weights written down, not trained.
    """
    _check_knots(knots, values)
    slopes = (values[1:] - values[:-1]) / (knots[1:] - knots[:-1])
    bends = slopes - torch.cat([slopes.new_zeros(1), slopes[:-1]])
    m = slopes.numel()
    model = nn.Sequential(nn.Linear(1, m), nn.ReLU(), nn.Linear(m, 1))
    model.to(knots.device, knots.dtype)
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.copy_(-knots[:-1])
        model[2].weight.copy_(bends.unsqueeze(0))
        model[2].bias.fill_(float(values[0]))
    return model


def _check_knots(knots: torch.Tensor, values: torch.Tensor) -> None:
    _check(knots, "knots")
    _check(values, "values")
    if knots.ndim != 1 or knots.shape != values.shape or knots.numel() < 2:
        raise ValueError(f"expected knots and values of the same shape (m + 1,) with "
                         f"m >= 1, got {tuple(knots.shape)} and {tuple(values.shape)}")
    if values.dtype != knots.dtype:
        raise ValueError(f"values is {values.dtype} but knots is {knots.dtype}: convert with "
                         f"values.to(knots.dtype)")
    if not bool(torch.isfinite(knots).all() and torch.isfinite(values).all()):
        raise ValueError("knots and values must be finite numbers (no nan or inf)")
    if not bool((knots[1:] > knots[:-1]).all()):
        raise ValueError("knots must be strictly increasing")
