"""dlbook.gpt against Hugging Face transformers (GPT2LMHeadModel, LlamaForCausalLM) built from the
same configuration with random weights: logits within 1e-5 in float64, both conversion
directions; parameter counts against the published sizes; the KV cache against recomputation;
sampling; configuration errors."""

from __future__ import annotations

import pytest
import torch
import transformers

from dlbook.gpt import GPT, GPTConfig, config_from_hf, hf_config, init_weights_, sample

D = torch.float64
SMALL = dict(vocab_size=101, context_length=24, d_model=32, n_layers=2, n_heads=4)
CONFIGS = {
    "gpt2": GPTConfig.gpt2(**SMALL),
    "gpt2-untied-dff": GPTConfig.gpt2(**SMALL, tie_embeddings=False, d_ff=48),
    "gpt2-3layers": GPTConfig.gpt2(**{**SMALL, "n_layers": 3, "n_heads": 2}),
    "llama": GPTConfig.llama(**SMALL),
    "llama-gqa": GPTConfig.llama(**SMALL, n_kv_heads=2),
    "llama-mqa-tied-bias": GPTConfig.llama(**SMALL, n_kv_heads=1, tie_embeddings=True, bias=True),
    "llama-theta": GPTConfig.llama(**SMALL, rope_theta=500000.0, norm_eps=1e-6, d_ff=40),
}


def _random(model: GPT, seed: int) -> GPT:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():                   # large enough that every part matters
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return model


def _hf_model(config: GPTConfig):
    cls = (transformers.GPT2LMHeadModel if config.norm == "layernorm"
           else transformers.LlamaForCausalLM)
    hf = cls(hf_config(config)).double().eval()
    hf.config._attn_implementation = "eager"
    return hf


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_equal_transformers_both_ways(name):
    config = CONFIGS[name]
    ours = _random(GPT(config).double().eval(), 0)
    idx = torch.randint(0, config.vocab_size, (3, config.context_length),
                        generator=torch.Generator().manual_seed(1))
    hf = ours.to_hf()                                      # ours -> Hugging Face
    hf.config._attn_implementation = "eager"
    torch.testing.assert_close(ours(idx), hf(idx).logits, rtol=0, atol=1e-5)
    hf2 = _random_hf(_hf_model(config), 2)                 # Hugging Face -> ours
    back = GPT.from_hf(hf2)
    torch.testing.assert_close(back(idx), hf2(idx).logits, rtol=0, atol=1e-5)
    assert back.num_parameters() == sum(p.numel() for p in hf2.parameters())
    assert config_from_hf(hf_config(config)) == config


def _random_hf(hf, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in hf.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.3)
    return hf


def test_gradients_equal_transformers():
    config = CONFIGS["llama-gqa"]
    ours = _random(GPT(config).double(), 4)
    hf = ours.to_hf()
    hf.config._attn_implementation = "eager"
    idx = torch.randint(0, config.vocab_size, (2, 10))
    ours(idx).square().mean().backward()
    hf(idx).logits.square().mean().backward()
    torch.testing.assert_close(ours.blocks[1].attn.k_proj.weight.grad,
                               hf.model.layers[1].self_attn.k_proj.weight.grad,
                               rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("size,published", [("124M", 124_439_808), ("355M", 354_823_168),
                                            ("774M", 774_030_080), ("1.5B", 1_557_611_200)])
def test_gpt2_sizes(size, published):
    with torch.device("meta"):
        model = GPT(GPTConfig.gpt2(size))
    assert model.num_parameters() == published
    c = model.config
    formula = (12 * c.n_layers * c.d_model ** 2 + 13 * c.n_layers * c.d_model
               + (c.vocab_size + c.context_length + 2) * c.d_model)
    assert formula == published


@pytest.mark.parametrize("size,published", [("7B", 6_738_415_616), ("8B", 8_030_261_248)])
def test_llama_sizes(size, published):
    with torch.device("meta"):
        model = GPT(GPTConfig.llama(size))
    assert model.num_parameters() == published


def test_tied_weights_are_one_tensor_and_counted_once():
    model = GPT(CONFIGS["gpt2"])
    assert model.lm_head.weight is model.tok_emb.weight
    untied = GPT(CONFIGS["gpt2-untied-dff"])
    c = untied.config
    assert untied.num_parameters() - untied.num_parameters(exclude_embeddings=True) == (
        c.vocab_size + c.context_length) * c.d_model


def test_initialisation_follows_gpt2():
    torch.manual_seed(0)
    model = GPT(GPTConfig.gpt2(vocab_size=500, context_length=64, d_model=128, n_layers=8,
                               n_heads=4))
    assert abs(model.blocks[0].attn.q_proj.weight.std().item() - 0.02) < 0.002
    assert abs(model.blocks[0].mlp.proj.weight.std().item() - 0.02 / 4) < 0.0005
    assert (model.blocks[0].attn.q_proj.bias == 0).all()


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
def test_kv_cache_forward_equals_recomputation(name):
    model = _random(GPT(CONFIGS[name]).double().eval(), 5)
    idx = torch.randint(0, 101, (2, 20))
    full = model(idx)
    caches = model.new_caches()
    steps = [model(idx[:, :7], caches)] + [model(idx[:, t:t + 1], caches) for t in range(7, 20)]
    torch.testing.assert_close(torch.cat(steps, 1), full)


@pytest.mark.parametrize("name", ["gpt2", "llama-gqa"])
@pytest.mark.parametrize("kw", [dict(temperature=0.0), dict(temperature=0.8, top_k=5),
                                dict(top_p=0.9), dict(temperature=1.3)])
def test_generate_with_cache_equals_without(name, kw):
    model = GPT(CONFIGS[name]).double().eval()
    prompt = torch.randint(0, 101, (2, 5), generator=torch.Generator().manual_seed(0))
    # 30 new tokens: past the context window of 24, where both recompute the last 24
    a = model.generate(prompt, 30, generator=torch.Generator().manual_seed(7), **kw)
    b = model.generate(prompt, 30, generator=torch.Generator().manual_seed(7), use_cache=False,
                       **kw)
    assert a.shape == (2, 35) and torch.equal(a[:, :5], prompt)
    assert torch.equal(a, b)


def test_sampling_rules():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]], dtype=D))
    assert sample(logits, temperature=0).item() == 0
    g = torch.Generator().manual_seed(0)
    draws = torch.cat([sample(logits, top_k=2, generator=g) for _ in range(400)])
    assert set(draws.flatten().tolist()) == {0, 1}
    draws = torch.cat([sample(logits, top_p=0.79, generator=g) for _ in range(400)])
    assert set(draws.flatten().tolist()) == {0, 1}                  # 0.5 + 0.3 reaches 0.79
    draws = torch.cat([sample(logits, top_p=0.81, generator=g) for _ in range(400)])
    assert set(draws.flatten().tolist()) == {0, 1, 2}
    draws = torch.cat([sample(logits, top_p=0.1, generator=g) for _ in range(50)])
    assert set(draws.flatten().tolist()) == {0}                     # always keeps the top token
    freq = torch.cat([sample(logits, generator=g) for _ in range(4000)]).flatten().bincount(minlength=4)
    torch.testing.assert_close(freq / 4000.0, logits.exp()[0].float(), atol=0.03, rtol=0)


