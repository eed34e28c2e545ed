"""Backpropagation in matrix form, written by hand (section 2.2).

Every layer is a pair of functions. ``*_forward`` computes the output and
returns a *cache*: the tensors its backward pass will need.
``*_backward(d_out, cache)`` takes the upstream gradient (the gradient of the
loss with respect to the layer's output) and returns the gradients with
respect to the layer's inputs and parameters. Nothing here uses autograd;
:func:`as_autograd` lets autograd (and ``gradcheck``) call these backwards.

Conventions (batch first): ``X`` has shape (B, d_in); a linear layer computes
``Y = X @ W + b`` with ``W`` of shape (d_in, d_out) and ``b`` of shape
(d_out,). PyTorch's ``nn.Linear`` stores the transpose, ``weight`` of shape
(d_out, d_in), so ``W = linear.weight.T`` and ``dW = linear.weight.grad.T``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from dlbook import losses

Cache = tuple[torch.Tensor, ...]
Params = dict[str, torch.Tensor]


def _shape(t: Any) -> Any:
    return tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__


def _check_tensor(name: str, t: Any, ndim: int | None = None,
                  fix: str = "") -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"expected {name} to be a torch.Tensor, got "
                         f"{type(t).__name__}")
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"expected {name} of shape {fix}, got {_shape(t)}")


def _check_upstream(name: str, grad: Any, shape: tuple[int, ...]) -> None:
    """An upstream gradient must have the shape of the forward's output."""
    if not isinstance(grad, torch.Tensor) or tuple(grad.shape) != shape:
        raise ValueError(f"expected {name} of shape {shape}, the shape of the "
                         f"forward pass's output, got {_shape(grad)}")


def _check_linear(X: Any, W: Any, b: Any) -> None:
    _check_tensor("X", X, 2, "(batch, d_in); use X.reshape(1, -1) for a "
                  "single example")
    _check_tensor("W", W, 2, "(d_in, d_out); for an nn.Linear pass "
                  "linear.weight.T")
    if X.shape[1] != W.shape[0]:
        raise ValueError(f"X has {X.shape[1]} features, so W must have shape "
                         f"({X.shape[1]}, d_out); got {tuple(W.shape)}")
    if not isinstance(b, torch.Tensor) or b.shape != (W.shape[1],):
        raise ValueError(f"expected b of shape ({W.shape[1]},), one bias per "
                         f"output, got {_shape(b)}")


