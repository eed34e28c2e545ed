"""Checks for the exercises of section 4.1, From text to tokens.

Counts and token ids must be exact (they are whole numbers); the embedding gradient is
compared in float64 within a relative error of 1e-9. The test inputs are chosen so that the
usual mistakes (a pair counted once per chunk, a repeated id whose gradient is overwritten
instead of added, merges applied in the wrong order, targets not shifted) change the result.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from dlbook import check
from dlbook.tokenizer import merge_pair

F64 = torch.float64


# ----------------------------------------------------------------------------- pair counts

def _reference_pair_counts(freqs: dict[tuple[int, ...], int]) -> Counter:
    counts: Counter = Counter()
    for ids, n in freqs.items():
        for pair in zip(ids, ids[1:]):
            counts[pair] += n
    return counts


def _pair_count_cases() -> list[dict[tuple[int, ...], int]]:
    """Chunks as id tuples with their frequencies: repeated pairs inside a chunk ("aaa",
    "abab"), chunks of one id, frequencies above 1, and ids above 255."""
    return [
        {(104, 117, 103): 10, (112, 117, 103): 5, (112, 117, 110): 12, (98, 117, 110): 4,
         (104, 117, 103, 115): 5},
        {(97, 97, 97): 3, (97, 98, 97, 98): 2, (7,): 9},
        {(256, 101, 256, 101, 256): 1, (300, 256): 7, (101,): 2},
        {(1, 2, 3, 1, 2, 3, 1): 4, (2, 3): 1},
    ]


def _pair_count_problem(fn: Any) -> str | None:
    if not callable(fn):
        return f"expected a function, got {type(fn).__name__}."
    for freqs in _pair_count_cases():
        got = fn(dict(freqs))
        if got is None:
            return "returned None: did you forget the `return` statement?"
        try:
            got = {tuple(int(i) for i in k): int(v) for k, v in dict(got).items() if v != 0}
        except (TypeError, ValueError):
            return ("should return a dict (or Counter) from pairs (a, b) to counts, got "
                    f"{type(got).__name__}.")
        want = dict(_reference_pair_counts(freqs))
        if got != want:
            wrong = sorted(set(got) ^ set(want) | {p for p in want if got.get(p) != want[p]})
            p = wrong[0]
            return (f"for the chunks {_short(freqs)} the pair {p} should be counted "
                    f"{want.get(p, 0)} times, got {got.get(p, 0)}.")
    return None


def pair_counts(fn: Any) -> check.Result:
    """``fn(freqs) -> counts``: from distinct chunks (tuples of ids) with their frequencies to
    the number of times each adjacent pair occurs in the whole text, exactly."""
    return check.condition(fn, _pair_count_problem, name="pair counts over distinct chunks",
                           hint="Every adjacent pair (ids[i], ids[i+1]) of a chunk, overlapping "
                                "ones included, occurs once per copy of the chunk: add the "
                                "chunk's frequency, not 1, and count it again each time it "
                                "repeats inside the chunk.")


# ----------------------------------------------------------------------------- UTF-8 bytes

BYTES_TEXT = "Ahab’s whale — 白鲸 🐋!"


def byte_tokens(answer: Any) -> check.Result:
    """How many tokens a byte-level tokenizer with no merges gives for ``BYTES_TEXT``, exactly."""
    return check.number(answer, len(BYTES_TEXT.encode("utf-8")),
                        name="tokens of a bytes-only tokenizer", rtol=0, atol=0,
                        hint="With no merges every token is one byte of the UTF-8 encoding. "
                             "ASCII characters take 1 byte, ’ and — take 3, each Chinese "
                             "character 3, and the emoji 4.")


# ----------------------------------------------------------------------------- encode by rank

def _reference_encode(ids: torch.Tensor, merges: dict[tuple[int, int], int]) -> torch.Tensor:
    out = [int(i) for i in ids]
    for pair, new_id in merges.items():          # in rank order
        out = merge_pair(out, pair, new_id)
    return torch.tensor(out)


def _encode_cases() -> list[tuple[torch.Tensor, dict[tuple[int, int], int]]]:
    """(ids, merges) pairs in which the rank order matters: applying the merges in another order,
    or the most frequent pair first, or by longest match, gives other ids."""
    a, b, c, d = 97, 98, 99, 100
    m1 = {(a, b): 256, (b, c): 257, (256, c): 258, (c, c): 259}
    m2 = {(b, b): 256, (a, b): 257, (257, 256): 258, (a, a): 259}
    m3 = {(c, d): 256, (a, b): 257, (257, 256): 258, (b, c): 259, (a, 259): 260}
    return [
        (torch.tensor([a, b, c, a, b, c, c]), m1),
        (torch.tensor([a, b, c]), m1),
        (torch.tensor([b, c, b, c, b, c, a, b, d]), m1),
        (torch.tensor([a, b, b, b, a, a, a, a, b]), m2),
        (torch.tensor([a, b, b, a, b, b, b]), m2),
        (torch.tensor([a, b, c, d, a, b, c, a, b, c, d, b, c]), m3),
        (torch.tensor([a]), m3),
        (torch.tensor([d, d, d]), m3),
    ]


def encode_by_rank(fn: Any) -> check.Result:
    """``fn(ids, merges) -> ids``: one chunk's byte ids (a 1-d tensor) encoded with ``merges``,
    a dict ``{(a, b): new_id}`` in rank order, as GPT-2 does; compared exactly."""
    return check.function(fn, _reference_encode, _encode_cases(), name="encoding by rank",
                          rtol=0, atol=0,
                          hint="Repeat: among the pairs present in the sequence, find the one "
                               "with the lowest rank (earliest in merges) and merge all its "
                               "occurrences, left to right; stop when no pair present is in "
                               "merges. (Going through merges once, in order, gives the same.)")


# ----------------------------------------------------------------------------- embedding grad

def _reference_embedding_grad(ids: torch.Tensor, grad_out: torch.Tensor,
                              num_embeddings: int) -> torch.Tensor:
    weight = torch.zeros(num_embeddings, grad_out.shape[-1], dtype=F64, requires_grad=True)
    out = torch.nn.functional.embedding(ids, weight)
    out.backward(grad_out.to(F64))
    return weight.grad


def _embedding_cases() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """(ids, grad_out, V): a batch (B, T) with repeated ids, a 1-d sequence, ids that never
    occur, and V > the number of ids, in float64."""
    g = torch.Generator().manual_seed(41)
    cases = []
    for shape, V, d in (((2, 5), 7, 3), ((9,), 4, 2), ((3, 4), 10, 5), ((1, 1), 3, 4)):
        ids = torch.randint(V, shape, generator=g)
        ids.view(-1)[0] = ids.view(-1)[-1]        # at least one repeat where possible
        grad_out = torch.randn(*shape, d, generator=g, dtype=F64)
        cases.append((ids, grad_out, V))
    return cases


def embedding_grad(fn: Any) -> check.Result:
    """``fn(ids, grad_out, num_embeddings) -> grad_W``: the gradient of an embedding table
    (V, d) from the gradient of its output (*ids.shape, d), in float64 within 1e-9."""
    return check.function(fn, _reference_embedding_grad, _embedding_cases(),
                          name="the backward pass of an embedding", rtol=1e-9, atol=1e-12,
                          hint="Row i of the gradient is the sum of grad_out over every "
                               "position where ids == i, repeats included: flatten ids to (N,) "
                               "and grad_out to (N, d), then index_add_ into zeros (V, d). "
                               "grad_W[ids] = grad_out keeps only one of the repeats.")


# ----------------------------------------------------------------------------- LM batch

def _windows_cases() -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    tokens = torch.tensor([5, 3, 8, 1, 9, 2, 7, 4, 6, 0, 11, 10])
    return [(tokens, torch.tensor([0, 4, 7]), 4), (tokens, torch.tensor([2]), 9),
            (tokens, torch.tensor([10, 0]), 1), (torch.arange(100, 120), torch.tensor([3, 3, 12]), 7)]


def _reference_batch(tokens: torch.Tensor, starts: torch.Tensor,
                     context_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    offsets = torch.arange(context_length)
    return tokens[starts[:, None] + offsets], tokens[starts[:, None] + offsets + 1]


def _batch_problem(fn: Any) -> str | None:
    if not callable(fn):
        return f"expected a function, got {type(fn).__name__}."
    for tokens, starts, T in _windows_cases():
        got = fn(tokens.clone(), starts.clone(), T)
        if got is None:
            return "returned None: did you forget the `return` statement?"
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            return "should return two tensors, the inputs x and the targets y."
        want = _reference_batch(tokens, starts, T)
        for label, g, w in zip(("x", "y"), got, want):
            g = torch.as_tensor(g)
            if tuple(g.shape) != tuple(w.shape):
                return (f"{label} has shape {tuple(g.shape)} for {len(starts)} windows of "
                        f"{T} tokens; expected {tuple(w.shape)}.")
            if not torch.equal(g.long(), w):
                return (f"{label} is wrong for tokens {tokens.tolist()[:8]}..., starts "
                        f"{starts.tolist()}, context_length {T}.")
    return None


def lm_batch(fn: Any) -> check.Result:
    """``fn(tokens, starts, context_length) -> (x, y)``: the windows of a language-modelling
    batch, x[b] = tokens[s : s + T] and y[b] = tokens[s + 1 : s + T + 1], exactly."""
    return check.condition(fn, _batch_problem, name="inputs and shifted targets",
                           hint="Each window needs T + 1 tokens from its start s: the first T "
                                "are the inputs, the last T (shifted one to the left) the "
                                "targets, so y[b, t] is the token that follows x[b, t].")


def _short(freqs: dict) -> str:
    text = ", ".join(f"{k}: {v}" for k, v in freqs.items())
    return "{" + (text if len(text) <= 50 else text[:47] + "...") + "}"
