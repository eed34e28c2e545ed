"""dlbook.tokenizer: byte-level BPE, checked by hand, by round trips, and against Hugging Face's
``tokenizers`` and ``transformers.GPT2Tokenizer`` loaded from the files it saves."""

from __future__ import annotations

import json
import random
import time
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlbook import data
from dlbook.tokenizer import (GPT2_PATTERN, BPE, bytes_to_unicode, count_pairs, merge_pair,
                              string_bytes, token_string)

EOT = "<|endoftext|>"
TEXT = data.text("moby_dick")
TRAIN, HELD = TEXT[:150_000], TEXT[-60_000:]          # the held-out part is never trained on
TRICKY = [
    "", " ", "Hello world", "Hello  world", "I'm  can't won't they'll we'd you've she's",
    "'S 'LL 'Re", "12345 3.14159 1,000,000 2024-01-01 ٣٤٥ ⅷ", "\n\n\tfoo\r\n  \n",
    "  leading spaces", "trailing spaces   ", "a\u00a0b\u2003c\u3000d",
    "naïve café Ærøskøbing 日本語 한국어 中文 العربية Ελληνικά", "😀👍🏽👨‍👩‍👧 🇨🇳", "e\u0301 a\u0308 Z\u0351\u0352",
    "x\x00y\x07z\x1b[0m\x7f", "!!!??? ... --- ***", "CAPITALS and MiXeD", "tab\tseparated\tvalues",
    f"one{EOT}two {EOT} three{EOT}", "\u200b\u200d\ufeff", "ÿ\xfe\x80",
]


@pytest.fixture(scope="module")
def bpe() -> BPE:
    return BPE().train(TRAIN, 700, special_tokens=[EOT])


@pytest.fixture(scope="module")
def saved(bpe, tmp_path_factory):
    return bpe.save(tmp_path_factory.mktemp("bpe"))


def gpt2_loop(bpe: BPE, chunk: str) -> list[int]:
    """GPT-2's encoder.py bpe(), on ids: merge every occurrence of the best-ranked pair, repeat."""
    ranks = {pair: r for r, pair in reversed(list(enumerate(bpe.merges)))}
    ids = [bpe._byte_ids[b] for b in chunk.encode("utf-8")]  # noqa: SLF001
    while len(ids) > 1:
        pair = min(zip(ids, ids[1:]), key=lambda p: ranks.get(p, float("inf")))
        if pair not in ranks:
            break
        ids = merge_pair(ids, pair, bpe.merged_id(pair))
    return ids


# ----------------------------------------------------------------------------- by hand


def test_the_classic_example():
    """aaabdaaabac: aa -> Z, then ab -> Y (a tie with Za, broken by the smaller ids), ZY -> X."""
    bpe = BPE(pattern=None).train("aaabdaaabac", 259)
    assert bpe.merges == [(97, 97), (97, 98), (256, 257)]
    assert [bpe.token_bytes(i) for i in (256, 257, 258)] == [b"aa", b"ab", b"aaab"]
    assert bpe.encode("aaabdaaabac") == [258, ord("d"), 258, ord("a"), ord("c")]
    assert bpe.decode(bpe.encode("aaabdaaabac")) == "aaabdaaabac"


def test_count_pairs_and_merge_pair():
    assert count_pairs([1, 2, 3, 1, 2]) == {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    assert count_pairs([5, 5, 5], weight=3) == {(5, 5): 6}
    assert merge_pair([1, 1, 1, 2, 1, 1], (1, 1), 9) == [9, 1, 2, 9]   # left to right
    assert merge_pair([1, 2], (2, 1), 9) == [1, 2]


def test_the_pattern_keeps_categories_apart():
    bpe = BPE()
    assert bpe.chunks("Hello world's 2024 wins!!  ok\n") == [
        "Hello", " world", "'s", " 2024", " wins", "!!", " ", " ok", "\n"]
    assert GPT2_PATTERN.startswith("'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+")


def test_merges_never_cross_chunks():
    bpe = BPE().train("ab ab ab ab, 12 12 12", 260)
    for i in range(256, bpe.vocab_size):
        assert len(bpe.chunks(bpe.decode([i]))) == 1


def test_training_counts_each_chunk_once_with_its_frequency():
    """A slow reference: recount every pair of the whole text after every merge."""
    text = TRAIN[:3000]
    fast = BPE().train(text, 330)
    words = [list(c.encode()) for c in BPE().chunks(text)]
    merges = []
    for new_id in range(256, 330):
        counts = {}
        for w in words:
            for p in zip(w, w[1:]):
                counts[p] = counts.get(p, 0) + 1
        best = min(counts, key=lambda p: (-counts[p], p))
        merges.append(best)
        words = [merge_pair(w, best, new_id) for w in words]
    assert fast.merges == merges


def test_training_is_fast_on_the_whole_text():
    start = time.perf_counter()
    big = BPE().train(TEXT, 2048)
    assert time.perf_counter() - start < 60          # a few seconds on a laptop
    assert big.vocab_size == 2048 and len(big) == 2048


def test_layout_of_a_trained_vocabulary(bpe):
    assert bpe.vocab_size == len(bpe) == 700
    assert [bpe.token_bytes(i) for i in range(256)] == [bytes([b]) for b in range(256)]
    assert bpe.special_tokens == {EOT: 699}
    for rank, (a, b) in enumerate(bpe.merges):
        assert bpe.token_bytes(256 + rank) == bpe.token_bytes(a) + bpe.token_bytes(b)
        assert max(a, b) < 256 + rank               # made only of tokens that existed before


def test_prefix_is_training_with_a_smaller_vocabulary(bpe):
    small = BPE().train(TRAIN, 400, special_tokens=[EOT])
    cut = bpe.prefix(400 - 257)
    assert cut.merges == small.merges and cut.special_tokens == small.special_tokens
    assert cut.encode(HELD[:5000]) == small.encode(HELD[:5000])
    assert bpe.prefix(0).encode("abc") == [97, 98, 99]


def test_every_merge_makes_a_distinct_token(bpe):
    made = [bpe.token_bytes(bpe.merged_id(p)) for p in bpe.merges]
    assert len(set(made)) == len(made) == bpe.vocab_size - 257


# ----------------------------------------------------------------------------- round trips


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text())
def test_round_trip_any_unicode(bpe, s):
    assert bpe.decode(bpe.encode(s)) == s


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.sampled_from(list("the whale 🐋日本\u0301\n\t\x00'sll12")) |
               st.characters(codec="utf-8"), max_size=80))
