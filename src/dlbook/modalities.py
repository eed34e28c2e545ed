"""One architecture for images, sound and translation (section 7.1).

* Images: :func:`patchify` cuts images into patches, :class:`ViT` turns the patches into tokens
  and runs the non-causal Transformer blocks of :mod:`dlbook.gpt` over them (Dosovitskiy et al.
  2021).
* Sound: :func:`stft_from_scratch` is the short-time Fourier transform written out (it equals
  ``torch.stft``), :func:`power_spectrogram` turns a signal into an image, and
  :func:`synthetic_sounds` makes labelled tones, chirps and noise bursts by code.
* Translation: :func:`synthetic_translation` generates sentence pairs of a toy language pair
  from a grammar, :class:`Seq2Seq` is an encoder–decoder Transformer with cross-attention
  (Vaswani et al. 2017), and :func:`bleu` is corpus BLEU written out (it equals sacrebleu's).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from dlbook.attention import MultiHeadAttention, causal_mask
from dlbook.gpt import MLP, Block, GPTConfig

__all__ = ["patchify", "ViT", "stft_from_scratch", "power_spectrogram", "synthetic_sounds",
           "SOUND_CLASSES", "synthetic_translation", "translate", "untranslate", "Vocab",
           "Seq2Seq", "greedy_decode", "bleu"]


# ------------------------------------------------------------------------------ images

def _pair(v: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(v, int) and not isinstance(v, bool):
        v = (v, v)
    if (not isinstance(v, (tuple, list)) or len(v) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in v)):
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {v!r}")
    return int(v[0]), int(v[1])


def patchify(images: torch.Tensor, patch: int | Sequence[int]) -> torch.Tensor:
    """Cut images (B, C, H, W) into non-overlapping patches -> (B, N, C·ph·pw).

    Patches are numbered row by row (N = H/ph · W/pw); each patch is flattened channel first,
    then row, then column, which is the order of ``F.unfold(images, patch, stride=patch)``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError(f"expected images of shape (batch, channels, height, width), got "
                         f"{getattr(images, 'shape', type(images).__name__)}; add a channel "
                         "axis with images.unsqueeze(1)")
    ph, pw = _pair(patch, "patch")
    B, C, H, W = images.shape
    if H % ph or W % pw:
        raise ValueError(f"a {H}×{W} image does not split into {ph}×{pw} patches: crop or pad "
                         "it to a multiple of the patch size")
    x = images.reshape(B, C, H // ph, ph, W // pw, pw)        # (B, C, rows, ph, cols, pw)
    x = x.permute(0, 2, 4, 1, 3, 5)                           # (B, rows, cols, C, ph, pw)
    return x.reshape(B, (H // ph) * (W // pw), C * ph * pw)


class ViT(nn.Module):
    """A small Vision Transformer: patches -> linear embedding + learned positions, a class
    token in front, non-causal pre-norm blocks (``dlbook.gpt.Block``), a linear head on the
    class token's final state.

    ``forward`` takes images (B, C, H, W), or (B, H·W) rows when ``channels == 1`` (as
    ``dlbook.data.digits()`` gives them), and returns logits (B, classes).
    """

    def __init__(self, image_size: int | Sequence[int] = 8, patch: int | Sequence[int] = 2, *,
                 channels: int = 1, classes: int = 10, d_model: int = 32, n_layers: int = 2,
                 n_heads: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.image_size, self.patch = _pair(image_size, "image_size"), _pair(patch, "patch")
        (H, W), (ph, pw) = self.image_size, self.patch
        if H % ph or W % pw:
            raise ValueError(f"image_size {H}×{W} must be a multiple of the patch {ph}×{pw}")
        for name, v in (("channels", channels), ("classes", classes)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.channels = channels
        self.n_patches = (H // ph) * (W // pw)
        config = GPTConfig(vocab_size=1, context_length=self.n_patches + 1, d_model=d_model,
                           n_layers=n_layers, n_heads=n_heads, dropout=dropout, causal=False)
        self.embed = nn.Linear(channels * ph * pw, d_model)            # one patch -> one token
        self.cls = nn.Embedding(1, d_model)                            # the class token
        self.pos = nn.Embedding(self.n_patches + 1, d_model)           # learned positions
        self.blocks = nn.ModuleList(Block(config) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, classes)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> the input tokens (B, 1 + N, d_model): class token, then the patches."""
        H, W = self.image_size
        if images.dim() == 2 and self.channels == 1 and images.shape[1] == H * W:
            images = images.reshape(-1, 1, H, W)
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.channels, H, W):
            raise ValueError(f"expected images of shape (batch, {self.channels}, {H}, {W})"
                             + (f" or (batch, {H * W})" if self.channels == 1 else "")
                             + f", got {tuple(images.shape)}")
        x = self.embed(patchify(images, self.patch))                  # (B, N, d)
        cls = self.cls.weight.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1)
        return x + self.pos.weight

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.tokens(images)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


# ------------------------------------------------------------------------------ sound

def stft_from_scratch(signal: torch.Tensor, n_fft: int, hop: int,
                      window: torch.Tensor | None = None, *, center: bool = True,
                      pad_mode: str = "reflect") -> torch.Tensor:
    """The short-time Fourier transform of ``signal`` (T,) or (B, T), written out.

    Frame m holds samples m·hop ... m·hop + n_fft − 1 (of the signal padded by n_fft // 2 on
    each side when ``center``), multiplied by ``window`` (length n_fft; None: all ones), and
    bin k of it is sum_n frame[n] · exp(−2πi k n / n_fft) for k = 0 ... n_fft // 2. Returns
    complex (…, n_fft // 2 + 1, frames), as ``torch.stft(..., return_complex=True)``.
    """
    if not isinstance(signal, torch.Tensor) or signal.dim() not in (1, 2) \
            or not signal.is_floating_point():
        raise ValueError(f"expected a real signal of shape (time,) or (batch, time), got "
                         f"{getattr(signal, 'shape', type(signal).__name__)}")
    for name, v in (("n_fft", n_fft), ("hop", hop)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if window is None:
        window = torch.ones(n_fft, dtype=signal.dtype, device=signal.device)
    if not isinstance(window, torch.Tensor) or window.shape != (n_fft,):
        raise ValueError(f"window must be a tensor of length n_fft={n_fft}, got "
                         f"{getattr(window, 'shape', type(window).__name__)}")
    x = signal
    if center:
        if pad_mode == "reflect" and x.shape[-1] <= n_fft // 2:
            raise ValueError(f"reflect padding needs more than n_fft // 2 = {n_fft // 2} "
                             f"samples, got {x.shape[-1]}; use a shorter n_fft")
        x = F.pad(x.unsqueeze(-2), (n_fft // 2, n_fft // 2), mode=pad_mode).squeeze(-2)
    if x.shape[-1] < n_fft:
        raise ValueError(f"the signal ({x.shape[-1]} samples) is shorter than n_fft={n_fft}")
    frames = x.unfold(-1, n_fft, hop) * window                     # (…, frames, n_fft)
    n = torch.arange(n_fft, dtype=torch.float64, device=x.device)
    k = torch.arange(n_fft // 2 + 1, dtype=torch.float64, device=x.device)
    angle = -2 * math.pi * torch.outer(n, k) / n_fft               # (n_fft, bins)
    cdtype = torch.complex128 if x.dtype == torch.float64 else torch.complex64
    dft = torch.polar(torch.ones_like(angle), angle).to(cdtype)
    return (frames.to(cdtype) @ dft).transpose(-1, -2)             # (…, bins, frames)


def power_spectrogram(signal: torch.Tensor, n_fft: int, hop: int,
                      window: torch.Tensor | None = None, *, log: bool = False,
                      center: bool = True) -> torch.Tensor:
    """|STFT|² (…, n_fft // 2 + 1, frames); with ``log``, log(1e-6 + |STFT|²), an image."""
    power = stft_from_scratch(signal, n_fft, hop, window, center=center).abs() ** 2
    return torch.log(power + 1e-6) if log else power


SOUND_CLASSES = ("tone", "chirp", "noise burst")


def synthetic_sounds(n: int, seed: int = 0, *, length: int = 1024, sample_rate: int = 8000,
                     dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` short sounds made by code and their labels: (x (n, length), y (n,)).

    Classes (``SOUND_CLASSES``), balanced to within one: 0 a tone (a sine of 200–3000 Hz),
    1 a chirp (a sine whose frequency sweeps linearly between two random frequencies at least
    1000 Hz apart), 2 a noise burst (white noise). Each sound has a random amplitude (0.2–1),
    starts at a random onset in the first 40 % and lasts 30–60 % of the clip; every clip gets
    background noise of random level (standard deviation 0.01–0.1). Same ``seed``, same sounds.
    """
    for name, v, low in (("n", n, 1), ("length", length, 16), ("sample_rate", sample_rate, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    g = torch.Generator().manual_seed(seed)
    F64 = torch.float64

    def u(low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand((), generator=g, dtype=F64))

    y = (torch.arange(n) % 3)[torch.randperm(n, generator=g)]
    t = torch.arange(length, dtype=F64) / sample_rate
    nyquist = sample_rate / 2
    x = torch.empty(n, length, dtype=F64)
    for i in range(n):
        amp = u(0.2, 1.0)
        start = int(u(0.0, 0.4) * length)
        stop = min(length, start + int(u(0.3, 0.6) * length))
        if y[i] == 0:
            f = u(200.0, min(3000.0, 0.75 * nyquist))
            sound = torch.sin(2 * math.pi * f * t + u(0, 2 * math.pi))
        elif y[i] == 1:
            f0, f1 = u(200.0, 0.75 * nyquist), u(200.0, 0.75 * nyquist)
            while abs(f1 - f0) < min(1000.0, nyquist / 4):
                f1 = u(200.0, 0.75 * nyquist)
            duration = (stop - start) / sample_rate
            tau = (t - start / sample_rate).clamp(min=0)
            sound = torch.sin(2 * math.pi * (f0 * tau + (f1 - f0) * tau ** 2 / (2 * duration)))
        else:
            sound = torch.randn(length, generator=g, dtype=F64) / 2
        envelope = torch.zeros(length, dtype=F64)
        envelope[start:stop] = 1.0
        x[i] = amp * sound * envelope
        x[i] += u(0.01, 0.1) * torch.randn(length, generator=g, dtype=F64)
    return x.to(dtype), y


# ------------------------------------------------------------------------------ translation

# the toy language pair: English words -> invented words, one for one
DETERMINERS = {"the": "lo", "every": "na"}
NOUNS = {"cat": "miro", "dog": "tavu", "bird": "pelo", "fish": "suna", "child": "kiri",
         "farmer": "dolan", "king": "rexa", "horse": "baku"}
ADJECTIVES = {"big": "gros", "small": "piti", "red": "ruba", "old": "veta", "happy": "feli",
              "green": "vira"}
VERBS = {"sees": "vidi", "likes": "amo", "chases": "kuro", "feeds": "nuto", "finds": "trovi",
         "follows": "sego"}
OBJECT_MARK = "ko"   # the target language marks its object with a particle after the noun phrase
DICTIONARY = {**DETERMINERS, **NOUNS, **ADJECTIVES, **VERBS}
INVERSE = {v: k for k, v in DICTIONARY.items()}


def _noun_phrase(rng: random.Random, max_adjectives: int) -> list[str]:
    adjectives = rng.sample(sorted(ADJECTIVES), rng.randint(0, max_adjectives))
    return [rng.choice(sorted(DETERMINERS)), *adjectives, rng.choice(sorted(NOUNS))]


def _target_phrase(np_words: list[str]) -> list[str]:
    det, *adjectives, noun = np_words
    return [DICTIONARY[noun], *(DICTIONARY[a] for a in adjectives), DICTIONARY[det]]


def translate(source: str) -> str:
    """The grammar's rule. Source (English word order): S V O, a noun phrase being
    ``det adj* noun``. Target: S O ko V, a noun phrase being ``noun adj* det`` (adjectives after
    the noun, the determiner last), every word through the dictionary."""
    words = source.split()
    verbs = [i for i, w in enumerate(words) if w in VERBS]
    if len(verbs) != 1 or any(w not in DICTIONARY for w in words):
        raise ValueError(f"not a sentence of the source grammar (det adj* noun verb det adj* "
                         f"noun with the words of DICTIONARY): {source!r}")
    v = verbs[0]
    subject, obj = words[:v], words[v + 1:]
    for phrase in (subject, obj):
        if (len(phrase) < 2 or phrase[0] not in DETERMINERS or phrase[-1] not in NOUNS
                or any(w not in ADJECTIVES for w in phrase[1:-1])):
            raise ValueError(f"not a noun phrase (det adj* noun): {' '.join(phrase)!r}")
    return " ".join(_target_phrase(subject) + _target_phrase(obj) + [OBJECT_MARK,
                                                                      DICTIONARY[words[v]]])


def untranslate(target: str) -> str:
    """The inverse of :func:`translate`: a target sentence back to its source sentence."""
    words = target.split()
    if len(words) < 6 or words[-2] != OBJECT_MARK or any(w not in INVERSE for w in
                                                         words[:-2] + words[-1:]):
        raise ValueError(f"not a sentence of the target grammar: {target!r}")
    body, verb = words[:-2], INVERSE[words[-1]]
    split = next(i for i, w in enumerate(body) if w in DETERMINERS.values()) + 1
    phrases = []
    for phrase in (body[:split], body[split:]):
        noun, *adjectives, det = (INVERSE[w] for w in phrase)
        phrases.append(" ".join([det, *adjectives, noun]))
    return f"{phrases[0]} {verb} {phrases[1]}"


def synthetic_translation(n: int, seed: int = 0, *, max_adjectives: int = 2
                          ) -> list[tuple[str, str]]:
    """``n`` (source, target) sentence pairs of the toy language pair (see :func:`translate`),
    drawn at random from the grammar with 0 ... ``max_adjectives`` distinct adjectives per noun
    phrase. Same ``seed``, same pairs."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not isinstance(max_adjectives, int) or not 0 <= max_adjectives <= len(ADJECTIVES):
        raise ValueError(f"max_adjectives must be an integer from 0 to {len(ADJECTIVES)}, "
                         f"got {max_adjectives!r}")
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = (_noun_phrase(rng, max_adjectives) + [rng.choice(sorted(VERBS))]
                 + _noun_phrase(rng, max_adjectives))
        source = " ".join(words)
        pairs.append((source, translate(source)))
    return pairs


class Vocab:
    """Words <-> ids, with ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2 first."""

    PAD, BOS, EOS = 0, 1, 2

    def __init__(self, words: Sequence[str]) -> None:
        self.itos = ["<pad>", "<bos>", "<eos>", *sorted(set(words))]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, sentences: Sequence[str], length: int) -> torch.Tensor:
        """Sentences -> ids (len(sentences), length): <bos> words <eos>, then <pad>."""
        out = torch.full((len(sentences), length), self.PAD, dtype=torch.long)
        for i, s in enumerate(sentences):
            ids = [self.BOS, *(self.stoi[w] for w in s.split()), self.EOS]
            if len(ids) > length:
                raise ValueError(f"sentence {s!r} needs {len(ids)} positions, length={length}")
            out[i, :len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """Ids -> a sentence: <bos> skipped, stops at <eos> or <pad>."""
        words = []
        for i in ids:
            i = int(i)
            if i in (self.EOS, self.PAD):
                break
            if i != self.BOS:
                words.append(self.itos[i])
        return " ".join(words)


class DecoderBlock(nn.Module):
    """A pre-norm decoder block: causal self-attention, cross-attention to the encoder's
    output (queries from the target, keys and values from the source), then the MLP."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        d, h = config.d_model, config.n_heads
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d) for _ in range(3))
        self.self_attn = MultiHeadAttention(d, h, causal=True)
        self.cross_attn = MultiHeadAttention(d, h, causal=False)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, memory: torch.Tensor,
                memory_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x))
        x = x + self.cross_attn(self.norm2(x), context=memory, mask=memory_mask)
        return x + self.mlp(self.norm3(x))


class Seq2Seq(nn.Module):
    """An encoder–decoder Transformer (Vaswani et al. 2017), pre-norm, learned positions.

    The encoder is a stack of non-causal ``dlbook.gpt.Block``; the decoder's blocks add
    cross-attention. ``forward(src, tgt_in)`` -> logits (B, T, target vocabulary).
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, *, context_length: int = 16,
                 d_model: int = 32, n_layers: int = 2, n_heads: int = 4) -> None:
        super().__init__()
        config = GPTConfig(vocab_size=max(src_vocab, tgt_vocab), context_length=context_length,
                           d_model=d_model, n_layers=n_layers, n_heads=n_heads, causal=False)
        self.context_length = context_length
        self.src_emb, self.tgt_emb = nn.Embedding(src_vocab, d_model), nn.Embedding(tgt_vocab,
                                                                                   d_model)
        self.src_pos = nn.Embedding(context_length, d_model)
        self.tgt_pos = nn.Embedding(context_length, d_model)
        self.encoder = nn.ModuleList(Block(config) for _ in range(n_layers))
        self.decoder = nn.ModuleList(DecoderBlock(config) for _ in range(n_layers))
        self.norm_enc, self.norm_dec = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, tgt_vocab)

    def _check(self, ids: torch.Tensor, name: str) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.is_floating_point():
            raise ValueError(f"expected {name} to be integer ids of shape (batch, seq), got "
                             f"{getattr(ids, 'shape', type(ids).__name__)}")
        if ids.shape[1] > self.context_length:
            raise ValueError(f"{name} has {ids.shape[1]} positions, more than context_length="
                             f"{self.context_length}")

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source ids (B, S) -> (memory (B, S, d), key mask (B, 1, 1, S): False at padding)."""
        self._check(src, "src")
        mask = (src != Vocab.PAD)[:, None, None, :]
        x = self.src_emb(src) + self.src_pos.weight[:src.shape[1]]
        for block in self.encoder:
            x = block(x, mask=mask)
        return self.norm_enc(x), mask

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        self._check(tgt_in, "tgt_in")
        x = self.tgt_emb(tgt_in) + self.tgt_pos.weight[:tgt_in.shape[1]]
        for block in self.decoder:
            x = block(x, memory, mask)
        return self.head(self.norm_dec(x))

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        memory, mask = self.encode(src)
        return self.decode(tgt_in, memory, mask)


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: torch.Tensor, max_len: int) -> torch.Tensor:
    """Translate ``src`` (B, S) one token at a time, always taking the likeliest: -> (B, ≤ max_len)
    ids starting with <bos>; a row that has produced <eos> keeps producing <pad>."""
    if not isinstance(max_len, int) or max_len < 2 or max_len > model.context_length:
        raise ValueError(f"max_len must be an integer from 2 to context_length="
                         f"{model.context_length}, got {max_len!r}")
    memory, mask = model.encode(src)
    out = torch.full((src.shape[0], 1), Vocab.BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    for _ in range(max_len - 1):
        nxt = model.decode(out, memory, mask)[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, Vocab.PAD), nxt)
        out = torch.cat([out, nxt[:, None]], dim=1)
        done |= nxt == Vocab.EOS
        if bool(done.all()):
            break
    return out


def _ngrams(words: list[str], n: int) -> Counter:
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def bleu(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    """Corpus BLEU (Papineni et al. 2002) in percent, one reference per sentence, on words
    split at spaces: the brevity penalty times the geometric mean of the clipped n-gram
    precisions, n = 1 ... max_n, pooled over the corpus. A precision with no match is smoothed
    as sacrebleu's default ("exp": 1 / (2^k · total) for the k-th such order), so for
    lower-case sentences without punctuation this equals ``sacrebleu.corpus_bleu``."""
    if isinstance(hypotheses, str) or isinstance(references, str):
        raise ValueError("pass lists of sentences, e.g. bleu([hyp], [ref]), not strings")
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"need as many hypotheses as references (at least one), got "
                         f"{len(hypotheses)} and {len(references)}")
    correct, total = [0] * max_n, [0] * max_n
    hyp_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references):
        h, r = hyp.split(), ref.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, max_n + 1):
            hc, rc = _ngrams(h, n), _ngrams(r, n)
            correct[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())    # clipped matches
            total[n - 1] += max(len(h) - n + 1, 0)
    if not any(correct):
        return 0.0
    bp = 1.0 if hyp_len >= ref_len else math.exp(1 - ref_len / hyp_len)
    logs, k = [], 0
    for c, t in zip(correct, total):
        if t == 0:
            break
        if c == 0:
            k += 1
            logs.append(math.log(100.0 / (2 ** k * t)))
        else:
            logs.append(math.log(100.0 * c / t))
    logs += [-9999999999.0] * (max_n - len(logs))    # sacrebleu's log(0)
    return bp * math.exp(sum(logs) / max_n)
