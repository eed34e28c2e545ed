"""Trust in a trained model: attributions, differential privacy, membership inference,
adversarial examples and federated averaging (Section 7.5), each written from scratch.

Every function works on any ``nn.Module`` classifier that maps a batch ``(B, ...)`` to logits
``(B, classes)`` and follows the device and dtype of its inputs. The notebook compares them with
the libraries that do the same job: captum (attributions) and opacus (DP-SGD).
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

_METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


def _check_batch(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int) -> torch.Tensor:
    if not isinstance(model, nn.Module):
        raise ValueError(f"expected an nn.Module as model, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        raise ValueError("expected x to be a floating-point batch of shape (B, ...), got "
                         f"{getattr(x, 'shape', type(x).__name__)}; add a batch dimension "
                         "with x[None]")
    target = torch.as_tensor(target, device=x.device)
    if target.dim() == 0:
        target = target.expand(len(x))
    if target.shape != (len(x),):
        raise ValueError(f"expected target of shape ({len(x)},) or one int, "
                         f"got {tuple(target.shape)}")
    return target


def saliency(model: nn.Module, x: torch.Tensor, target: torch.Tensor | int,
             abs: bool = True) -> torch.Tensor:
    """Gradient saliency (Simonyan et al., 2014): the gradient of the ``target`` logit with
    respect to the input, one map per example, shape of ``x``. ``abs=True`` (captum's default
    for ``Saliency``) returns its absolute value."""
    target = _check_batch(model, x, target)
    x = x.detach().clone().requires_grad_(True)
    logits = model(x)
    picked = logits.gather(1, target[:, None]).sum()
    (grad,) = torch.autograd.grad(picked, x)
    return grad.abs() if abs else grad


def riemann_weights(steps: int, method: str = "riemann_middle") -> tuple[torch.Tensor, torch.Tensor]:
    """The points ``alphas`` in [0, 1] and weights of the Riemann sums captum uses for
    integrated gradients, exactly as captum computes them (points and weights rounded to float32,
    as captum does). Note captum's ``riemann_trapezoid``: the points
    include both ends but every weight is 1/steps with the two ends halved, so the weights sum
    to 1 − 1/steps, not 1."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if not isinstance(steps, int) or steps < 2:
        raise ValueError(f"steps must be an int of at least 2, got {steps!r}")
    n = steps
    deltas = [1 / n] * n
    if method == "riemann_trapezoid":
        alphas = torch.linspace(0, 1, n)
        deltas[0] /= 2
        deltas[-1] /= 2
    elif method == "riemann_left":
        alphas = torch.linspace(0, 1 - 1 / n, n)
    elif method == "riemann_middle":
        alphas = torch.linspace(1 / (2 * n), 1 - 1 / (2 * n), n)
    else:
        alphas = torch.linspace(1 / n, 1, n)
    # captum multiplies the gradients by the weights as a float32 tensor: do the same
    return alphas.double(), torch.tensor(deltas, dtype=torch.float32).double()


def integrated_gradients(model: nn.Module, x: torch.Tensor, baseline: torch.Tensor | None,
                         target: torch.Tensor | int, steps: int = 50,
                         method: str = "riemann_middle") -> torch.Tensor:
    """Integrated gradients (Sundararajan et al., 2017) of the ``target`` logit:
    ``(x − baseline) · ∫₀¹ ∂f(baseline + α (x − baseline))/∂x dα``, the integral a Riemann sum
    over ``steps`` points (:func:`riemann_weights`). ``baseline=None`` means zeros (a black
    image). Their sum over the pixels approaches f(x) − f(baseline) (completeness)."""
    target = _check_batch(model, x, target)
    baseline = torch.zeros_like(x) if baseline is None else baseline.expand_as(x).to(x)
    alphas, weights = riemann_weights(steps, method)
    total = torch.zeros_like(x)
    for a, w in zip(alphas.tolist(), weights.tolist()):
        point = baseline + a * (x - baseline)
        total += w * saliency(model, point, target, abs=False)
    return (x - baseline) * total


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation of two tensors of the same number of elements (flattened;
    ties broken by position): 1 when they order the entries the same way, near 0 when unrelated."""
    a, b = a.flatten().double(), b.flatten().double()
    if a.numel() != b.numel() or a.numel() < 2:
        raise ValueError(f"expected two tensors with the same number (≥ 2) of elements, "
                         f"got {a.numel()} and {b.numel()}")
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


def randomised(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with all its weights drawn afresh from ``seed`` (PyTorch's default
    distributions, via ``dlbook.utils.portable_init_``): the model-randomisation test of Adebayo et al. (2018) compares attributions of the
    trained and of this random network; a faithful method must give different maps."""
    out = copy.deepcopy(model)
    from dlbook.utils import portable_init_
    return portable_init_(out, seed)


