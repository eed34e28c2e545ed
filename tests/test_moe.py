"""dlbook.moe: routing equals a per-token loop, gradients, the load-balancing loss, errors."""

from __future__ import annotations

import math

import pytest
import torch

from dlbook.gpt import GPT, GPTConfig
from dlbook.lm import lm_loss
from dlbook.moe import MoE, aux_loss, load_balancing_loss, parameter_counts, route

F64 = torch.float64


def make(top_k: int, expert: str = "swiglu", n_experts: int = 4, d: int = 6, d_ff: int = 10,
         bias: bool = False, seed: int = 0, **kwargs) -> MoE:
    torch.manual_seed(seed)
    moe = MoE(d, d_ff, n_experts, top_k, expert=expert, bias=bias, **kwargs).to(F64)
    with torch.no_grad():                       # a router with opinions: spread-out logits
        moe.router.weight.mul_(5.0)
    return moe


def loop_reference(moe: MoE, x: torch.Tensor) -> torch.Tensor:
    """One token at a time: softmax over the experts, the top-k, their weighted outputs."""
    tokens = x.reshape(-1, x.shape[-1])
    rows = []
    for t in tokens:
        p = torch.softmax(moe.router.weight @ t, dim=0)
        order = sorted(range(moe.n_experts), key=lambda e: -float(p[e].detach()))[:moe.top_k]
        w = torch.stack([p[e] for e in order])
        if moe.renormalize:
            w = w / w.sum()
        rows.append(sum(w[j] * moe.experts[e](t) for j, e in enumerate(order)))
    return torch.stack(rows).reshape(x.shape)


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("expert", ["swiglu", "gelu"])
def test_forward_equals_a_per_token_loop(top_k, expert):
    moe = make(top_k, expert, bias=expert == "gelu")
    x = torch.randn(3, 7, 6, dtype=F64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(moe(x), loop_reference(moe, x), rtol=1e-12, atol=1e-12)
    assert moe.counts.sum() == 3 * 7 * top_k and moe.counts.shape == (4,)


@pytest.mark.parametrize("top_k", [1, 2])
def test_gradients_equal_the_loop_reference(top_k):
    moe = make(top_k)
    x = torch.randn(2, 5, 6, dtype=F64, generator=torch.Generator().manual_seed(2))
    w = torch.randn(2, 5, 6, dtype=F64, generator=torch.Generator().manual_seed(3))
    grads = []
    for fn in (moe, lambda t: loop_reference(moe, t)):
        moe.zero_grad()
        xx = x.clone().requires_grad_()
        (fn(xx) * w).sum().backward()
        grads.append([xx.grad] + [p.grad.clone() for p in moe.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert moe.router.weight.grad.abs().sum() > 0, "the task loss reaches the router"


@pytest.mark.parametrize("top_k", [1, 2])
def test_gradcheck(top_k):
    moe = make(top_k, n_experts=3, d=4, d_ff=5)
    x = torch.randn(5, 4, dtype=F64, generator=torch.Generator().manual_seed(4),
                    requires_grad=True)
    assert torch.autograd.gradcheck(moe, (x,))


def test_top1_gates_with_raw_probabilities_and_top2_renormalised():
    assert make(1).renormalize is False and make(2).renormalize is True
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 3.0]], dtype=F64)
    w1, e1, p = route(logits, 1, renormalize=False)
    torch.testing.assert_close(w1[:, 0], p.max(dim=-1).values)
    w2, e2, _ = route(logits, 2)
    torch.testing.assert_close(w2.sum(-1), torch.ones(2, dtype=F64))
    assert e2[0].tolist() == [0, 1] and e2[1, 0] == 2


def test_load_balancing_loss_formula():
    g = torch.Generator().manual_seed(5)
    probs = torch.softmax(torch.randn(10, 4, dtype=F64, generator=g), dim=-1)
    experts = probs.topk(2, dim=-1).indices
    f = torch.zeros(4, dtype=F64)
    for e in experts.flatten():
        f[e] += 1 / 20
    expected = 4 * sum(f[i] * probs[:, i].mean() for i in range(4))
    torch.testing.assert_close(load_balancing_loss(probs, experts), expected)
    # uniform probabilities and a balanced assignment give exactly 1
    uniform = torch.full((8, 4), 0.25, dtype=F64)
    balanced = torch.arange(8).remainder(4).unsqueeze(1)
    assert math.isclose(float(load_balancing_loss(uniform, balanced)), 1.0)
    # everything on one expert, which the router is sure of: n_experts
    sure = torch.zeros(8, 4, dtype=F64)
    sure[:, 0] = 1.0
    assert math.isclose(float(load_balancing_loss(sure, torch.zeros(8, 1, dtype=torch.long))),
                        4.0)


def test_aux_loss_gradient_pushes_towards_balance():
    """One gradient step on the aux loss alone lowers the share of the favourite expert."""
    moe = make(1, n_experts=4)
    with torch.no_grad():
        moe.router.weight[0] += 2.0                       # expert 0 favoured
    x = torch.randn(64, 6, dtype=F64, generator=torch.Generator().manual_seed(6)).abs()
    moe(x)
    before = moe.counts[0].item()
    moe.aux_loss.backward()
    with torch.no_grad():
        moe.router.weight -= 1.0 * moe.router.weight.grad
    moe(x)
    assert moe.counts[0].item() < before


def test_drop_in_replacement_in_gpt_and_parameter_counts():
    config = GPTConfig.llama(vocab_size=11, context_length=8, d_model=16, n_layers=2,
                             n_heads=2, d_ff=24)
    torch.manual_seed(0)
    model = GPT(config)
    dense_total = model.num_parameters()
    for block in model.blocks:
        block.mlp = MoE.from_config(config, n_experts=4, top_k=2)
    expert = 3 * 16 * 24
    total, active = parameter_counts(model)
    assert total == dense_total + 2 * (3 * expert + 16 * 4)
    assert active == total - 2 * 2 * expert
    x = torch.randint(11, (2, 8))
    loss = lm_loss(model, x, x) + 0.01 * aux_loss(model)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert float(aux_loss(model).detach()) > 0


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="top_k"):
        MoE(8, 16, n_experts=4, top_k=5)
    with pytest.raises(ValueError, match="top_k"):
        MoE(8, 16, n_experts=4, top_k=0)
    with pytest.raises(ValueError, match="n_experts"):
        MoE(8, 16, n_experts=0)
    with pytest.raises(ValueError, match="expert must be one of"):
        MoE(8, 16, expert="relu")
    with pytest.raises(ValueError, match="d_model=8"):
        MoE(8, 16)(torch.randn(3, 5))
    with pytest.raises(ValueError, match="top_k"):
        route(torch.randn(3, 4), 5)
    with pytest.raises(ValueError, match="tokens, n_experts"):
        route(torch.randn(4), 1)
    with pytest.raises(ValueError, match="top_k"):
        load_balancing_loss(torch.rand(3, 4), torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="no MoE layer"):
        aux_loss(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="forward pass first"):
        aux_loss(MoE(4, 8))


def test_aux_loss_is_hugging_face_mixtral_loss_divided_by_top_k():
    mixtral = pytest.importorskip("transformers.models.mixtral.modeling_mixtral")
    logits = torch.randn(20, 8, generator=torch.Generator().manual_seed(7))
    for top_k in (1, 2):
        _, experts, probs = route(logits, top_k)
        theirs = mixtral.load_balancing_loss_func((logits,), num_experts=8, top_k=top_k)
        torch.testing.assert_close(top_k * load_balancing_loss(probs, experts), theirs)