def _check_labels(S: Any, y: Any) -> None:
    _check_tensor("S", S, 2, "(batch, classes) of logits")
    if (not isinstance(y, torch.Tensor) or y.shape != (S.shape[0],)
            or y.is_floating_point()):
        got = (f"{_shape(y)} {y.dtype}" if isinstance(y, torch.Tensor)
               else _shape(y))
        raise ValueError(f"expected y of shape ({S.shape[0]},) holding "
                         f"integer class indices (use y.long()), got {got}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= S.shape[1]):
        raise ValueError(f"class indices in y must lie in [0, {S.shape[1]}), "
                         f"got {int(y.min())}..{int(y.max())}")


# --- linear layer -----------------------------------------------------------

def linear_forward(X: torch.Tensor, W: torch.Tensor,
                   b: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """``Y = X W + b``: X (B, d_in), W (d_in, d_out), b (d_out,) -> (B, d_out).
    """
    _check_linear(X, W, b)
    return X @ W + b, (X, W)


def linear_backward(
    dY: torch.Tensor, cache: Cache, *, need_dX: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Gradients of a linear layer: dX = dY Wᵀ, dW = Xᵀ dY, db = Σ_i dY.

    With ``need_dX=False`` (the input is data, as in a first layer) dX is
    skipped and None returned in its place, as autograd does: that halves
    the backward's work.
    """
    X, W = cache
    _check_upstream("dY", dY, (X.shape[0], W.shape[1]))
    dX = dY @ W.T if need_dX else None  # (B, d_out) @ (d_out, d_in)
    dW = X.T @ dY                       # (d_in, B) @ (B, d_out)
    db = dY.sum(dim=0)                  # b was broadcast over the batch
    return dX, dW, db


# --- element-wise activations -----------------------------------------------

def relu_forward(Z: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """``A = max(Z, 0)``; the cache keeps Z, whose sign decides the slope."""
    _check_tensor("Z", Z)
    return Z.clamp(min=0), (Z,)


def relu_backward(dA: torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dZ = dA ⊙ 1[Z > 0]`` (slope 0 at exactly 0, as in PyTorch)."""
    (Z,) = cache
    _check_upstream("dA", dA, tuple(Z.shape))
    return dA * (Z > 0).to(dA.dtype)


def tanh_forward(Z: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """``A = tanh(Z)``; the cache keeps A, because tanh'(Z) = 1 - A²."""
    _check_tensor("Z", Z)
    A = torch.tanh(Z)
    return A, (A,)


def tanh_backward(dA: torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dZ = dA ⊙ (1 - A ⊙ A)``."""
    (A,) = cache
    _check_upstream("dA", dA, tuple(A.shape))
    return dA * (1 - A * A)


# --- losses: scalar outputs, so the upstream gradient dL is a number ---------

def mse_forward(Y_hat: torch.Tensor,
                Y: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """Mean squared error over all N entries, as ``F.mse_loss`` computes it.

    The value (and the check that the shapes match) is Section 1.3's
    ``losses.mse``; the cache keeps the difference for the backward pass.
    """
    _check_tensor("Y_hat", Y_hat)
    _check_tensor("Y", Y)
    return losses.mse(Y_hat, Y), (Y_hat - Y,)


def mse_backward(dL: float | torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dŶ = dL · 2 (Ŷ - Y) / N``, with N the number of entries."""
    (diff,) = cache
    return dL * 2 * diff / diff.numel()


def softmax_cross_entropy_forward(
    S: torch.Tensor, y: torch.Tensor,
) -> tuple[torch.Tensor, Cache]:
    """Mean cross-entropy of softmax(S), logits S (B, K), labels y (B,).

    Equals ``F.cross_entropy(S, y)``. The log-probabilities come from
    Section 1.3's stable ``losses.log_softmax`` (the log-sum-exp trick).
    The cache keeps the probabilities P and the labels.
    """
    _check_labels(S, y)
    log_P = losses.log_softmax(S, dim=1)
    rows = torch.arange(len(y), device=S.device)
    loss = -log_P[rows, y].mean()
    return loss, (log_P.exp(), y)


def softmax_cross_entropy_backward(dL: float | torch.Tensor,
                                   cache: Cache) -> torch.Tensor:
    """``dS = dL · (P - Y) / B``, Y one-hot: probability minus truth."""
    P, y = cache
    dS = P.clone()
    dS[torch.arange(len(y), device=P.device), y] -= 1  # P - Y
    return dL * dS / len(y)


# --- a two-layer MLP assembled by hand --------------------------------------

_ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "tanh": (tanh_forward, tanh_backward),
    "relu": (relu_forward, relu_backward),
}


def _check_activation(activation: str) -> None:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, "
                         f"got {activation!r}")


def params_from_torch(first: torch.nn.Linear,
                      second: torch.nn.Linear) -> Params:
    """Copy two ``nn.Linear`` layers into our convention (W = weight.T)."""
    for lin in (first, second):
        if not isinstance(lin, torch.nn.Linear) or lin.bias is None:
            raise ValueError("expected two nn.Linear layers with bias=True")
    return {"W1": first.weight.detach().T.clone(),
            "b1": first.bias.detach().clone(),
            "W2": second.weight.detach().T.clone(),
            "b2": second.bias.detach().clone()}


def mlp_forward(params: Params, X: torch.Tensor, y: torch.Tensor, *,
                activation: str = "tanh") -> tuple[torch.Tensor, dict]:
    """Loss of ``softmax(act(X W1 + b1) W2 + b2)`` and every layer's cache.

    ``params`` holds W1 (d_in, H), b1 (H,), W2 (H, K), b2 (K,); y holds
    the class indices (B,). :func:`mlp_backward` consumes the caches.
    """
    _check_activation(activation)
    if set(params) != {"W1", "b1", "W2", "b2"}:
        raise ValueError(f"params must have the keys W1, b1, W2, b2; got "
                         f"{sorted(params)}")
    act_forward, _ = _ACTIVATIONS[activation]
    Z1, lin1 = linear_forward(X, params["W1"], params["b1"])  # (B, H)
    A1, act = act_forward(Z1)                                  # (B, H)
    S, lin2 = linear_forward(A1, params["W2"], params["b2"])  # (B, K)
    loss, ce = softmax_cross_entropy_forward(S, y)             # ()
    return loss, {"lin1": lin1, "act": act, "lin2": lin2, "ce": ce,
                  "activation": activation}


def mlp_backward(caches: dict) -> Params:
    """Gradients of the MLP's loss: the forward pass read backwards."""
    _, act_backward = _ACTIVATIONS[caches["activation"]]
    dS = softmax_cross_entropy_backward(1.0, caches["ce"])   # (B, K)
    dA1, dW2, db2 = linear_backward(dS, caches["lin2"])      # (B, H), (H, K)
    dZ1 = act_backward(dA1, caches["act"])                   # (B, H)
    _, dW1, db1 = linear_backward(dZ1, caches["lin1"],       # (d_in, H)
                                  need_dX=False)             # X is data
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def mlp_logits(params: Params, X: torch.Tensor, *,
               activation: str = "tanh") -> torch.Tensor:
    """The MLP's logits S (B, K), without loss or caches (for predicting)."""
    _check_activation(activation)
    Z1, _ = linear_forward(X, params["W1"], params["b1"])
    A1, _ = _ACTIVATIONS[activation][0](Z1)
    return linear_forward(A1, params["W2"], params["b2"])[0]


def sgd_step(params: Params, grads: Params, lr: float) -> Params:
    """Plain gradient descent, ``p - lr * dp`` for every parameter."""
    if set(grads) != set(params):
        raise ValueError(f"grads has keys {sorted(grads)} but params has "
                         f"{sorted(params)}")
    return {k: params[k] - lr * grads[k] for k in params}


# --- letting autograd call a hand-written backward --------------------------

class _HandWritten(torch.autograd.Function):
    """Runs ``forward`` untracked; autograd then calls *our* ``backward``."""

    @staticmethod
    def forward(ctx: Any, forward: Callable, backward: Callable,
                *inputs: torch.Tensor) -> torch.Tensor:
        out, cache = forward(*inputs)  # autograd is off in here
        ctx.backward_fn, ctx.n_inputs = backward, len(inputs)
        ctx.save_for_backward(*cache)
        return out

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor) -> tuple[Any, ...]:
        grads = ctx.backward_fn(d_out, tuple(ctx.saved_tensors))
        grads = grads if isinstance(grads, tuple) else (grads,)
        # None for the two function arguments, and for inputs that get no
        # gradient (the labels of a loss).
        missing = ctx.n_inputs - len(grads)
        return (None, None, *grads) + (None,) * missing


def as_autograd(forward: Callable,
                backward: Callable) -> Callable[..., torch.Tensor]:
    """Wrap a forward/backward pair as one operation autograd can use.

    When the result is differentiated (``.backward()``, ``autograd.grad`` or
    ``autograd.gradcheck``), autograd calls *our* ``backward`` instead of
    differentiating the operations inside ``forward``: this is how gradcheck
    tests a hand-written gradient.
    """
    if not (callable(forward) and callable(backward)):
        raise ValueError("as_autograd expects two functions: forward(*inputs)"
                         " -> (out, cache) and backward(d_out, cache)")

    def apply(*inputs: torch.Tensor) -> torch.Tensor:
        return _HandWritten.apply(forward, backward, *inputs)

    return apply


# --- counting the work ------------------------------------------------------

def linear_flops(batch: int, d_in: int, d_out: int, *,
                 need_dX: bool = True) -> tuple[int, int]:
    """Matrix-product FLOPs of a linear layer, ``(forward, backward)``.

    A multiply-add counts as 2 FLOPs. Forward ``X W``: 2·B·d_in·d_out.
    Backward: as much again for ``dW = Xᵀ dY``, and again for
    ``dX = dY Wᵀ`` unless the input is data. The bias and the activations
    cost O(B·d_out) and are not counted (nor are they by FlopCounterMode).
    """
    for name, v in (("batch", batch), ("d_in", d_in), ("d_out", d_out)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    forward = 2 * batch * d_in * d_out
    return forward, forward * (2 if need_dX else 1)
