"""Checks for the exercises of section 4.4, From GPT-2 to today's open models.

Whole-number answers (a width, a number of bytes) must be exact. The two functions are compared
with a float64 reference within a relative error of 1e-6, on inputs chosen so that the usual
mistakes (the variance instead of the mean square, a forgotten epsilon, a load-balancing loss
that is not divided by top_k) change the result far beyond the tolerance.
"""

from __future__ import annotations

from typing import Any

import torch

from dlbook import check

F64 = torch.float64


def _reference_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps) * weight


def _rms_cases() -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    """Rows with a large mean (so that subtracting it, as LayerNorm does, is far off), a row of
    tiny values (where eps matters) and a single feature."""
    g = torch.Generator().manual_seed(44)
    cases = []
    for shape, eps in (((3, 8), 1e-5), ((2, 4, 6), 1e-6), ((5, 1), 1e-5)):
        x = torch.randn(*shape, generator=g, dtype=F64) + 2.0
        w = 1 + 0.5 * torch.randn(shape[-1], generator=g, dtype=F64)
        cases.append((x, w, eps))
    tiny = 1e-3 * torch.randn(2, 8, generator=g, dtype=F64)
    cases.append((tiny, torch.ones(8, dtype=F64), 1e-5))
    return cases


def rms_norm(fn: Any) -> check.Result:
    """``fn(x, weight, eps) -> y``: RMSNorm over the last dimension, compared with the formula
    ``x / sqrt(mean(x²) + eps) * weight`` in float64 (relative error 1e-6)."""
    return check.function(fn, _reference_rms_norm, _rms_cases(), name="RMSNorm", rtol=1e-6,
                          atol=1e-9,
                          hint="Divide by the root of the mean of the squares over the last "
                               "dimension (keepdim=True), with eps added inside the root; do "
                               "not subtract the mean, and multiply by the weight at the end.")


def swiglu_width(answer: Any) -> check.Result:
    """The hidden width h of a SwiGLU MLP with exactly the parameters of GPT-2 small's GELU MLP
    (d = 768, d_ff = 4d, no biases): 3·d·h = 2·d·4d, so h = 8d/3 = 2048, exactly."""
    return check.number(answer, 2048, name="SwiGLU width for d = 768", rtol=0, atol=0,
                        hint="Count the matrices: the GELU MLP has two of d × 4d, the SwiGLU "
                             "MLP three of d × h (gate, up and down). Set the counts equal and "
                             "solve for h.")


def kv_bytes_per_token(answer: Any) -> check.Result:
    """Bytes of KV cache per token of Llama 3 70B in bfloat16: 80 layers, 8 key/value heads of
    size 128 (64 query heads, which do not count), keys and values, 2 bytes each:
    2·80·8·128·2 = 327680, exactly."""
    return check.number(answer, 2 * 80 * 8 * 128 * 2, name="KV-cache bytes per token", rtol=0,
                        atol=0,
                        hint="Per layer a token stores one key and one value vector for each "
                             "key/value head (not each query head), each of head_dim numbers of "
                             "2 bytes. Multiply by the number of layers.")


def _reference_balancing(logits: torch.Tensor, top_k: int) -> torch.Tensor:
    probs = logits.to(F64).softmax(dim=-1)
    n = probs.shape[-1]
    chosen = probs.topk(top_k, dim=-1).indices
    f = torch.bincount(chosen.flatten(), minlength=n).to(F64) / chosen.numel()
    return n * (f * probs.mean(dim=0)).sum()


def _balancing_cases() -> list[tuple[torch.Tensor, int]]:
    """Router logits (N, n_experts) and top_k: unbalanced routers (one expert favoured), top-1
    and top-2, so that a loss not divided by top_k, or one using probabilities for f, is off."""
    g = torch.Generator().manual_seed(4)
    cases = []
    for n_tokens, n_experts, top_k, favour in ((16, 4, 1, 1.5), (16, 4, 2, 1.5), (32, 8, 2, 2.0),
                                               (12, 3, 2, 0.5), (10, 6, 3, 1.0)):
        logits = torch.randn(n_tokens, n_experts, generator=g, dtype=F64)
        logits[:, 0] += favour
        cases.append((logits, top_k))
    return cases


def balancing_loss(fn: Any) -> check.Result:
    """``fn(logits, top_k) -> loss``: the load-balancing loss n·Σᵢ fᵢ·Pᵢ of router logits
    (N, n_experts), fᵢ the share of the N·top_k assignments to expert i, Pᵢ its mean softmax
    probability; compared with a float64 reference (relative error 1e-6)."""
    return check.function(fn, _reference_balancing, _balancing_cases(),
                          name="load-balancing loss", rtol=1e-6, atol=1e-9,
                          hint="Take the softmax over the experts, the top_k indices of each "
                               "token, count how often each expert was chosen and divide by "
                               "N·top_k (that is f), average the probabilities over the tokens "
                               "(that is P), and return n_experts · Σ f·P.")
