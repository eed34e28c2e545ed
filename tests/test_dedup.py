"""dlbook.dedup against brute-force references on random corpora: exact duplicates, MinHash
estimates of Jaccard similarity, LSH banding, n-gram overlap and the memorising model."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest

from dlbook import dedup

VOCAB = [f"w{i}" for i in range(60)]


def _random_doc(rng, n):
    return " ".join(rng.choice(VOCAB, size=n))


def test_normalize_and_exact_duplicates():
    docs = ["Call me Ishmael.", "call  me ISHMAEL", "Call me, Ishmael!", "Call me Ahab.",
            "call me ahab", "Some years ago"]
    assert dedup.normalize(docs[0]) == "call me ishmael"
    assert dedup.exact_duplicates(docs) == {1: 0, 2: 0, 4: 3}


@pytest.mark.parametrize("seed", range(4))
def test_exact_duplicates_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    base = [_random_doc(rng, 8) for _ in range(15)]
    docs = [base[i].upper() if rng.random() < 0.5 else base[i] for i in rng.integers(0, 15, 40)]
    want = {}
    for j in range(len(docs)):
        for i in range(j):
            if dedup.normalize(docs[i]) == dedup.normalize(docs[j]):
                want[j] = i
                break
    assert dedup.exact_duplicates(docs) == want


def test_shingles():
    assert dedup.shingles("a b c d", 2) == {"a b", "b c", "c d"}
    assert dedup.shingles("a b", 3) == set()
    with pytest.raises(ValueError):
        dedup.shingles("a b", 0)


@pytest.mark.parametrize("seed", range(5))
def test_minhash_estimates_jaccard(seed):
    rng = np.random.default_rng(seed)
    n = 256
    universe = [f"s{i}" for i in range(400)]
    for _ in range(4):
        a = set(rng.choice(universe, size=int(rng.integers(20, 200)), replace=False))
        b = set(rng.choice(universe, size=int(rng.integers(20, 200)), replace=False))
        b |= set(list(a)[: len(a) // 2])
        exact = dedup.jaccard(a, b)
        est = dedup.signature_jaccard(dedup.minhash_signature(a, n, seed),
                                      dedup.minhash_signature(b, n, seed))
        assert abs(est - exact) < 4.5 / np.sqrt(n)   # 4.5 standard errors at most


def test_minhash_properties():
    a = {"x y", "y z", "z w"}
    s = dedup.minhash_signature(a, 64, 3)
    assert s.dtype == np.int64 and s.shape == (64,) and (s >= 0).all() and (s < dedup.PRIME).all()
    np.testing.assert_array_equal(s, dedup.minhash_signature(sorted(a, reverse=True), 64, 3))
    assert dedup.signature_jaccard(s, s) == 1.0
    assert not np.array_equal(s, dedup.minhash_signature(a, 64, 4))
    with pytest.raises(ValueError):
        dedup.minhash_signature(set(), 64)
    with pytest.raises(ValueError):
        dedup.signature_jaccard(s, s[:10])


def test_minhash_is_the_same_in_every_process():
    code = ("from dlbook import dedup; "
            "print(dedup.minhash_signature({'call me', 'me ishmael'}, 4, 0).tolist())")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**os.environ, "PYTHONHASHSEED": str(h)}, check=True).stdout
            for h in (1, 2)}
    here = str(dedup.minhash_signature({"call me", "me ishmael"}, 4, 0).tolist()) + "\n"
    assert outs == {here}


@pytest.mark.parametrize("seed", range(4))
def test_candidate_pairs_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    bands, rows = int(rng.integers(1, 6)), int(rng.integers(1, 4))
    sig = rng.integers(0, 3, size=(25, bands * rows + int(rng.integers(0, 3))))
    want = {(i, j) for i, j in itertools.combinations(range(25), 2)
            if any((sig[i, b * rows:(b + 1) * rows] == sig[j, b * rows:(b + 1) * rows]).all()
                   for b in range(bands))}
    assert dedup.candidate_pairs(sig, bands, rows) == want
    with pytest.raises(ValueError):
        dedup.candidate_pairs(sig, bands + 10, rows + 5)


def test_lsh_probability_matches_simulation():
    rng = np.random.default_rng(0)
    for s, b, r in ((0.3, 20, 5), (0.6, 10, 4), (0.8, 4, 8)):
        agree = rng.random((20000, b, r)) < s
        sim = agree.all(axis=2).any(axis=1).mean()
        assert abs(sim - dedup.lsh_probability(s, b, r)) < 0.015


def test_near_duplicates_finds_edited_copies():
    rng = np.random.default_rng(1)
    docs = [_random_doc(rng, 60) for _ in range(30)]
    docs += [dedup.edit_words(docs[i], 3, seed=i) for i in range(5)]
    found = dedup.near_duplicates(docs, k=3, n_hashes=128, bands=32, rows=4, threshold=0.5)
    assert {(i, 30 + i) for i in range(5)} <= found
    assert all(dedup.jaccard(dedup.shingles(docs[i], 3), dedup.shingles(docs[j], 3)) > 0.3
               for i, j in found)


def test_edit_words():
    assert dedup.edit_words("One two three", 0) == "one two three"
    out = dedup.edit_words("a b c d e f g h", 3, seed=2)
    assert out != "a b c d e f g h"
    assert dedup.edit_words("a b c d e f g h", 3, seed=2) == out
    with pytest.raises(ValueError):
        dedup.edit_words("", 1)


@pytest.mark.parametrize("seed", range(3))
def test_ngram_overlap_and_lookup(seed):
    rng = np.random.default_rng(seed)
    train = [_random_doc(rng, 50) for _ in range(5)]
    grams = set().union(*(dedup.ngrams(d, 4) for d in train))
    assert dedup.ngram_overlap(train[2], grams, 4) == 1.0
    fresh = _random_doc(rng, 50)
    w = dedup.words(fresh)
    want = np.mean([tuple(w[i:i + 4]) in grams for i in range(len(w) - 3)])
    assert dedup.ngram_overlap(fresh, grams, 4) == pytest.approx(want)
    model = dedup.NGramLookup(train, n=3)
    assert model.accuracy(train[0]) > 0.9
    assert model.accuracy(fresh) < 0.3


def test_lookup_ties_and_errors():
    model = dedup.NGramLookup(["a b c", "a b d", "a b d"], n=3)
    assert model.table[("a", "b")] == "d"
    assert model.accuracy("a b") == 0.0
    with pytest.raises(ValueError):
        dedup.NGramLookup([], n=1)
