"""Finding duplicated and leaked text: exact hashing, MinHash, LSH banding, n-gram overlap.

Section 7.4 builds each piece from scratch:

* exact duplicates: hash a normalised copy of each document (lower case, words only);
* near duplicates: the Jaccard similarity of two documents' sets of word k-shingles, estimated
  by MinHash (the fraction of equal minimum hashes under random hash functions, Broder 1997),
  with candidate pairs found by LSH banding instead of comparing every pair;
* contamination: the fraction of a test item's word n-grams that also occur in the training
  data (GPT-3's analysis used 13-grams), and a memorising n-gram model to show why it matters.

Everything is deterministic on every machine: shingles are hashed with ``hashlib`` (not
Python's ``hash``, which is salted per process) and the hash functions come from a seeded
NumPy generator.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["PRIME", "normalize", "words", "exact_duplicates", "shingles", "shingle_hash",
           "minhash_signature", "signature_jaccard", "jaccard", "lsh_probability",
           "candidate_pairs", "near_duplicates", "edit_words", "ngrams", "ngram_overlap",
           "NGramLookup"]

#: The Mersenne prime 2³¹ − 1: the universal hashes h(x) = (a·x + b) mod PRIME stay below
#: 2⁶² before the modulo, so they never overflow 64-bit integers.
PRIME = (1 << 31) - 1

_WORD = re.compile(r"[a-z0-9']+")


def _text(name: str, text: str) -> None:
    if not isinstance(text, str):
        raise ValueError(f"{name} must be a string, got {type(text).__name__}")


def words(text: str) -> list[str]:
    """Lower-case words (letters, digits, apostrophes) of ``text``; punctuation dropped."""
    _text("text", text)
    return _WORD.findall(text.lower())


def normalize(text: str) -> str:
    """The words of ``text`` joined by single spaces: copies that differ only in case,
    punctuation or white space normalise to the same string."""
    return " ".join(words(text))


def _digest(s: str, nbytes: int = 8) -> int:
    return int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=nbytes).digest(),
                          "little")


def exact_duplicates(docs: Sequence[str]) -> dict[int, int]:
    """``{j: i}`` for every document j whose normalised text equals that of an earlier
    document i (the first copy is kept, the others map to it)."""
    first: dict[int, int] = {}
    dupes: dict[int, int] = {}
    for j, doc in enumerate(docs):
        key = _digest(normalize(doc), 16)
        if key in first:
            dupes[j] = first[key]
        else:
            first[key] = j
    return dupes


def shingles(text: str, k: int = 5) -> set[str]:
    """The set of k-word shingles (runs of k consecutive normalised words) of ``text``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, e.g. 5, got {k!r}")
    w = words(text)
    return {" ".join(w[i:i + k]) for i in range(len(w) - k + 1)}


def shingle_hash(shingle: str) -> int:
    """A 32-bit hash of one shingle, reduced modulo :data:`PRIME`; the same on every machine."""
    return _digest(shingle, 4) % PRIME


def _hash_params(n_hashes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, PRIME, size=n_hashes, dtype=np.int64)
    b = rng.integers(0, PRIME, size=n_hashes, dtype=np.int64)
    return a, b


def minhash_signature(shingle_set: Iterable[str], n_hashes: int = 128, seed: int = 0
                      ) -> np.ndarray:
    """MinHash signature: for each of ``n_hashes`` hash functions h_i(x) = (a_i·x + b_i) mod
    PRIME (a_i, b_i drawn from ``seed``), the minimum of h_i over the shingles' hashes x.
    Two sets' signatures agree in position i with probability equal to their Jaccard
    similarity. Returns an int64 array of length ``n_hashes``."""
    if isinstance(n_hashes, bool) or not isinstance(n_hashes, int) or n_hashes < 1:
        raise ValueError(f"n_hashes must be a positive integer, e.g. 128, got {n_hashes!r}")
    items = [shingle_set] if isinstance(shingle_set, str) else list(shingle_set)
    if not items:
        raise ValueError("the shingle set is empty: the text has fewer words than k; use a "
                         "smaller k or drop the document")
    x = np.array(sorted({shingle_hash(s) for s in items}), dtype=np.int64)
    a, b = _hash_params(n_hashes, seed)
    return ((a[:, None] * x[None, :] + b[:, None]) % PRIME).min(axis=1)


