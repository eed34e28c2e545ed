"""dlbook.attention against PyTorch: scaled dot-product attention on random shapes and masks,
rotary embeddings (relative positions, the interleaved convention), multi-head attention against
nn.MultiheadAttention with copied weights, grouped-query heads and the KV cache."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import functional as F

from dlbook.attention import (KVCache, MultiHeadAttention, apply_rope, attention_weights,
                              causal_mask, rope_cos_sin, scaled_dot_product_attention,
                              sinusoidal_positions)

D = torch.float64


@settings(max_examples=60, deadline=None)
@given(lead=st.lists(st.integers(1, 3), min_size=0, max_size=2), L=st.integers(1, 7),
       S=st.integers(1, 7), E=st.integers(1, 6), Ev=st.integers(1, 5),
       kind=st.sampled_from(["none", "bool", "float", "causal", "bool-broadcast"]),
       scale=st.one_of(st.none(), st.floats(0.1, 2.0)), seed=st.integers(0, 10**6))
def test_sdpa_equals_torch(lead, L, S, E, Ev, kind, scale, seed):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, L, E, generator=g, dtype=D, requires_grad=True)
    k = torch.randn(*lead, S, E, generator=g, dtype=D, requires_grad=True)
    v = torch.randn(*lead, S, Ev, generator=g, dtype=D, requires_grad=True)
    kw: dict = {}
    if kind == "bool":
        kw["mask"] = torch.rand(*lead, L, S, generator=g) > 0.3
    elif kind == "bool-broadcast":
        kw["mask"] = torch.rand(1, S, generator=g) > 0.3       # a padding mask over keys
    elif kind == "float":
        kw["mask"] = torch.randn(L, S, generator=g, dtype=D)
    elif kind == "causal":
        kw["is_causal"] = True
    ours = scaled_dot_product_attention(q, k, v, scale=scale, **kw)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=kw.get("mask"),
                                         is_causal=kw.get("is_causal", False), scale=scale)
    torch.testing.assert_close(ours, ref)
    w = torch.randn_like(ref)
    ga = torch.autograd.grad((ours * w).sum(), (q, k, v))
    gb = torch.autograd.grad((ref * w).sum(), (q, k, v))
    for a, b in zip(ga, gb):
        torch.testing.assert_close(a, b)


def test_fully_masked_rows_give_zeros_and_finite_gradients_like_torch():
    q = torch.randn(2, 3, 4, dtype=D, requires_grad=True)
    k, v = torch.randn(2, 5, 4, dtype=D), torch.randn(2, 5, 2, dtype=D)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    ours = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
    assert (ours[:, 1] == 0).all()
    ours.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_weights_are_probabilities_and_the_causal_mask_is_lower_triangular():
    q, k = torch.randn(4, 6, 3, dtype=D), torch.randn(4, 6, 3, dtype=D)
    w = attention_weights(q, k, is_causal=True)
    torch.testing.assert_close(w.sum(-1), torch.ones(4, 6, dtype=D))
    assert (w.triu(1) == 0).all()
    assert torch.equal(causal_mask(3, 5, offset=2), torch.ones(3, 5).tril(2).bool())


def test_sdpa_rejects_bad_input():
    q = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="feature size"):
        scaled_dot_product_attention(q, torch.randn(2, 3, 5), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="same length"):
        scaled_dot_product_attention(q, torch.randn(2, 3, 4), torch.randn(2, 4, 4))
    with pytest.raises(ValueError, match="broadcast"):
        scaled_dot_product_attention(q, q, q, mask=torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="not both"):
        scaled_dot_product_attention(q, q, q, mask=torch.ones(3, 3, dtype=torch.bool),
                                     is_causal=True)
    with pytest.raises(ValueError, match="shape"):
        scaled_dot_product_attention(torch.randn(4), q, q)


# ---------------------------------------------------------------------------------- positions

def test_sinusoidal_positions_match_the_formula():
    pe = sinusoidal_positions(50, 16, dtype=torch.float64)
    assert pe.dtype == torch.float64 and sinusoidal_positions(3, 4).dtype == torch.float32
    pos, i = 17, 3
    assert math.isclose(pe[pos, 2 * i], math.sin(pos / 10000 ** (2 * i / 16)), abs_tol=1e-12)
    assert math.isclose(pe[pos, 2 * i + 1], math.cos(pos / 10000 ** (2 * i / 16)), abs_tol=1e-12)
    with pytest.raises(ValueError, match="even"):
        sinusoidal_positions(4, 5)


@pytest.mark.parametrize("head_dim", [2, 8, 16])
def test_rope_scores_depend_only_on_the_offset(head_dim):
    g = torch.Generator().manual_seed(head_dim)
    q, k = torch.randn(head_dim, generator=g, dtype=D), torch.randn(head_dim, generator=g, dtype=D)
    cos, sin = rope_cos_sin(head_dim, 200, dtype=D)
    rq = apply_rope(q.expand(200, head_dim), cos, sin)
    rk = apply_rope(k.expand(200, head_dim), cos, sin)
    for offset in (0, 3, 40):
        scores = torch.stack([rq[m] @ rk[m - offset] for m in range(offset, 200, 7)])
        torch.testing.assert_close(scores, scores[:1].expand_as(scores), rtol=0, atol=1e-10)
    # a rotation: norms are kept
    torch.testing.assert_close(rq.norm(dim=-1), q.norm().expand(200))


def test_rope_rotate_half_is_interleaved_rope_with_permuted_features():
    d, T = 8, 11
    x = torch.randn(T, d, dtype=D)
    cos, sin = rope_cos_sin(d, T, dtype=D)
    ours = apply_rope(x, cos, sin)
    # interleaved: pairs (2i, 2i+1) rotated by pos * theta^(-2i/d), as complex numbers
    perm = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])   # rotate-half <- pairs
    x_pairs = torch.empty_like(x)
    x_pairs[:, perm] = x                       # feature i -> 2i, feature i + d/2 -> 2i + 1
    z = torch.view_as_complex(x_pairs.view(T, d // 2, 2).contiguous())
    freqs = 10000.0 ** (-torch.arange(0, d, 2, dtype=D) / d)
    z = z * torch.polar(torch.ones(T, d // 2, dtype=D), torch.arange(T, dtype=D)[:, None] * freqs)
    interleaved = torch.view_as_real(z).reshape(T, d)
    torch.testing.assert_close(ours, interleaved[:, perm])


def test_rope_positions_tensor_and_errors():
    cos, sin = rope_cos_sin(4, torch.tensor([5, 6]), dtype=D)
    cos_all, _ = rope_cos_sin(4, 7, dtype=D)
    torch.testing.assert_close(cos, cos_all[5:7])
    with pytest.raises(ValueError, match="even"):
        rope_cos_sin(5, 3)
    with pytest.raises(ValueError, match="rotary table"):
        apply_rope(torch.randn(3, 4), cos, sin)


# ------------------------------------------------------------------------ multi-head attention

def _copy_from_torch(mha: MultiHeadAttention, ref: nn.MultiheadAttention) -> None:
    d = ref.embed_dim
    with torch.no_grad():
        for i, proj in enumerate((mha.q_proj, mha.k_proj, mha.v_proj)):
            proj.weight.copy_(ref.in_proj_weight[i * d:(i + 1) * d])
            if proj.bias is not None:
                proj.bias.copy_(ref.in_proj_bias[i * d:(i + 1) * d])
        mha.o_proj.weight.copy_(ref.out_proj.weight)
        if mha.o_proj.bias is not None:
            mha.o_proj.bias.copy_(ref.out_proj.bias)


@pytest.mark.parametrize("d,heads,bias,causal,cross", [
    (8, 1, True, False, False), (12, 3, True, True, False), (16, 4, False, True, False),
    (16, 2, True, False, True), (24, 6, False, False, False)])
def test_mha_equals_nn_multiheadattention(d, heads, bias, causal, cross):
    torch.manual_seed(d + heads)
    ref = nn.MultiheadAttention(d, heads, bias=bias, batch_first=True).double()
    ours = MultiHeadAttention(d, heads, bias=bias, causal=causal).double()
    _copy_from_torch(ours, ref)
    x = torch.randn(3, 7, d, dtype=D, requires_grad=True)
    ctx = torch.randn(3, 5, d, dtype=D) if cross else None
    src = x if ctx is None else ctx
    mask = nn.Transformer.generate_square_subsequent_mask(7, dtype=D) if causal else None
    y_ref, _ = ref(x, src, src, attn_mask=mask, need_weights=False)
    y = ours(x, context=ctx)
    torch.testing.assert_close(y, y_ref)
    g1 = torch.autograd.grad(y.sum(), x)[0]
    x.grad = None
    g2 = torch.autograd.grad(y_ref.sum(), x)[0]
    torch.testing.assert_close(g1, g2)


def test_mha_padding_mask_equals_key_padding_mask():
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(8, 2, batch_first=True).double()
    ours = MultiHeadAttention(8, 2, causal=False).double()
    _copy_from_torch(ours, ref)
    x = torch.randn(2, 6, 8, dtype=D)
    lengths = torch.tensor([6, 3])
    pad = torch.arange(6)[None, :] >= lengths[:, None]                 # True = padding (torch)
    y_ref, _ = ref(x, x, x, key_padding_mask=pad, need_weights=False)
    y = ours(x, mask=~pad[:, None, None, :])                           # True = may attend (ours)
    torch.testing.assert_close(y, y_ref)


@pytest.mark.parametrize("n_kv", [1, 2, 4])
def test_grouped_query_attention_equals_repeated_heads(n_kv):
    torch.manual_seed(n_kv)
    d, H = 16, 4
    gqa = MultiHeadAttention(d, H, n_kv, causal=True, rope=True, context_length=32).double()
    full = MultiHeadAttention(d, H, causal=True, rope=True, context_length=32).double()
    hd, group = d // H, H // n_kv
    with torch.no_grad():
        full.q_proj.load_state_dict(gqa.q_proj.state_dict())
        full.o_proj.load_state_dict(gqa.o_proj.state_dict())
        for a, b in ((full.k_proj, gqa.k_proj), (full.v_proj, gqa.v_proj)):
            a.weight.copy_(b.weight.view(n_kv, hd, d).repeat_interleave(group, 0).reshape(d, d))
            a.bias.copy_(b.bias.view(n_kv, hd).repeat_interleave(group, 0).reshape(d))
    assert gqa.k_proj.weight.shape == (n_kv * hd, d)
    x = torch.randn(2, 9, d, dtype=D)
    torch.testing.assert_close(gqa(x), full(x))


@pytest.mark.parametrize("rope,n_kv", [(False, None), (True, None), (True, 2)])
def test_kv_cache_equals_recomputation(rope, n_kv):
    torch.manual_seed(3)
    mha = MultiHeadAttention(16, 4, n_kv, causal=True, rope=rope, context_length=20).double()
    x = torch.randn(2, 12, 16, dtype=D)
    full = mha(x)
    cache = KVCache()
    pieces = [mha(x[:, :5], cache=cache)]                 # a prompt of 5, then one at a time,
    pieces.append(mha(x[:, 5:8], cache=cache))            # then a chunk of 3
    pieces += [mha(x[:, t:t + 1], cache=cache) for t in range(8, 12)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)
    assert len(cache) == 12
    assert cache.k.shape == (2, n_kv or 4, 12, 4)
    assert cache.nbytes() == 2 * 2 * (n_kv or 4) * 12 * 4 * 8


def test_mha_rejects_bad_configurations():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        MultiHeadAttention(12, 4, 3)
    with pytest.raises(ValueError, match="even head size"):
        MultiHeadAttention(12, 4, rope=True)
    mha = MultiHeadAttention(8, 2, rope=True, context_length=4)
    with pytest.raises(ValueError, match="context_length"):
        mha(torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="batch, seq, d_model"):
        mha(torch.randn(5, 8))
    with pytest.raises(ValueError, match="boolean mask"):
        mha(torch.randn(1, 3, 8), mask=torch.zeros(3, 3))
