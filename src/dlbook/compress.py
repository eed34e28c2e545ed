"""Making models small and fast (section 7.3): integer quantization, pruning, knowledge
distillation and speculative decoding, each written out so that it can be read in one sitting.

* :func:`quantize` / :func:`dequantize`: b-bit integers with a scale (and a zero point), per
  tensor or per output channel, with the same rounding as ``torch.quantize_per_tensor``;
  :class:`QuantizedLinear` keeps int8 weights and multiplies float activations.
* :func:`magnitude_prune` zeroes the smallest weights (masks, as ``torch.nn.utils.prune``);
  :func:`structured_prune` removes whole hidden neurons of an MLP, so the matrices shrink.
* :func:`distillation_loss` and :func:`train_student`: Hinton et al.'s soft targets at a
  temperature T, with the T² factor.
* :func:`speculative_greedy`: a small draft model proposes k tokens, the large target model
  checks them in one forward pass; the output equals the target's own greedy decoding.
"""

from __future__ import annotations

import copy
import numbers

import torch
from torch import nn
from torch.nn import functional as F

from dlbook.lm import cosine_lr, get_batch
from dlbook.utils import progress

__all__ = ["quantize", "dequantize", "QuantizedLinear", "quantize_linears", "model_bytes",
           "magnitude_prune", "structured_prune", "sparsity", "distillation_loss",
           "train_student", "greedy_decode", "speculative_greedy"]

SCHEMES = ("symmetric", "affine")


# ------------------------------------------------------------------ quantization

