"""dlbook.flash against PyTorch: FlashAttention-2's tiled forward and backward passes equal
F.scaled_dot_product_attention (float64 to 1e-10, float32 to 1e-5) on random shapes, block
sizes and causal masks; the saved log-sum-exp; what autograd keeps (O(T), not O(T²)); the
tile count with causal skipping; gradcheck; and the ValueErrors."""

from __future__ import annotations

import math
import random

import pytest
import torch
from torch.nn import functional as F

from dlbook.flash import (FlashAttentionFunction, flash_attention, flash_backward, flash_forward,
                          naive_attention, saved_bytes, saved_tensors, tile_count)

D = torch.float64


def _random_config(rng: random.Random) -> dict:
    block = rng.randint(1, 32)

    def length() -> int:                       # 1..70, never a multiple of the block size
        while True:
            n = rng.randint(1, 70)
            if n % block or block == 1:
                return n
    return dict(B=rng.randint(1, 3), Lq=length(), Lk=length(), d=rng.randint(1, 16),
                dv=rng.randint(1, 16), block=block, causal=rng.random() < 0.5,
                seed=rng.randint(0, 10**6))


CONFIGS = [_random_config(random.Random(i)) for i in range(48)]
# shapes the random draw might miss: Lq != Lk both ways, causal with Lq > Lk, one big tile
CONFIGS += [dict(B=2, Lq=70, Lk=9, d=16, dv=3, block=8, causal=True, seed=1),
            dict(B=1, Lq=9, Lk=70, d=3, dv=16, block=4, causal=True, seed=2),
            dict(B=3, Lq=1, Lk=1, d=1, dv=1, block=1, causal=True, seed=3),
            dict(B=1, Lq=33, Lk=65, d=8, dv=8, block=32, causal=False, seed=4),
            dict(B=2, Lq=17, Lk=17, d=5, dv=2, block=64, causal=True, seed=5)]


def _qkv(c: dict, dtype: torch.dtype = D, lead: tuple[int, ...] | None = None):
    g = torch.Generator().manual_seed(c["seed"])
    lead = (c["B"],) if lead is None else lead
    q = torch.randn(*lead, c["Lq"], c["d"], generator=g, dtype=dtype, requires_grad=True)
    k = torch.randn(*lead, c["Lk"], c["d"], generator=g, dtype=dtype, requires_grad=True)
    v = torch.randn(*lead, c["Lk"], c["dv"], generator=g, dtype=dtype, requires_grad=True)
    return q, k, v


def _compare(c: dict, dtype: torch.dtype, tol: float, lead=None) -> None:
    q, k, v = _qkv(c, dtype, lead)
    ours = flash_attention(q, k, v, c["causal"], c["block"])
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=c["causal"])
    torch.testing.assert_close(ours, ref, rtol=tol, atol=tol)
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(c["seed"] + 1),
                    dtype=dtype)
    ga = torch.autograd.grad((ours * w).sum(), (q, k, v))
    gb = torch.autograd.grad((ref * w).sum(), (q, k, v))
    for name, a, b in zip("qkv", ga, gb):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol, msg=lambda m: f"d{name}: {m}")


@pytest.mark.parametrize("c", CONFIGS, ids=lambda c: "B{B}-q{Lq}-k{Lk}-d{d}-v{dv}-b{block}-"
                         "{causal}".format(**c))
def test_float64_forward_and_backward_equal_sdpa(c):
    _compare(c, D, 1e-10)