def signature_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The MinHash estimate of Jaccard similarity: the fraction of positions that agree."""
    sig_a, sig_b = np.asarray(sig_a), np.asarray(sig_b)
    if sig_a.shape != sig_b.shape or sig_a.ndim != 1:
        raise ValueError(f"expected two signatures of the same length, got shapes "
                         f"{sig_a.shape} and {sig_b.shape}")
    return float((sig_a == sig_b).mean())


def jaccard(a: set, b: set) -> float:
    """|A ∩ B| / |A ∪ B| (1.0 for two empty sets)."""
    a, b = set(a), set(b)
    union = len(a | b)
    return 1.0 if union == 0 else len(a & b) / union


def lsh_probability(s: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    """Probability that two documents of Jaccard similarity ``s`` share at least one band of
    ``rows`` signature positions out of ``bands``: 1 − (1 − s^rows)^bands, the S-curve."""
    for name, v in (("bands", bands), ("rows", rows)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return 1.0 - (1.0 - np.asarray(s, dtype=np.float64) ** rows) ** bands


def candidate_pairs(signatures: Sequence[np.ndarray] | np.ndarray, bands: int, rows: int
                    ) -> set[tuple[int, int]]:
    """Pairs (i, j), i < j, whose signatures are identical in at least one band: cut each
    signature into ``bands`` bands of ``rows`` positions, put documents into buckets by each
    band's values, and pair up the documents that share a bucket."""
    sig = np.asarray(signatures)
    if sig.ndim != 2:
        raise ValueError(f"expected signatures of shape (n_docs, n_hashes), got {sig.shape}")
    lsh_probability(0.5, bands, rows)   # validates bands and rows
    if bands * rows > sig.shape[1]:
        raise ValueError(f"bands × rows = {bands * rows} is more than the {sig.shape[1]} "
                         "positions of a signature; use fewer bands or rows")
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets: dict[bytes, list[int]] = defaultdict(list)
        block = sig[:, band * rows:(band + 1) * rows]
        for i, row in enumerate(block):
            buckets[row.tobytes()].append(i)
        for members in buckets.values():
            pairs.update((members[p], members[q]) for p in range(len(members))
                         for q in range(p + 1, len(members)))
    return pairs


def near_duplicates(docs: Sequence[str], *, k: int = 5, n_hashes: int = 128, bands: int = 32,
                    rows: int = 4, threshold: float = 0.5, seed: int = 0
                    ) -> set[tuple[int, int]]:
    """Near-duplicate pairs: LSH candidates whose estimated Jaccard similarity of k-shingles
    is at least ``threshold``. Documents with fewer than k words are skipped."""
    keep = [i for i, d in enumerate(docs) if shingles(d, k)]
    sigs = np.stack([minhash_signature(shingles(docs[i], k), n_hashes, seed) for i in keep])
    found = set()
    for p, q in candidate_pairs(sigs, bands, rows):
        if signature_jaccard(sigs[p], sigs[q]) >= threshold:
            found.add((keep[p], keep[q]))
    return found


def edit_words(text: str, n_edits: int, seed: int = 0, vocabulary: Sequence[str] = ()) -> str:
    """A near-copy of ``text``: ``n_edits`` random word edits (replace, delete or insert a
    word, drawn from ``vocabulary`` or from the text's own words), on normalised words."""
    if isinstance(n_edits, bool) or not isinstance(n_edits, int) or n_edits < 0:
        raise ValueError(f"n_edits must be a whole number ≥ 0, got {n_edits!r}")
    w = words(text)
    if not w:
        raise ValueError("the text has no words to edit")
    pool = list(vocabulary) or list(w)
    rng = np.random.default_rng(seed)
    for _ in range(n_edits):
        op = rng.integers(3) if len(w) > 1 else 0
        i = int(rng.integers(len(w)))
        new = pool[int(rng.integers(len(pool)))]
        if op == 0:
            w[i] = new
        elif op == 1:
            del w[i]
        else:
            w.insert(i, new)
    return " ".join(w)


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """The set of word n-grams of ``text`` (normalised words)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, e.g. 13, got {n!r}")
    w = words(text)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def ngram_overlap(doc: str, train_ngrams: set[tuple[str, ...]], n: int) -> float:
    """Fraction of ``doc``'s word n-grams that occur in ``train_ngrams`` (0 if it has none)."""
    own = ngrams(doc, n)
    return len(own & train_ngrams) / len(own) if own else 0.0


class NGramLookup:
    """A model that only memorises: it predicts the next word as the most frequent word that
    followed the same ``n − 1`` words in its training text (ties broken alphabetically), and
    has no answer for a context it has not seen."""

    def __init__(self, docs: Iterable[str], n: int = 4) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n must be an integer ≥ 2 (context of n − 1 words), got {n!r}")
        self.n = n
        counts: dict[tuple[str, ...], Counter] = defaultdict(Counter)
        for doc in docs:
            w = words(doc)
            for i in range(len(w) - n + 1):
                counts[tuple(w[i:i + n - 1])][w[i + n - 1]] += 1
        self.table = {ctx: min(c, key=lambda word: (-c[word], word)) for ctx, c in counts.items()}

    def accuracy(self, doc: str) -> float:
        """Fraction of ``doc``'s words (after the first n − 1) predicted exactly."""
        w = words(doc)
        targets = range(self.n - 1, len(w))
        if not targets:
            return 0.0
        hits = sum(self.table.get(tuple(w[i - self.n + 1:i])) == w[i] for i in targets)
        return hits / len(targets)
