"""Section 5.2: dlbook.numerics against PyTorch's casts, torch.finfo, math.fsum and GradScaler."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook import numerics as nm
from dlbook.gpt import GPT, GPTConfig, init_weights_

TORCH_FORMATS = [f for f in nm.FORMATS.values() if f.dtype is not None]
UINT = {8: torch.uint8, 16: torch.int16, 32: torch.int32}


def torch_bits(x: torch.Tensor, f: nm.Format) -> list[int]:
    return (x.to(f.dtype).view(UINT[f.bits]).to(torch.int64) & (2 ** f.bits - 1)).tolist()


def test_finfo_matches_the_bit_counts():
    for f in TORCH_FORMATS:
        fi = torch.finfo(f.dtype)
        assert fi.bits == f.bits
        assert (fi.max, fi.smallest_normal, fi.eps) == (f.max_normal, f.min_normal, f.eps)
    tf32 = nm.FORMATS["tf32"]
    assert tf32.bits == 19 and tf32.max_normal == (2 - 2 ** -10) * 2.0 ** 127
    assert tf32.min_normal == torch.finfo(torch.float32).smallest_normal and tf32.eps == 2 ** -10


def test_published_extremes():
    assert nm.FORMATS["fp16"].max_normal == 65504 and nm.FORMATS["fp16"].min_subnormal == 2 ** -24
    assert nm.FORMATS["fp8_e4m3fn"].max_normal == 448 and nm.FORMATS["fp8_e5m2"].max_normal == 57344
    assert nm.FORMATS["fp8_e4m3fn"].min_subnormal == 2 ** -9
    assert nm.FORMATS["fp8_e5m2"].min_subnormal == 2 ** -16


@pytest.mark.parametrize("f", TORCH_FORMATS, ids=lambda f: f.name)
def test_encode_matches_torch_casts(f):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2000, generator=g) * 10 ** torch.empty(2000).uniform_(-12, 6, generator=g)
    specials = [0.0, -0.0, 464.0, 465.0, 448.0, 480.0, 57344.0, 61440.0, 65504.0, 65519.0,
                65520.0, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 1e-45, math.inf, -math.inf]
    x = torch.cat([x, torch.tensor(specials)]).float()      # fp32 values: cast without detour
    for v, b in zip(x.tolist(), torch_bits(x, f)):
        assert nm.encode(v, f) == b, (f.name, v)


@pytest.mark.parametrize("f", list(nm.FORMATS.values()), ids=lambda f: f.name)
def test_decode_inverts_encode(f):
    g = torch.Generator().manual_seed(2)
    values = (torch.randn(500, generator=g, dtype=torch.float64) *
              10 ** torch.empty(500, dtype=torch.float64).uniform_(-8, 4, generator=g))
    for v in values.tolist():
        r = nm.round_to(v, f)
        assert nm.round_to(r, f) == r                        # rounding is idempotent
        assert nm.decode(nm.float_bits(r, f), f) == r
        if f.min_normal <= abs(v) <= f.max_normal:
            assert abs(r - v) <= f.eps / 2 * abs(v)            # relative error at most eps / 2


@pytest.mark.parametrize("f", [f for f in TORCH_FORMATS if f.bits <= 16], ids=lambda f: f.name)
def test_every_bit_pattern_decodes_as_torch_does(f):
    patterns = torch.arange(2 ** f.bits, dtype=torch.int64)
    signed = torch.where(patterns >= 2 ** (f.bits - 1), patterns - 2 ** f.bits, patterns)
    values = signed.to(UINT[f.bits]).view(f.dtype).double().tolist()
    for b, v in zip(patterns.tolist(), values):
        mine = nm.decode(b, f)
        assert (math.isnan(mine) and math.isnan(v)) or mine == v, (f.name, b)


def test_decode_and_bits_strings():
    assert nm.float_bits(1.0, "fp16") == "0|01111|0000000000"
    assert nm.float_bits(-2.0, "bf16") == "1|10000000|0000000"
    assert nm.decode("1|10010|1001000000", "fp16") == -12.5
    assert nm.decode("0 1111 110", "fp8_e4m3fn") == 448
    assert math.isnan(nm.decode("0|1111|111", "fp8_e4m3fn"))
    assert nm.decode("0|11111|00", "fp8_e5m2") == math.inf
    with pytest.raises(ValueError, match="binary digits"):
        nm.decode("0101", "fp16")
    with pytest.raises(ValueError, match="unknown format"):
        nm.encode(1.0, "fp12")
    with pytest.raises(ValueError, match="Python float"):
        nm.encode("1.0", "fp16")


def test_round_mantissa_is_fp16_and_bf16_rounding_inside_their_range():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5000, generator=g) * 10 ** torch.empty(5000).uniform_(-3, 3, generator=g)
    x = x[(x.abs() >= 2 ** -14) & (x.abs() <= 60000)]          # fp16's normal range
    torch.testing.assert_close(nm.round_mantissa(x, 10), x.half().float(), rtol=0, atol=0)
    torch.testing.assert_close(nm.round_mantissa(x, 7), x.bfloat16().float(), rtol=0, atol=0)
    tf32 = torch.tensor([nm.round_to(v, "tf32") for v in x.tolist()], dtype=torch.float32)
    torch.testing.assert_close(nm.round_mantissa(x, 10), tf32, rtol=0, atol=0)
    special = torch.tensor([math.inf, -math.inf, 0.0, torch.finfo(torch.float32).max])
    assert nm.round_mantissa(special, 10)[:3].tolist() == [math.inf, -math.inf, 0.0]
    assert nm.round_mantissa(special, 10)[3] == math.inf       # rounds past fp32's max
    with pytest.raises(ValueError, match="float32"):
        nm.round_mantissa(x.double(), 10)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60))
def test_kahan_in_float64_is_close_to_fsum(xs):
    exact = math.fsum(xs)
    bound = 4 * 2 ** -53 * math.fsum(abs(x) for x in xs) + 1e-300
    assert abs(nm.kahan_sum(xs, torch.float64) - exact) <= bound


def test_kahan_fixes_the_stalled_sums():
    xs = [1.0] + [1e-16] * 2000
    assert nm.sequential_sum(xs, torch.float64) == 1.0
    assert nm.kahan_sum(xs, torch.float64) == pytest.approx(math.fsum(xs), rel=1e-15)
    small = [0.01] * 2000
    assert nm.sequential_sum(small, torch.bfloat16) == 4.0           # stalls
    assert abs(nm.kahan_sum(small, torch.bfloat16) - 20) <= 0.125     # one bf16 step at 20
    assert nm.sequential_sum([1.0] * 300, torch.bfloat16) == 256


def _tiny_gpt(seed: int) -> GPT:
    config = GPTConfig.gpt2(vocab_size=16, context_length=8, d_model=16, n_layers=1, n_heads=2)
    return init_weights_(GPT(config), seed)


def test_loss_scaler_matches_torch_grad_scaler():
    torch.manual_seed(0)
    ours, theirs = _tiny_gpt(0), _tiny_gpt(0)
    opt_a = torch.optim.SGD(ours.parameters(), lr=0.1)
    opt_b = torch.optim.SGD(theirs.parameters(), lr=0.1)
    mine = nm.LossScaler(init_scale=2.0 ** 20, growth_interval=3)
    ref = torch.amp.GradScaler("cpu", init_scale=2.0 ** 20, growth_interval=3)
    g = torch.Generator().manual_seed(0)
    skipped = 0
    for _ in range(25):
        x = torch.randint(16, (4, 8), generator=g)
        for model, opt, scaler in ((ours, opt_a, mine), (theirs, opt_b, ref)):
            with torch.autocast("cpu", dtype=torch.float16):
                logits = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), x.flatten())
            opt.zero_grad()
            scaler.scale(loss).backward()
            scaler.step(opt)
        before = mine.scale_value
        mine.update()
        ref.update()
        skipped += mine.scale_value < before
        assert mine.scale_value == ref.get_scale()
    assert skipped >= 1
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_loss_scaler_validates():
    with pytest.raises(ValueError, match="growth_interval"):
        nm.LossScaler(growth_interval=0)
    with pytest.raises(ValueError, match="init_scale"):
        nm.LossScaler(init_scale=-1.0)
