"""Backpropagation in matrix form, written by hand (section 2.2).

Every layer is a pair of functions. ``*_forward`` computes the output and
returns a *cache*: the tensors its backward pass will need.
``*_backward(d_out, cache)`` takes the upstream gradient (the gradient of the
loss with respect to the layer's output) and returns the gradients with
respect to the layer's inputs and parameters. Nothing here uses autograd;
:func:`as_autograd` lets autograd call these backwards, and :func:`gradcheck`
compares one with finite differences.

Conventions (batch first): ``X`` has shape (B, d_in); a linear layer computes
``Y = X @ W + b`` with ``W`` of shape (d_in, d_out) and ``b`` of shape
(d_out,). PyTorch's ``nn.Linear`` stores the transpose, ``weight`` of shape
(d_out, d_in), so ``W = linear.weight.T`` and ``dW = linear.weight.grad.T``.
``dT`` always means dL/dT, the gradient of the scalar loss L with respect to
a tensor T, and has T's shape.

The losses are Section 1.3's (:mod:`dlbook.losses`); this module only gives
them the forward/cache/backward form. Inputs are checked by the private
helpers at the end of the file, so each function reads like its derivation.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from dlbook import losses
from dlbook.utils import check_like

Cache = tuple[torch.Tensor, ...]
Params = dict[str, torch.Tensor]


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
    _check_upstream("dY", dY, X, shape=(X.shape[0], W.shape[1]))
    dX = dY @ W.T if need_dX else None  # (B, d_out) @ (d_out, d_in)
    dW = X.T @ dY                       # (d_in, B) @ (B, d_out)
    db = dY.sum(dim=0)                  # b was broadcast over the batch
    return dX, dW, db


# --- broadcasting: the backward pass of a copy is a sum ----------------------

def unbroadcast(grad: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Sum ``grad`` down to ``shape``: the backward pass of broadcasting.

    A tensor of ``shape`` that was broadcast to ``grad.shape`` was copied
    along the leading dimensions broadcasting added and along its own
    dimensions of size 1. The gradient of a copied value is the sum of the
    gradients of its copies, so those dimensions are summed away.
    """
    shape = _check_unbroadcast(grad, shape)
    added = grad.ndim - len(shape)
    if added:  # leading dimensions that broadcasting put in front
        grad = grad.sum(dim=tuple(range(added)))
    stretched = tuple(i for i, n in enumerate(shape)
                      if n == 1 and grad.shape[i] != 1)
    if stretched:  # dimensions of size 1 that were copied
        grad = grad.sum(dim=stretched, keepdim=True)
    return grad


# --- embedding lookup: the backward pass of a gather is a scatter-add --------

