"""Tests of dlbook.modalities: patches, STFT, synthetic sounds, the toy language pair, BLEU."""

import random

import pytest
import sacrebleu
import torch
from torch.nn import functional as F

from dlbook import modalities as M

F64 = torch.float64


@pytest.mark.parametrize("shape, patch", [((2, 1, 8, 8), 2), ((3, 3, 8, 12), 4),
                                          ((1, 2, 6, 9), (3, 3)), ((2, 1, 4, 8), (2, 4))])
def test_patchify_equals_unfold(shape, patch):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(sum(shape)), dtype=F64)
    assert torch.equal(M.patchify(x, patch), F.unfold(x, patch, stride=patch).transpose(1, 2))


def test_patchify_rejects_bad_input():
    with pytest.raises(ValueError, match="unsqueeze"):
        M.patchify(torch.zeros(2, 8, 8), 2)
    with pytest.raises(ValueError, match="multiple of the patch"):
        M.patchify(torch.zeros(2, 1, 8, 8), 3)
    with pytest.raises(ValueError, match="positive integer"):
        M.patchify(torch.zeros(2, 1, 8, 8), 0)


def test_vit_shapes_and_errors():
    torch.manual_seed(0)
    vit = M.ViT(8, 2, classes=10, d_model=16, n_layers=1, n_heads=2)
    x = torch.rand(5, 64)
    assert vit.tokens(x).shape == (5, 17, 16)
    assert vit(x).shape == (5, 10)
    torch.testing.assert_close(vit(x), vit(x.reshape(5, 1, 8, 8)))
    rect = M.ViT((16, 32), (8, 8), channels=2, classes=3, d_model=16, n_heads=2)
    assert rect(torch.rand(4, 2, 16, 32)).shape == (4, 3)
    with pytest.raises(ValueError, match="expected images"):
        vit(torch.rand(5, 1, 6, 6))
    with pytest.raises(ValueError, match="multiple of the patch"):
        M.ViT(8, 3)


def test_vit_attends_to_every_patch():
    """Non-causal: changing the last patch changes the class token's output."""
    torch.manual_seed(1)
    vit = M.ViT(8, 4, d_model=16, n_layers=1, n_heads=2).double()
    x = torch.rand(1, 1, 8, 8, dtype=F64)
    y = x.clone()
    y[..., 4:, 4:] += 1
    assert not torch.allclose(vit(x), vit(y))


@pytest.mark.parametrize("n_fft, hop, window, center, length, batch", [
    (64, 16, "hann", True, 300, 2), (32, 7, None, False, 200, 1), (16, 16, "hamming", True, 129, 0),
    (50, 10, "hann", False, 111, 3), (31, 5, "rand", True, 90, 2), (8, 3, None, True, 40, 0)])
def test_stft_equals_torch(n_fft, hop, window, center, length, batch):
    g = torch.Generator().manual_seed(n_fft * hop)
    shape = (batch, length) if batch else (length,)
    x = torch.randn(shape, generator=g, dtype=F64)
    w = {"hann": torch.hann_window(n_fft, dtype=F64), "hamming": torch.hamming_window(n_fft, dtype=F64),
         "rand": torch.rand(n_fft, generator=g, dtype=F64), None: None}[window]
    ref_w = torch.ones(n_fft, dtype=F64) if w is None else w
    want = torch.stft(x, n_fft, hop, window=ref_w, center=center, pad_mode="reflect",
                      return_complex=True)
    got = M.stft_from_scratch(x, n_fft, hop, w, center=center)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(M.power_spectrogram(x, n_fft, hop, w, center=center),
                               want.abs() ** 2, rtol=1e-10, atol=1e-10)


def test_stft_rejects_bad_input():
    x = torch.randn(100, dtype=F64)
    with pytest.raises(ValueError, match="length n_fft"):
        M.stft_from_scratch(x, 16, 4, torch.ones(10))
    with pytest.raises(ValueError, match="real signal"):
        M.stft_from_scratch(torch.zeros(2, 2, 10), 4, 2)
    with pytest.raises(ValueError, match="shorter than n_fft"):
        M.stft_from_scratch(x[:10], 16, 4, center=False)
    with pytest.raises(ValueError, match="positive integer"):
        M.stft_from_scratch(x, 16, 0)