def _qrange(bits: int, scheme: str) -> tuple[int, int]:
    """Integer range: symmetric uses signed [-(2^(b-1)-1), 2^(b-1)-1] (zero exactly in the
    middle, -128 left unused), affine unsigned [0, 2^b - 1]."""
    if scheme == "symmetric":
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def quantize(w: torch.Tensor, bits: int = 8, scheme: str = "symmetric",
             axis: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round ``w`` to ``bits``-bit integers: ``q = clamp(round(w / scale) + zero_point)``.

    ``scheme="symmetric"``: zero point 0, scale = max|w| / (2^(b-1) - 1), q int8 in
    [-(2^(b-1)-1), 2^(b-1)-1]. ``scheme="affine"``: the range [min(w, 0), max(w, 0)] is mapped
    onto [0, 2^b - 1], q uint8, zero point = the integer that represents 0.0 exactly.
    ``axis=None`` uses one scale for the whole tensor; ``axis=0`` one per row (per output
    channel of a weight matrix). Returns ``(q, scale, zero_point)``; scale (w's dtype) and
    zero_point (int64) have one entry per channel, or are 0-d. Rounding is half to even, as
    ``torch.round`` and ``torch.quantize_per_tensor``.
    """
    if not isinstance(w, torch.Tensor) or not w.is_floating_point():
        raise ValueError("expected w as a floating-point tensor, e.g. linear.weight.detach()")
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be an integer from 2 to 8 (stored in 8-bit integers), got {bits!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if axis not in (None, 0):
        raise ValueError(f"axis must be None (per tensor) or 0 (per output channel), got {axis!r}")
    if axis == 0 and w.dim() < 1:
        raise ValueError("axis=0 needs a tensor with at least one dimension")
    qmin, qmax = _qrange(bits, scheme)
    if axis is None:
        lo, hi = w.min(), w.max()
    else:
        flat = w.reshape(w.shape[0], -1)
        lo, hi = flat.min(1).values, flat.max(1).values
    tiny = torch.finfo(w.dtype).tiny
    if scheme == "symmetric":
        scale = (torch.maximum(hi.abs(), lo.abs()) / qmax).clamp_min(tiny)
        zero_point = torch.zeros_like(scale, dtype=torch.int64)
    else:
        lo, hi = lo.clamp(max=0), hi.clamp(min=0)                 # 0.0 must be representable
        scale = ((hi - lo) / (qmax - qmin)).clamp_min(tiny)
        zero_point = (qmin - torch.round(lo / scale)).clamp(qmin, qmax).to(torch.int64)
    shape = (-1,) + (1,) * (w.dim() - 1) if axis == 0 else ()
    s, z = scale.reshape(shape), zero_point.reshape(shape)
    q = torch.clamp(torch.round(w / s) + z, qmin, qmax)
    return q.to(torch.int8 if scheme == "symmetric" else torch.uint8), scale, zero_point


def dequantize(q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
               dtype: torch.dtype | None = None) -> torch.Tensor:
    """Back to floats: ``(q - zero_point) * scale``; a 1-D scale is one per row of q."""
    scale = torch.as_tensor(scale)
    zero_point = torch.as_tensor(zero_point, device=q.device)
    if scale.dim() > 1 or (scale.dim() == 1 and scale.shape[0] != q.shape[0]):
        raise ValueError(f"scale must be a number or have one entry per row of q "
                         f"({q.shape[0]}), got shape {tuple(scale.shape)}")
    shape = (-1,) + (1,) * (q.dim() - 1) if scale.dim() == 1 else ()
    out = (q.to(torch.int64) - zero_point.reshape(shape)) * scale.reshape(shape)
    return out.to(dtype or scale.dtype)


class QuantizedLinear(nn.Module):
    """A linear layer whose weight is stored as 8-bit integers with a scale and zero point
    (weight-only quantization): the forward pass dequantizes and multiplies float
    activations. Built with :meth:`from_linear`."""

    def __init__(self, q: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor,
                 bias: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("q", q)
        self.register_buffer("scale", scale)
        self.register_buffer("zero_point", zero_point.to(torch.int32 if zero_point.dim() else
                                                         torch.int64))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.in_features, self.out_features = q.shape[1], q.shape[0]

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int = 8, scheme: str = "symmetric",
                    axis: int | None = 0) -> "QuantizedLinear":
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"expected an nn.Linear, got {type(linear).__name__}")
        q, scale, zp = quantize(linear.weight.detach(), bits, scheme, axis)
        return cls(q, scale, zp, linear.bias)

    def weight(self) -> torch.Tensor:
        return dequantize(self.q, self.scale, self.zero_point)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight().to(x.dtype), self.bias)

    def extra_repr(self) -> str:
        per = "per channel" if self.scale.dim() else "per tensor"
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.q.dtype}, {per}"


def quantize_linears(model: nn.Module, bits: int = 8, scheme: str = "symmetric",
                     axis: int | None = 0) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` replaced by a :class:`QuantizedLinear`
    (tied weights are quantized separately in each place they are used)."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.Linear):
                setattr(module, child_name, QuantizedLinear.from_linear(child, bits, scheme, axis))
    return model


def model_bytes(model: nn.Module) -> int:
    """Bytes held by the model's parameters and buffers, a tensor shared by two modules (tied
    weights) counted once."""
    seen, total = set(), 0
    for t in list(model.parameters()) + list(model.buffers()):
        key = (t.data_ptr(), t.numel(), t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


# ------------------------------------------------------------------ pruning

def _prunable(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]


def magnitude_prune(model: nn.Module, amount: float, scope: str = "global"
                    ) -> dict[str, torch.Tensor]:
    """Zero the fraction ``amount`` of the weights of every ``nn.Linear`` with the smallest
    absolute values, in place; biases are kept. ``scope="global"`` ranks all weights together
    (as ``torch.nn.utils.prune.global_unstructured``), ``"layer"`` prunes each layer by the same
    fraction. round(amount · n) weights are removed, as torch does. Returns the boolean masks
    (True = kept) by module name: multiply gradients by them to keep the zeros while
    fine-tuning."""
    if not isinstance(amount, numbers.Real) or not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount is the fraction of weights to remove, in [0, 1]; got {amount!r}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    layers = _prunable(model)
    if not layers:
        raise ValueError("the model has no nn.Linear layers to prune")
    masks: dict[str, torch.Tensor] = {}

    def smallest(scores: torch.Tensor) -> torch.Tensor:
        keep = torch.ones_like(scores, dtype=torch.bool)
        k = round(amount * scores.numel())
        if k:
            keep[torch.topk(scores, k, largest=False).indices] = False
        return keep

    with torch.no_grad():
        if scope == "global":
            keep = smallest(torch.cat([m.weight.abs().flatten() for _, m in layers]))
            for (name, m), part in zip(layers, keep.split([m.weight.numel() for _, m in layers])):
                masks[name] = part.view_as(m.weight)
        else:
            for name, m in layers:
                masks[name] = smallest(m.weight.abs().flatten()).view_as(m.weight)
        for name, m in layers:
            m.weight.mul_(masks[name])
    return masks


def sparsity(model: nn.Module) -> float:
    """Fraction of the ``nn.Linear`` weights that are exactly zero."""
    layers = _prunable(model)
    zeros = sum(int((m.weight == 0).sum()) for _, m in layers)
    return zeros / sum(m.weight.numel() for _, m in layers)


def structured_prune(model: nn.Sequential, keep: float) -> nn.Sequential:
    """A smaller copy of an MLP ``nn.Sequential(Linear, act, Linear, act, ..., Linear)``: each
    hidden layer keeps the fraction ``keep`` of its neurons, those whose incoming weight rows
    have the largest L2 norm; the next layer loses the matching input columns. The matrices
    really shrink, so the pruned network is faster on any hardware."""
    if not isinstance(model, nn.Sequential):
        raise ValueError("structured_prune expects an nn.Sequential MLP of Linear and activation layers")
    if not isinstance(keep, numbers.Real) or not 0.0 < keep <= 1.0:
        raise ValueError(f"keep is the fraction of hidden neurons kept, in (0, 1]; got {keep!r}")
    layers = list(copy.deepcopy(model))
    linear_at = [i for i, m in enumerate(layers) if isinstance(m, nn.Linear)]
    if len(linear_at) < 2:
        raise ValueError("need at least two nn.Linear layers (a hidden layer to shrink)")
    for i, j in zip(linear_at, linear_at[1:]):
        if any(p.numel() for m in layers[i + 1:j] for p in m.parameters()):
            raise ValueError("only parameter-free layers (activations, dropout) may sit "
                             "between the linear layers")
    # each hidden layer's neurons are ranked by the norms of the original rows (as
    # torch.nn.utils.prune.ln_structured(n=2, dim=0) ranks them), then the matrices are cut
    kept = {}
    for i in linear_at[:-1]:
        a = layers[i]
        n = max(1, round(keep * a.out_features))
        kept[i] = torch.topk(a.weight.detach().norm(dim=1), n).indices.sort().values
    for i in linear_at:
        old = layers[i]
        rows = kept.get(i, torch.arange(old.out_features, device=old.weight.device))
        prev = [p for p in linear_at if p < i]
        cols = kept[prev[-1]] if prev else torch.arange(old.in_features, device=old.weight.device)
        new = nn.Linear(len(cols), len(rows), bias=old.bias is not None,
                        dtype=old.weight.dtype, device=old.weight.device)
        with torch.no_grad():
            new.weight.copy_(old.weight[rows][:, cols])
            if old.bias is not None:
                new.bias.copy_(old.bias[rows])
        layers[i] = new
    return nn.Sequential(*layers)


# ------------------------------------------------------------------ distillation

def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor | None,
                      targets: torch.Tensor, temperature: float = 2.0, alpha: float = 0.5
                      ) -> torch.Tensor:
    """Hinton et al. (2015): ``alpha · T² · KL(p_teacher,T ‖ p_student,T) + (1 - alpha) · CE``.

    Logits (..., vocab), targets (...) of class ids. Both distributions are softened by the
    temperature T; the T² keeps the soft term's gradients the same size whatever T. With
    ``teacher_logits=None`` (or alpha 0) this is the plain cross-entropy.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha weighs the soft targets, in [0, 1]; got {alpha}")
    vocab = student_logits.shape[-1]
    s = student_logits.reshape(-1, vocab)
    ce = F.cross_entropy(s, targets.reshape(-1))
    if teacher_logits is None or alpha == 0:
        return ce
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(f"teacher logits {tuple(teacher_logits.shape)} and student logits "
                         f"{tuple(student_logits.shape)} must have the same shape (same vocabulary)")
    t = teacher_logits.reshape(-1, vocab).detach()
    kl = F.kl_div(F.log_softmax(s / temperature, -1), F.log_softmax(t / temperature, -1),
                  log_target=True, reduction="batchmean")
    return alpha * temperature ** 2 * kl + (1 - alpha) * ce


def train_student(student: nn.Module, tokens: torch.Tensor, teacher: nn.Module | None = None, *,
                  steps: int, batch_size: int, lr: float, temperature: float = 2.0,
                  alpha: float = 0.5, warmup_steps: int = 0, weight_decay: float = 0.1,
                  seed: int = 0, show_progress: bool = False) -> list[float]:
    """Train a language model on random windows of ``tokens`` with :func:`distillation_loss`
    against ``teacher`` (without a teacher: plain cross-entropy, the same batches and schedule
    as ``dlbook.lm.train_lm``). Returns the training losses."""
    if steps < 1:
        raise ValueError(f"steps must be positive, got {steps}")
    T = student.config.context_length
    decay = [p for p in student.parameters() if p.dim() >= 2]
    no_decay = [p for p in student.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.95))
    g = torch.Generator().manual_seed(seed)
    device = next(student.parameters()).device
    if teacher is not None:
        teacher.eval()
    student.train()
    losses = []
    steps_iter = progress(range(steps), desc="distilling", total=steps) if show_progress else range(steps)
    for step in steps_iter:
        for group in opt.param_groups:
            group["lr"] = cosine_lr(step, lr, warmup_steps, steps, lr / 10)
        x, y = get_batch(tokens, batch_size, T, g)
        x, y = x.to(device), y.to(device)
        with torch.no_grad():
            t_logits = None if teacher is None else teacher(x)
        loss = distillation_loss(student(x), t_logits, y, temperature, alpha)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
    student.eval()
    return losses


