"""Tests of dlbook.compress against torch's quantized tensors, torch.nn.utils.prune and plain
greedy decoding, on several random configurations."""

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from dlbook import compress
from dlbook.gpt import GPT, GPTConfig, init_weights_

warnings.filterwarnings("ignore", message=".*quantiz.*")


def _same_integers(q, ref, w, scale):
    """Equal, except by one where w/scale is within 1e-4 of a half (torch's portable kernel adds
    the zero point in float32 before rounding, its vectorised kernel after)."""
    x = w.double() / scale.double().reshape((-1, 1) if scale.dim() else ())
    near_tie = ((x - x.floor()) - 0.5).abs() < 1e-4
    diff = (q.long() - ref.int_repr().long()).abs()
    return bool(((diff == 0) | ((diff == 1) & near_tie)).all())


def _tensors(n=40):
    g = torch.Generator().manual_seed(73)
    for i in range(n):
        rows, cols = torch.randint(1, 40, (2,), generator=g).tolist()
        shift = 0.0 if i % 3 else float(torch.randn((), generator=g))   # some all-positive
        w = torch.randn(rows, cols, generator=g) * float(torch.rand((), generator=g) * 5 + 1e-3)
        yield (w + 3 * abs(shift)) if i % 5 == 0 else w


@pytest.mark.parametrize("scheme, qdtype", [("symmetric", torch.qint8), ("affine", torch.quint8)])
def test_per_tensor_matches_torch(scheme, qdtype):
    for w in _tensors():
        q, scale, zp = compress.quantize(w, 8, scheme)
        ref = torch.quantize_per_tensor(w, scale.item(), int(zp), qdtype)
        assert _same_integers(q, ref, w, scale)
        assert ref.q_scale() == scale.item() and ref.q_zero_point() == int(zp)
        torch.testing.assert_close(compress.dequantize(q, scale, zp), ref.dequantize(),
                                   rtol=0, atol=float(scale) * 1.001)
        # the error of rounding is at most half a step inside the range
        assert (compress.dequantize(q, scale, zp) - w).abs().max() <= scale / 2 * (1 + 1e-5)


@pytest.mark.parametrize("scheme, qdtype", [("symmetric", torch.qint8), ("affine", torch.quint8)])
def test_per_channel_matches_torch(scheme, qdtype):
    for w in _tensors():
        q, scale, zp = compress.quantize(w, 8, scheme, axis=0)
        assert scale.shape == zp.shape == (w.shape[0],)
        ref = torch.quantize_per_channel(w, scale.double(), zp, 0, qdtype)
        assert _same_integers(q, ref, w, scale)
        torch.testing.assert_close(compress.dequantize(q, scale, zp), ref.dequantize(),
                                   rtol=0, atol=float(scale.max()) * 1.001)


def test_per_channel_never_worse_and_bits():
    for w in _tensors(10):
        w = w * torch.logspace(-2, 1, w.shape[0])[:, None]     # rows of very different sizes
        errs = {}
        for axis in (None, 0):
            q, s, z = compress.quantize(w, 8, "symmetric", axis)
            errs[axis] = (compress.dequantize(q, s, z) - w).abs().max()
        assert errs[0] <= errs[None] + 1e-7
        for bits in (2, 4, 8):
            q, s, z = compress.quantize(w, bits, "affine")
            assert int(q.max()) <= 2 ** bits - 1
            q, s, z = compress.quantize(w, bits)
            assert int(q.abs().max()) <= 2 ** (bits - 1) - 1


def test_quantize_bad_input():
    with pytest.raises(ValueError, match="bits"):
        compress.quantize(torch.randn(3, 3), bits=16)
    with pytest.raises(ValueError, match="scheme"):
        compress.quantize(torch.randn(3, 3), scheme="asymmetric")
    with pytest.raises(ValueError, match="floating"):
        compress.quantize(torch.ones(3, dtype=torch.long))


