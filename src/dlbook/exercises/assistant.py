"""Checks for the exercises of section 7.2, From a language model to an assistant.

Probabilities need three significant figures; the functions (a DPO loss, an expected
calibration error) are compared with the book's on random float64 inputs within 1e-6.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from dlbook import check
from dlbook.alignment import dpo_loss as _dpo
from dlbook.evaluation import expected_calibration_error as _ece

F64 = torch.float64


def preference_probability(answer: Any) -> check.Result:
    """Bradley--Terry with rewards 1.2 (chosen) and -0.3 (rejected): sigma(1.5) = 0.8176."""
    return check.number(answer, 1 / (1 + math.exp(-1.5)), name="P(chosen preferred)", digits=3,
                        hint="The model depends only on the difference of the two rewards; "
                             "pass it through the logistic function sigma(z) = 1/(1+e^-z).")


def _dpo_inputs() -> list[tuple]:
    g = torch.Generator().manual_seed(72)
    cases = []
    for n, beta in ((4, 0.1), (9, 0.5), (1, 2.0)):
        cases.append(tuple(torch.randn(n, generator=g, dtype=F64) * 4 - 6 for _ in range(4))
                     + (beta,))
    return cases


def dpo_loss(fn: Any) -> check.Result:
    """``fn(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)``, the mean DPO
    loss over the pairs."""
    return check.function(fn, lambda *a: _dpo(*a[:4], beta=a[4]),
                          _dpo_inputs(), name="dpo_loss", rtol=1e-6, atol=1e-9,
                          hint="The implicit reward of a completion is beta times (policy log-prob "
                               "minus reference log-prob). The loss is the Bradley-Terry loss "
                               "-log sigma(chosen reward - rejected reward), averaged over pairs.")


def _ece_inputs() -> list[tuple]:
    g = torch.Generator().manual_seed(7)
    cases = []
    for n, k, bins in ((200, 3, 10), (50, 5, 4), (500, 10, 15)):
        probs = (torch.randn(n, k, generator=g, dtype=F64) * 2).softmax(-1)
        cases.append((probs, torch.randint(k, (n,), generator=g), bins))
    return cases


def expected_calibration_error(fn: Any) -> check.Result:
    """``fn(probs, labels, n_bins)``: ECE with equal-width bins ((m-1)/M, m/M] of the largest
    probability, each bin weighted by its share of the examples."""
    return check.function(fn, _ece, _ece_inputs(), name="expected_calibration_error", rtol=1e-6,
                          atol=1e-9,
                          hint="Confidence is the largest probability of a row, correct means its "
                               "argmax equals the label. Weight each bin's |accuracy - mean "
                               "confidence| by (examples in the bin) / N; empty bins add nothing.")


def dpo_optimum(answer: Any) -> check.Result:
    """Reference P(polite) = 0.2, reward gap 2, beta = 0.5: the two-completion optimum
    pi* proportional to ref * exp(r / beta) gives sigma(logit(0.2) + 4) = 0.9318."""
    expected = 1 / (1 + math.exp(-(math.log(0.2 / 0.8) + 2 / 0.5)))
    return check.number(answer, expected, name="P(polite) at the optimum", digits=3,
                        hint="Multiply each completion's reference probability by "
                             "exp(reward / beta), then renormalise the two so they sum to 1.")


def macro_recall(answer: Any) -> check.Result:
    """Confusion matrix [[8, 2, 0], [1, 5, 4], [0, 0, 20]] (rows true): recalls 0.8, 0.5, 1.0,
    macro 0.7667."""
    return check.number(answer, (0.8 + 0.5 + 1.0) / 3, name="macro recall", digits=3,
                        hint="Recall of class k is the diagonal entry divided by the sum of "
                             "row k (all examples that truly are k); macro is the plain mean.")