def embedding_forward(E: torch.Tensor,
                      ids: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """Look up rows of a table: ``Y = E[ids]``, E (V, d), ids (...) -> (..., d)

    The same as ``F.embedding(ids, E)``, and as a linear layer applied to
    one-hot vectors, ``one_hot(ids) @ E``.
    """
    ids = _check_ids(E, ids)  # as int64 indices in [0, V)
    return E[ids], (ids, E)


def embedding_backward(dY: torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dE[v] = Σ dY[n] over the positions n with ids[n] = v``: scatter-add.

    A row looked up several times adds up the gradients of all its uses; a
    row never looked up gets zero. (The cache keeps E only for its shape,
    dtype and device: no copy is made.)
    """
    ids, E = cache
    _check_upstream("dY", dY, E, shape=(*ids.shape, E.shape[1]))
    dE = torch.zeros_like(E)                        # (V, d)
    dE.index_add_(0, ids.reshape(-1), dY.reshape(-1, E.shape[1]))
    return dE


# --- element-wise activations -----------------------------------------------

def relu_forward(Z: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """``A = max(Z, 0)``; the cache keeps Z, whose sign decides the slope."""
    _check_float("Z", Z)
    return Z.clamp(min=0), (Z,)


def relu_backward(dA: torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dZ = dA ⊙ 1[Z > 0]`` (slope 0 at exactly 0, as in PyTorch)."""
    (Z,) = cache
    _check_upstream("dA", dA, Z)
    return dA * (Z > 0).to(dA.dtype)


def tanh_forward(Z: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """``A = tanh(Z)``; the cache keeps A, because tanh'(Z) = 1 - A²."""
    _check_float("Z", Z)
    A = torch.tanh(Z)
    return A, (A,)


def tanh_backward(dA: torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dZ = dA ⊙ (1 - A ⊙ A)``."""
    (A,) = cache
    _check_upstream("dA", dA, A)
    return dA * (1 - A * A)


# --- softmax -> log -> NLL, one step at a time (the unfused chain) ----------

def softmax_forward(S: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """``P = softmax(S)`` by row, S (B, K): Section 1.3's ``losses.softmax``.
    """
    _check_float("S", S, 2, "(batch, classes)")
    P = losses.softmax(S, dim=1)
    return P, (P,)


def softmax_backward(dP: torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dS = P ⊙ (dP - Σ_k dP_k P_k)``, row by row.

    This is the vector-Jacobian product with each row's Jacobian
    ``diag(p) - p pᵀ``, computed without forming it.
    """
    (P,) = cache
    _check_upstream("dP", dP, P)
    return P * (dP - (dP * P).sum(dim=1, keepdim=True))


def log_forward(P: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """``G = log P`` entry by entry; the cache keeps P, since log'(p) = 1/p."""
    _check_float("P", P)
    return torch.log(P), (P,)


def log_backward(dG: torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dP = dG / P``: infinite wherever a probability has rounded to 0."""
    (P,) = cache
    _check_upstream("dG", dG, P)
    return dG / P


def nll_forward(G: torch.Tensor,
                y: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """Mean negative log-likelihood ``-(1/B) Σ_i G[i, y_i]`` of log-probs G
    (B, K) and labels y (B,): Section 1.3's ``losses.nll_loss``."""
    y = _check_labels("G", G, y)  # as int64 class indices
    return losses.nll_loss(G, y), (G, y)


def nll_backward(dL: float | torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dG = -dL · onehot(y) / B``: only true classes get a gradient."""
    G, y = cache
    _check_scalar_upstream(dL)
    dG = torch.zeros_like(G)
    dG[torch.arange(len(y), device=G.device), y] = -1.0 / len(y)
    return dL * dG


# --- losses: scalar outputs, so the upstream gradient dL is a number ---------

def mse_forward(Y_hat: torch.Tensor,
                Y: torch.Tensor) -> tuple[torch.Tensor, Cache]:
    """Mean squared error over all N entries, as ``F.mse_loss`` computes it.

    The value (and the check that the shapes match) is Section 1.3's
    ``losses.mse``; the cache keeps the difference for the backward pass.
    """
    _check_mse(Y_hat, Y)
    return losses.mse(Y_hat, Y), (Y_hat - Y,)


def mse_backward(dL: float | torch.Tensor, cache: Cache) -> torch.Tensor:
    """``dŶ = dL · 2 (Ŷ - Y) / N``, with N the number of entries."""
    (diff,) = cache
    _check_scalar_upstream(dL)
    return dL * 2 * diff / diff.numel()


def softmax_cross_entropy_forward(
    S: torch.Tensor, y: torch.Tensor,
) -> tuple[torch.Tensor, Cache]:
    """Mean cross-entropy of softmax(S), logits S (B, K), labels y (B,).

    The value is Section 1.3's ``losses.cross_entropy`` (stable: it uses the
    log-sum-exp trick) and equals ``F.cross_entropy(S, y)``. The cache keeps
    S and y.
    """
    y = _check_labels("S", S, y)  # as int64 class indices
    return losses.cross_entropy(S, y), (S, y)


def softmax_cross_entropy_backward(dL: float | torch.Tensor,
                                   cache: Cache) -> torch.Tensor:
    """``dS = dL · (P - onehot(y)) / B``: probability minus truth.

    ``(P - onehot(y)) / B`` is Section 1.3's ``losses.cross_entropy_grad``.
    """
    S, y = cache
    _check_scalar_upstream(dL)
    return dL * losses.cross_entropy_grad(S, y)


# --- a two-layer MLP assembled by hand --------------------------------------

_ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    "tanh": (tanh_forward, tanh_backward),
    "relu": (relu_forward, relu_backward),
}


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
    _check_mlp(params, activation)
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
    _check_mlp(params, activation)
    Z1, _ = linear_forward(X, params["W1"], params["b1"])
    A1, _ = _ACTIVATIONS[activation][0](Z1)
    return linear_forward(A1, params["W2"], params["b2"])[0]


def sgd_step(params: Params, grads: Params, lr: float) -> Params:
    """Plain gradient descent, ``p - lr * dp`` for every parameter."""
    _check_sgd(params, grads, lr)
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


def gradcheck(forward: Callable, backward: Callable,
              inputs: Sequence[Any], **kwargs: Any) -> bool:
    """True when ``backward`` agrees with finite differences of ``forward``.

    Runs ``torch.autograd.gradcheck`` on :func:`as_autograd` of the pair, so
    the analytical Jacobian comes from *our* backward. It checks the inputs
    that require grad (they must be float64) and returns False rather than
    raising when the two Jacobians disagree.
    """
    _check_gradcheck_inputs(forward, backward, inputs)
    return torch.autograd.gradcheck(as_autograd(forward, backward),
                                    tuple(inputs), raise_exception=False,
                                    **kwargs)


# --- counting the work ------------------------------------------------------

def linear_flops(batch: int, d_in: int, d_out: int, *,
                 need_dX: bool = True) -> tuple[int, int]:
    """Matrix-product FLOPs of a linear layer, ``(forward, backward)``.

    A multiply-add counts as 2 FLOPs. Forward ``X W``: 2·B·d_in·d_out.
    Backward: as much again for ``dW = Xᵀ dY``, and again for
    ``dX = dY Wᵀ`` unless the input is data. The bias and the activations
    cost O(B·d_out) and are not counted (nor are they by FlopCounterMode).
    """
    _check_flops(batch, d_in, d_out, need_dX)
    forward = 2 * batch * d_in * d_out
    return forward, forward * (2 if need_dX else 1)


# --- input checks (kept here, out of the way of the algorithms above) -------

def _kind(t: Any) -> str:
    if isinstance(t, torch.Tensor):
        return str(t.dtype).removeprefix("torch.")
    return type(t).__name__


def _check_float(name: str, t: Any, ndim: int | None = None,
                 fix: str = "") -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"expected {name} to be a torch.Tensor, got "
                         f"{type(t).__name__}; convert it with "
                         f"torch.as_tensor({name}, dtype=torch.float32)")
    if not t.is_floating_point():
        raise ValueError(f"{name} is {_kind(t)}: convert it with "
                         f"{name}.float() (or .double())")
    if ndim is not None and t.ndim != ndim:
        raise ValueError(f"expected {name} of shape {fix}, got "
                         f"{tuple(t.shape)}")


def _check_match(name: str, t: torch.Tensor, ref_name: str,
                 ref: torch.Tensor) -> None:
    """``t`` must have ``ref``'s dtype and device."""
    check_like(t, name, ref, ref_name)


def _check_upstream(name: str, grad: Any, like: torch.Tensor,
                    shape: tuple[int, ...] | None = None) -> None:
    """An upstream gradient has the forward output's shape, dtype and device."""
    shape = tuple(like.shape) if shape is None else shape
    if not isinstance(grad, torch.Tensor) or tuple(grad.shape) != shape:
        got = (tuple(grad.shape) if isinstance(grad, torch.Tensor)
               else type(grad).__name__)
        raise ValueError(f"expected {name} of shape {shape}, the shape of the "
                         f"forward pass's output, got {got}")
    if grad.dtype != like.dtype:
        raise ValueError(f"{name} is {_kind(grad)} but the forward pass ran in "
                         f"{_kind(like)}: convert it with "
                         f"{name}.to(torch.{_kind(like)})")
    if grad.device != like.device:
        raise ValueError(f"{name} is on {grad.device} but the forward pass ran "
                         f"on {like.device}: move it with "
                         f"{name}.to('{like.device}')")


def _check_scalar_upstream(dL: Any) -> None:
    """The upstream gradient of a scalar loss is a number (1.0 at the top)."""
    if isinstance(dL, torch.Tensor):
        if dL.ndim == 0 and dL.is_floating_point():
            return
        raise ValueError(f"dL must be a number or a 0-d float tensor (the "
                         f"upstream gradient of a scalar loss; 1.0 for the "
                         f"final loss), got a {_kind(dL)} tensor of shape "
                         f"{tuple(dL.shape)}")
    if isinstance(dL, bool) or not isinstance(dL, (int, float)):
        raise ValueError(f"dL must be a number (the upstream gradient of a "
                         f"scalar loss; 1.0 for the final loss), got {dL!r}")


def _check_linear(X: Any, W: Any, b: Any) -> None:
    _check_float("X", X, 2, "(batch, d_in); use X.reshape(1, -1) for a "
                 "single example")
    _check_float("W", W, 2, "(d_in, d_out); for an nn.Linear pass "
                 "linear.weight.T")
    _check_float("b", b)
    _check_match("W", W, "X", X)
    _check_match("b", b, "X", X)
    if X.shape[1] != W.shape[0]:
        raise ValueError(f"X has {X.shape[1]} features, so W must have shape "
                         f"({X.shape[1]}, d_out); got {tuple(W.shape)}")
    if b.shape != (W.shape[1],):
        raise ValueError(f"expected b of shape ({W.shape[1]},), one bias per "
                         f"output, got {tuple(b.shape)}")


def _check_labels(name: str, S: Any, y: Any) -> torch.Tensor:
    """Logits (or log-probabilities) S (B, K) and labels y (B,); y as int64."""
    _check_float(name, S, 2, "(batch, classes)")
    B, K = S.shape
    if B == 0:
        raise ValueError(f"{name} is an empty batch, which has no mean loss")
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a tensor of class indices, got "
                         f"{_kind(y)}: convert it with torch.tensor(y)")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise ValueError(f"y is {_kind(y)}, but class indices are integers: "
                         f"convert it with y.long()")
    if y.shape != (B,):
        raise ValueError(f"expected y of shape ({B},), one class index per "
                         f"row of {name}, got {tuple(y.shape)}")
    if y.device != S.device:
        raise ValueError(f"y is on {y.device} but {name} on {S.device}: move "
                         f"it with y.to({name}.device)")
    if int(y.min()) < 0 or int(y.max()) >= K:
        raise ValueError(f"class indices in y must lie in [0, {K}), got "
                         f"{int(y.min())}..{int(y.max())}")
    return y.long()


def _check_ids(E: Any, ids: Any) -> torch.Tensor:
    """A table E (V, d) and integer ids in [0, V), returned as int64."""
    _check_float("E", E, 2, "(num_embeddings, dim)")
    if not isinstance(ids, torch.Tensor) or ids.dtype == torch.bool \
            or ids.is_floating_point() or ids.is_complex():
        raise ValueError(f"ids must be a tensor of integer indices, got "
                         f"{_kind(ids)}; convert it with "
                         f"torch.as_tensor(ids).long()")
    if ids.device != E.device:
        raise ValueError(f"ids is on {ids.device} but E on {E.device}: move "
                         f"it with ids.to(E.device)")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= len(E)):
        raise ValueError(f"ids must lie in [0, {len(E)}), the rows of E, got "
                         f"{int(ids.min())}..{int(ids.max())}")
    return ids.long()


def _check_unbroadcast(grad: Any, shape: Any) -> tuple[int, ...]:
    if not isinstance(grad, torch.Tensor):
        raise ValueError(f"grad must be a torch.Tensor, got {_kind(grad)}")
    if isinstance(shape, torch.Tensor):
        raise ValueError("pass the shape of the broadcast tensor (e.g. "
                         "b.shape), not the tensor itself")
    try:
        shape = tuple(shape)
    except TypeError:
        raise ValueError(f"shape must be a tuple of sizes, got {shape!r}") \
            from None
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 0
           for n in shape):
        raise ValueError(f"shape must hold non-negative integers, got {shape}")
    tail = tuple(grad.shape[grad.ndim - len(shape):]) if shape else ()
    if len(shape) > grad.ndim or any(n not in (m, 1)
                                     for n, m in zip(shape, tail)):
        raise ValueError(f"a tensor of shape {shape} cannot be broadcast to "
                         f"grad's shape {tuple(grad.shape)}: each size must "
                         f"equal grad's (aligned from the right) or be 1")
    return shape


def _check_mse(Y_hat: Any, Y: Any) -> None:
    _check_float("Y_hat", Y_hat)
    _check_float("Y", Y)
    _check_match("Y", Y, "Y_hat", Y_hat)
    if Y_hat.numel() == 0:
        raise ValueError("Y_hat is empty, and an empty mean is not a loss")


def _check_mlp(params: Any, activation: str) -> None:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, "
                         f"got {activation!r}")
    if not isinstance(params, dict) or set(params) != {"W1", "b1", "W2",
                                                       "b2"}:
        got = sorted(params) if isinstance(params, dict) else _kind(params)
        raise ValueError(f"params must be a dict with the keys W1, b1, W2, "
                         f"b2; got {got}")
    W1, W2 = params["W1"], params["W2"]
    if (isinstance(W1, torch.Tensor) and isinstance(W2, torch.Tensor)
            and W1.ndim == W2.ndim == 2 and W1.shape[1] != W2.shape[0]):
        raise ValueError(f"W1 {tuple(W1.shape)} has {W1.shape[1]} hidden "
                         f"units, so W2 must have {W1.shape[1]} rows; got "
                         f"{tuple(W2.shape)}")


def _check_sgd(params: Any, grads: Any, lr: Any) -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)):
        raise ValueError(f"lr must be a number, got {lr!r}")
    if not isinstance(params, dict) or not isinstance(grads, dict) \
            or set(grads) != set(params):
        raise ValueError(f"grads must have the keys of params: got "
                         f"{_keys(grads)} and {_keys(params)}")
    for k in params:
        if not isinstance(grads[k], torch.Tensor) or \
                grads[k].shape != params[k].shape:
            got = (tuple(grads[k].shape) if isinstance(grads[k], torch.Tensor)
                   else _kind(grads[k]))
            raise ValueError(f"the gradient of {k} must have {k}'s shape "
                             f"{tuple(params[k].shape)}, got {got}")


