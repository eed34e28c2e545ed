"""Checks for the exercises of section 7.3, Small and fast.

The quantization scale and the expected tokens per target call need three significant figures;
the affine quantizer must give exactly the integers, scale and zero point of the book's
``dlbook.compress.quantize`` on random tensors; the distillation loss must match within 1e-8
in float64; the parameter count of the pruned network is an exact integer.
"""

from __future__ import annotations

from typing import Any

import torch

from dlbook import check
from dlbook.compress import distillation_loss as _distillation_loss
from dlbook.compress import quantize as _quantize

F64 = torch.float64


def symmetric_scale(answer: Any) -> check.Result:
    """The scale of symmetric 8-bit per-tensor quantization of a matrix whose entries lie in
    [-3.81, 2.2]: max|w| / 127 = 0.03."""
    return check.number(answer, 3.81 / 127, name="scale", digits=3,
                        hint="Symmetric quantization maps the largest |w| onto the largest "
                             "integer it uses; with 8 bits that is 127 (the range is kept "
                             "symmetric around zero). Only the larger of |min| and |max| counts.")


def _affine_cases() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(73)
    cases = [torch.tensor([[0.5, 1.0], [2.0, 4.0]], dtype=F64),          # all positive
             torch.tensor([-3.0, -1.0, -0.25], dtype=F64),                 # all negative
             torch.tensor([-1.0, 0.0, 0.3, 2.7], dtype=F64)]
    for shape in ((5, 7), (16,), (3, 4, 2)):
        cases.append(torch.randn(shape, generator=g, dtype=F64) * 2 + 0.7)
    return cases


def quantize_affine(fn: Any) -> check.Result:
    """``fn(w)`` -> (q, scale, zero_point): 8-bit affine per-tensor quantization of ``w`` onto
    [0, 255], the range widened to include 0, rounding half to even, as ``torch.quantize_per_tensor``."""
    hint = ("Widen the range to [min(w, 0), max(w, 0)] so that 0.0 is exact; scale = "
            "(hi - lo) / 255; zero_point = round(-lo / scale); q = clamp(round(w / scale) + "
            "zero_point, 0, 255) with torch.round.")

    def test(f: Any) -> str | None:
        if not callable(f):
            return f"expected a function, got {type(f).__name__}."
        for w in _affine_cases():
            out = f(w.clone())
            if out is None:
                return "returned None: did you forget the `return` statement?"
            if not isinstance(out, (tuple, list)) or len(out) != 3:
                return "should return three things: (q, scale, zero_point)."
            q, scale, zp = out
            want_q, want_s, want_z = _quantize(w, 8, "affine")
            scale = float(torch.as_tensor(scale))
            if abs(scale - float(want_s)) > 1e-12 * float(want_s):
                return f"for w with range [{w.min():.2f}, {w.max():.2f}] the scale is wrong."
            if int(torch.as_tensor(zp)) != int(want_z):
                return f"for w with range [{w.min():.2f}, {w.max():.2f}] the zero point is wrong."
            q = torch.as_tensor(q)
            if q.shape != w.shape:
                return f"q has shape {tuple(q.shape)}, expected {tuple(w.shape)}."
            if not torch.equal(q.to(torch.int64), want_q.to(torch.int64)):
                return (f"for w with range [{w.min():.2f}, {w.max():.2f}] "
                        f"{int((q.to(torch.int64) != want_q.to(torch.int64)).sum())} of the "
                        f"{w.numel()} integers are wrong.")
        return None

    return check.condition(fn, test, name="quantize_affine", hint=hint)


def _distill_inputs() -> list[tuple]:
    g = torch.Generator().manual_seed(731)
    out = []
    for (n, v), T, alpha in (((6, 5), 1.0, 0.5), ((4, 9), 2.0, 0.5), ((8, 3), 4.0, 0.9),
                             ((5, 7), 3.0, 1.0)):
        out.append((torch.randn(n, v, generator=g, dtype=F64) * 2,
                    torch.randn(n, v, generator=g, dtype=F64) * 2,
                    torch.randint(v, (n,), generator=g), T, alpha))
    return out


def distillation_loss(fn: Any) -> check.Result:
    """``fn(student_logits, teacher_logits, targets, T, alpha)`` for logits (N, V): Hinton et
    al.'s loss alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1 - alpha)·CE, averaged over rows."""
    return check.function(fn, _distillation_loss, _distill_inputs(), name="distillation_loss",
                          rtol=1e-8, atol=1e-10,
                          hint="Soften both the teacher's and the student's logits by T; the KL "
                               "divergence goes from the teacher's distribution to the "
                               "student's (sum over the vocabulary of p_t·(log p_t - log p_s), "
                               "mean over rows); multiply it by T² and mix with the ordinary "
                               "cross-entropy of the unsoftened student logits.")


def tokens_per_call(answer: Any) -> check.Result:
    """Expected tokens per target forward pass with k = 4 draft tokens, each accepted
    independently with probability 0.8: (1 - 0.8^5) / (1 - 0.8) = 3.3616."""
    return check.number(answer, (1 - 0.8 ** 5) / (1 - 0.8), name="tokens per target call",
                        digits=3,
                        hint="A round yields 1 token if the first proposal is rejected, 2 if "
                             "only the first is accepted, ..., and k + 1 if all k are (the bonus "
                             "token). Sum the probabilities: 1 + a + a² + ... up to a^k.")


def pruned_parameters(answer: Any) -> check.Result:
    """Parameters of the MLP 64 -> 256 -> 256 -> 10 (with biases) after structured pruning
    keeps 64 neurons in each hidden layer: 64·64+64 + 64·64+64 + 64·10+10 = 8970."""
    expected = 64 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    return check.number(answer, expected, name="parameters", rtol=0, atol=0.5,
                        hint="Removing a hidden neuron removes its row of the matrix before it, "
                             "its bias, and its column of the matrix after it. The input (64) "
                             "and output (10) sizes do not change.")
