"""The exercise checks of section 4.3 (``dlbook.exercises.gpt``): see exercise_harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import gpt as ex
from dlbook.gpt import GPT, GPTConfig, sample

# ---------------------------------------------------------------- parameter count


def _params(n_layers, d_model, vocab_size, context_length):  # the book's solution
    d = d_model
    block = 4 * (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 2 * (2 * d)
    return n_layers * block + (vocab_size + context_length) * d + 2 * d


def _params_built(n_layers, d_model, vocab_size, context_length):  # right: count a meta model
    with torch.device("meta"):
        model = GPT(GPTConfig.gpt2(vocab_size=vocab_size, context_length=context_length,
                                   d_model=d_model, n_layers=n_layers, n_heads=1))
    return model.num_parameters()


def _params_formula(n_layers, d_model, vocab_size, context_length):  # right: closed form
    return d_model * (12 * n_layers * d_model + 13 * n_layers + vocab_size + context_length + 2)


def _params_untied(L, d, V, T):  # counts the output matrix a second time
    return _params(L, d, V, T) + V * d


def _params_no_biases(L, d, V, T):  # forgets the biases and LayerNorm shifts
    return 12 * L * d * d + 2 * L * d + (V + T + 1) * d


def _params_no_positions(L, d, V, T):  # forgets the position embeddings
    return _params(L, d, V, T) - T * d


def _params_mlp_2d(L, d, V, T):  # an MLP of width 2d
    return _params(L, d, V, T) - L * (4 * d * d + 2 * d)


def _params_no_final_norm(L, d, V, T):
    return _params(L, d, V, T) - 2 * d


# ---------------------------------------------------------------- top-k


def _top_k(logits, k):  # the book's solution
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return torch.where(logits >= kth, logits, torch.full_like(logits, float("-inf")))


def _top_k_sort(logits, k):  # right: sort and scatter
    vals, order = logits.sort(dim=-1, descending=True)
    vals[:, k:] = float("-inf")
    return torch.empty_like(logits).scatter(-1, order, vals)


def _top_k_numpy(logits, k):  # right: NumPy, row by row
    out = np.full(logits.shape, -np.inf)
    a = logits.numpy()
    for i, row in enumerate(a):
        keep = np.argsort(-row)[:k]
        out[i, keep] = row[keep]
    return out


def _top_k_plus_one(logits, k):  # keeps k + 1
    kth = torch.topk(logits, min(k + 1, logits.shape[-1]), dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def _top_k_strict(logits, k):  # keeps only those above the k-th: k - 1
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits <= kth, float("-inf"))


def _top_k_global(logits, k):  # one threshold for the whole batch
    kth = torch.topk(logits.flatten(), k).values[-1]
    return logits.masked_fill(logits < kth, float("-inf"))


def _top_k_zeros(logits, k):  # zeros instead of -inf
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, 0.0)


def _top_k_probs(logits, k):  # returns renormalised probabilities, not logits
    return _top_k(logits, k).softmax(-1)


# ---------------------------------------------------------------- top-p


def _top_p(logits, p):  # the book's solution
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    above = probs.cumsum(-1) - probs
    sorted_logits = sorted_logits.masked_fill(above >= p, float("-inf"))
    return torch.empty_like(logits).scatter(-1, order, sorted_logits)


def _top_p_loop(logits, p):  # right: a loop over each row, adding tokens until p is reached
    out = torch.full_like(logits, float("-inf"))
    probs = logits.softmax(-1)
    for i in range(logits.shape[0]):
        total = 0.0
        for j in probs[i].argsort(descending=True).tolist():
            out[i, j] = logits[i, j]
            total += probs[i, j].item()
            if total >= p:
                break
    return out


def _top_p_drops_crossing(logits, p):  # drops the token that crosses p
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    sorted_logits = sorted_logits.masked_fill(cum > p, float("-inf"))
    return torch.empty_like(logits).scatter(-1, order, sorted_logits)


def _top_p_unsorted(logits, p):  # cumulative sum in vocabulary order, not by probability
    probs = logits.softmax(-1)
    return logits.masked_fill(probs.cumsum(-1) - probs >= p, float("-inf"))


def _top_p_sorted_out(logits, p):  # forgets to undo the sort
    sorted_logits, _ = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(-1)
    return sorted_logits.masked_fill(probs.cumsum(-1) - probs >= p, float("-inf"))


def _top_p_threshold(logits, p):  # keeps tokens whose own probability is at least 1 - p
    probs = logits.softmax(-1)
    return logits.masked_fill(probs < 1 - p, float("-inf"))


# ---------------------------------------------------------------- causal loss


def _loss(logits, tokens):  # the book's solution
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1))


def _loss_manual(logits, tokens):  # right: log-softmax and gather
    logp = logits[:, :-1].log_softmax(-1)
    return -logp.gather(-1, tokens[:, 1:, None]).mean()


def _loss_transpose(logits, tokens):  # right: cross_entropy with the class dimension second
    return F.cross_entropy(logits[:, :-1].transpose(1, 2), tokens[:, 1:])


def _loss_no_shift(logits, tokens):
    V = logits.shape[-1]
    return F.cross_entropy(logits.reshape(-1, V), tokens.reshape(-1))


def _loss_wrong_shift(logits, tokens):  # shifts the wrong way
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, 1:].reshape(-1, V), tokens[:, :-1].reshape(-1))


def _loss_sum(logits, tokens):
    V = logits.shape[-1]
    return F.cross_entropy(logits[:, :-1].reshape(-1, V), tokens[:, 1:].reshape(-1),
                           reduction="sum")


def _loss_nll_of_logits(logits, tokens):  # forgets the log-softmax
    return F.nll_loss(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def _loss_no_return(logits, tokens):
    loss = _loss(logits, tokens)  # noqa: F841 - forgot to return


# ---------------------------------------------------------------- KV cache

KV = 2 * 32 * 4096 * 32 * 128 * 2

CASES = [
    Case(ex.gpt2_parameters, solution=_params, takes_function=True,
         right=[_params_built, _params_formula],
         wrong=[_params_untied, _params_no_biases, _params_no_positions, _params_mlp_2d,
                _params_no_final_norm]),
    Case(ex.top_k_filter, solution=_top_k, takes_function=True,
         right=[_top_k_sort, _top_k_numpy],
         wrong=[_top_k_plus_one, _top_k_strict, _top_k_global, _top_k_zeros, _top_k_probs]),
    Case(ex.top_p_filter, solution=_top_p, takes_function=True,
         right=[_top_p_loop],
         wrong=[_top_p_drops_crossing, _top_p_unsorted, _top_p_sorted_out, _top_p_threshold]),
    Case(ex.causal_lm_loss, solution=_loss, takes_function=True,
         right=[_loss_manual, _loss_transpose],
         wrong=[_loss_no_shift, _loss_wrong_shift, _loss_sum, _loss_nll_of_logits,
                _loss_no_return]),
    Case(ex.kv_cache_bytes, solution=KV,
         right=[2**31, float(2**31), torch.tensor(2**31), np.int64(2**31)],
         wrong=[KV // 2, KV * 2, KV // 32, 2 * 32 * 4096 * 4096 * 4, 2.1e9, 2**30]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_filter_references_agree_with_generate():
    """Sampling from the filtered logits is what dlbook.gpt.sample does with top_k / top_p."""
    g = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(2, 12, generator=g, dtype=torch.float64)
    for kw, filtered in ((dict(top_k=3), ex._reference_top_k(logits, 3)),  # noqa: SLF001
                         (dict(top_p=0.6), ex._reference_top_p(logits, 0.6))):  # noqa: SLF001
        a = sample(logits, generator=torch.Generator().manual_seed(1), **kw)
        b = torch.multinomial(filtered.softmax(-1), 1,
                              generator=torch.Generator().manual_seed(1))
        assert torch.equal(a, b)


def test_the_parameter_reference_is_the_model():
    for L, d, V, T in ((1, 8, 10, 4), (3, 16, 1, 1), (2, 64, 65, 32)):
        assert ex._reference_gpt2_parameters(L, d, V, T) == _params_built(L, d, V, T)  # noqa: SLF001
