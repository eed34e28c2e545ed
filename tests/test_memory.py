"""dlbook.memory: accumulation equals the big batch, checkpointing equals the plain model,
the segment logic, the cost model of checkpointing, offload bytes and the memory meter."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlbook import calc, lm, memory
from dlbook.gpt import GPT, GPTConfig, init_weights_

F64 = torch.float64


def _tiny(n_layers=3, seed=0, **overrides):
    config = GPTConfig.gpt2(vocab_size=40, context_length=16, d_model=16, n_layers=n_layers,
                            n_heads=2, **overrides)
    return init_weights_(GPT(config).to(F64), seed)


def _batch(b=7, t=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(40, (b, t), generator=g), torch.randint(40, (b, t), generator=g)


def _grads(model):
    return [p.grad.clone() for p in model.parameters()]


# ------------------------------------------------------------------ accumulation

def test_micro_batch_sizes_and_weights():
    assert memory.micro_batch_sizes(10, 3) == [4, 3, 3]
    assert memory.micro_batch_sizes(10, [6, 3, 1]) == [6, 3, 1]
    assert memory.micro_batch_sizes(5, 5) == [1] * 5
    assert memory.micro_batch_weights([6, 3, 1]) == [0.6, 0.3, 0.1]
    assert math.isclose(sum(memory.micro_batch_weights([5, 2, 9, 1])), 1.0)
    with pytest.raises(ValueError, match="add up"):
        memory.micro_batch_sizes(10, [6, 3])
    with pytest.raises(ValueError, match="at most one micro-batch per example"):
        memory.micro_batch_sizes(3, 4)
    with pytest.raises(ValueError, match="positive integer"):
        memory.micro_batch_sizes(3, 0)
    with pytest.raises(ValueError):
        memory.micro_batch_weights([])


@pytest.mark.parametrize("micro", [1, 2, 3, 7, [4, 2, 1], [1, 6]])
def test_accumulated_gradient_equals_the_full_batch(micro):
    x, y = _batch()
    model = _tiny()
    full = lm.lm_loss(model, x, y)
    full.backward()
    want = _grads(model)
    loss = memory.accumulate_gradients(model, lm.lm_loss, x, y, micro)
    assert math.isclose(loss, full.item(), rel_tol=1e-12)
    for g, w in zip(_grads(model), want):
        torch.testing.assert_close(g, w, rtol=1e-11, atol=1e-14)


def test_unweighted_accumulation_differs():
    """The mistakes the weights prevent: no scaling, and the mean of unequal means."""
    x, y = _batch()
    model = _tiny()
    memory.accumulate_gradients(model, lm.lm_loss, x, y, [5, 2])
    right = _grads(model)
    model.zero_grad()
    for xs, ys in zip(x.split([5, 2]), y.split([5, 2])):
        (lm.lm_loss(model, xs, ys) / 2).backward()
    mean_of_means = _grads(model)
    diff = max((a - b).abs().max().item() / b.abs().max().item()
               for a, b in zip(mean_of_means, right))
    assert diff > 1e-3


def test_accumulation_adds_when_asked_and_validates():
    x, y = _batch()
    model = _tiny()
    memory.accumulate_gradients(model, lm.lm_loss, x, y, 2)
    once = _grads(model)
    memory.accumulate_gradients(model, lm.lm_loss, x, y, 3, zero_grad=False)
    for g, w in zip(_grads(model), once):
        torch.testing.assert_close(g, 2 * w)
    with pytest.raises(ValueError, match="same batch size"):
        memory.accumulate_gradients(model, lm.lm_loss, x, y[:3], 2)
    with pytest.raises(ValueError, match="scalar"):
        memory.accumulate_gradients(model, lambda m, a, b: m(a).sum(-1), x, y, 2)


def test_accumulated_steps_give_the_same_weights():
    x, y = _batch(b=6)
    a, b = _tiny(seed=1), _tiny(seed=1)
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-2)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-2)
    for _ in range(3):
        opt_a.zero_grad()
        lm.lm_loss(a, x, y).backward()
        opt_a.step()
        memory.accumulate_gradients(b, lm.lm_loss, x, y, [3, 2, 1])
        opt_b.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------ checkpointing

def test_segments():
    assert memory.segments(5, 2) == [range(0, 2), range(2, 4), range(4, 5)]
    assert memory.segments(4, 4) == [range(0, 4)]
    assert memory.segments(3, 1) == [range(0, 1), range(1, 2), range(2, 3)]
    for L in range(1, 12):
        for k in range(1, L + 1):
            parts = memory.segments(L, k)
            assert [i for s in parts for i in s] == list(range(L))
            assert len(parts) == math.ceil(L / k)
    with pytest.raises(ValueError, match="every=3"):
        memory.segments(3, 5)
    with pytest.raises(ValueError):
        memory.segments(0, 1)


@pytest.mark.parametrize("every", [None, 1, 2, 3, 5])
@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_checkpointed_model_gives_the_same_logits_and_gradients(every, style):
    if style == "gpt2":
        model = _tiny(n_layers=5)
    else:
        config = GPTConfig.llama(vocab_size=40, context_length=16, d_model=16, n_layers=5,
                                 n_heads=2)
        model = init_weights_(GPT(config).to(F64), 0)
    x, y = _batch()
    lm.lm_loss(model, x, y).backward()
    want = _grads(model)
    model.zero_grad(set_to_none=True)
    wrapped = memory.Checkpointed(model, every)
    torch.testing.assert_close(wrapped(x), model(x), rtol=0, atol=0)
    lm.lm_loss(wrapped, x, y).backward()
    for g, w in zip(_grads(model), want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-15)


def test_checkpointing_keeps_only_segment_inputs():
    model = _tiny(n_layers=4)
    params = list(model.parameters())
    x, _ = _batch()
    plain, _, _ = calc.saved_tensor_bytes(lambda: model(x), exclude=params)
    kept = {k: calc.saved_tensor_bytes(lambda: memory.Checkpointed(model, k)(x),
                                       exclude=params)[0] for k in (1, 2, 4)}
    layer_input = x.numel() * 16 * 8
    assert kept[4] < kept[2] < kept[1] < plain
    assert kept[1] - kept[2] == 2 * layer_input          # 4 segment inputs against 2
    assert kept[2] - kept[4] == layer_input


def test_checkpointed_validates():
    with pytest.raises(ValueError, match="dlbook.gpt.GPT"):
        memory.Checkpointed(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="every"):
        memory.Checkpointed(_tiny(n_layers=2), 3)


def test_checkpoint_memory_and_best_segment():
    assert memory.checkpoint_memory(64, 8, 1.0, 1.0) == 16
    assert memory.checkpoint_memory(10, 3, 2.0, 5.0) == 4 * 2.0 + 3 * 5.0
    assert memory.best_segment(64) == 8
    assert memory.best_segment(100) == 10
    assert memory.best_segment(16, 1.0, 20.0) == 1          # a Transformer block: a >> x
    for L in (9, 30, 50):
        k = memory.best_segment(L)
        assert memory.checkpoint_memory(L, k, 1.0, 1.0) <= 2 * math.sqrt(L) + 1
        assert all(memory.checkpoint_memory(L, j, 1.0, 1.0) >=
                   memory.checkpoint_memory(L, k, 1.0, 1.0) for j in range(1, L + 1))
    with pytest.raises(ValueError):
        memory.checkpoint_memory(4, 2, -1.0, 1.0)


# ------------------------------------------------------------------ offload and meter

def test_offload_bytes():
    moved = memory.offload_bytes(1e9)
    assert moved == {"to CPU (gradients)": 4e9, "to GPU (weights)": 2e9, "total": 6e9}
    assert memory.offload_bytes(10, gradient_bytes=2)["total"] == 40
    with pytest.raises(ValueError):
        memory.offload_bytes(0)
    with pytest.raises(ValueError):
        memory.offload_bytes(10, weight_bytes=3)


def test_peak_bytes_of_a_chain():
    """A chain of tanh layers keeps one tensor per layer; the meter sees them all."""
    x = torch.randn(100, 50, dtype=F64, requires_grad=True)

    def forward():
        h = x
        for _ in range(10):
            h = torch.tanh(h)
        return h

    peak, end, out = memory.peak_bytes(forward)
    assert end == 10 * x.numel() * 8
    assert peak == end
    del out
    peak, end, _ = memory.peak_bytes(lambda: forward().sum().backward())
    assert end < x.numel() * 8 * 3                   # the graph is freed: x.grad and little else
    assert peak >= 10 * x.numel() * 8


def test_peak_bytes_falls_with_checkpointing():
    model = _tiny(n_layers=6)
    x, y = _batch()
    peaks = {}
    for every in (None, 1, 6):
        model.zero_grad(set_to_none=True)
        wrapped = memory.Checkpointed(model, every)
        peaks[every], _, _ = memory.peak_bytes(lambda: lm.lm_loss(wrapped, x, y).backward())
    assert peaks[1] < 0.5 * peaks[None]
    assert peaks[6] >= 0.9 * peaks[None]
