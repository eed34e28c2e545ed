"""The exercise checks of section 4.4 (``dlbook.exercises.modern``): see exercise_harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import modern as ex
from dlbook.gpt import RMSNorm
from dlbook.moe import load_balancing_loss, route

# ---------------------------------------------------------------- RMSNorm


def _rms(x, weight, eps):  # the book's solution
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rms_norm_of_vector(x, weight, eps):  # right: via the vector norm, sqrt(d) out front
    d = x.shape[-1]
    return weight * x / torch.sqrt(torch.linalg.vector_norm(x, dim=-1, keepdim=True) ** 2 / d + eps)


def _rms_module(x, weight, eps):  # right: the library's module with the weight loaded
    norm = RMSNorm(x.shape[-1], eps).to(x.dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
    return norm(x).detach()


def _rms_torch(x, weight, eps):  # right: PyTorch's own
    return torch.nn.functional.rms_norm(x, (x.shape[-1],), weight, eps)


def _rms_layernorm(x, weight, eps):  # subtracts the mean: LayerNorm without a bias
    return torch.nn.functional.layer_norm(x, (x.shape[-1],), weight, None, eps)


def _rms_std(x, weight, eps):  # divides by the standard deviation
    return x / (x.std(-1, keepdim=True) + eps) * weight


def _rms_no_eps(x, weight, eps):  # forgets eps (wrong for tiny inputs)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True)) * weight


def _rms_sum(x, weight, eps):  # the root of the sum, not the mean
    return x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) + eps) * weight


def _rms_no_weight(x, weight, eps):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _rms_wrong_dim(x, weight, eps):  # normalises over the batch
    return x / torch.sqrt(x.pow(2).mean(0, keepdim=True) + eps) * weight


# ---------------------------------------------------------------- load balancing


def _balance(logits, top_k):  # the book's solution
    probs = logits.softmax(-1)
    n = probs.shape[-1]
    chosen = probs.topk(top_k, dim=-1).indices
    f = torch.bincount(chosen.flatten(), minlength=n) / chosen.numel()
    return n * (f * probs.mean(0)).sum()


def _balance_library(logits, top_k):  # right: dlbook.moe
    _, experts, probs = route(logits, top_k)
    return load_balancing_loss(probs, experts)


def _balance_one_hot(logits, top_k):  # right: one-hot masks, topk on the logits
    n = logits.shape[-1]
    chosen = logits.topk(top_k, dim=-1).indices
    mask = torch.nn.functional.one_hot(chosen, n).sum(1).double()        # (N, n)
    f = mask.mean(0) / top_k
    P = torch.softmax(logits, dim=-1).mean(0)
    return float(n * f @ P)


def _balance_not_per_k(logits, top_k):  # f not divided by top_k (Hugging Face's convention)
    return top_k * _balance(logits, top_k)


def _balance_probs_for_f(logits, top_k):  # uses probabilities where counts belong
    probs = logits.softmax(-1)
    return probs.shape[-1] * (probs.mean(0) ** 2).sum()


def _balance_no_n(logits, top_k):
    return _balance(logits, top_k) / logits.shape[-1]


def _balance_argmax_only(logits, top_k):  # counts only each token's first choice
    return _balance(logits, 1)


def _balance_logits_for_p(logits, top_k):  # averages the logits, not the probabilities
    n = logits.shape[-1]
    chosen = logits.topk(top_k, dim=-1).indices
    f = torch.bincount(chosen.flatten(), minlength=n) / chosen.numel()
    return n * (f * logits.mean(0)).sum()


CASES = [
    Case(ex.rms_norm, solution=_rms, takes_function=True,
         right=[_rms_norm_of_vector, _rms_module, _rms_torch],
         wrong=[_rms_layernorm, _rms_std, _rms_no_eps, _rms_sum, _rms_no_weight, _rms_wrong_dim]),
    Case(ex.swiglu_width, solution=8 * 768 // 3,
         right=[2048.0, torch.tensor(2048), np.int64(2048), 2 * 4 * 768 * 768 / (3 * 768)],
         wrong=[4 * 768, 2 * 768, 8 * 768 / 3 + 1, 2 * 768 * 4 // 2, 2730, 1024]),
    Case(ex.kv_bytes_per_token, solution=2 * 80 * 8 * 128 * 2,
         right=[327680.0, 320 * 1024, torch.tensor(327680), np.int32(327680)],
         wrong=[80 * 8 * 128 * 2, 2 * 80 * 64 * 128 * 2, 2 * 80 * 8 * 128 * 4, 2 * 8 * 128 * 2,
                2 * 32 * 8 * 128 * 2, 327680 / 1024]),
    Case(ex.balancing_loss, solution=_balance, takes_function=True,
         right=[_balance_library, _balance_one_hot],
         wrong=[_balance_not_per_k, _balance_probs_for_f, _balance_no_n, _balance_argmax_only,
                _balance_logits_for_p]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_rms_reference_is_the_library_norm():
    for x, w, eps in ex._rms_cases():  # noqa: SLF001
        torch.testing.assert_close(ex._reference_rms_norm(x, w, eps),  # noqa: SLF001
                                   _rms_module(x, w, eps))


def test_the_cases_separate_the_mistakes():
    """Not dividing by top_k and forgetting eps are wrong far beyond the tolerance."""
    assert any(not torch.allclose(_rms(*c), _rms_no_eps(*c), rtol=1e-3)
               for c in ex._rms_cases())  # noqa: SLF001
    for logits, k in ex._balancing_cases():  # noqa: SLF001
        if k > 1:
            assert abs(float(_balance(logits, k)) - float(_balance_not_per_k(logits, k))) > 0.5