# ------------------------------------------------------------------ speculative decoding

def _check_prompt(model: nn.Module, idx: torch.Tensor, max_new_tokens: int) -> None:
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.shape[0] != 1:
        raise ValueError(f"expected one prompt of shape (1, seq), got {getattr(idx, 'shape', idx)}")
    if idx.shape[1] + max_new_tokens > model.config.context_length:
        raise ValueError(f"prompt ({idx.shape[1]}) + max_new_tokens ({max_new_tokens}) exceed "
                         f"context_length={model.config.context_length}: generate fewer tokens")


@torch.no_grad()
def greedy_decode(model: nn.Module, idx: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """Plain greedy decoding, one forward pass of the whole text per new token (no cache):
    the reference that :func:`speculative_greedy` must reproduce exactly."""
    _check_prompt(model, idx, max_new_tokens)
    for _ in range(max_new_tokens):
        idx = torch.cat([idx, model(idx)[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


@torch.no_grad()
def speculative_greedy(target: nn.Module, draft: nn.Module, idx: torch.Tensor,
                       max_new_tokens: int, k: int = 4) -> tuple[torch.Tensor, dict[str, int]]:
    """Greedy speculative decoding (Leviathan et al. 2023; Chen et al. 2023).

    Each round the draft model proposes ``k`` tokens greedily; one forward pass of the target
    over prompt + proposals gives the target's greedy choice after every prefix. The longest
    run of proposals that agree is accepted, and the target's own next token is appended (the
    correction of the first disagreement, or a bonus token when all k agree). So every round
    adds between 1 and k + 1 tokens and the output is exactly the target's greedy decoding.
    Returns ``(tokens, stats)`` with stats ``proposed``, ``accepted``, ``target_calls``,
    ``draft_calls``.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise ValueError(f"k (draft tokens per round) must be a positive integer, got {k!r}")
    _check_prompt(target, idx, max_new_tokens)
    _check_prompt(draft, idx, max_new_tokens)
    stats = {"proposed": 0, "accepted": 0, "target_calls": 0, "draft_calls": 0}
    end = idx.shape[1] + max_new_tokens
    while idx.shape[1] < end:
        n = min(k, end - idx.shape[1] - 1)        # room for the proposals + the target's token
        proposal = idx
        for _ in range(n):
            nxt = draft(proposal)[:, -1].argmax(-1, keepdim=True)
            proposal = torch.cat([proposal, nxt], dim=1)
            stats["draft_calls"] += 1
        choice = target(proposal)[0, idx.shape[1] - 1:].argmax(-1)   # n + 1 greedy choices
        stats["target_calls"] += 1
        drafted = proposal[0, idx.shape[1]:]
        agree = int((drafted == choice[:n]).long().cumprod(0).sum())
        stats["proposed"] += n
        stats["accepted"] += agree
        new = torch.cat([drafted[:agree], choice[agree:agree + 1]])
        idx = torch.cat([idx, new[None]], dim=1)
    return idx, stats
