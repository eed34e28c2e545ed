"""Checks for the exercises of section 3.3, Recurrent networks and backpropagation through time.

Whole-number answers must be exact; the perplexity needs three significant figures; the two
functions are compared with a reference in float64 within a relative error of 1e-6, on inputs
chosen so that the usual mistakes (a transposed W_hh, a gradient that does not flow back in
time, a softmax that overflows) change the result far beyond the tolerance.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dlbook import check
from dlbook.rnn import rnn_backward, rnn_forward

F64 = torch.float64


def rnn_parameters(answer: Any) -> check.Result:
    """The number of parameters of ``nn.RNN(65, 100)`` (one layer, with biases), exactly."""
    n_in, n_h = 65, 100
    expected = n_h * n_in + n_h * n_h + 2 * n_h
    return check.number(answer, expected, name="parameters of nn.RNN(65, 100)", rtol=0,
                        atol=0, hint="Count the entries of every tensor in state_dict(): two "
                                     "weight matrices (what shapes?) and two bias vectors.")


def vanishing_steps(answer: Any) -> check.Result:
    """The smallest k with 0.9^k < 10⁻³: how far back a gradient survives in a linear regime
    with W_hh = 0.9 Q (Q orthogonal), as a whole number."""
    expected = math.floor(math.log(1e-3) / math.log(0.9)) + 1   # 66
    return check.number(answer, expected, name="steps until the gradient falls below 1e-3",
                        rtol=0, atol=0,
                        hint="Near h = 0, ‖∂h_T/∂h_t‖ = ρ^(T−t). Solve ρ^k < 10⁻³ for k with "
                             "logarithms (mind the direction of the inequality when you divide "
                             "by a negative log), and round to the first whole k that makes it "
                             "true.")


def _reference_dA(dH: torch.Tensor, H: torch.Tensor, W_hh: torch.Tensor) -> torch.Tensor:
    """dL/da_t for every step, from dlbook.rnn.rnn_backward: with W_ih = I its dX is dA."""
    B, T, n = H.shape
    eye = torch.eye(n, dtype=H.dtype)
    cache = (torch.zeros(B, T, n, dtype=H.dtype), torch.zeros(B, n, dtype=H.dtype), eye, W_hh, H)
    return rnn_backward(dH, cache)[0]


def _bptt_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(dH, H, W_hh) from real forward passes, float64. W_hh is far from symmetric (a transposed
    W_hh is wrong by a lot) and large enough that the flow back in time matters; one case has a
    single step and one a single hidden unit."""
    g = torch.Generator().manual_seed(33)
    cases = []
    for B, T, n in ((2, 5, 3), (3, 8, 4), (1, 1, 2), (4, 6, 1)):
        W_hh = 1.5 * torch.randn(n, n, generator=g, dtype=F64) / math.sqrt(n)
        W_hh = W_hh + torch.triu(torch.ones(n, n, dtype=F64), diagonal=1)   # not symmetric
        X = torch.randn(B, T, n, generator=g, dtype=F64)
        h0 = 0.5 * torch.randn(B, n, generator=g, dtype=F64)
        b = 0.1 * torch.randn(n, generator=g, dtype=F64)
        H, _ = rnn_forward(X, h0, torch.eye(n, dtype=F64), W_hh, b, torch.zeros(n, dtype=F64))
        dH = torch.randn(B, T, n, generator=g, dtype=F64)
        cases.append((dH, H, W_hh))
    return cases


def bptt(fn: Any) -> check.Result:
    """``fn(dH, H, W_hh) -> dA``: the gradients with respect to the pre-activations of a tanh
    RNN, (B, T, H), compared with dlbook.rnn.rnn_backward in float64 (relative error 1e-6)."""
    return check.function(fn, _reference_dA, _bptt_cases(), name="backpropagation through time",
                          rtol=1e-6, atol=1e-9,
                          hint="Walk backwards from the last step, t = T−1 down to 0. The "
                               "gradient reaching h_t is dH[:, t] plus what comes back from "
                               "step t+1, da_{t+1} W_hh (a row vector times W_hh, not its "
                               "transpose); then da_t = dh_t ⊙ (1 − h_t²).")


def perplexity(answer: Any) -> check.Result:
    """The perplexity of a model whose loss is 1.40 nats per character (3 significant figures)."""
    return check.number(answer, math.exp(1.40), name="perplexity at 1.40 nats", digits=3,
                        hint="The loss is a mean negative log-likelihood in nats, that is with "
                             "the natural logarithm; the perplexity undoes that logarithm.")


def _reference_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits.to(F64) / temperature, dim=-1)


def _temperature_cases() -> list[tuple[torch.Tensor, float]]:
    """Logits (V,) and temperatures; the last logits are large, so exp() without subtracting
    the maximum overflows to inf and gives nan."""
    g = torch.Generator().manual_seed(3)
    logits = 2 * torch.randn(6, generator=g, dtype=F64)
    return [(logits, 1.0), (logits, 0.5), (logits, 2.0), (logits, 0.1),
            (torch.tensor([3.0, 1.0, 0.0, -2.0], dtype=F64), 1.5),
            (torch.tensor([800.0, 795.0, 10.0], dtype=F64), 0.7)]


def temperature_probs(fn: Any) -> check.Result:
    """``fn(logits, temperature) -> probs``: the distribution ``softmax(logits / temperature)``
    over the V characters, compared within a relative error of 1e-6."""
    return check.function(fn, _reference_temperature, _temperature_cases(),
                          name="sampling probabilities at a temperature", rtol=1e-6, atol=1e-9,
                          hint="Divide the logits by the temperature before the softmax, and "
                               "make the result sum to 1. For large logits, subtract the "
                               "largest one before exp() (or use torch.softmax).")