# --- differential privacy -------------------------------------------------------------------

def per_example_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                      ) -> dict[str, torch.Tensor]:
    """The gradient of each example's cross-entropy loss, ``{name: (B, *param.shape)}``,
    computed in one pass with ``torch.func.vmap`` over ``torch.func.grad``."""
    from torch.func import functional_call, grad, vmap

    _check_batch(model, x, y)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, p, (xi[None],)), yi[None])

    return vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)


def clip_and_noise(grads: dict[str, torch.Tensor], max_grad_norm: float, noise_multiplier: float,
                   generator: torch.Generator | None = None,
                   batch_size: int | None = None) -> dict[str, torch.Tensor]:
    """The private gradient of DP-SGD (Abadi et al., 2016) from per-example gradients: scale
    each example's whole gradient to norm at most ``max_grad_norm`` (factor
    ``min(1, C / (‖g‖ + 1e-6))``, as opacus), sum, add Gaussian noise of standard deviation
    ``noise_multiplier · max_grad_norm`` to every entry, divide by ``batch_size`` (default: the
    number of examples)."""
    if max_grad_norm <= 0 or noise_multiplier < 0:
        raise ValueError("need max_grad_norm > 0 and noise_multiplier >= 0, got "
                         f"{max_grad_norm} and {noise_multiplier}")
    first = next(iter(grads.values()))
    b = len(first)
    norms = torch.stack([g.reshape(b, -1).norm(dim=1) for g in grads.values()]).norm(dim=0)
    factor = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    out = {}
    for name, g in grads.items():
        summed = torch.einsum("i,i...", factor.to(g.dtype), g)
        if noise_multiplier > 0:
            # drawn in float64 on the CPU: the same numbers on every machine
            noise = torch.randn(summed.shape, generator=generator, dtype=torch.float64)
            summed = summed + (noise_multiplier * max_grad_norm) * noise.to(summed)
        out[name] = summed / (batch_size or b)
    return out


@torch.no_grad()
def _apply(model: nn.Module, grads: dict[str, torch.Tensor], lr: float) -> None:
    for name, p in model.named_parameters():
        p -= lr * grads[name]


def dp_sgd_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float,
                max_grad_norm: float, noise_multiplier: float,
                generator: torch.Generator | None = None) -> None:
    """One step of DP-SGD on the batch ``(x, y)``, in place: per-example gradients, clipped,
    summed, noised and averaged (:func:`clip_and_noise`), then a plain SGD update."""
    grads = per_example_grads(model, x, y)
    _apply(model, clip_and_noise(grads, max_grad_norm, noise_multiplier, generator), lr)


# --- membership inference -------------------------------------------------------------------