def test_quantized_linear_and_size():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 10)).double()
    qmodel = compress.quantize_linears(model)
    x = torch.randn(5, 30, dtype=torch.float64)
    for lin, ql in ((model[0], qmodel[0]), (model[2], qmodel[2])):
        q, s, z = compress.quantize(lin.weight.detach(), 8, "symmetric", 0)
        torch.testing.assert_close(ql.weight(), compress.dequantize(q, s, z))
    assert (qmodel(x) - model(x)).abs().max() < 0.05
    weights = 30 * 64 + 64 * 10
    assert compress.model_bytes(model) == 8 * (weights + 74)
    assert compress.model_bytes(qmodel) == weights + 8 * 74 + 8 * 74 + 4 * 74  # int32 zero points


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_magnitude_prune_matches_torch(amount):
    torch.manual_seed(int(amount * 10))
    model = nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 7)).double()
    ours, ref = [copy.deepcopy(model) for _ in range(2)]
    masks = compress.magnitude_prune(ours, amount, "global")
    prune.global_unstructured([(ref[0], "weight"), (ref[2], "weight")],
                              pruning_method=prune.L1Unstructured, amount=amount)
    assert torch.equal(masks["0"], ref[0].weight_mask.bool())
    assert torch.equal(masks["2"], ref[2].weight_mask.bool())
    assert torch.equal(ours[0].weight, ref[0].weight)
    assert abs(compress.sparsity(ours) - round(amount * 380) / 380) < 1e-12
    layer = copy.deepcopy(model)
    lmasks = compress.magnitude_prune(layer, amount, "layer")
    for name in ("0", "2"):
        m = getattr(model, name)
        prune.l1_unstructured(m, "weight", amount)
        assert torch.equal(lmasks[name], m.weight_mask.bool())


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.8])
def test_structured_prune_matches_torch_and_shrinks(keep):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(9, 16), nn.ReLU(), nn.Linear(16, 12), nn.Tanh(),
                          nn.Linear(12, 3)).double()
    small = compress.structured_prune(model, keep)
    assert small[0].out_features == round(keep * 16) and small[2].in_features == round(keep * 16)
    assert small[2].out_features == round(keep * 12) and small[4].in_features == round(keep * 12)
    # the same network as the dense one with the dropped neurons' rows masked to zero
    masked = copy.deepcopy(model)
    for i in (0, 2):
        prune.ln_structured(masked[i], "weight", amount=1 - round(keep * masked[i].out_features)
                            / masked[i].out_features, n=2, dim=0)
        kept = masked[i].weight_mask[:, 0].bool()
        with torch.no_grad():
            masked[i].bias.mul_(kept)
    x = torch.randn(8, 9, dtype=torch.float64)
    torch.testing.assert_close(small(x), masked(x))
    with pytest.raises(ValueError, match="keep"):
        compress.structured_prune(model, 0.0)


def test_distillation_loss():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 5, 11, generator=g), torch.randn(2, 5, 11, generator=g)
    y = torch.randint(11, (2, 5), generator=g)
    ce = nn.functional.cross_entropy(s.reshape(-1, 11), y.reshape(-1))
    for T in (1.0, 2.0, 4.0):
        pt, ps = (t / T).softmax(-1), (s / T).softmax(-1)
        kl = (pt * (pt.log() - ps.log())).sum(-1).mean()
        want = 0.3 * T ** 2 * kl + 0.7 * ce
        torch.testing.assert_close(compress.distillation_loss(s, t, y, T, 0.3), want)
    torch.testing.assert_close(compress.distillation_loss(s, None, y), ce)
    assert compress.distillation_loss(t, t, y, 2.0, 1.0).abs() < 1e-6


def test_speculative_greedy_equals_greedy():
    V = 13
    for seed, k in ((0, 1), (1, 3), (2, 5)):
        target = init_weights_(GPT(GPTConfig.gpt2(vocab_size=V, context_length=40, d_model=32,
                                                  n_layers=2, n_heads=4)), seed, std=0.3).double()
        draft = init_weights_(GPT(GPTConfig.gpt2(vocab_size=V, context_length=40, d_model=16,
                                                 n_layers=1, n_heads=2)), seed + 10, std=0.3).double()
        prompt = torch.randint(V, (1, 5), generator=torch.Generator().manual_seed(seed))
        want = greedy = compress.greedy_decode(target, prompt, 30)
        assert torch.equal(greedy[:, :-1], target.generate(prompt, 29, temperature=0))
        got, stats = compress.speculative_greedy(target, draft, prompt, 30, k)
        assert torch.equal(got, want)
        assert stats["accepted"] + stats["target_calls"] == 30
        same, st = compress.speculative_greedy(target, target, prompt, 30, k)
        assert torch.equal(same, want) and st["accepted"] == st["proposed"]
        assert st["target_calls"] == -(-30 // (k + 1))
