"""The exercise checks of section 7.2 (``dlbook.exercises.assistant``): see exercise_harness."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import assistant as ex


def _dpo(pc, pr, rc, rr, beta):  # the book's solution
    margin = beta * ((pc - rc) - (pr - rr))
    return -F.logsigmoid(margin).mean()


def _dpo_softplus(pc, pr, rc, rr, beta):  # right: -log sigma(z) = softplus(-z)
    return F.softplus(-beta * ((pc - pr) - (rc - rr))).mean()


def _dpo_no_reference(pc, pr, rc, rr, beta):  # forgets the reference model
    return -F.logsigmoid(beta * (pc - pr)).mean()


def _dpo_beta_outside(pc, pr, rc, rr, beta):  # beta multiplies the loss, not the margin
    return -beta * F.logsigmoid((pc - rc) - (pr - rr)).mean()


def _dpo_sum(pc, pr, rc, rr, beta):  # sums instead of averaging
    return -F.logsigmoid(beta * ((pc - rc) - (pr - rr))).sum()


def _ece(probs, labels, n_bins):  # the book's solution
    conf, pred = probs.max(-1)
    correct = (pred == labels).double()
    total = 0.0
    for m in range(n_bins):
        inside = (conf > m / n_bins) & (conf <= (m + 1) / n_bins)
        if inside.any():
            total += inside.double().mean() * (correct[inside].mean() - conf[inside].mean()).abs()
    return total


def _ece_numpy(probs, labels, n_bins):  # right: numpy with digitize
    p, y = probs.numpy(), labels.numpy()
    conf, correct = p.max(1), (p.argmax(1) == y)
    idx = np.clip(np.ceil(conf * n_bins).astype(int), 1, n_bins) - 1
    return float(sum(abs(correct[idx == m].mean() - conf[idx == m].mean()) * (idx == m).mean()
                     for m in range(n_bins) if (idx == m).any()))


def _ece_unweighted(probs, labels, n_bins):  # plain mean over non-empty bins
    conf, pred = probs.max(-1)
    correct = (pred == labels).double()
    gaps = [(correct[i].mean() - conf[i].mean()).abs() for m in range(n_bins)
            if (i := (conf > m / n_bins) & (conf <= (m + 1) / n_bins)).any()]
    return sum(gaps) / len(gaps)


def _ece_no_abs(probs, labels, n_bins):  # signed gaps cancel
    conf, pred = probs.max(-1)
    correct = (pred == labels).double()
    total = 0.0
    for m in range(n_bins):
        inside = (conf > m / n_bins) & (conf <= (m + 1) / n_bins)
        if inside.any():
            total += inside.double().mean() * (correct[inside].mean() - conf[inside].mean())
    return total


def _ece_true_class(probs, labels, n_bins):  # uses the probability of the true class
    conf = probs.gather(1, labels[:, None]).squeeze(1)
    pred = probs.argmax(-1)
    correct = (pred == labels).double()
    total = 0.0
    for m in range(n_bins):
        inside = (conf > m / n_bins) & (conf <= (m + 1) / n_bins)
        if inside.any():
            total += inside.double().mean() * (correct[inside].mean() - conf[inside].mean()).abs()
    return total


P = 1 / (1 + math.exp(-1.5))
OPT = 1 / (1 + math.exp(-(math.log(0.25) + 4)))

CASES = [
    Case(ex.preference_probability, solution=P, right=[0.818, round(P, 4), torch.tensor(P)],
         wrong=[1 / (1 + math.exp(-0.9)), 1.2 / (1.2 + 0.3), 1 - P, 1.5]),
    Case(ex.dpo_loss, solution=_dpo, takes_function=True, right=[_dpo_softplus],
         wrong=[_dpo_no_reference, _dpo_beta_outside, _dpo_sum]),
    Case(ex.expected_calibration_error, solution=_ece, takes_function=True, right=[_ece_numpy],
         wrong=[_ece_unweighted, _ece_no_abs, _ece_true_class]),
    Case(ex.dpo_optimum, solution=OPT, right=[0.932, np.float64(OPT)],
         wrong=[1 / (1 + math.exp(-(math.log(0.25) + 1))),   # multiplied by beta
                1 / (1 + math.exp(-2)),                       # forgot the reference
                0.2 * math.exp(4)]),                          # not renormalised
    Case(ex.macro_recall, solution=(0.8 + 0.5 + 1.0) / 3, right=[0.767, 23 / 30],
         wrong=[(8 / 9 + 5 / 7 + 20 / 24) / 3,               # macro precision (columns)
                33 / 40,                                      # accuracy
                0.5]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)
