"""dlbook.calc: the formulas against the model they describe (parameters, FLOPs counted by
FlopCounterMode, saved activation bytes) and against published numbers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dlbook import calc
from dlbook.gpt import GPT, GPTConfig

ORIGINAL_SDPA = F.scaled_dot_product_attention

SMALL = [
    GPTConfig.gpt2(n_layers=2, d_model=64, n_heads=4, vocab_size=100, context_length=32),
    GPTConfig.gpt2(n_layers=3, d_model=48, n_heads=6, vocab_size=77, context_length=16,
                   bias=False, tie_embeddings=False, d_ff=100),
    GPTConfig.llama(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, vocab_size=100,
                    context_length=32),
    GPTConfig.llama(n_layers=3, d_model=64, n_heads=8, n_kv_heads=1, vocab_size=90,
                    context_length=24, bias=True, tie_embeddings=True),
    GPTConfig.gpt2(n_layers=1, d_model=32, n_heads=2, vocab_size=50, context_length=8,
                   norm="rmsnorm", mlp="swiglu", d_ff=40),
]


@pytest.mark.parametrize("config", SMALL, ids=range(len(SMALL)))
def test_parameter_count_equals_the_model(config):
    model = GPT(config)
    assert calc.parameter_count(config) == model.num_parameters()
    assert calc.parameter_count(config, exclude_embeddings=True) == \
        model.num_parameters(exclude_embeddings=True)


def test_parameter_count_of_published_models():
    assert calc.parameter_count(GPTConfig.gpt2("124M")) == 124_439_808
    assert calc.parameter_count(GPTConfig.gpt2("1.5B")) == 1_557_611_200
    assert calc.parameter_count(GPTConfig.llama("7B")) == 6_738_415_616
    assert calc.parameter_count(GPTConfig.llama("8B")) == 8_030_261_248
    # GPT-3 175B: 96 layers, d = 12288, 96 heads, 2048 tokens, GPT-2's vocabulary
    gpt3 = GPTConfig.gpt2(n_layers=96, d_model=12288, n_heads=96, context_length=2048)
    n = calc.parameter_count(gpt3)
    assert abs(n / 175e9 - 1) < 0.005
    # 12·L·d² dominates
    assert abs(12 * 96 * 12288 ** 2 / n - 1) < 0.02


def _counted_flops(model, idx):
    """FLOPs of forward + backward as FlopCounterMode counts them, with attention computed by
    dlbook's matmul version (the fused CPU kernel is not counted by FlopCounterMode)."""
    with calc.matmul_attention(), FlopCounterMode(display=False) as counter:
        model(idx).sum().backward()
    assert F.scaled_dot_product_attention is ORIGINAL_SDPA
    return counter.get_total_flops()


@pytest.mark.parametrize("config", SMALL, ids=range(len(SMALL)))
def test_flops_per_token_against_flop_counter(config):
    torch.manual_seed(0)
    model = GPT(config)
    B, T = 2, config.context_length
    idx = torch.randint(0, config.vocab_size, (B, T))
    counted = _counted_flops(model, idx)
    predicted = calc.flops_per_token(config, T) * B * T
    # the formula also counts 6 FLOPs per bias and norm weight, which the counter does not
    assert abs(predicted / counted - 1) < 0.03, (predicted, counted)
    # without the attention term the formula is visibly short (s is not tiny here)
    if T >= 24:
        short = calc.flops_per_token(config, T, attention=False) * B * T
        assert short / counted < 0.99


def test_flops_breakdown_scales():
    c = GPTConfig.gpt2("124M")
    f1 = calc.flops_per_token(c, 1024)
    f2 = calc.flops_per_token(c, 2048)
    assert math.isclose(f2 - f1, 12 * 12 * 1024 * 768)       # 12·L·Δs·d
    assert math.isclose(calc.flops_per_token(c, 1024, training=False) * 3, f1)


def test_training_flops_gpt3_and_chinchilla():
    assert math.isclose(calc.training_flops(175e9, 300e9), 3.15e23)
    assert calc.chinchilla_tokens(70e9) == 1.4e12
    n, d = calc.chinchilla_optimal(calc.training_flops(70e9, 1.4e12))
    assert math.isclose(n, 70e9) and math.isclose(d, 1.4e12)


def test_activation_formula_is_korthikanti():
    for s, b, h, a in ((2048, 1, 12288, 96), (1024, 8, 768, 12), (7, 3, 16, 2)):
        got = calc.activation_bytes_per_layer(s, b, h, a)
        assert math.isclose(got, s * b * h * (34 + 5 * a * s / h))
        no_drop = calc.activation_bytes_per_layer(s, b, h, a, dropout=False)
        assert math.isclose(no_drop, s * b * h * (32 + 2 * a * s / h))
        flash = calc.activation_bytes_per_layer(s, b, h, a, dropout=False,
                                                attention_matrix=False, lse_bytes=0)
        assert flash == 32 * s * b * h