def _keys(d: Any) -> Any:
    return sorted(d) if isinstance(d, dict) else _kind(d)


def _check_gradcheck_inputs(forward: Any, backward: Any, inputs: Any) -> None:
    if not (callable(forward) and callable(backward)):
        raise ValueError("gradcheck expects two functions: forward(*inputs) "
                         "-> (out, cache) and backward(d_out, cache)")
    if isinstance(inputs, torch.Tensor) or not isinstance(inputs,
                                                          (tuple, list)):
        raise ValueError("inputs must be a tuple of the forward's arguments, "
                         "e.g. (X, W, b) or (Z,)")
    checked = [(i, x) for i, x in enumerate(inputs)
               if isinstance(x, torch.Tensor) and x.requires_grad]
    if not checked:
        raise ValueError("no input requires grad: mark those to check, e.g. "
                         "X = X.double().requires_grad_()")
    for i, x in checked:
        if x.dtype != torch.float64:
            raise ValueError(f"input {i} is {_kind(x)}; gradcheck needs "
                             f"float64 (float32 rounding swamps the finite "
                             f"differences): use .double()")


def _check_flops(batch: Any, d_in: Any, d_out: Any, need_dX: Any) -> None:
    for name, v in (("batch", batch), ("d_in", d_in), ("d_out", d_out)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not isinstance(need_dX, bool):
        raise ValueError(f"need_dX must be True or False, got {need_dX!r}")
