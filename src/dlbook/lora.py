"""Low-rank adaptation (LoRA, Hu et al. 2022), written from scratch (section 4.5).

Fine-tuning changes a pretrained weight matrix W (out, in) by some ΔW. LoRA keeps W frozen and
learns the update as a product of two thin matrices, ΔW = (α / r) · B A with A (r, in) and
B (out, r), so a layer trains r · (in + out) numbers instead of in · out::

    y = x Wᵀ + b + (α / r) · (x Aᵀ) Bᵀ

B starts at zero, so at initialisation the adapted model *is* the pretrained one; A starts
random (as ``nn.Linear``'s weights: U(±1/√in)), so that the gradient of B is not zero.
After training, :func:`merge_lora` folds (α / r) · B A into W and the model is a plain one
again, with no extra cost at inference.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

__all__ = ["LoRALinear", "add_lora", "merge_lora", "lora_parameters", "trainable_parameters",
           "lora_parameter_count"]

#: The attention projections of ``dlbook.attention.MultiHeadAttention``; Hu et al. adapt the
#: queries and values.
DEFAULT_TARGETS = ("q_proj", "v_proj")


class LoRALinear(nn.Module):
    """An ``nn.Linear`` with a frozen weight (and bias) and a trainable low-rank update."""

    def __init__(self, base: nn.Linear, r: int, alpha: float = 1.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
        _check_rank(r, alpha, base.in_features, base.out_features)
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)                       # W and b stay as pretrained
        self.r, self.alpha, self.scale = r, float(alpha), float(alpha) / r
        w = base.weight
        # A as nn.Linear(in, r) would be initialised, drawn in float64 (the same on every CPU)
        bound = 1 / math.sqrt(base.in_features)
        a = (2 * torch.rand(r, base.in_features, generator=generator, dtype=torch.float64) - 1)
        self.A = nn.Parameter((bound * a).to(w.device, w.dtype))                # (r, in)
        self.B = nn.Parameter(torch.zeros(base.out_features, r, device=w.device,
                                          dtype=w.dtype))                       # (out, r)

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update ΔW = (α / r) · B A, shape (out, in)."""
        return self.scale * self.B @ self.A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # never form ΔW: two thin matrix products cost r·(in + out) per token
        return self.base(x) + self.scale * (x @ self.A.T) @ self.B.T

    def merged(self) -> nn.Linear:
        """A plain nn.Linear with W + ΔW (and the same bias)."""
        w = self.base.weight
        layer = nn.Linear(self.in_features, self.out_features, bias=self.base.bias is not None,
                          device=w.device, dtype=w.dtype)
        with torch.no_grad():
            layer.weight.copy_(w + self.delta_weight())
            if self.base.bias is not None:
                layer.bias.copy_(self.base.bias)
        return layer

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha:g}"


def _check_rank(r: object, alpha: object, n_in: int, n_out: int) -> None:
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"the rank r must be a positive integer, e.g. r=4; got {r!r}")
    if r > min(n_in, n_out):
        raise ValueError(f"rank r={r} exceeds min(in, out) = {min(n_in, n_out)} of a "
                         f"{n_out}×{n_in} layer; a full-rank update is plain fine-tuning, "
                         "so pass a smaller r")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0 \
            or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a positive number, e.g. alpha=2 * r; got {alpha!r}")


def add_lora(model: nn.Module, r: int, alpha: float = 1.0,
             targets: Iterable[str] = DEFAULT_TARGETS, seed: int | None = 0) -> nn.Module:
    """Freeze every parameter of ``model`` and replace each ``nn.Linear`` whose name ends in
    one of ``targets`` (e.g. "q_proj", "v_proj", "mlp.fc") by a :class:`LoRALinear`, in place.
    Returns the model. ``seed`` draws the A matrices reproducibly (None: the global generator)."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"add_lora expects an nn.Module, got {type(model).__name__}")
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(targets)
    if not targets:
        raise ValueError("targets is empty: name the layers to adapt, e.g. ('q_proj', 'v_proj')")
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("the model already has LoRA layers: merge_lora(model) first")
    found = [name for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and _matches(name, targets)]
    if not found:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, nn.Linear)})
        raise ValueError(f"no nn.Linear layer matches targets={targets}; the model's linear "
                         f"layers end in {linear}")
    for p in model.parameters():
        p.requires_grad_(False)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    for name in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LoRALinear(getattr(parent, child), r, alpha, generator))
    return model


def _matches(name: str, targets: tuple[str, ...]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every :class:`LoRALinear` in ``model`` by a plain ``nn.Linear`` with weight
    W + (α / r) · B A, in place; returns the model (its other parameters stay frozen)."""
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    if not names:
        raise ValueError("the model has no LoRA layers to merge: call add_lora(model, r) first")
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, getattr(parent, child).merged())
    return model


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The A and B matrices of every LoRA layer: what the optimizer trains."""
    return [p for m in model.modules() if isinstance(m, LoRALinear) for p in (m.A, m.B)]


def trainable_parameters(model: nn.Module) -> int:
    """How many numbers the optimizer updates (``requires_grad``; a shared tensor once)."""
    seen: dict[int, int] = {}
    for p in model.parameters():
        if p.requires_grad:
            seen[id(p)] = p.numel()
    return sum(seen.values())


def lora_parameter_count(shapes: Iterable[tuple[int, int]], r: int) -> int:
    """r · (in + out) summed over the adapted layers, given as (out, in) weight shapes."""
    shapes = list(shapes)
    for shape in shapes:
        if len(shape) != 2:
            raise ValueError(f"give each layer's weight shape as (out, in), got {shape!r}")
        _check_rank(r, 1.0, shape[1], shape[0])
    return sum(r * (n_in + n_out) for n_out, n_in in shapes)
