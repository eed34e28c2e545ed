"""Backpropagation in matrix form, written by hand (section 2.2).

Every layer is a pair of functions. ``*_forward`` computes the output and returns a *cache*:
the tensors its backward pass will need. ``*_backward(d_out, cache)`` takes the upstream
gradient (the gradient of the loss with respect to the layer's output) and returns the
gradients with respect to the layer's inputs and parameters. Nothing here uses autograd.

Conventions (batch first): ``X`` has shape (B, d_in); a linear layer computes
``Y = X @ W + b`` with ``W`` of shape (d_in, d_out) and ``b`` of shape (d_out,). PyTorch's
``nn.Linear`` stores the transpose, ``weight`` of shape (d_out, d_in), so
``W = linear.weight.T`` and ``dW = linear.weight.grad.T``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

Cache = tuple[torch.Tensor, ...]


def _check_matrix(name: str, t: Any, fix: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"expected {name} to be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != 2:
        raise ValueError(f"expected {name} of shape {fix}, got {tuple(t.shape)}")


def _check_same_shape(name: str, grad: Any, ref: torch.Tensor) -> None:
    if not isinstance(grad, torch.Tensor) or grad.shape != ref.shape:
        shape = tuple(grad.shape) if isinstance(grad, torch.Tensor) else type(grad).__name__
        raise ValueError(f"expected {name} of shape {tuple(ref.shape)} (the shape of the "
                         f"forward output), got {shape}")


# --- linear layer -------------------------------------------------------------------------

def linear_forward(X: torch.Tensor, W: torch.Tensor,
                   b: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """``Y = X @ W + b``: X (B, d_in), W (d_in, d_out), b (d_out,) -> Y (B, d_out)."""
    _check_matrix("X", X, "(batch, d_in); use X.reshape(1, -1) for a single example")
    _check_matrix("W", W, "(d_in, d_out); for an nn.Linear pass linear.weight.T")
    if X.shape[1] != W.shape[0]:
        raise ValueError(f"X has {X.shape[1]} features but W expects {W.shape[0]}: W must have "
                         f"shape (d_in, d_out) = ({X.shape[1]}, d_out), got {tuple(W.shape)}")
    if not isinstance(b, torch.Tensor) or b.shape != (W.shape[1],):
        shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f"expected b of shape ({W.shape[1]},), one bias per output, got {shape}")
    return X @ W + b, (X, W)


def linear_backward(dY: torch.Tensor, cache: Cache, *,
                    need_dX: bool = True) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Gradients of a linear layer: ``dX = dY Wᵀ``, ``dW = Xᵀ dY``, ``db = Σ_batch dY``.

    With ``need_dX=False`` (the input is data, as in a first layer) dX is skipped and None is
    returned in its place, saving a third of the work, just as autograd does.
    """
    X, W = cache
    if not isinstance(dY, torch.Tensor) or dY.shape != (X.shape[0], W.shape[1]):
        shape = tuple(dY.shape) if isinstance(dY, torch.Tensor) else type(dY).__name__
        raise ValueError(f"expected dY of shape (batch, d_out) = ({X.shape[0]}, {W.shape[1]}), "
                         f"the shape of Y, got {shape}")
    dX = dY @ W.T if need_dX else None  # (B, d_out) @ (d_out, d_in) -> (B, d_in)
    dW = X.T @ dY  # (d_in, B) @ (B, d_out)     -> (d_in, d_out)
    db = dY.sum(dim=0)  # b was broadcast over the batch, so its gradient sums over it
    return dX, dW, db


# --- element-wise activations ---------------------------------------------------------------

