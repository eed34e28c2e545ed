"""Byte-level byte-pair encoding (BPE), the tokenizer of GPT-2 and most later language models.

A text is turned into UTF-8 bytes, so every string can be encoded and nothing is ever unknown.
Training starts from the 256 single bytes and repeatedly *merges* the most frequent adjacent
pair of tokens into a new token (Gage 1994; Sennrich et al. 2016), recording the merges in
order. Before counting, a regular expression splits the text into chunks (words, numbers,
punctuation, whitespace; GPT-2's pattern below), and merges never cross a chunk boundary.
Encoding a new text splits it the same way and applies the learned merges by rank, lowest rank
first, exactly as GPT-2's ``encoder.py`` does.

Layout of a trained vocabulary: ids 0..255 are the bytes, then one id per new token in the
order the merges made it, then the special tokens. (Two merges can make the same byte string,
e.g. ``ab + c`` and ``a + bc``; the second then reuses the first one's id, as GPT-2's file
format and Hugging Face's trainer require, so ``len(merges)`` can exceed ``vocab_size - 256``.)

The files are GPT-2's: ``vocab.json`` (token string in GPT-2's byte-to-character alphabet ->
id) and ``merges.txt``, so the same merges load into Hugging Face ``tokenizers`` or
``transformers.GPT2Tokenizer``, and GPT-2's own files load here (:meth:`BPE.from_files`).
"""

from __future__ import annotations

import heapq
import json
import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import regex

#: GPT-2's pre-tokenisation pattern, exactly as in its ``encoder.py``: contractions, then runs
#: of letters, of digits, of other symbols (each with at most one leading space), then
#: whitespace. A chunk never mixes letters, digits and punctuation, so no merge does either.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

Pair = tuple[int, int]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to 256 printable characters.

    Printable Latin-1 bytes map to themselves; the others (control characters, space, ...) to
    the characters from U+0100 on, so a space becomes ``Ġ`` and a newline ``Ċ``. Token strings in
    ``vocab.json`` and ``merges.txt`` are written in this alphabet, so they contain no spaces.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def token_string(data: bytes) -> str:
    """A token's bytes in GPT-2's alphabet, as written in ``vocab.json``: ``b" the"`` -> ``"Ġthe"``."""
    return "".join(_BYTE_TO_CHAR[b] for b in data)


def string_bytes(token: str) -> bytes:
    """The inverse of :func:`token_string`."""
    try:
        return bytes(_CHAR_TO_BYTE[c] for c in token)
    except KeyError as exc:
        raise ValueError(f"{token!r} is not written in GPT-2's byte alphabet (character "
                         f"{exc.args[0]!r}); is this a byte-level BPE vocabulary?") from None


def count_pairs(ids: Sequence[int], counts: Counter | None = None, weight: int = 1) -> Counter:
    """Add ``weight`` to ``counts[(a, b)]`` for every adjacent pair in ``ids``; return counts."""
    counts = Counter() if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] += weight
    return counts