@pytest.mark.parametrize("c", CONFIGS[:16], ids=lambda c: "q{Lq}-k{Lk}-b{block}".format(**c))
def test_float32_forward_and_backward_equal_sdpa(c):
    _compare(c, torch.float32, 1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_four_dimensional_input_with_heads(causal):
    c = dict(B=2, Lq=19, Lk=23, d=6, dv=5, block=8, causal=causal, seed=7)
    _compare(c, D, 1e-10, lead=(2, 3))
    q, k, v = _qkv(c, D, lead=(2, 3))
    rows = saved_tensors(flash_attention, q, k, v, causal, 8)
    assert (2, 3, 19) in [r[0] for r in rows]          # lse keeps the (batch, heads) layout


def test_positional_apply_and_defaults():
    c = dict(B=2, Lq=70, Lk=70, d=4, dv=4, block=64, causal=True, seed=8)
    q, k, v = _qkv(c)
    torch.testing.assert_close(FlashAttentionFunction.apply(q, k, v),
                               F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(FlashAttentionFunction.apply(q, k, v, True),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))
    torch.testing.assert_close(FlashAttentionFunction.apply(q, k, v, True, 5),
                               flash_attention(q, k, v, True))


@pytest.mark.parametrize("causal", [False, True])
def test_lse_is_logsumexp_of_the_scores(causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 7, generator=g, dtype=D) for n in (29, 41, 41))
    out, lse = flash_forward(q, k, v, causal, block_size=6)
    s = q @ k.transpose(1, 2) / math.sqrt(7)
    if causal:
        s = s.masked_fill(~torch.ones(29, 41, dtype=torch.bool).tril(), -math.inf)
    torch.testing.assert_close(lse, torch.logsumexp(s, dim=-1), rtol=1e-12, atol=1e-12)
    assert lse.shape == (2, 29)
    torch.testing.assert_close(out, torch.softmax(s, -1) @ v, rtol=1e-12, atol=1e-12)


def test_large_scores_do_not_overflow():
    # scores of ~1e4: exp would overflow without the running maximum
    g = torch.Generator().manual_seed(1)
    q = 100 * torch.randn(1, 40, 4, generator=g, dtype=torch.float32)
    k = 100 * torch.randn(1, 40, 4, generator=g, dtype=torch.float32)
    v = torch.randn(1, 40, 3, generator=g, dtype=torch.float32)
    out = flash_attention(q, k, v, block_size=7)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v),
                               rtol=1e-5, atol=1e-5)


def test_backward_function_directly_matches_autograd():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(1, n, 3, generator=g, dtype=D) for n in (11, 13, 13))
    out, lse = flash_forward(q, k, v, True, 4)
    do = torch.randn(out.shape, generator=g, dtype=D)
    ours = flash_backward(q, k, v, out, lse, do, True, 4)
    qq, kk, vv = (t.clone().requires_grad_() for t in (q, k, v))
    ref = torch.autograd.grad(F.scaled_dot_product_attention(qq, kk, vv, is_causal=True),
                              (qq, kk, vv), do)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("causal", [False, True])
def test_gradcheck_tiny(causal):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(2, 5, 3, generator=g, dtype=D, requires_grad=True)
    k = torch.randn(2, 7, 3, generator=g, dtype=D, requires_grad=True)
    v = torch.randn(2, 7, 2, generator=g, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: flash_attention(a, b, c, causal, 2),
                                    (q, k, v))


def test_half_precision_runs_and_accumulates_in_float32():
    g = torch.Generator().manual_seed(4)
    q, k, v = (torch.randn(1, 33, 8, generator=g).to(torch.bfloat16).requires_grad_()
               for _ in range(3))
    out = flash_attention(q, k, v, True, 8)
    assert out.dtype == torch.bfloat16
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
    out.sum().backward()
    assert q.grad.dtype == torch.bfloat16 and torch.isfinite(q.grad.float()).all()
    rows = saved_tensors(flash_attention, q, k, v, True, 8)
    assert (1, 33) in [r[0] for r in rows] and torch.float32 in [r[1] for r in rows]


def test_saved_tensors_are_q_k_v_out_and_lse_only():
    B, T, d, dv = 2, 96, 8, 5
    q, k, v = (torch.randn(B, T, n, requires_grad=True) for n in (d, d, dv))
    rows = saved_tensors(flash_attention, q, k, v, True, 16)
    shapes = sorted(r[0] for r in rows)
    assert shapes == sorted([(B, T, d), (B, T, d), (B, T, dv), (B, T, dv), (B, T)])
    assert all(T * T > math.prod(s) / B or len(s) < 3 for s, _, _ in rows)


