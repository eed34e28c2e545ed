"""dlbook.distributed.context: ring attention on 2 and 4 ranks equals full attention on one
process (float64; forward and backward; causal or not; contiguous and zig-zag shards), and the
single-process pieces (the merge, the layouts, the schedule and the work per rank)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from dlbook.attention import scaled_dot_product_attention
from dlbook.distributed import context as C
from dlbook.distributed.launch import launch

F64 = torch.float64
SHAPES = [(2, 3, 16, 4), (1, 2, 8, 5), (3, 1, 24, 8)]


def _full(shape, seed, causal):
    g = torch.Generator().manual_seed(seed)
    q, k, v, dout = (torch.randn(shape, generator=g, dtype=F64) for _ in range(4))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = F.scaled_dot_product_attention(*leaves, is_causal=causal)
    out.backward(dout)
    return out.detach(), [t.grad for t in leaves]


@pytest.mark.parametrize("world_size", [2, 4])
def test_ring_attention_equals_full_attention_forward_and_backward(world_size):
    results = launch(C.ring_check, world_size, SHAPES, timeout=120)
    assert len(results[0]) == len(SHAPES) * 4
    for j, case in enumerate(results[0]):
        i = SHAPES.index(case["shape"])
        want, grads = _full(case["shape"], i, case["causal"])
        layout = case["layout"]
        out = C.unshard_sequence([results[r][j]["out"] for r in range(world_size)], layout)
        torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
        for t in range(3):
            got = C.unshard_sequence([results[r][j]["grads"][t] for r in range(world_size)],
                                     layout)
            torch.testing.assert_close(got, grads[t], rtol=0, atol=1e-12)


def test_sharding_round_trips_and_zigzag_positions():
    x = torch.arange(2 * 16 * 3, dtype=F64).reshape(2, 16, 3)
    for layout in C.LAYOUTS:
        for n in (1, 2, 4):
            shards = [C.shard_sequence(x, r, n, layout) for r in range(n)]
            assert torch.equal(C.unshard_sequence(shards, layout), x)
    assert C.shard_positions(16, 0, 4, "zigzag").tolist() == [0, 1, 14, 15]
    assert C.shard_positions(16, 3, 4, "zigzag").tolist() == [6, 7, 8, 9]
    assert C.shard_positions(8, 1, 2).tolist() == [4, 5, 6, 7]


def test_block_attention_and_merge_rebuild_full_attention_on_one_process():
    g = torch.Generator().manual_seed(3)
    for causal in (False, True):
        q, k, v = (torch.randn(2, 12, 4, generator=g, dtype=F64) for _ in range(3))
        want = scaled_dot_product_attention(q, k, v, is_causal=causal)
        pos = torch.arange(12)
        out = lse = None
        for b in range(3):  # three blocks of four keys, each merged into the state
            ks = slice(4 * b, 4 * b + 4)
            mask = (pos[ks].unsqueeze(0) <= pos.unsqueeze(1)) if causal else None
            o, l = C.block_attention(q, k[:, ks], v[:, ks], mask)
            out, lse = (o, l) if out is None else C.merge_partials(out, lse, o, l)
        torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
        scores = q @ k.transpose(-2, -1) / math.sqrt(4)
        if causal:
            scores = scores.masked_fill(~torch.ones(12, 12, dtype=torch.bool).tril(), -math.inf)
        torch.testing.assert_close(lse, torch.logsumexp(scores, -1), rtol=0, atol=1e-12)


def test_a_fully_masked_row_is_the_neutral_state():
    q = k = v = torch.ones(1, 2, 3, dtype=F64)
    mask = torch.tensor([[True, False], [False, False]])
    out, lse = C.block_attention(q, k, v, mask)
    assert torch.isinf(lse[0, 1]) and lse[0, 1] < 0
    assert torch.equal(out[0, 1], torch.zeros(3, dtype=F64))
    assert torch.isfinite(out).all()


def test_schedule_and_work_show_the_imbalance_and_the_zigzag_fix():
    assert C.ring_schedule(4, causal=False) == [[0, 3, 2, 1], [1, 0, 3, 2], [2, 1, 0, 3],
                                                [3, 2, 1, 0]]
    assert C.ring_schedule(4, causal=True) == [[0], [1, 0], [2, 1, 0], [3, 2, 1, 0]]
    work = C.ring_work(64, 4)
    assert sum(work) == 64 * 65 // 2 and work == sorted(work) and work[-1] > 6 * work[0]
    zig = C.ring_work(64, 4, layout="zigzag")
    assert sum(zig) == 64 * 65 // 2 and len(set(zig)) == 1
    assert C.ring_work(64, 4, causal=False) == [16 * 64] * 4


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="divisible"):
        C.shard_positions(10, 0, 4)
    with pytest.raises(ValueError, match="divisible by 8"):
        C.shard_positions(12, 0, 4, "zigzag")
    with pytest.raises(ValueError, match="layout"):
        C.shard_positions(8, 0, 2, "striped")
    with pytest.raises(ValueError, match="rank"):
        C.shard_positions(8, 2, 2)
    x = torch.zeros(1, 4, 3)
    with pytest.raises(ValueError, match="process group"):
        C.ring_attention(x, x, x)
    with pytest.raises(ValueError, match="same"):
        C.ring_attention(x, torch.zeros(1, 5, 3), x)
    with pytest.raises(ValueError, match="floating"):
        C.ring_attention(x.long(), x, x)
