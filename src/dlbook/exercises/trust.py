"""Checks for the exercises of section 7.5, Trust: interpretability, privacy and security.

Functions are checked on random inputs within 1e-9 (float64); the noise level of DP-SGD needs
three significant figures; the membership advantage two.
"""

from __future__ import annotations

from typing import Any

import torch

from dlbook import check

F64 = torch.float64


def _fgsm_reference(x: torch.Tensor, grad: torch.Tensor, eps: float) -> torch.Tensor:
    return (x + eps * grad.sign()).clamp(0, 1)


def _fgsm_inputs() -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    g = torch.Generator().manual_seed(75)
    cases = []
    for shape, eps in (((4, 64), 0.1), ((2, 1, 8, 8), 0.3), ((5, 10), 0.0), ((3, 64), 0.05)):
        x = torch.rand(shape, generator=g, dtype=F64)
        x[x < 0.3] = 0.0  # dark pixels, as in the digits
        cases.append((x, torch.randn(shape, generator=g, dtype=F64), eps))
    return cases


def fgsm_step(fn: Any) -> check.Result:
    """``fn(x, grad, eps)``: the FGSM image, given the loss's gradient ``grad`` with respect to
    the images ``x`` (pixels in [0, 1])."""
    return check.function(fn, _fgsm_reference, _fgsm_inputs(), name="fgsm_step", rtol=1e-9,
                          atol=1e-12,
                          hint="Move every pixel by exactly eps, in the direction that raises the "
                               "loss (only the sign of the gradient matters), then keep the "
                               "result a valid image.")


def _clip_reference(grads: torch.Tensor, max_norm: float) -> torch.Tensor:
    norms = grads.norm(dim=1, keepdim=True)
    return grads * (max_norm / norms).clamp(max=1.0)


def _clip_inputs() -> list[tuple[torch.Tensor, float]]:
    g = torch.Generator().manual_seed(751)
    cases = []
    for (b, p), c in (((6, 5), 1.0), ((8, 20), 3.0), ((4, 3), 100.0), ((10, 7), 0.5)):
        grads = torch.randn(b, p, generator=g, dtype=F64) * torch.linspace(0.1, 4, b,
                                                                              dtype=F64)[:, None]
        cases.append((grads, c))
    return cases


def clip_per_example(fn: Any) -> check.Result:
    """``fn(grads, max_norm)``: ``grads`` holds one example's flattened gradient per row, shape
    (B, P); return them with every row scaled down to norm at most ``max_norm`` (rows already
    shorter unchanged)."""
    return check.function(fn, _clip_reference, _clip_inputs(), name="clip_per_example",
                          rtol=1e-9, atol=1e-12,
                          hint="Each row is clipped on its own, by its own L2 norm, and a row's "
                               "direction never changes: scale it, don't clamp its entries. Rows "
                               "whose norm is below max_norm stay as they are.")


def dp_noise_std(answer: Any) -> check.Result:
    """The standard deviation of the noise on each entry of the averaged private gradient, for
    noise multiplier 1.1, clipping norm 1.0 and batches of 256: σ·C/B = 0.004296875."""
    return check.number(answer, 1.1 * 1.0 / 256, name="noise standard deviation", digits=3,
                        hint="The noise is added to the sum of the clipped gradients, with a "
                             "standard deviation of noise multiplier × clipping norm; then the "
                             "sum is divided by the batch size, and so is the noise.")


def membership_advantage(answer: Any) -> check.Result:
    """The attack calls 90 of 100 members and 30 of 100 non-members "members": advantage
    TPR − FPR = 0.9 − 0.3 = 0.6."""
    return check.number(answer, 0.6, name="advantage", digits=2,
                        hint="The advantage is the rate at which members are flagged minus the "
                             "rate at which non-members are flagged (wrongly); not the accuracy "
                             "of the guesses.")