def test_saved_bytes_grow_linearly_for_flash_and_quadratically_for_naive():
    def measure(fn, T):
        q, k, v = (torch.randn(1, T, 16, requires_grad=True) for _ in range(3))
        return saved_bytes(fn, q, k, v, True)
    for T in (128, 256):
        flash = measure(lambda q, k, v, c: flash_attention(q, k, v, c, 32), 2 * T) / \
            measure(lambda q, k, v, c: flash_attention(q, k, v, c, 32), T)
        naive = measure(naive_attention, 2 * T) / measure(naive_attention, T)
        assert flash == pytest.approx(2.0, rel=1e-9)
        assert 3.5 < naive <= 4.0
    # exact numbers at T = 256, float32, d = 16: four (T, 16) tensors and the lse
    q, k, v = (torch.randn(1, 256, 16, requires_grad=True) for _ in range(3))
    assert saved_bytes(flash_attention, q, k, v) == 4 * 4 * 256 * 16 + 4 * 256
    assert saved_bytes(flash_attention, q, k, v, exclude=(q, k, v)) == 4 * (256 * 16 + 256)


def test_nothing_is_saved_without_requires_grad():
    q = torch.randn(1, 10, 4)
    assert saved_bytes(flash_attention, q, q, q) == 0


def test_naive_attention_equals_sdpa():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(2, n, 4, generator=g, dtype=D) for n in (6, 9, 9))
    for causal in (False, True):
        torch.testing.assert_close(naive_attention(q, k, v, causal),
                                   F.scaled_dot_product_attention(q, k, v, is_causal=causal))


@pytest.mark.parametrize("Lq,Lk,bs", [(256, 256, 64), (100, 30, 16), (30, 100, 16), (1, 5, 2),
                                      (70, 70, 1), (65, 64, 32)])
def test_tile_count_matches_a_brute_force_count(Lq, Lk, bs):
    mask = torch.ones(Lq, Lk, dtype=torch.bool).tril()
    visible = sum(bool(mask[i:i + bs, j:j + bs].any())
                  for i in range(0, Lq, bs) for j in range(0, Lk, bs))
    assert tile_count(Lq, Lk, bs, True) == visible
    assert tile_count(Lq, Lk, bs) == math.ceil(Lq / bs) * math.ceil(Lk / bs)
    assert tile_count(256, 256, 64, True) == 10


@pytest.mark.parametrize("bad,match", [
    (dict(q=torch.randn(5, 4)), "unsqueeze"),
    (dict(k=torch.randn(3, 6, 5)), "batch"),
    (dict(k=torch.randn(2, 6, 3)), "head_dim"),
    (dict(v=torch.randn(2, 7, 4)), "same length"),
    (dict(q=torch.randint(0, 3, (2, 5, 4))), "float"),
    (dict(k=torch.randn(2, 6, 4, dtype=D)), "dtype"),
    (dict(v=torch.randn(2, 3, 6, 4)), "number of dimensions"),
    (dict(q=torch.randn(2, 0, 4)), "non-empty"),
    (dict(block_size=0), "block_size"),
    (dict(block_size=2.5), "block_size"),
    (dict(is_causal="yes"), "is_causal"),
])
def test_value_errors_name_the_fix(bad, match):
    args = dict(q=torch.randn(2, 5, 4), k=torch.randn(2, 6, 4), v=torch.randn(2, 6, 3),
                is_causal=False, block_size=4)
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        flash_attention(**args)
    with pytest.raises(ValueError, match=match):
        FlashAttentionFunction.apply(*args.values())


def test_tile_count_rejects_bad_sizes():
    with pytest.raises(ValueError, match="block_size"):
        tile_count(10, 10, 0)
    with pytest.raises(ValueError, match="seq_q"):
        tile_count(0, 10, 4)