def test_block_saves_about_what_the_formula_says():
    """One GPT-2 block in float32 without dropout, attention by dlbook's matmul version
    (which keeps the s × s probabilities): saved bytes, parameters excluded, within 10 % of the
    formula with 4-byte values (the norms' statistics and the causal mask are extra)."""
    from dlbook.gpt import Block
    torch.manual_seed(0)
    s, b, h, a = 64, 2, 64, 4
    cfg = GPTConfig.gpt2(n_layers=1, d_model=h, n_heads=a, context_length=s, vocab_size=10)
    block = Block(cfg)
    x = torch.randn(b, s, h, requires_grad=True)
    with calc.matmul_attention():
        saved, _, rows = calc.saved_tensor_bytes(lambda: block(x * 1.0),
                                                 exclude=block.parameters())
    predicted = calc.activation_bytes_per_layer(s, b, h, a, bytes_per_value=4, dropout=False)
    assert 0.95 < saved / predicted < 1.1, (saved, predicted, rows)
    # PyTorch's fused kernel keeps no s × s matrix: the attention term is gone
    fused, _, _ = calc.saved_tensor_bytes(lambda: block(x * 1.0), exclude=block.parameters())
    assert fused < saved - 0.75 * 4 * a * s * s * b


def test_training_memory_and_zero():
    c = GPTConfig.gpt2("1.5B")
    n = calc.parameter_count(c)
    m = calc.training_memory(c, 1, 1024)
    assert m.model_states == 16 * n
    assert calc.bytes_per_parameter("fp32", "adam") == {"weights": 4, "gradients": 4,
                                                        "optimizer": 8}
    z1 = calc.training_memory(c, 1, 1024, zero_stage=1, n_devices=8)
    z3 = calc.training_memory(c, 1, 1024, zero_stage=3, n_devices=8)
    assert z1.model_states == (2 + 2 + 12 / 8) * n
    assert z3.model_states == 16 * n / 8
    full = calc.training_memory(c, 4, 1024, checkpointing="full")
    none = calc.training_memory(c, 4, 1024)
    assert full.activations < none.activations / 5
    assert m.fits(80e9) and not calc.training_memory(GPTConfig.llama("7B"), 1, 4096).fits(80e9)


def test_largest_batch_is_the_boundary():
    c = GPTConfig.gpt2("355M")
    b = calc.largest_batch(c, 24e9, 1024)
    assert b >= 1
    assert calc.training_memory(c, b, 1024).fits(24e9)
    assert not calc.training_memory(c, b + 1, 1024).fits(24e9)
    assert calc.largest_batch(GPTConfig.llama("7B"), 24e9, 4096) == 0


def test_time_mfu_and_nanogpt_estimate():
    c = GPTConfig.gpt2("124M")
    fpt = calc.flops_per_token(c, 1024)
    t = calc.training_time(fpt * 1e9, 312e12, mfu=0.5)
    assert math.isclose(t, fpt * 1e9 / 156e12)
    assert math.isclose(calc.mfu(1e5, fpt, 312e12), 1e5 * fpt / 312e12)
    # nanoGPT: N without the position table, 12 sequences of 1024 in one second
    n = calc.parameter_count(c) - 1024 * 768
    est = calc.estimate_mfu(c, n, 1024, 12, 1.0)
    assert math.isclose(est, (6 * n + 12 * 12 * 12 * 64 * 1024) * 1024 * 12 / 312e12)


def test_kv_cache_bytes():
    llama3_70b = GPTConfig.llama("8B", n_layers=80, d_model=8192, n_heads=64, n_kv_heads=8)
    assert calc.kv_cache_bytes(llama3_70b, 1, 1) == 327_680


@pytest.mark.parametrize("call", [
    lambda: calc.parameter_count({"d_model": 10}),
    lambda: calc.flops_per_token(GPTConfig.gpt2(), 0),
    lambda: calc.training_flops(-1, 10),
    lambda: calc.activation_bytes_per_layer(10, 0, 8, 2),
    lambda: calc.training_memory(GPTConfig.gpt2(), 1, precision="fp8"),
    lambda: calc.training_memory(GPTConfig.gpt2(), 1, zero_stage=4),
    lambda: calc.training_memory(GPTConfig.gpt2(), 1, optimizer="lion"),
    lambda: calc.activation_bytes(GPTConfig.gpt2(), 1, checkpointing="some"),
    lambda: calc.training_time(1e20, 1e15, mfu=1.5),
])
def test_bad_input_names_the_fix(call):
    with pytest.raises(ValueError):
        call()


def test_gpus_ridge_points():
    assert 290 < calc.GPUS["H100"].ridge_point < 300
    assert all(g.bandwidth > 0 and g.memory_bytes > 0 for g in calc.GPUS.values())