def test_encoder_is_the_same_model_without_the_mask():
    one = {**SMALL, "n_layers": 1}     # one block: the last position's inputs are the same
    causal = GPT(GPTConfig.gpt2(**one)).double().eval()
    encoder = GPT(GPTConfig.gpt2(**one, causal=False)).double().eval()
    encoder.load_state_dict(causal.state_dict())
    idx = torch.randint(0, 101, (1, 8))
    a, b = causal(idx), encoder(idx)
    torch.testing.assert_close(a[:, -1], b[:, -1])        # the last token sees everything anyway
    assert not torch.allclose(a[:, 0], b[:, 0])
    changed = idx.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 101
    torch.testing.assert_close(causal(changed)[:, :-1], a[:, :-1])   # no peeking ahead
    assert not torch.allclose(encoder(changed)[:, 0], b[:, 0])


def test_config_and_input_errors():
    with pytest.raises(ValueError, match="norm must be one of"):
        GPTConfig(norm="batchnorm")
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        GPTConfig(n_heads=12, n_kv_heads=5)
    with pytest.raises(ValueError, match="size must be one of"):
        GPTConfig.gpt2("2B")
    with pytest.raises(ValueError, match="positive integer"):
        GPTConfig(n_layers=0)
    model = GPT(CONFIGS["gpt2"])
    with pytest.raises(ValueError, match="context_length"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="integer token ids"):
        model(torch.zeros(1, 5))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 3, temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        model.generate(torch.zeros(1, 2, dtype=torch.long), 3, top_p=0)
    with pytest.raises(ValueError, match="Hugging Face has"):
        GPT(GPTConfig.gpt2(**SMALL, norm="rmsnorm")).to_hf()
    with pytest.raises(ValueError, match="GPTConfig"):
        GPT(dict(SMALL))


def test_portable_initialisation_follows_gpt2_and_is_seeded():
    config = GPTConfig.llama(**{**SMALL, "n_layers": 8, "d_model": 64})
    a = init_weights_(GPT(config), seed=3)
    b = init_weights_(GPT(config), seed=3)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    q_w = torch.cat([blk.attn.q_proj.weight.flatten() for blk in a.blocks])
    down = torch.cat([blk.mlp.down_proj.weight.flatten() for blk in a.blocks])
    assert abs(q_w.std().item() - 0.02) < 0.001
    assert abs(down.std().item() - 0.02 / 4) < 0.0003            # 1 / sqrt(2 * 8 layers)
    assert (a.blocks[0].norm1.weight == 1).all()
    gpt2 = init_weights_(GPT(GPTConfig.gpt2(**SMALL)), seed=0, std=0.1)
    assert (gpt2.blocks[0].attn.q_proj.bias == 0).all()
    assert abs(gpt2.tok_emb.weight.std().item() - 0.1) < 0.01


def test_padding_mask_hides_keys():
    model = _random(GPT(CONFIGS["llama"]).double().eval(), 6)
    idx = torch.randint(0, 101, (2, 10))
    torch.testing.assert_close(model(idx, mask=torch.ones(10, 10, dtype=torch.bool)), model(idx))
    hide_first = torch.ones(2, 1, 1, 10, dtype=torch.bool)
    hide_first[:, :, :, 0] = False                                 # key 0 is padding
    changed = idx.clone()
    changed[:, 0] = (changed[:, 0] + 1) % 101
    a, b = model(idx, mask=hide_first), model(changed, mask=hide_first)
    torch.testing.assert_close(a[:, 1:], b[:, 1:])                 # nobody else reads it