def merge_pair(ids: Sequence[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids``, left to right, by ``new_id``."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPE:
    """A byte-level BPE tokenizer: ``BPE().train(text, 1000)``, then ``encode`` and ``decode``.

    ``pattern`` is the pre-tokenisation regex (``regex`` syntax); ``None`` treats each stretch
    of text between special tokens as one chunk (fine for a small text; merges then cross
    spaces).
    """

    def __init__(self, pattern: str | None = GPT2_PATTERN) -> None:
        if pattern is not None and not isinstance(pattern, str):
            raise ValueError(f"pattern must be a regex string or None, got {type(pattern).__name__}")
        self.pattern = pattern
        self._split = regex.compile(pattern) if pattern is not None else None
        self._set_vocabulary({b: bytes([b]) for b in range(256)}, [], {})

    # ------------------------------------------------------------------ state
    def _set_vocabulary(self, id_to_bytes: dict[int, bytes], merges: list[tuple[bytes, bytes]],
                        special: dict[str, int]) -> None:
        """Install a vocabulary: token bytes by id, merges as byte pairs (rank = position)."""
        self._bytes = dict(id_to_bytes)
        self._id = {data: i for i, data in id_to_bytes.items()}
        if len(self._id) != len(self._bytes):
            raise ValueError("two ids have the same token bytes: a byte-level BPE vocabulary "
                             "maps every token string to exactly one id")
        missing = [b for b in range(256) if bytes([b]) not in self._id]
        if missing:
            raise ValueError(f"the vocabulary lacks {len(missing)} of the 256 single bytes (e.g. "
                             f"byte {missing[0]}); a byte-level BPE needs all of them")
        self._merge_bytes = list(merges)
        self._ranks: dict[Pair, int] = {}
        for rank, (a, b) in enumerate(merges):
            for part in (a, b, a + b):
                if part not in self._id:
                    raise ValueError(f"merge {rank} ({a!r}, {b!r}) uses or makes {part!r}, "
                                     "which is not in the vocabulary")
            self._ranks.setdefault((self._id[a], self._id[b]), rank)
        self.special_tokens = dict(special)
        clash = set(special.values()) & set(self._bytes)
        if clash:
            raise ValueError(f"special token id {min(clash)} is also an ordinary token's id")
        self._special_ids = {i: s for s, i in special.items()}
        # Longest first, so that "<|end|>" never hides "<|endoftext|>".
        names = sorted(special, key=len, reverse=True)
        self._special_split = (regex.compile("(" + "|".join(regex.escape(s) for s in names) + ")")
                               if names else None)
        self._byte_ids = [self._id[bytes([b])] for b in range(256)]
        self._cache: dict[str, list[int]] = {}

    @property
    def merges(self) -> list[Pair]:
        """The merges in rank order, as pairs of token ids: ``merges[r] = (a, b)``."""
        return [(self._id[a], self._id[b]) for a, b in self._merge_bytes]

    @property
    def vocab_size(self) -> int:
        """One more than the largest id: the number of rows an embedding table needs."""
        return max([*self._bytes, *self._special_ids]) + 1

    def __len__(self) -> int:
        """The number of tokens (bytes, merged tokens and special tokens)."""
        return len(self._bytes) + len(self._special_ids)

    def __repr__(self) -> str:
        return (f"BPE(vocab_size={self.vocab_size}, merges={len(self._merge_bytes)}, "
                f"special_tokens={list(self.special_tokens)})")

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes that token ``token_id`` stands for (a special token: its UTF-8 text)."""
        if token_id in self._bytes:
            return self._bytes[token_id]
        if token_id in self._special_ids:
            return self._special_ids[token_id].encode("utf-8")
        raise ValueError(f"no token has id {token_id!r}; ids run from 0 to {self.vocab_size - 1}")

    def merged_id(self, pair: Pair) -> int | None:
        """The id of the token that merging ``pair`` makes, or None if no merge joins them."""
        if tuple(pair) not in self._ranks:
            return None
        return self._id[self._bytes[pair[0]] + self._bytes[pair[1]]]

    # ------------------------------------------------------------------ training
    def chunks(self, text: str) -> list[str]:
        """The pre-tokenised pieces of ``text`` (special tokens are not treated specially)."""
        if self._split is None:
            return [text] if text else []
        return self._split.findall(text)

    def train(self, text: str, vocab_size: int, special_tokens: Iterable[str] = ()) -> BPE:
        """Learn merges from ``text`` until the vocabulary has ``vocab_size`` tokens; returns self.

        Each distinct chunk is stored once with its frequency. The pair counts are kept up to
        date per merge: only the chunks that contain the merged pair are re-counted, so a merge
        costs time in proportion to where its pair occurs, not to the whole text. Ties between
        equally frequent pairs go to the smallest pair of ids, ``(a, b)`` compared as a tuple.
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        specials = _check_specials(special_tokens)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
            raise ValueError(f"vocab_size must be a whole number, got {vocab_size!r}")
        if vocab_size < 256 + len(specials):
            raise ValueError(f"vocab_size must be at least 256 + {len(specials)} (the bytes and "
                             f"the special tokens), got {vocab_size}")
        # Special tokens in the training text are not learned from: split them out.
        pieces = [text]
        if specials:
            splitter = regex.compile("|".join(regex.escape(s) for s in
                                              sorted(specials, key=len, reverse=True)))
            pieces = splitter.split(text)
        freq = Counter(c for piece in pieces for c in self.chunks(piece))
        words = [list(chunk.encode("utf-8")) for chunk in freq]   # distinct chunks as ids
        weights = list(freq.values())

        id_to_bytes = {b: bytes([b]) for b in range(256)}
        bytes_to_id = {data: i for i, data in id_to_bytes.items()}
        merges: list[tuple[bytes, bytes]] = []
        merged: set[Pair] = set()
        counts: Counter = Counter()                    # pair -> occurrences in the text
        where: dict[Pair, set[int]] = {}               # pair -> the chunks that contain it
        for w, (ids, weight) in enumerate(zip(words, weights)):
            count_pairs(ids, counts, weight)
            for pair in zip(ids, ids[1:]):
                where.setdefault(pair, set()).add(w)
        heap = [(-n, pair) for pair, n in counts.items()]   # the most frequent pair on top
        heapq.heapify(heap)

        n_tokens = 256 + len(specials)
        while n_tokens < vocab_size:
            while heap and counts.get(heap[0][1], 0) != -heap[0][0]:
                heapq.heappop(heap)                    # an outdated count: skip it
            if not heap:
                raise ValueError(f"the text has no pair left to merge after {len(merges)} merges "
                                 f"({n_tokens} tokens): give more text or a vocab_size of at "
                                 f"most {n_tokens}")
            _, pair = heapq.heappop(heap)
            data = id_to_bytes[pair[0]] + id_to_bytes[pair[1]]
            new_id = bytes_to_id.get(data)
            if new_id is None:                         # a new token (almost always)
                new_id = len(id_to_bytes)
                id_to_bytes[new_id], bytes_to_id[data] = data, new_id
                n_tokens += 1
            if pair not in merged:                     # (a reused id can bring a pair back)
                merged.add(pair)
                merges.append((id_to_bytes[pair[0]], id_to_bytes[pair[1]]))
            changed: set[Pair] = set()
            for w in where.pop(pair):
                old = words[w]
                new = merge_pair(old, pair, new_id)
                if len(new) == len(old):
                    continue                           # a stale entry: the pair left this chunk
                delta = count_pairs(new, weight=weights[w])
                delta.subtract(count_pairs(old, weight=weights[w]))
                for p, d in delta.items():
                    if d:
                        counts[p] += d
                        changed.add(p)
                for p in zip(new, new[1:]):
                    where.setdefault(p, set()).add(w)
                words[w] = new
            counts.pop(pair, None)
            for p in changed:
                if counts[p] > 0:
                    heapq.heappush(heap, (-counts[p], p))
                else:
                    del counts[p]
        special = {s: len(id_to_bytes) + k for k, s in enumerate(specials)}
        self._set_vocabulary(id_to_bytes, merges, special)
        return self

    # ------------------------------------------------------------------ encoding
    def _encode_chunk(self, chunk: str) -> list[int]:
        """Apply the merges to one chunk by rank, lowest first (the result of GPT-2's loop:
        merge every occurrence of the best-ranked pair, left to right, and repeat).

        The symbols form a linked list and candidate merges wait in a heap ordered by (rank,
        position), so a long chunk costs O(n log n), not O(n²)."""
        ids = [self._byte_ids[b] for b in chunk.encode("utf-8")]   # GPT-2 numbers bytes its way
        n = len(ids)
        if n < 2 or not self._ranks:
            return ids
        nxt, prv = list(range(1, n + 1)), list(range(-1, n - 1))
        nxt[-1] = -1
        alive = [True] * n
        heap = [(self._ranks[p], i) for i, p in enumerate(zip(ids, ids[1:])) if p in self._ranks]
        heapq.heapify(heap)
        while heap:
            rank, i = heapq.heappop(heap)
            j = nxt[i]
            if not alive[i] or j < 0 or self._ranks.get((ids[i], ids[j])) != rank:
                continue                               # this pair was changed by another merge
            ids[i] = self._id[self._bytes[ids[i]] + self._bytes[ids[j]]]
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[i] >= 0:
                prv[nxt[i]] = i
            for a in (prv[i], i):                      # the two new neighbouring pairs
                if a >= 0 and nxt[a] >= 0:
                    r = self._ranks.get((ids[a], ids[nxt[a]]))
                    if r is not None:
                        heapq.heappush(heap, (r, a))
        return [t for t, keep in zip(ids, alive) if keep]

    def encode(self, text: str, *, special: bool = True) -> list[int]:
        """Token ids of ``text``. Special tokens in it become their ids (with ``special=False``
        they are encoded as ordinary text)."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, got {type(text).__name__}; decode bytes "
                             "first, e.g. data.decode('utf-8')")
        parts = (self._special_split.split(text) if special and self._special_split
                 else [text])
        out: list[int] = []
        for k, part in enumerate(parts):
            if k % 2 == 1:                             # split() puts the matches at odd places
                out.append(self.special_tokens[part])
                continue
            for chunk in self.chunks(part):
                ids = self._cache.get(chunk)
                if ids is None:
                    try:
                        ids = self._encode_chunk(chunk)
                    except UnicodeEncodeError:
                        raise ValueError("the text contains a lone surrogate character, which "
                                         "has no UTF-8 bytes; clean it, e.g. with "
                                         "text.encode('utf-8', 'replace').decode()") from None
                    if len(chunk) < 64:
                        self._cache[chunk] = ids
                out += ids
        return out

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; byte sequences that are not valid UTF-8 become U+FFFD, as in
        GPT-2 (``errors="replace"``)."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The raw bytes of ``ids`` (special tokens as their UTF-8 text)."""
        try:
            ids = [operator.index(i) for i in ids]
        except TypeError:
            raise ValueError("decode expects a sequence of whole-number token ids, e.g. a list "
                             "of ints or a 1-d integer tensor") from None
        return b"".join(self.token_bytes(i) for i in ids)

    def prefix(self, n_merges: int) -> BPE:
        """A tokenizer with only the first ``n_merges`` merges: the one that training with a
        smaller vocabulary would have given. Kept tokens keep their ids; the special tokens
        follow the largest kept id."""
        if isinstance(n_merges, bool) or not isinstance(n_merges, int) or not \
                0 <= n_merges <= len(self._merge_bytes):
            raise ValueError(f"n_merges must be a whole number from 0 to "
                             f"{len(self._merge_bytes)}, got {n_merges!r}")
        merges = self._merge_bytes[:n_merges]
        keep = {bytes([b]) for b in range(256)} | {a + b for a, b in merges}
        id_to_bytes = {i: data for i, data in self._bytes.items() if data in keep}
        start = max(id_to_bytes) + 1
        specials = sorted(self.special_tokens, key=self.special_tokens.get)
        other = BPE(self.pattern)
        other._set_vocabulary(id_to_bytes, merges, {s: start + k for k, s in enumerate(specials)})
        return other

    # ------------------------------------------------------------------ files
    def save(self, directory: str | Path) -> Path:
        """Write GPT-2-format ``vocab.json`` and ``merges.txt``, and ``bpe_config.json`` (the
        pattern and the special tokens), into ``directory``; returns its path."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        vocab = {token_string(data): i for i, data in sorted(self._bytes.items())}
        vocab.update(self.special_tokens)
        (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False),
                                              encoding="utf-8")
        lines = ["#version: 0.2"] + [f"{token_string(a)} {token_string(b)}"
                                     for a, b in self._merge_bytes]
        (directory / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        config = {"pattern": self.pattern, "special_tokens": self.special_tokens}
        (directory / "bpe_config.json").write_text(json.dumps(config, ensure_ascii=False,
                                                              indent=1), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> BPE:
        """Read back what :meth:`save` wrote."""
        directory = Path(directory)
        config_path = directory / "bpe_config.json"
        if not config_path.exists():
            raise ValueError(f"no bpe_config.json in {directory}; for GPT-2-format files alone "
                             "use BPE.from_files(vocab_path, merges_path)")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        return cls.from_files(directory / "vocab.json", directory / "merges.txt",
                              special_tokens=list(config["special_tokens"]),
                              pattern=config["pattern"])

    @classmethod
    def from_files(cls, vocab_path: str | Path, merges_path: str | Path, *,
                   special_tokens: Iterable[str] = (), pattern: str | None = GPT2_PATTERN) -> BPE:
        """Load any GPT-2-format ``vocab.json`` + ``merges.txt`` (GPT-2's own files too).

        Ids are taken from ``vocab.json`` as they are (GPT-2's bytes are not at ids 0..255).
        A special token found in ``vocab.json`` keeps its id there; one that is not gets the
        next free id. Other entries of ``vocab.json`` that no merge makes are ignored.
        """
        specials = _check_specials(special_tokens)
        vocab = json.loads(Path(vocab_path).read_text(encoding="utf-8"))
        if not isinstance(vocab, dict):
            raise ValueError(f"{vocab_path} must hold one JSON object, token string -> id")
        lines = Path(merges_path).read_text(encoding="utf-8").split("\n")
        merges = []
        for k, line in enumerate(lines):
            if not line or (k == 0 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise ValueError(f"{merges_path} line {k + 1} should be two tokens separated by "
                                 f"one space, got {line!r}")
            merges.append((string_bytes(parts[0]), string_bytes(parts[1])))
        wanted = {bytes([b]) for b in range(256)} | {a + b for a, b in merges}
        id_to_bytes = {}
        for token, i in vocab.items():
            if token in specials:
                continue
            try:
                data = string_bytes(token)
            except ValueError:
                continue                               # e.g. an added token such as <|endoftext|>
            if data in wanted:
                id_to_bytes[int(i)] = data
        special, nxt = {}, max([*id_to_bytes, *map(int, vocab.values())]) + 1
        for s in specials:
            if s in vocab:
                special[s] = int(vocab[s])
            else:
                special[s], nxt = nxt, nxt + 1
        bpe = cls(pattern)
        bpe._set_vocabulary(id_to_bytes, merges, special)
        return bpe


def _check_specials(special_tokens: Iterable[str]) -> list[str]:
    if isinstance(special_tokens, str):
        raise ValueError(f"special_tokens must be a list of strings, e.g. [{special_tokens!r}], "
                         "not one string")
    specials = list(special_tokens)
    for s in specials:
        if not isinstance(s, str) or not s:
            raise ValueError(f"each special token must be a non-empty string, got {s!r}")
    if len(set(specials)) != len(specials):
        dup = next(s for s in specials if specials.count(s) > 1)
        raise ValueError(f"special token {dup!r} is listed twice; list each once")
    return specials
