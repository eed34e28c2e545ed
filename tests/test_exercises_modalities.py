"""The exercise checks of section 7.1 (``dlbook.exercises.modalities``): see exercise_harness."""

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import modalities as ex


def _frames(length, n_fft, hop, center):  # the book's solution
    return 1 + length // hop if center else 1 + (length - n_fft) // hop


def _frames_padded(length, n_fft, hop, center):  # right: pad first, then count uncentred
    padded = length + 2 * (n_fft // 2) if center else length
    return (padded - n_fft) // hop + 1


def _frames_no_center(length, n_fft, hop, center):  # ignores the padding
    return 1 + (length - n_fft) // hop


def _frames_divide(length, n_fft, hop, center):  # forgets the first frame
    return length // hop


def _frames_ceil(length, n_fft, hop, center):  # rounds up
    return math.ceil(length / hop)


def _patchify(x, p):  # the book's solution
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def _patchify_unfold(x, p):  # right: Tensor.unfold twice
    B, C = x.shape[:2]
    t = x.unfold(2, p, p).unfold(3, p, p)           # (B, C, rows, cols, p, p)
    return t.permute(0, 2, 3, 1, 4, 5).reshape(B, -1, C * p * p)


def _patchify_channel_last(x, p):  # flattens each patch row, column, channel
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def _patchify_plain_reshape(x, p):  # a reshape without the permute: not patches
    B, C, H, W = x.shape
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def _patchify_columns_first(x, p):  # numbers the patches column by column
    B, C, H, W = x.shape
    x = x.reshape(B, C, H // p, p, W // p, p).permute(0, 4, 2, 1, 3, 5)
    return x.reshape(B, (H // p) * (W // p), C * p * p)


def _bp(c, r):  # the book's solution
    return 1.0 if c >= r else math.exp(1 - r / c)


def _bp_min(c, r):  # right: the same with min
    return math.exp(min(0.0, 1 - r / c))


def _bp_swapped(c, r):  # the ratio upside down
    return 1.0 if c >= r else math.exp(1 - c / r)


def _bp_uncapped(c, r):  # rewards long translations too
    return math.exp(1 - r / c)


def _bp_ratio(c, r):  # a plain ratio
    return min(1.0, c / r)


CASES = [
    Case(ex.vit_tokens, solution=197, right=[197.0, np.int64(197), torch.tensor(197),
                                             (224 // 16) ** 2 + 1],
         wrong=[196, 14 * 14 * 3, 224 * 224 // 16 + 1, 15]),
    Case(ex.bin_frequency, solution=1250.0, right=[1250, 1.25e3, np.float32(1250)],
         wrong=[10 * 8000 / 33, 8000 / 64, 10 * 4000 / 64, 10 * 64 / 8000]),
    Case(ex.frame_count, solution=_frames, takes_function=True, right=[_frames_padded],
         wrong=[_frames_no_center, _frames_divide, _frames_ceil]),
    Case(ex.patchify, solution=_patchify, takes_function=True, right=[_patchify_unfold],
         wrong=[_patchify_channel_last, _patchify_plain_reshape, _patchify_columns_first]),
    Case(ex.brevity_penalty, solution=_bp, takes_function=True, right=[_bp_min],
         wrong=[_bp_swapped, _bp_uncapped, _bp_ratio]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)