def test_synthetic_sounds_deterministic_and_balanced():
    x, y = M.synthetic_sounds(61, seed=3)
    x2, y2 = M.synthetic_sounds(61, seed=3)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert x.shape == (61, 1024) and x.dtype == F64
    assert torch.bincount(y, minlength=3).tolist() == [21, 20, 20]
    assert not torch.equal(M.synthetic_sounds(61, seed=4)[0], x)
    assert float(x.abs().max()) < 2
    with pytest.raises(ValueError, match="n must be"):
        M.synthetic_sounds(0)


def test_tone_has_one_peak_and_chirp_sweeps():
    x, y = M.synthetic_sounds(30, seed=0)
    spec = M.power_spectrogram(x, 64, 32, torch.hann_window(64, dtype=F64))
    peak = spec.argmax(1)                     # (n, frames): the loudest bin in each frame
    loud = spec.sum(1) > 0.5 * spec.sum(1).amax(1, keepdim=True)   # frames with the sound
    for i in range(30):
        bins = peak[i][loud[i]]
        if y[i] == 0:
            assert int(bins.max() - bins.min()) <= 1
        elif y[i] == 1:
            assert int(bins.max() - bins.min()) >= 2


def test_translation_round_trip_and_rule():
    pairs = M.synthetic_translation(200, seed=1)
    assert pairs == M.synthetic_translation(200, seed=1)
    assert pairs != M.synthetic_translation(200, seed=2)
    for source, target in pairs:
        assert M.translate(source) == target
        assert M.untranslate(target) == source
        assert len(target.split()) == len(source.split()) + 1
    assert M.translate("the big cat sees every dog") == "miro gros lo tavu na ko vidi"
    with pytest.raises(ValueError, match="source grammar"):
        M.translate("the cat sees every dog likes")
    with pytest.raises(ValueError, match="noun phrase"):
        M.translate("big the cat sees every dog")
    with pytest.raises(ValueError, match="target grammar"):
        M.untranslate("miro lo vidi")


def test_vocab_round_trip():
    pairs = M.synthetic_translation(20, seed=0)
    vocab = M.Vocab(" ".join(s for s, _ in pairs).split())
    ids = vocab.encode([s for s, _ in pairs], 16)
    assert [vocab.decode(row) for row in ids] == [s for s, _ in pairs]
    with pytest.raises(ValueError, match="positions"):
        vocab.encode([pairs[0][0]], 3)


def test_seq2seq_shapes_cross_attention_and_decode():
    torch.manual_seed(0)
    model = M.Seq2Seq(20, 25, context_length=12, d_model=16, n_layers=1, n_heads=2).double()
    src = torch.randint(3, 20, (4, 9))
    src[0, 6:] = M.Vocab.PAD
    tgt = torch.randint(3, 25, (4, 7))
    assert model(src, tgt).shape == (4, 7, 25)
    # padding in the source changes nothing
    other = src.clone()
    other[0, 6:] = 5
    out = model(src, tgt)
    padded = model(torch.cat([src, torch.zeros(4, 2, dtype=torch.long)], 1), tgt)
    torch.testing.assert_close(out, padded)
    assert not torch.allclose(out[0], model(other, tgt)[0])
    # causal decoder: a later target token does not change earlier outputs
    tgt2 = tgt.clone()
    tgt2[:, -1] = 3
    torch.testing.assert_close(model(src, tgt)[:, :-1], model(src, tgt2)[:, :-1])
    dec = M.greedy_decode(model, src, 10)
    assert dec.shape[0] == 4 and dec.shape[1] <= 10 and bool((dec[:, 0] == M.Vocab.BOS).all())
    with pytest.raises(ValueError, match="context_length"):
        model(torch.randint(3, 20, (1, 13)), tgt)
    with pytest.raises(ValueError, match="max_len"):
        M.greedy_decode(model, src, 40)


def test_bleu_equals_sacrebleu():
    rng = random.Random(0)
    words = "lo na miro tavu pelo gros piti ko vidi amo".split()
    for trial in range(20):
        refs = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 10))) for _ in range(5)]
        hyps = []
        for r in refs:
            w = r.split()
            w = [x if rng.random() < 0.7 else rng.choice(words) for x in w]
            hyps.append(" ".join(w[:rng.randint(1, len(w) + 2)]) or "lo")
        want = sacrebleu.corpus_bleu(hyps, [refs]).score
        assert M.bleu(hyps, refs) == pytest.approx(want, abs=1e-9)
    assert M.bleu(["a b c d"], ["a b c d"]) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="lists of sentences"):
        M.bleu("a b", "a b")
    with pytest.raises(ValueError, match="as many"):
        M.bleu(["a"], ["a", "b"])
