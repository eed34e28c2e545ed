"""The exercise checks of section 7.3 (``dlbook.exercises.small_fast``): see exercise_harness."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import small_fast as ex


def _affine(w):  # the book's solution
    lo, hi = w.min().clamp(max=0), w.max().clamp(min=0)
    scale = (hi - lo) / 255
    zp = int(torch.round(-lo / scale))
    q = torch.clamp(torch.round(w / scale) + zp, 0, 255).to(torch.uint8)
    return q, scale, zp


def _affine_numpy(w):  # right: in NumPy (np.round also rounds half to even), as a list
    a = w.numpy()
    lo, hi = min(a.min(), 0.0), max(a.max(), 0.0)
    scale = (hi - lo) / 255
    zp = int(np.round(-lo / scale))
    return [np.clip(np.round(a / scale) + zp, 0, 255).astype(np.uint8), scale, zp]


def _affine_no_zero(w):  # does not widen the range to include 0
    lo, hi = w.min(), w.max()
    scale = (hi - lo) / 255
    zp = int(torch.round(-lo / scale))
    return torch.clamp(torch.round(w / scale) + zp, 0, 255), scale, zp


def _affine_floor(w):  # truncates instead of rounding
    lo, hi = w.min().clamp(max=0), w.max().clamp(min=0)
    scale = (hi - lo) / 255
    zp = int(torch.round(-lo / scale))
    return torch.clamp(torch.floor(w / scale) + zp, 0, 255), scale, zp


def _affine_256(w):  # divides by 256 levels
    lo, hi = w.min().clamp(max=0), w.max().clamp(min=0)
    scale = (hi - lo) / 256
    zp = int(torch.round(-lo / scale))
    return torch.clamp(torch.round(w / scale) + zp, 0, 255), scale, zp


def _distill(s, t, y, T, alpha):  # the book's solution
    kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True,
                  reduction="batchmean")
    return alpha * T ** 2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def _distill_by_hand(s, t, y, T, alpha):  # right: the sums written out
    pt = torch.softmax(t / T, -1)
    kl = (pt * (torch.log_softmax(t / T, -1) - torch.log_softmax(s / T, -1))).sum(-1).mean()
    ce = -torch.log_softmax(s, -1).gather(1, y[:, None]).mean()
    return alpha * T * T * kl + (1 - alpha) * ce


def _distill_no_t2(s, t, y, T, alpha):  # forgets the T² factor
    kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True,
                  reduction="batchmean")
    return alpha * kl + (1 - alpha) * F.cross_entropy(s, y)


def _distill_reversed(s, t, y, T, alpha):  # KL(student ‖ teacher)
    kl = F.kl_div(F.log_softmax(t / T, -1), F.log_softmax(s / T, -1), log_target=True,
                  reduction="batchmean")
    return alpha * T ** 2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def _distill_mean(s, t, y, T, alpha):  # averages over vocabulary entries too ("mean")
    kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True,
                  reduction="mean")
    return alpha * T ** 2 * kl + (1 - alpha) * F.cross_entropy(s, y)


def _distill_soft_ce(s, t, y, T, alpha):  # cross-entropy of the student at temperature T
    kl = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True,
                  reduction="batchmean")
    return alpha * T ** 2 * kl + (1 - alpha) * F.cross_entropy(s / T, y)


CASES = [
    Case(ex.symmetric_scale, solution=3.81 / 127, right=[0.03, 0.0300, np.float32(0.03),
                                                         torch.tensor(3.81 / 127)],
         wrong=[3.81 / 128, (3.81 + 2.2) / 255, 3.81 / 255, 2.2 / 127]),
    Case(ex.quantize_affine, solution=_affine, takes_function=True, right=[_affine_numpy],
         wrong=[_affine_no_zero, _affine_floor, _affine_256]),
    Case(ex.distillation_loss, solution=_distill, takes_function=True,
         right=[_distill_by_hand],
         wrong=[_distill_no_t2, _distill_reversed, _distill_mean, _distill_soft_ce]),
    Case(ex.tokens_per_call, solution=(1 - 0.8 ** 5) / (1 - 0.8), right=[3.36, 3.362,
                                                                       np.float64(3.3616)],
         wrong=[4 * 0.8 + 1, 1 / (1 - 0.8), 4 * 0.8, (1 - 0.8 ** 4) / (1 - 0.8)]),
    Case(ex.pruned_parameters, solution=8970, right=[8970.0, np.int64(8970),
                                                     64 * 65 + 64 * 65 + 65 * 10],
         wrong=[64 * 64 + 64 * 64 + 64 * 10, round(0.25 * (64 * 257 + 256 * 257 + 257 * 10)),
                64 * 64 + 64 + 64 * 64 + 64 + 256 * 10 + 10]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)