def relu_forward(Z: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """``A = max(Z, 0)`` element-wise; the cache keeps Z (its sign decides the gradient)."""
    if not isinstance(Z, torch.Tensor):
        raise ValueError(f"expected Z to be a torch.Tensor, got {type(Z).__name__}")
    return Z.clamp(min=0), (Z,)


def relu_backward(dA: torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dZ = dA ⊙ 1[Z > 0]`` (the derivative at exactly 0 is taken as 0, as PyTorch does)."""
    (Z,) = cache
    _check_same_shape("dA", dA, Z)
    return dA * (Z > 0).to(dA.dtype)


def tanh_forward(Z: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """``A = tanh(Z)``; the cache keeps A, because tanh'(Z) = 1 - A²."""
    if not isinstance(Z, torch.Tensor):
        raise ValueError(f"expected Z to be a torch.Tensor, got {type(Z).__name__}")
    A = torch.tanh(Z)
    return A, (A,)


def tanh_backward(dA: torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dZ = dA ⊙ (1 - A²)``."""
    (A,) = cache
    _check_same_shape("dA", dA, A)
    return dA * (1 - A * A)


# --- losses (scalar outputs: the upstream gradient is a number, 1.0 at the top) ---------------

def mse_forward(Y_hat: torch.Tensor, Y: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """Mean squared error over all N = Y.numel() entries, as ``F.mse_loss`` computes it."""
    if not isinstance(Y_hat, torch.Tensor) or not isinstance(Y, torch.Tensor):
        raise ValueError("expected Y_hat and Y to be torch.Tensors")
    if Y_hat.shape != Y.shape:
        raise ValueError(f"expected Y of the same shape as Y_hat {tuple(Y_hat.shape)}, got "
                         f"{tuple(Y.shape)}; reshape the targets (e.g. y.reshape(-1, 1))")
    diff = Y_hat - Y
    return (diff * diff).mean(), (diff,)


def mse_backward(dL: float | torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dŶ = dL · 2 (Ŷ - Y) / N``, N the number of entries the mean divides by."""
    (diff,) = cache
    return dL * 2 * diff / diff.numel()


def softmax_cross_entropy_forward(S: torch.Tensor,
                                  y: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """Mean cross-entropy of the softmax of logits S (B, K) against class indices y (B,).

    Computed stably with the log-sum-exp trick (subtract each row's maximum); equals
    ``F.cross_entropy(S, y)``. The cache keeps the probabilities P and the labels.
    """
    _check_matrix("S", S, "(batch, classes) of logits")
    if not isinstance(y, torch.Tensor) or y.shape != (S.shape[0],) or y.is_floating_point():
        shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"expected y of shape ({S.shape[0]},) holding integer class indices "
                         f"(use y.long()), got {shape}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= S.shape[1]):
        raise ValueError(f"class indices in y must lie in [0, {S.shape[1]}), got "
                         f"{int(y.min())}..{int(y.max())}")
    shifted = S - S.max(dim=1, keepdim=True).values
    log_P = shifted - shifted.exp().sum(dim=1, keepdim=True).log()
    loss = -log_P[torch.arange(len(y), device=S.device), y].mean()
    return loss, (log_P.exp(), y)


def softmax_cross_entropy_backward(dL: float | torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dS = dL · (P - Y) / B`` with Y the one-hot labels: probability minus truth."""
    P, y = cache
    dS = P.clone()
    dS[torch.arange(len(y), device=P.device), y] -= 1
    return dL * dS / len(y)


# --- a two-layer MLP assembled by hand --------------------------------------------------------

_ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "tanh": (tanh_forward, tanh_backward),
    "relu": (relu_forward, relu_backward),
}


def params_from_torch(first: torch.nn.Linear, second: torch.nn.Linear) -> dict[str, torch.Tensor]:
    """Copy two ``nn.Linear`` layers into the book's convention (W = weight.T), detached."""
    for lin in (first, second):
        if not isinstance(lin, torch.nn.Linear) or lin.bias is None:
            raise ValueError("expected two nn.Linear layers with bias=True")
    return {"W1": first.weight.detach().T.clone(), "b1": first.bias.detach().clone(),
            "W2": second.weight.detach().T.clone(), "b2": second.bias.detach().clone()}


def mlp_forward(params: dict[str, torch.Tensor], X: torch.Tensor, y: torch.Tensor, *,
                activation: str = "tanh") -> tuple[torch.Tensor, dict[str, Any]]:
    """Loss of ``softmax(act(X W1 + b1) W2 + b2)`` against labels y, and every layer's cache.

    ``params`` holds W1 (d_in, H), b1 (H,), W2 (H, K), b2 (K,). The caches are what
    :func:`mlp_backward` needs (:func:`mlp_logits` gives predictions without a loss).
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    missing = {"W1", "b1", "W2", "b2"} - set(params)
    if missing:
        raise ValueError(f"params is missing {sorted(missing)}; expected keys W1, b1, W2, b2")
    act_forward, _ = _ACTIVATIONS[activation]
    Z1, lin1 = linear_forward(X, params["W1"], params["b1"])  # (B, H)
    A1, act = act_forward(Z1)                                   # (B, H)
    S, lin2 = linear_forward(A1, params["W2"], params["b2"])   # (B, K)
    loss, ce = softmax_cross_entropy_forward(S, y)              # ()
    return loss, {"lin1": lin1, "act": act, "lin2": lin2, "ce": ce, "activation": activation}


def mlp_logits(params: dict[str, torch.Tensor], X: torch.Tensor, *,
               activation: str = "tanh") -> torch.Tensor:
    """The MLP's logits S (B, K) for inputs X, with no loss and no caches (for predicting)."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    Z1, _ = linear_forward(X, params["W1"], params["b1"])
    A1, _ = _ACTIVATIONS[activation][0](Z1)
    return linear_forward(A1, params["W2"], params["b2"])[0]


def mlp_backward(caches: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Gradients of the MLP's loss for every parameter: the forward pass, read backwards."""
    _, act_backward = _ACTIVATIONS[caches["activation"]]
    dS = softmax_cross_entropy_backward(1.0, caches["ce"])  # (B, K), dL/dL = 1 at the top
    dA1, dW2, db2 = linear_backward(dS, caches["lin2"])     # (B, H), (H, K), (K,)
    dZ1 = act_backward(dA1, caches["act"])                  # (B, H)
    _, dW1, db1 = linear_backward(dZ1, caches["lin1"], need_dX=False)  # X is data
    return {"W1": dW1, "b1": db1, "W2": dW2, "b2": db2}


def sgd_step(params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
             lr: float) -> dict[str, torch.Tensor]:
    """Plain gradient descent, ``p - lr * dp`` for every parameter; returns new tensors."""
    if set(grads) != set(params):
        raise ValueError(f"grads has keys {sorted(grads)} but params has {sorted(params)}")
    return {k: params[k] - lr * grads[k] for k in params}


# --- letting autograd call a hand-written backward ------------------------------------------

class _HandWritten(torch.autograd.Function):
    """Runs ``forward`` without autograd and hands the gradient to the hand-written backward."""

    @staticmethod
    def forward(ctx: Any, forward: Callable, backward: Callable, *inputs: torch.Tensor) -> Any:
        out, cache = forward(*inputs)
        ctx.backward_fn = backward
        ctx.n_inputs = len(inputs)
        ctx.save_for_backward(*cache)
        return out

    @staticmethod
    def backward(ctx: Any, d_out: torch.Tensor) -> tuple[Any, ...]:
        grads = ctx.backward_fn(d_out, tuple(ctx.saved_tensors))
        grads = grads if isinstance(grads, tuple) else (grads,)
        # None for the two function arguments and for inputs without a gradient (labels).
        return (None, None, *grads) + (None,) * (ctx.n_inputs - len(grads))


def as_autograd(forward: Callable, backward: Callable) -> Callable[..., torch.Tensor]:
    """Wrap a forward/backward pair as a function autograd can differentiate.

    When the result is differentiated (``.backward()``, ``torch.autograd.grad``, or
    ``torch.autograd.gradcheck``), autograd calls *our* ``backward`` rather than deriving one
    from the operations inside ``forward``: this is how gradcheck tests a hand-written gradient.
    """
    if not (callable(forward) and callable(backward)):
        raise ValueError("as_autograd expects two functions: forward(*inputs) -> (out, cache) "
                         "and backward(d_out, cache) -> gradients")

    def apply(*inputs: torch.Tensor) -> torch.Tensor:
        return _HandWritten.apply(forward, backward, *inputs)

    return apply


# --- counting the work ------------------------------------------------------------------------

def linear_flops(batch: int, d_in: int, d_out: int, *, need_dX: bool = True) -> tuple[int, int]:
    """Matrix-multiply FLOPs of a linear layer, ``(forward, backward)``.

    One multiply-add counts as 2 FLOPs. Forward ``X @ W``: 2·B·d_in·d_out. Backward: the same
    again for ``dW = Xᵀ dY`` and again for ``dX = dY Wᵀ`` (skipped when the input is data).
    Bias additions and activations are O(B·d_out) and not counted.
    """
    for name, v in (("batch", batch), ("d_in", d_in), ("d_out", d_out)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    forward = 2 * batch * d_in * d_out
    return forward, forward * (2 if need_dX else 1)
