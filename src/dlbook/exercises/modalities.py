"""Checks for the exercises of section 7.1, Beyond text: images, sound and translation.

Counts are whole numbers and must be exact; the frequency of a bin needs three significant
figures; functions are compared with the reference on several random inputs (patches exactly,
brevity penalties within 1e-9).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from dlbook import check

F64 = torch.float64


def vit_tokens(answer: Any) -> check.Result:
    """ViT-B/16 on a 224 × 224 image: (224/16)² = 196 patches plus the class token, 197."""
    return check.number(answer, 197, name="tokens", rtol=0, atol=0,
                        hint="How many 16 × 16 patches fit along one side, and so in the whole "
                             "image? Then remember the token that the classifier reads.")


def bin_frequency(answer: Any) -> check.Result:
    """Bin 10 of a 64-point STFT of sound sampled at 8000 Hz: 10 · 8000 / 64 = 1250 Hz."""
    return check.number(answer, 10 * 8000 / 64, name="frequency (Hz)", digits=3,
                        hint="Bin k completes k cycles in one frame of n_fft samples; a frame "
                             "lasts n_fft / sample_rate seconds.")


def _frames(length: int, n_fft: int, hop: int, center: bool) -> int:
    if center:
        return 1 + length // hop
    return 1 + (length - n_fft) // hop


def frame_count(fn: Any) -> check.Result:
    """``fn(length, n_fft, hop, center)``: how many frames ``torch.stft`` returns."""
    hint = ("Frames start every hop samples and each needs n_fft samples. With center=True the "
            "signal is first padded by n_fft // 2 on both sides.")
    cases = [(1024, 64, 32, True), (1024, 64, 32, False), (1000, 64, 30, True),
             (1000, 50, 7, False), (300, 16, 16, True), (257, 64, 10, False), (99, 8, 4, True)]

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for length, n_fft, hop, center in cases:
            want = torch.stft(torch.zeros(length, dtype=F64), n_fft, hop,
                              window=torch.ones(n_fft, dtype=F64), center=center,
                              return_complex=True).shape[-1]
            assert want == _frames(length, n_fft, hop, center)
            got = f(length, n_fft, hop, center)
            if got is None:
                return "returned None: did you forget the `return` statement?"
            if float(got) != want:
                return (f"gives {got} frames for length={length}, n_fft={n_fft}, hop={hop}, "
                        f"center={center}; torch.stft gives a different number.")
        return None

    return check.condition(fn, test, name="frame_count", hint=hint)


def patchify(fn: Any) -> check.Result:
    """``fn(images, p)``: images (B, C, H, W) -> patches (B, N, C·p·p), patches row by row,
    each flattened channel, row, column (``F.unfold``'s order)."""
    hint = ("Split H into (H/p, p) and W into (W/p, p) with reshape, move the two patch-grid "
            "axes in front of the channel axis with permute, then merge.")
    g = torch.Generator().manual_seed(71)
    cases = [(torch.randn(2, 1, 8, 8, generator=g, dtype=F64), 2),
             (torch.randn(3, 3, 8, 12, generator=g, dtype=F64), 4),
             (torch.randn(1, 2, 6, 6, generator=g, dtype=F64), 3)]

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for x, p in cases:
            want = F.unfold(x, p, stride=p).transpose(1, 2)
            got = f(x.clone(), p)
            if got is None:
                return "returned None: did you forget the `return` statement?"
            got = torch.as_tensor(got)
            if tuple(got.shape) != tuple(want.shape):
                return (f"for images of shape {tuple(x.shape)} and p={p} the result has shape "
                        f"{tuple(got.shape)}, expected {tuple(want.shape)}.")
            if not torch.equal(got.to(F64), want):
                if torch.equal(torch.sort(got.to(F64), -1).values, torch.sort(want, -1).values):
                    return "each patch has the right pixels, but flattened in another order."
                return (f"the patches differ from F.unfold's for images of shape "
                        f"{tuple(x.shape)} and p={p} (are the patches numbered row by row?).")
        return None

    return check.condition(fn, test, name="patchify", hint=hint)


def _bp(hyp_len: int, ref_len: int) -> float:
    return 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)


def brevity_penalty(fn: Any) -> check.Result:
    """``fn(hyp_len, ref_len)``: BLEU's brevity penalty for a corpus with these lengths."""
    hint = ("The penalty only punishes translations that are too short, and it is 1 when the "
            "translation is as long as the reference: look at the exponent's sign.")
    cases = [(8, 10), (10, 10), (12, 10), (5, 20), (100, 99), (1, 3)]

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for c, r in cases:
            got = f(c, r)
            if got is None:
                return "returned None: did you forget the `return` statement?"
            if abs(float(got) - _bp(c, r)) > 1e-9:
                return f"gives {float(got):.4g} for hyp_len={c}, ref_len={r}."
        return None

    return check.condition(fn, test, name="brevity_penalty", hint=hint)
