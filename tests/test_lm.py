"""dlbook.lm: shifted batches, the schedule, and that a short training run learns."""

from __future__ import annotations

import math

import pytest
import torch

from dlbook.gpt import GPT, GPTConfig
from dlbook.lm import cosine_lr, evaluate_loss, get_batch, lm_loss, train_lm


def test_batches_are_windows_shifted_by_one():
    tokens = torch.arange(100)
    x, y = get_batch(tokens, 8, 10, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 10)
    assert torch.equal(y, x + 1)
    assert torch.equal(x[:, 1:], x[:, :-1] + 1)
    assert x.max() <= 98
    with pytest.raises(ValueError, match="1-D integer"):
        get_batch(torch.zeros(100), 2, 5)
    with pytest.raises(ValueError, match="more than context_length"):
        get_batch(tokens[:10], 2, 10)
    with pytest.raises(ValueError, match="positive integer"):
        get_batch(tokens, 2.0, 10)


def test_schedule_warms_up_then_decays_to_the_floor():
    lrs = [cosine_lr(s, 1.0, 10, 110, 0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[110] == lrs[119] == 0.1
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))


def test_training_learns_a_repeating_sequence():
    torch.manual_seed(0)
    tokens = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7] * 64)
    model = GPT(GPTConfig.gpt2(vocab_size=8, context_length=16, d_model=32, n_layers=1,
                               n_heads=2))
    before = evaluate_loss(model, tokens, 8, 16, batches=2)
    history = train_lm(model, tokens, steps=100, batch_size=8, lr=1e-2, warmup_steps=5,
                       eval_tokens=tokens, eval_every=50, show_progress=False)
    assert before > 1.8 and history["val"][-1] < 0.1
    assert history["val_step"] == [50, 100] and len(history["train"]) == 100
    x, y = get_batch(tokens, 4, 16)
    assert lm_loss(model, x, y).item() < 0.1
