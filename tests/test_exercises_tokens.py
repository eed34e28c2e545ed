"""The exercise checks of section 4.1 (``dlbook.exercises.tokens``): see exercise_harness."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case

from dlbook.exercises import tokens as ex
from dlbook.tokenizer import BPE

# ---------------------------------------------------------------- pair counts


def _counts(freqs):  # the book's solution
    counts = Counter()
    for ids, n in freqs.items():
        for pair in zip(ids, ids[1:]):
            counts[pair] += n
    return counts


def _counts_dict(freqs):  # right: a plain dict and indices
    out = {}
    for ids, n in freqs.items():
        for i in range(len(ids) - 1):
            out[ids[i], ids[i + 1]] = out.get((ids[i], ids[i + 1]), 0) + n
    return out


def _counts_expand(freqs):  # right: expand the text again (slow but right)
    counts = defaultdict(int)
    for ids, n in freqs.items():
        for _ in range(n):
            for a, b in zip(ids[:-1], ids[1:]):
                counts[a, b] += 1
    return counts


def _counts_once(freqs):  # ignores the frequencies
    return Counter(p for ids in freqs for p in zip(ids, ids[1:]))


def _counts_set(freqs):  # counts a pair once per chunk, not once per occurrence
    counts = Counter()
    for ids, n in freqs.items():
        for pair in set(zip(ids, ids[1:])):
            counts[pair] += n
    return counts


def _counts_off_by_one(freqs):  # misses the last pair of every chunk
    counts = Counter()
    for ids, n in freqs.items():
        for i in range(len(ids) - 2):
            counts[ids[i], ids[i + 1]] += n
    return counts


def _counts_no_overlap(freqs):  # counts "aaa" as one (a, a), as if merging
    counts = Counter()
    for ids, n in freqs.items():
        i = 0
        while i < len(ids) - 1:
            counts[ids[i], ids[i + 1]] += n
            i += 2 if ids[i] == ids[i + 1] else 1
    return counts


def _counts_no_return(freqs):
    counts = _counts(freqs)  # noqa: F841


def _counts_list(freqs):  # returns a list of pairs instead of a mapping
    return [p for ids in freqs for p in zip(ids, ids[1:])]


# ---------------------------------------------------------------- encode by rank


def _encode(ids, merges):  # the book's solution: GPT-2's loop
    ids = ids.tolist()
    ranks = {pair: r for r, pair in enumerate(merges)}
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, len(ranks)))
        if pair not in ranks:
            break
        new, i = [], 0
        while i < len(ids):
            if ids[i:i + 2] == list(pair):
                new.append(merges[pair])
                i += 2
            else:
                new.append(ids[i])
                i += 1
        ids = new
    return ids


def _encode_in_order(ids, merges):  # right: go through the merges once, in rank order
    out = ids.tolist()
    for (a, b), new_id in merges.items():
        i, merged = 0, []
        while i < len(out):
            if i + 1 < len(out) and out[i] == a and out[i + 1] == b:
                merged.append(new_id)
                i += 2
            else:
                merged.append(out[i])
                i += 1
        out = merged
    return torch.tensor(out)


def _encode_first_occurrence(ids, merges):  # right: merge the first best pair, then look again
    ids = ids.tolist()
    rank = {p: r for r, p in enumerate(merges)}
    while True:
        best = min(range(len(ids) - 1), key=lambda i: rank.get((ids[i], ids[i + 1]), 1e9),
                   default=None)
        if best is None or (ids[best], ids[best + 1]) not in rank:
            return np.array(ids)
        ids[best:best + 2] = [merges[ids[best], ids[best + 1]]]


def _encode_reversed(ids, merges):  # applies the merges from the last one
    return _encode_in_order(ids, dict(reversed(list(merges.items()))))


def _encode_most_frequent(ids, merges):  # merges the most frequent known pair of the chunk
    ids = ids.tolist()
    while True:
        counts = Counter(p for p in zip(ids, ids[1:]) if p in merges)
        if not counts:
            return ids
        pair = max(counts, key=counts.get)
        ids = _encode_in_order(torch.tensor(ids), {pair: merges[pair]}).tolist()


def _encode_one_pass(ids, merges):  # one left-to-right scan, merging whatever is known
    ids, out, i = ids.tolist(), [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) in merges:
            out.append(merges[ids[i], ids[i + 1]])
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _encode_longest(ids, merges):  # greedy longest match over the tokens' byte strings
    strings = {i: (i,) for i in range(256)}
    for (a, b), new_id in merges.items():
        strings[new_id] = strings[a] + strings[b]
    by_string = {s: i for i, s in strings.items()}
    ids, out, i = tuple(ids.tolist()), [], 0
    while i < len(ids):
        for j in range(len(ids), i, -1):
            if ids[i:j] in by_string:
                out.append(by_string[ids[i:j]])
                i = j
                break
    return out


# ---------------------------------------------------------------- embedding gradient


def _emb_grad(ids, grad_out, num_embeddings):  # the book's solution
    d = grad_out.shape[-1]
    return torch.zeros(num_embeddings, d, dtype=grad_out.dtype).index_add_(
        0, ids.reshape(-1), grad_out.reshape(-1, d))


def _emb_grad_one_hot(ids, grad_out, num_embeddings):  # right: one-hot transposed times grad
    one_hot = torch.nn.functional.one_hot(ids.reshape(-1), num_embeddings).to(grad_out.dtype)
    return one_hot.T @ grad_out.reshape(-1, grad_out.shape[-1])


def _emb_grad_loop(ids, grad_out, num_embeddings):  # right: a Python loop
    grad = torch.zeros(num_embeddings, grad_out.shape[-1], dtype=grad_out.dtype)
    for i, g in zip(ids.reshape(-1).tolist(), grad_out.reshape(-1, grad_out.shape[-1])):
        grad[i] += g
    return grad


def _emb_grad_assign(ids, grad_out, num_embeddings):  # overwrites repeated rows
    grad = torch.zeros(num_embeddings, grad_out.shape[-1], dtype=grad_out.dtype)
    grad[ids.reshape(-1)] = grad_out.reshape(-1, grad_out.shape[-1])
    return grad


def _emb_grad_mean(ids, grad_out, num_embeddings):  # averages instead of summing
    grad = _emb_grad(ids, grad_out, num_embeddings)
    n = torch.bincount(ids.reshape(-1), minlength=num_embeddings).clamp(min=1)
    return grad / n[:, None]


def _emb_grad_gather(ids, grad_out, num_embeddings):  # returns the gathered gradient
    return grad_out.reshape(-1, grad_out.shape[-1])


def _emb_grad_first_row(ids, grad_out, num_embeddings):  # only the first sequence of the batch
    flat = ids.reshape(-1, ids.shape[-1])[0]
    return _emb_grad(flat, grad_out.reshape(-1, ids.shape[-1], grad_out.shape[-1])[0],
                     num_embeddings)


# ---------------------------------------------------------------- LM batch


def _batch(tokens, starts, context_length):  # the book's solution
    idx = starts[:, None] + torch.arange(context_length + 1)
    window = tokens[idx]
    return window[:, :-1], window[:, 1:]


def _batch_slices(tokens, starts, context_length):  # right: stacked slices, a list
    xs = [tokens[s:s + context_length] for s in starts.tolist()]
    ys = [tokens[s + 1:s + 1 + context_length] for s in starts.tolist()]
    return [torch.stack(xs), torch.stack(ys)]


def _batch_numpy(tokens, starts, context_length):  # right: NumPy arrays
    t, s = tokens.numpy(), starts.numpy()
    x = np.stack([t[i:i + context_length] for i in s])
    y = np.stack([t[i + 1:i + context_length + 1] for i in s])
    return x, y


def _batch_no_shift(tokens, starts, context_length):
    x = torch.stack([tokens[s:s + context_length] for s in starts])
    return x, x.clone()


def _batch_backwards(tokens, starts, context_length):  # targets are the previous tokens
    x = torch.stack([tokens[s + 1:s + 1 + context_length] for s in starts])
    y = torch.stack([tokens[s:s + context_length] for s in starts])
    return x, y


def _batch_short(tokens, starts, context_length):  # a window of T tokens split into T-1 and T-1
    w = torch.stack([tokens[s:s + context_length] for s in starts])
    return w[:, :-1], w[:, 1:]


def _batch_shift_two(tokens, starts, context_length):
    x = torch.stack([tokens[s:s + context_length] for s in starts])
    y = torch.stack([tokens[s + 2:s + 2 + context_length] for s in starts])
    return x, y


def _batch_one(tokens, starts, context_length):  # returns only x
    return torch.stack([tokens[s:s + context_length] for s in starts])


CASES = [
    Case(ex.pair_counts, solution=_counts, takes_function=True,
         right=[_counts_dict, _counts_expand],
         wrong=[_counts_once, _counts_set, _counts_off_by_one, _counts_no_overlap,
                _counts_no_return, _counts_list]),
    Case(ex.byte_tokens, solution=len(ex.BYTES_TEXT.encode("utf-8")),
         right=[31.0, torch.tensor(31), np.int64(31), len(BPE().encode(ex.BYTES_TEXT))],
         wrong=[len(ex.BYTES_TEXT), len(ex.BYTES_TEXT.encode("utf-16-le")) // 2,
                len(ex.BYTES_TEXT.encode("utf-32-le")), 30, 35]),
    Case(ex.encode_by_rank, solution=_encode, takes_function=True,
         right=[_encode_in_order, _encode_first_occurrence],
         wrong=[_encode_reversed, _encode_most_frequent, _encode_one_pass, _encode_longest]),
    Case(ex.embedding_grad, solution=_emb_grad, takes_function=True,
         right=[_emb_grad_one_hot, _emb_grad_loop],
         wrong=[_emb_grad_assign, _emb_grad_mean, _emb_grad_gather, _emb_grad_first_row]),
    Case(ex.lm_batch, solution=_batch, takes_function=True,
         right=[_batch_slices, _batch_numpy],
         wrong=[_batch_no_shift, _batch_backwards, _batch_short, _batch_shift_two, _batch_one]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_bytes_text_mixes_widths():
    widths = {len(c.encode("utf-8")) for c in ex.BYTES_TEXT}
    assert widths == {1, 3, 4}
    assert len(ex.BYTES_TEXT.encode("utf-8")) == 31


def test_the_reference_encoding_is_the_library_loop():
    """On every case, the reference equals GPT-2's min-rank loop."""
    for ids, merges in ex._encode_cases():  # noqa: SLF001
        assert ex._reference_encode(ids, merges).tolist() == list(_encode(ids, merges))  # noqa: SLF001


def test_the_batch_reference_is_dlbook_lm_get_batch():
    from dlbook.lm import get_batch

    tokens = torch.arange(50)
    g = torch.Generator().manual_seed(0)
    x, y = get_batch(tokens, 4, 6, generator=g)
    xr, yr = ex._reference_batch(tokens, x[:, 0], 6)  # noqa: SLF001
    assert torch.equal(x, xr) and torch.equal(y, yr)
