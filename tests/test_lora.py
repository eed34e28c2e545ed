"""dlbook.lora: LoRA layers equal their base at initialisation, merge exactly, train only A and B."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from dlbook.gpt import GPT, GPTConfig
from dlbook.lora import (LoRALinear, add_lora, lora_parameter_count, lora_parameters,
                         merge_lora, trainable_parameters)

F64 = torch.float64


def small_gpt(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    config = GPTConfig.gpt2(vocab_size=20, context_length=16, d_model=32, n_layers=2, n_heads=4)
    return GPT(config).to(F64)


def tokens(seed: int = 1) -> torch.Tensor:
    return torch.randint(20, (3, 10), generator=torch.Generator().manual_seed(seed))


def test_lora_linear_equals_base_at_init_and_shapes():
    base = nn.Linear(6, 5, dtype=F64)
    layer = LoRALinear(base, r=2, alpha=4)
    assert layer.A.shape == (2, 6) and layer.B.shape == (5, 2)
    assert torch.all(layer.B == 0) and layer.A.abs().sum() > 0
    x = torch.randn(4, 6, dtype=F64)
    torch.testing.assert_close(layer(x), base(x), rtol=0, atol=0)
    assert layer.scale == 2.0


def test_forward_is_base_plus_scaled_low_rank_update():
    layer = LoRALinear(nn.Linear(6, 5, dtype=F64), r=3, alpha=1.5)
    with torch.no_grad():
        layer.B.normal_()
    x = torch.randn(4, 6, dtype=F64)
    W = layer.base.weight + 1.5 / 3 * layer.B @ layer.A
    torch.testing.assert_close(layer(x), x @ W.T + layer.base.bias)
    torch.testing.assert_close(layer.delta_weight(), 0.5 * layer.B @ layer.A)


def test_adapted_model_equals_base_at_init():
    model = small_gpt()
    adapted = add_lora(copy.deepcopy(model), r=4, alpha=8)
    x = tokens()
    torch.testing.assert_close(adapted(x), model(x), rtol=0, atol=0)
    assert sum(isinstance(m, LoRALinear) for m in adapted.modules()) == 4   # q, v in 2 blocks


def test_merged_equals_adapted_and_is_plain():
    model = add_lora(small_gpt(), r=4, alpha=8, targets=("q_proj", "k_proj", "v_proj",
                                                          "o_proj", "fc", "proj"))
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_(0, 0.1)
    x = tokens()
    before = model(x)
    merge_lora(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(model(x), before, rtol=1e-12, atol=1e-12)


def test_gradient_only_on_A_and_B():
    model = add_lora(small_gpt(), r=2, alpha=2)
    with torch.no_grad():
        for p in lora_parameters(model):
            p.normal_(0, 0.1)
    model(tokens()).sum().backward()
    for name, p in model.named_parameters():
        if name.endswith((".A", ".B")):
            assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert not p.requires_grad and p.grad is None, name


def test_gradient_of_A_is_zero_at_init_and_of_B_is_not():
    model = add_lora(small_gpt(), r=2, alpha=2)
    model(tokens()).sum().backward()
    layer = model.blocks[0].attn.q_proj
    assert torch.all(layer.A.grad == 0) and layer.B.grad.abs().sum() > 0


def test_counts():
    model = small_gpt()
    full = trainable_parameters(model)
    assert full == sum(p.numel() for p in model.parameters())        # the tied matrix once
    add_lora(model, r=4, alpha=4)
    expected = 2 * 2 * 4 * (32 + 32)
    assert trainable_parameters(model) == expected
    assert sum(p.numel() for p in lora_parameters(model)) == expected
    assert lora_parameter_count([(32, 32)] * 4, r=4) == expected
    assert lora_parameter_count([(768, 768)] * 24, r=8) == 294_912


def test_reproducible_A_with_a_seed():
    a = add_lora(small_gpt(), r=2, seed=3).blocks[1].attn.v_proj.A
    b = add_lora(small_gpt(), r=2, seed=3).blocks[1].attn.v_proj.A
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_training_step_changes_only_the_adapter():
    model = add_lora(small_gpt(), r=2, alpha=4)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.AdamW(lora_parameters(model), lr=1e-2)
    model(tokens()).logsumexp(-1).mean().backward()
    opt.step()
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), n
    assert model.blocks[0].attn.q_proj.B.abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [
    (dict(r=0), "positive integer"),
    (dict(r=2.5), "positive integer"),
    (dict(r=64), "exceeds"),
    (dict(r=2, alpha=0), "alpha"),
    (dict(r=2, targets=("nope",)), "no nn.Linear"),
    (dict(r=2, targets=()), "targets is empty"),
])
def test_add_lora_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        add_lora(small_gpt(), **kwargs)


def test_other_bad_inputs():
    with pytest.raises(ValueError, match="wraps an nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1), r=1)
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge_lora(small_gpt())
    model = add_lora(small_gpt(), r=2)
    with pytest.raises(ValueError, match="already has LoRA"):
        add_lora(model, r=2)
    with pytest.raises(ValueError, match="nn.Module"):
        add_lora("model", r=2)
    with pytest.raises(ValueError, match=r"\(out, in\)"):
        lora_parameter_count([(3, 4, 5)], r=1)