def test_round_trip_and_the_fast_encoder_is_gpt2s_loop(bpe, s):
    ids = bpe.encode(s, special=False)
    assert bpe.decode(ids) == s
    assert ids == [t for c in bpe.chunks(s) for t in gpt2_loop(bpe, c)]


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ab ", max_size=40))
def test_round_trip_without_a_pattern(s):
    bpe = BPE(pattern=None).train("aab abab bba aaaa b a", 270)
    assert bpe.decode(bpe.encode(s)) == s
    assert bpe.encode(s) == gpt2_loop(bpe, s)


def test_round_trip_of_tricky_strings_and_held_out_text(bpe):
    for s in [*TRICKY, HELD]:
        assert bpe.decode(bpe.encode(s)) == s


def test_invalid_bytes_decode_as_replacement_characters(bpe):
    ids = bpe.encode("é")                             # two bytes, 0xC3 0xA9
    raw = bpe.decode_bytes(ids)
    assert raw == "é".encode()
    assert bpe.decode([raw[0]]) == "\ufffd"           # half a character
    assert bpe.decode([0xFF, ord("a")]) == "\ufffda"


# ----------------------------------------------------------------------------- special tokens


def test_special_tokens(bpe):
    text = f"Call me Ishmael.{EOT}Some years ago"
    ids = bpe.encode(text)
    assert ids.count(699) == 1 and bpe.decode(ids) == text
    assert ids == bpe.encode("Call me Ishmael.") + [699] + bpe.encode("Some years ago")
    plain = bpe.encode(text, special=False)
    assert 699 not in plain and bpe.decode(plain) == text
    assert bpe.token_bytes(699) == EOT.encode()


def test_several_special_tokens_longest_first():
    bpe = BPE().train(TRAIN[:20_000], 300, special_tokens=["<|end|>", "<|endoftext|>", "<pad>"])
    assert bpe.special_tokens == {"<|end|>": 297, "<|endoftext|>": 298, "<pad>": 299}
    assert bpe.encode("<|endoftext|><|end|><pad>") == [298, 297, 299]


def test_special_tokens_in_the_training_text_are_not_learned():
    bpe = BPE().train(f"{EOT} hello {EOT} hello {EOT}", 262, special_tokens=[EOT])
    for i in range(256, 261):
        assert "<|" not in bpe.decode([i]) and "|>" not in bpe.decode([i])


# ----------------------------------------------------------------------------- files


