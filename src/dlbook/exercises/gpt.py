"""Checks for the exercises of section 4.3, The Transformer block and GPT.

Whole-number answers (a parameter count, a cache size in bytes) must be exact. The functions
are compared with a reference in float64 within a relative error of 1e-6, on inputs chosen so
that the usual mistakes (keeping k - 1 or k + 1 tokens, keeping the token that crosses p or
not, a missing shift of the targets, a sum instead of a mean) change the result.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from dlbook import check

F64 = torch.float64


# ------------------------------------------------------------------ the parameter count

def _reference_gpt2_parameters(n_layers: int, d_model: int, vocab_size: int,
                               context_length: int) -> int:
    d, L = d_model, n_layers
    return 12 * L * d * d + 13 * L * d + (vocab_size + context_length + 2) * d


def gpt2_parameters(fn: Any) -> check.Result:
    """``fn(n_layers, d_model, vocab_size, context_length) -> int``: the parameters of a GPT-2
    with tied embeddings, biases and d_ff = 4 d, exactly, on five configurations."""
    cases = [(12, 768, 50257, 1024), (2, 64, 65, 32), (1, 8, 10, 4), (3, 16, 1, 1),
             (48, 1600, 50257, 1024)]
    return check.function(fn, _reference_gpt2_parameters, cases,
                          name="GPT-2 parameter count", rtol=0, atol=0,
                          hint="Count one block: four d×d attention matrices with their biases, "
                               "the MLP's d×4d and 4d×d matrices with theirs, two LayerNorms of "
                               "2d each. Then the token and position embeddings and the final "
                               "LayerNorm; the output matrix is the token embedding (tied).")


# ------------------------------------------------------------------ top-k and top-p

def _reference_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _filter_cases(seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [2 * torch.randn(3, 12, generator=g, dtype=F64),
            torch.tensor([[3.0, 1.0, 0.5, -1.0, 2.0, 0.0]], dtype=F64),
            torch.randn(1, 50, generator=g, dtype=F64)]


def top_k_filter(fn: Any) -> check.Result:
    """``fn(logits, k) -> logits``: for logits (B, V), keep the k largest of each row and set
    the others to -inf (relative error 1e-6)."""
    cases = [(x, k) for x in _filter_cases(1) for k in (1, 3, x.shape[-1])]
    return check.function(fn, _reference_top_k, cases, name="top-k filtering", rtol=1e-6,
                          atol=0,
                          hint="torch.topk(logits, k).values gives each row's k largest; the "
                               "smallest of them is the threshold. Filter each row with its own "
                               "threshold (keep the shape (B, 1) for broadcasting), keep logits "
                               ">= it and put float('-inf') elsewhere.")


def _reference_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    drop = probs.cumsum(-1) - probs >= p
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def top_p_filter(fn: Any) -> check.Result:
    """``fn(logits, p) -> logits``: for logits (B, V), keep the smallest set of the likeliest
    tokens whose probabilities sum to at least p, the others -inf (relative error 1e-6)."""
    cases = [(x, p) for x in _filter_cases(2) for p in (0.05, 0.5, 0.9, 1.0)]
    # 0.5 + 0.3 crosses p = 0.75 at the second token: it is kept, the third is not
    cases.append((torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=F64)), 0.75))
    return check.function(fn, _reference_top_p, cases, name="top-p (nucleus) filtering",
                          rtol=1e-6, atol=0,
                          hint="Sort each row in descending order and take the softmax. Keep a "
                               "token if the probability of the tokens ranked *above* it is "
                               "still below p, so the token that crosses p is kept; then put "
                               "the kept logits back in their original places (scatter).")


# ------------------------------------------------------------------ the causal LM loss

def _reference_causal_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                           tokens[:, 1:].reshape(-1))


def _loss_cases() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(4)
    cases = []
    for B, T, V in ((2, 6, 5), (3, 4, 7), (1, 2, 3)):
        cases.append((3 * torch.randn(B, T, V, generator=g, dtype=F64),
                      torch.randint(V, (B, T), generator=g)))
    return cases


def causal_lm_loss(fn: Any) -> check.Result:
    """``fn(logits, tokens) -> loss``: the mean next-token cross-entropy of logits (B, T, V)
    computed on tokens (B, T), the prediction at t scored against the token at t + 1
    (relative error 1e-6)."""
    return check.function(fn, _reference_causal_loss, _loss_cases(), name="causal LM loss",
                          rtol=1e-6, atol=0,
                          hint="The logits at position t predict token t + 1: pair "
                               "logits[:, :-1] with tokens[:, 1:], flatten both to (B·(T−1), V) "
                               "and (B·(T−1),), and average the cross-entropy.")


# ------------------------------------------------------------------ the KV cache

def kv_cache_bytes(answer: Any) -> check.Result:
    """The bytes of the KV cache of Llama 2 7B (32 layers, 32 key/value heads of 128) for one
    sequence of 4096 tokens in bfloat16, exactly."""
    expected = 2 * 32 * 4096 * 32 * 128 * 2
    return check.number(answer, expected, name="KV cache of Llama 2 7B at 4096 tokens",
                        rtol=0, atol=0,
                        hint="Each layer keeps a key and a value vector of n_kv_heads · head_dim "
                             "numbers for every token seen; multiply by the layers, the tokens "
                             "and the bytes per number of bfloat16.")