@torch.no_grad()
def losses(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each example's cross-entropy loss, shape (B,)."""
    return F.cross_entropy(model(x), y, reduction="none")


def membership_advantage(member_losses: torch.Tensor, nonmember_losses: torch.Tensor,
                         threshold: float | None = None) -> float:
    """The loss-threshold membership-inference attack of Yeom et al. (2018): guess "member"
    when an example's loss is below ``threshold`` (default: the mean loss on the members, which
    the attacker is assumed to know). Returns the advantage, true-positive rate minus
    false-positive rate: 0 for a model that leaks nothing, 1 for a perfect attack."""
    member_losses = torch.as_tensor(member_losses).double().flatten()
    nonmember_losses = torch.as_tensor(nonmember_losses).double().flatten()
    if member_losses.numel() == 0 or nonmember_losses.numel() == 0:
        raise ValueError("need at least one member and one non-member loss")
    t = float(member_losses.mean()) if threshold is None else float(threshold)
    tpr = (member_losses <= t).double().mean()
    fpr = (nonmember_losses <= t).double().mean()
    return float(tpr - fpr)


# --- adversarial examples -------------------------------------------------------------------

def _input_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), y), x)
    return g


def fgsm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float,
         lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """The fast gradient sign method (Goodfellow et al., 2015): one step of size ``eps`` along
    the sign of the loss's input gradient, clipped to the valid pixel range [lo, hi]."""
    _check_batch(model, x, y)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    return (x + eps * _input_grad(model, x, y).sign()).clamp(lo, hi).detach()


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float,
        steps: int, random_start: bool = True, generator: torch.Generator | None = None,
        lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    """Projected gradient descent on the loss (Madry et al., 2018): ``steps`` signed-gradient
    steps of size ``alpha``, each followed by a projection back into the L∞ ball of radius
    ``eps`` around ``x`` and the pixel range; optionally from a uniform random start in the
    ball. One step from no random start with ``alpha = eps`` is :func:`fgsm`."""
    _check_batch(model, x, y)
    if eps < 0 or alpha < 0 or steps < 1:
        raise ValueError(f"need eps >= 0, alpha >= 0, steps >= 1, got {eps}, {alpha}, {steps}")
    adv = x.detach().clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=torch.float64).to(x)
        adv = (adv + eps * (2 * noise - 1)).clamp(lo, hi)
    for _ in range(steps):
        adv = adv + alpha * _input_grad(model, adv, y).sign()
        adv = torch.min(torch.max(adv, x - eps), x + eps).clamp(lo, hi)
    return adv.detach()


# --- federated averaging --------------------------------------------------------------------

@torch.no_grad()
def federated_average(states: Sequence[dict[str, torch.Tensor]],
                      sizes: Sequence[int]) -> dict[str, torch.Tensor]:
    """FedAvg's server step (McMahan et al., 2017): the clients' weights averaged, each weighted
    by its number of training examples."""
    if len(states) == 0 or len(states) != len(sizes) or min(sizes) <= 0:
        raise ValueError(f"need one positive size per state, got {len(states)} states and "
                         f"sizes {list(sizes)}")
    total = float(sum(sizes))
    return {k: sum(s[k] * (n / total) for s, n in zip(states, sizes)) for k in states[0]}


def label_skew(y: torch.Tensor, clients: int, labels_per_client: int,
               seed: int = 0) -> list[torch.Tensor]:
    """Non-IID split of example indices: each client holds the examples of only
    ``labels_per_client`` classes (classes dealt round-robin, so each class goes to the same
    number of clients, its examples shared between them at random)."""
    classes = int(y.max()) + 1
    if clients * labels_per_client % classes:
        raise ValueError(f"clients × labels_per_client ({clients * labels_per_client}) must be "
                         f"a multiple of the number of classes ({classes})")
    g = torch.Generator().manual_seed(seed)
    owners: dict[int, list[int]] = {c: [] for c in range(classes)}
    for k in range(clients * labels_per_client):
        owners[k % classes].append(k // labels_per_client)
    parts: list[list[torch.Tensor]] = [[] for _ in range(clients)]
    for c, who in owners.items():
        idx = (y == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        for j, chunk in enumerate(idx.tensor_split(len(who))):
            parts[who[j]].append(chunk)
    return [torch.cat(p).sort().values for p in parts]