def test_save_and_load_are_the_identity(bpe, saved):
    back = BPE.load(saved)
    assert back.merges == bpe.merges and back.special_tokens == bpe.special_tokens
    assert [back.token_bytes(i) for i in range(700)] == [bpe.token_bytes(i) for i in range(700)]
    assert back.pattern == bpe.pattern
    for s in [*TRICKY, HELD]:
        assert back.encode(s) == bpe.encode(s)
    lines = (saved / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#version: 0.2" and len(lines) == 1 + len(bpe.merges)
    vocab = json.loads((saved / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["Ġ"] == 32 and vocab["Ċ"] == 10 and vocab[EOT] == 699 and len(vocab) == 700


def test_save_and_load_without_a_pattern(tmp_path):
    bpe = BPE(pattern=None).train("to be or not to be", 262)
    back = BPE.load(bpe.save(tmp_path))
    assert back.pattern is None and back.encode("to be") == bpe.encode("to be")


def test_bytes_to_unicode_is_gpt2s():
    table = bytes_to_unicode()
    assert len(set(table.values())) == 256
    assert table[ord(" ")] == "Ġ" and table[ord("\n")] == "Ċ" and table[ord("A")] == "A"
    assert token_string(b" the") == "Ġthe" and string_bytes("Ġthe") == b" the"
    with pytest.raises(ValueError, match="alphabet"):
        string_bytes(" the")


def test_from_files_with_gpt2s_byte_ids_and_arbitrary_ids(bpe, saved, tmp_path):
    """GPT-2 numbers the bytes in the order of its alphabet, not 0..255; any ids must work."""
    vocab = json.loads((saved / "vocab.json").read_text(encoding="utf-8"))
    tokens = [t for t in vocab if t != EOT]
    rng = random.Random(0)
    new_ids = list(range(1000, 1000 + len(tokens)))
    rng.shuffle(new_ids)
    remap = dict(zip(tokens, new_ids))
    (tmp_path / "vocab.json").write_text(json.dumps({**remap, EOT: 5}), encoding="utf-8")
    other = BPE.from_files(tmp_path / "vocab.json", saved / "merges.txt", special_tokens=[EOT])
    old_to_new = {vocab[t]: remap[t] for t in tokens} | {699: 5}
    for s in [*TRICKY, HELD[:20_000]]:
        ids = other.encode(s)
        assert ids == [old_to_new[i] for i in bpe.encode(s)]
        assert other.decode(ids) == s
    assert other.vocab_size == 1000 + len(tokens)
    missing = BPE.from_files(saved / "vocab.json", saved / "merges.txt", special_tokens=["<new>"])
    assert missing.special_tokens == {"<new>": 700}


# ----------------------------------------------------------------------------- Hugging Face


def hf_tokenizers(directory):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    tok = Tokenizer(models.BPE.from_file(str(directory / "vocab.json"),
                                         str(directory / "merges.txt")))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(EOT, special=True)])
    return tok


def test_same_ids_as_the_tokenizers_library(bpe, saved):
    tok = hf_tokenizers(saved)
    for s in [*TRICKY, HELD]:
        assert tok.encode(s).ids == bpe.encode(s), s[:40]
        assert tok.decode(bpe.encode(s), skip_special_tokens=False) == s


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60))
def test_same_ids_as_the_tokenizers_library_on_random_text(bpe, saved, s):
    tok = _cached_tokenizers(saved)
    assert tok.encode(s).ids == bpe.encode(s)


_TOKENIZERS = {}


def _cached_tokenizers(directory):
    if directory not in _TOKENIZERS:
        _TOKENIZERS[directory] = hf_tokenizers(directory)
    return _TOKENIZERS[directory]


def test_same_ids_as_transformers_gpt2_tokenizer(bpe, saved):
    from transformers import GPT2Tokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = GPT2Tokenizer(str(saved / "vocab.json"), str(saved / "merges.txt"))
        for s in [*TRICKY, HELD[:30_000]]:
            assert tok.encode(s) == bpe.encode(s), s[:40]
            assert tok.decode(bpe.encode(s)) == s


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    (dict(vocab_size=255), "at least 256"),
    (dict(vocab_size=256, special_tokens=[EOT]), "at least 256 \\+ 1"),
    (dict(vocab_size=300.0), "whole number"),
    (dict(vocab_size=True), "whole number"),
    (dict(vocab_size=300, special_tokens=EOT), "list of strings"),
    (dict(vocab_size=300, special_tokens=[EOT, EOT]), "listed twice"),
    (dict(vocab_size=300, special_tokens=[""]), "non-empty"),
    (dict(vocab_size=10_000), "no pair left"),
])
def test_training_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BPE().train("a small text", **kwargs)


def test_other_bad_input(bpe, tmp_path):
    with pytest.raises(ValueError, match="str"):
        BPE().train(b"bytes", 300)
    with pytest.raises(ValueError, match="decode bytes first"):
        bpe.encode(b"bytes")
    with pytest.raises(ValueError, match="no token has id"):
        bpe.decode([700])
    with pytest.raises(ValueError, match="whole-number"):
        bpe.decode(["a"])
    with pytest.raises(ValueError, match="whole-number"):
        bpe.decode([1.5])
    assert bpe.decode(__import__("torch").tensor([72, 105])) == "Hi"
    with pytest.raises(ValueError, match="surrogate"):
        bpe.encode("a\ud800b")
    with pytest.raises(ValueError, match="n_merges"):
        bpe.prefix(10_000)
    with pytest.raises(ValueError, match="regex string"):
        BPE(pattern=3)
    with pytest.raises(ValueError, match="from_files"):
        BPE.load(tmp_path)
    (tmp_path / "v.json").write_text(json.dumps({"a": 0}), encoding="utf-8")
    (tmp_path / "m.txt").write_text("#version: 0.2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="256 single bytes"):
        BPE.from_files(tmp_path / "v.json", tmp_path / "m.txt")
    (tmp_path / "m.txt").write_text("#version: 0.2\na b c\n", encoding="utf-8")
    with pytest.raises(ValueError, match="two tokens"):
        BPE.from_files(tmp_path / "v.json", tmp_path / "m.txt")
