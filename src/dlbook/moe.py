"""A mixture-of-experts MLP, written to be read (section 4.4).

A Transformer block's MLP is replaced by ``n_experts`` MLPs ("experts") and a router: a linear
layer that scores the experts for each token. Each token is sent to its ``top_k`` best-scoring
experts, and their outputs are mixed with the router's probabilities as weights
(Shazeer et al. 2017). The model then has ``n_experts`` MLPs' worth of parameters but each token
uses only ``top_k`` of them: many *total*, few *active* parameters.

Left alone, a router tends to send most tokens to a few experts. The Switch Transformer's
auxiliary loss (Fedus et al. 2022) pushes towards balance::

    aux = n_experts * sum_i f_i * P_i

with ``f_i`` the fraction of the token-to-expert assignments that went to expert ``i`` (no
gradient: it is a count) and ``P_i`` the router's mean probability for expert ``i`` (which has
one). It is 1 when both are uniform, and larger when the router favours the experts it uses
most. Here ``f_i`` is divided by ``top_k`` so that the ``f_i`` sum to 1 for any ``top_k``; for
``top_k = 1`` this is exactly Switch's loss, and Hugging Face's Mixtral loss is ``top_k`` times it.

Usage, as a drop-in replacement for a block's MLP::

    model.blocks[i].mlp = MoE.from_config(model.config, n_experts=8, top_k=2)
    loss = lm_loss(model, x, y) + 0.01 * aux_loss(model)

No token is ever dropped (there is no expert capacity limit), as in Mixtral.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dlbook.gpt import MLP, GPTConfig, SwiGLU

__all__ = ["MoE", "route", "load_balancing_loss", "aux_loss", "parameter_counts"]

EXPERTS = ("swiglu", "gelu")


def route(logits: torch.Tensor, top_k: int, renormalize: bool = True
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k routing of router ``logits`` (N, n_experts).

    Returns ``(weights, experts, probs)``: the mixing weights (N, top_k), the chosen experts'
    indices (N, top_k), best first, and the full softmax probabilities (N, n_experts).
    ``renormalize`` rescales the top-k probabilities to sum to 1 (Mixtral); without it they are
    the raw probabilities (Switch, top-1: the gradient then reaches the router through them).
    """
    if logits.dim() != 2:
        raise ValueError(f"expected router logits of shape (tokens, n_experts), got "
                         f"{tuple(logits.shape)}")
    if not 1 <= top_k <= logits.shape[-1]:
        raise ValueError(f"top_k must be between 1 and n_experts={logits.shape[-1]}, got {top_k}")
    probs = logits.softmax(dim=-1)
    weights, experts = probs.topk(top_k, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, experts, probs


def load_balancing_loss(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's auxiliary loss ``n_experts * sum_i f_i * P_i``.

    probs: (N, n_experts) router probabilities; experts: (N, top_k) chosen indices. ``f_i`` is
    the share of the N * top_k assignments that went to expert i, ``P_i`` the mean of
    ``probs[:, i]``. Equals 1 at perfect balance; the gradient flows through ``P`` only.
    """
    if probs.dim() != 2 or experts.dim() != 2 or probs.shape[0] != experts.shape[0]:
        raise ValueError(f"expected probs (tokens, n_experts) and experts (tokens, top_k), got "
                         f"{tuple(probs.shape)} and {tuple(experts.shape)}")
    n_experts = probs.shape[-1]
    counts = torch.bincount(experts.flatten(), minlength=n_experts)
    f = counts.to(probs.dtype) / experts.numel()
    P = probs.mean(dim=0)
    return n_experts * (f * P).sum()


class MoE(nn.Module):
    """``n_experts`` MLPs of width ``d_ff`` and a linear router; each token uses ``top_k``.

    After each forward pass ``self.aux_loss`` holds the load-balancing loss (a tensor with a
    gradient; add ``coef * aux_loss`` to the training loss) and ``self.counts`` the number of
    tokens each expert received (n_experts,), for plotting.
    """

    def __init__(self, d_model: int, d_ff: int, n_experts: int = 8, top_k: int = 2, *,
                 expert: str = "swiglu", bias: bool = False,
                 renormalize: bool | None = None) -> None:
        super().__init__()
        for name, value in (("d_model", d_model), ("d_ff", d_ff), ("n_experts", n_experts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be an integer from 1 to n_experts={n_experts}, "
                             f"got {top_k!r}")
        if expert not in EXPERTS:
            raise ValueError(f"expert must be one of {EXPERTS}, got {expert!r}")
        self.d_model, self.n_experts, self.top_k = d_model, n_experts, top_k
        # top-1 weights renormalised would all be 1: the router would learn nothing from the task
        self.renormalize = top_k > 1 if renormalize is None else renormalize
        self.router = nn.Linear(d_model, n_experts, bias=False)
        shape = GPTConfig(vocab_size=1, context_length=1, d_model=d_model, n_layers=1, n_heads=1,
                          d_ff=d_ff, bias=bias, mlp=expert)
        make = SwiGLU if expert == "swiglu" else MLP
        self.experts = nn.ModuleList(make(shape) for _ in range(n_experts))
        self.aux_loss: torch.Tensor | None = None
        self.counts: torch.Tensor | None = None

    @classmethod
    def from_config(cls, config: GPTConfig, n_experts: int = 8, top_k: int = 2,
                    d_ff: int | None = None, **kwargs: Any) -> "MoE":
        """An MoE that can replace the MLP of a block of ``GPT(config)``: same d_model, bias and
        expert kind (``config.mlp``); ``d_ff`` defaults to the dense MLP's width."""
        return cls(config.d_model, config.d_ff if d_ff is None else d_ff, n_experts, top_k,
                   expert=config.mlp, bias=config.bias, **kwargs)

    def expert_parameters(self) -> int:
        """Parameters of one expert."""
        return sum(p.numel() for p in self.experts[0].parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., d_model) -> (..., d_model); each token is the weighted sum of its top-k
        experts' outputs."""
        if not isinstance(x, torch.Tensor) or x.dim() < 1 or x.shape[-1] != self.d_model:
            raise ValueError(f"expected x of shape (..., d_model={self.d_model}), got "
                             f"{getattr(x, 'shape', type(x).__name__)}")
        tokens = x.reshape(-1, self.d_model)                              # (N, d)
        weights, experts, probs = route(self.router(tokens), self.top_k, self.renormalize)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            token, slot = torch.nonzero(experts == e, as_tuple=True)      # who chose e, where
            if token.numel() == 0:
                continue
            y = expert(tokens[token]) * weights[token, slot].unsqueeze(-1)
            out = out.index_add(0, token, y)
        self.aux_loss = load_balancing_loss(probs, experts)
        self.counts = torch.bincount(experts.flatten(), minlength=self.n_experts).detach()
        return out.reshape(x.shape)

    def extra_repr(self) -> str:
        return f"n_experts={self.n_experts}, top_k={self.top_k}, renormalize={self.renormalize}"


def aux_loss(model: nn.Module) -> torch.Tensor:
    """The sum of the last load-balancing losses of every MoE layer in ``model``."""
    losses = [m.aux_loss for m in model.modules() if isinstance(m, MoE)]
    if not losses:
        raise ValueError("the model has no MoE layer: replace a block's mlp with MoE(...) first")
    if any(a is None for a in losses):
        raise ValueError("run a forward pass first: aux_loss is set by MoE.forward")
    return torch.stack(losses).sum()


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """``(total, active)`` parameters of ``model``: active counts only ``top_k`` experts of each
    MoE layer (what one token uses), plus everything that is not an expert."""
    total = sum(p.numel() for p in model.parameters())
    idle = sum((m.n_experts - m.top_k) * m.expert_parameters()
               for m in model.modules() if isinstance(m, MoE))
    return total, total - idle
