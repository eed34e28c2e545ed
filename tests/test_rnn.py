"""Tests of dlbook.rnn (section 3.3): the RNN written from its recurrence against torch.nn.RNN
in float64 (outputs, h_n and every gradient, on many random configurations, also with
hypothesis), state_dict round trips both ways, backpropagation through time by hand against
autograd, the Jacobian norms against autograd's Jacobians, the character-level language model's
pieces (vocabulary, streams, truncated BPTT, evaluation, sampling) and bad input.
The exercise checks are tested in test_exercises_rnns.py."""

from __future__ import annotations

import math
import random
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import dlbook.gated
import dlbook.rnn
from dlbook import rnn
from dlbook.rnn import RNN

F64 = torch.float64


# --- the RNN against nn.RNN -------------------------------------------------------------------

def _pair(cfg: dict, seed: int) -> tuple[RNN, nn.RNN]:
    torch.manual_seed(seed)
    theirs = nn.RNN(cfg["input_size"], cfg["hidden_size"], nonlinearity=cfg["nonlinearity"],
                    bias=cfg["bias"], batch_first=cfg["batch_first"], dtype=F64)
    mine = RNN(cfg["input_size"], cfg["hidden_size"], bias=cfg["bias"],
               batch_first=cfg["batch_first"], nonlinearity=cfg["nonlinearity"], dtype=F64)
    mine.load_state_dict(theirs.state_dict())
    return mine, theirs


def _inputs(cfg: dict, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    B, T, d, H = cfg["batch"], cfg["length"], cfg["input_size"], cfg["hidden_size"]
    if B is None:
        x, state_shape = torch.randn(T, d, generator=gen, dtype=F64), (1, H)
    else:
        shape = (B, T, d) if cfg["batch_first"] else (T, B, d)
        x, state_shape = torch.randn(shape, generator=gen, dtype=F64), (1, B, H)
    state = torch.randn(state_shape, generator=gen, dtype=F64) if cfg["with_state"] else None
    return x, state


def _compare(cfg: dict, seed: int) -> None:
    """Forward outputs, h_n and the gradients of every parameter, of x and of h_0."""
    mine, theirs = _pair(cfg, seed)
    gen = torch.Generator().manual_seed(seed)
    x, state = _inputs(cfg, gen)
    results = []
    for model in (mine, theirs):
        xi = x.clone().requires_grad_(True)
        si = None if state is None else state.clone().requires_grad_(True)
        out, h_n = model(xi, si)
        w_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=F64)
        w_h = torch.randn(h_n.shape, generator=torch.Generator().manual_seed(2), dtype=F64)
        ((out * w_out).sum() + (h_n * w_h).sum()).backward()
        grads = {name: p.grad for name, p in model.named_parameters()}
        results.append((out, h_n, xi.grad, None if si is None else si.grad, grads))
    (o1, h1, gx1, gs1, g1), (o2, h2, gx2, gs2, g2) = results
    assert o1.shape == o2.shape and h1.shape == h2.shape
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close(h1, h2)
    torch.testing.assert_close(gx1, gx2)
    if state is not None:
        torch.testing.assert_close(gs1, gs2)
    assert g1.keys() == g2.keys()
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], msg=name)


def _configs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [dict(input_size=rng.randint(1, 6), hidden_size=rng.randint(1, 7),
                 bias=rng.random() < 0.7, batch_first=rng.random() < 0.5,
                 nonlinearity=rng.choice(["tanh", "relu"]),
                 batch=rng.choice([None, 1, 2, 3, 5]), length=rng.randint(1, 8),
                 with_state=rng.random() < 0.5)
            for _ in range(n)]


@pytest.mark.parametrize("cfg", _configs(40, seed=0), ids=lambda c: "-".join(
    f"{v}" for v in c.values()))
def test_rnn_matches_torch_forward_and_backward(cfg):
    _compare(cfg, seed=cfg["input_size"] * 10 + cfg["hidden_size"])


@settings(max_examples=40, deadline=None)
@given(input_size=st.integers(1, 5), hidden_size=st.integers(1, 6), bias=st.booleans(),
       batch_first=st.booleans(), nonlinearity=st.sampled_from(["tanh", "relu"]),
       batch=st.sampled_from([None, 1, 2, 4]), length=st.integers(1, 6),
       with_state=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_rnn_matches_torch_hypothesis(input_size, hidden_size, bias, batch_first, nonlinearity,
                                      batch, length, with_state, seed):
    cfg = dict(input_size=input_size, hidden_size=hidden_size, bias=bias,
               batch_first=batch_first, nonlinearity=nonlinearity, batch=batch, length=length,
               with_state=with_state)
    _compare(cfg, seed)


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_round_trips_both_ways(bias):
    theirs = nn.RNN(3, 4, bias=bias, batch_first=True, dtype=F64)
    mine = RNN(3, 4, bias=bias, dtype=F64)
    a, b = theirs.state_dict(), mine.state_dict()
    assert list(a) == list(b)
    assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
    mine.load_state_dict(theirs.state_dict())          # theirs -> mine
    fresh = nn.RNN(3, 4, bias=bias, batch_first=True, dtype=F64)
    fresh.load_state_dict(mine.state_dict())            # mine -> theirs
    x = torch.randn(2, 5, 3, dtype=F64)
    torch.testing.assert_close(fresh(x)[0], theirs(x)[0])
    torch.testing.assert_close(mine(x)[0], theirs(x)[0])


def test_defaults_and_repr():
    model = RNN(3, 4)
    assert model.batch_first is True and model.bias is True and model.nonlinearity == "tanh"
    assert model.weight_ih_l0.dtype == torch.get_default_dtype()
    assert "batch_first=True" in repr(model)
    assert "relu" in repr(RNN(3, 4, nonlinearity="relu", bias=False))


def test_initialisation_is_pytorchs_distribution_and_portable():
    """U(±1/√H), drawn in float64 from the generator: the same numbers everywhere, and float32
    weights are the float64 ones rounded."""
    model = RNN(5, 16, dtype=F64)
    model.reset_parameters(torch.Generator().manual_seed(3))
    bound = 1 / math.sqrt(16)
    for p in model.parameters():
        assert p.abs().max() <= bound and p.abs().max() > 0.8 * bound
    single = RNN(5, 16, dtype=torch.float32)
    single.reset_parameters(torch.Generator().manual_seed(3))
    for p, q in zip(model.parameters(), single.parameters()):
        assert torch.equal(p.float(), q)


def test_rnn_cell_is_one_step_of_the_rnn():
    model = RNN(3, 5, dtype=F64)
    x = torch.randn(4, 1, 3, dtype=F64)
    h0 = torch.randn(1, 4, 5, dtype=F64)
    _, h1 = model(x, h0)
    h = rnn.rnn_cell(x[:, 0], h0[0], model.weight_ih_l0, model.weight_hh_l0, model.bias_ih_l0,
                     model.bias_hh_l0)
    torch.testing.assert_close(h, h1[0])
    manual = torch.tanh(x[:, 0] @ model.weight_ih_l0.T + model.bias_ih_l0
                        + h0[0] @ model.weight_hh_l0.T + model.bias_hh_l0)
    torch.testing.assert_close(h, manual)


def test_gated_cells_are_re_exported_without_a_cycle():
    assert dlbook.rnn.LSTM is dlbook.gated.LSTM
    assert dlbook.rnn.GRU is dlbook.gated.GRU
    assert {"RNN", "LSTM", "GRU"} <= set(dlbook.rnn.__all__)
    code = ("import sys, dlbook.gated; "
            "assert 'dlbook.rnn' not in sys.modules, 'gated imports rnn'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_charrnn_works_with_every_cell():
    for cell in (RNN, nn.RNN, dlbook.rnn.LSTM, dlbook.rnn.GRU, nn.LSTM):
        model = rnn.CharRNN(7, 6, cell=cell, seed=0)
        logits, state = model(torch.randint(0, 7, (2, 5)))
        assert logits.shape == (2, 5, 7)
        logits2, _ = model(torch.randint(0, 7, (2, 3)), state)
        assert logits2.shape == (2, 3, 7)


def test_charrnn_with_our_rnn_equals_with_torchs():
    ids = torch.randint(0, 9, (3, 6), generator=torch.Generator().manual_seed(0))
    a = rnn.CharRNN(9, 8, cell=RNN, seed=4)
    b = rnn.CharRNN(9, 8, cell=nn.RNN, seed=4)
    torch.testing.assert_close(a(ids)[0], b(ids)[0])


# --- backpropagation through time by hand ---------------------------------------------------

@pytest.mark.parametrize("B, T, I, H", [(1, 1, 1, 1), (3, 7, 4, 5), (2, 20, 3, 8), (5, 2, 6, 2)])
def test_hand_bptt_matches_autograd(B, T, I, H):
    g = torch.Generator().manual_seed(B * 100 + T)
    X = torch.randn(B, T, I, generator=g, dtype=F64)
    h0 = torch.randn(B, H, generator=g, dtype=F64)
    params = [torch.randn(H, I, generator=g, dtype=F64) / math.sqrt(I),
              torch.randn(H, H, generator=g, dtype=F64) / math.sqrt(H),
              torch.randn(H, generator=g, dtype=F64), torch.randn(H, generator=g, dtype=F64)]
    dH = torch.randn(B, T, H, generator=g, dtype=F64)
    Hs, cache = rnn.rnn_forward(X, h0, *params)
    mine = rnn.rnn_backward(dH, cache)
    leaves = [t.clone().requires_grad_(True) for t in (X, h0, *params)]
    H_auto, _ = rnn.rnn_forward(*leaves)
    torch.testing.assert_close(Hs, H_auto.detach())
    grads = torch.autograd.grad((H_auto * dH).sum(), leaves)
    for name, a, b in zip(["dX", "dh0", "dW_ih", "dW_hh", "db_ih", "db_hh"], mine, grads):
        torch.testing.assert_close(a, b, msg=name)


def test_rnn_forward_equals_the_module():
    model = RNN(3, 4, dtype=F64)
    X = torch.randn(2, 6, 3, dtype=F64)
    h0 = torch.randn(2, 4, dtype=F64)
    Hs, _ = rnn.rnn_forward(X, h0, model.weight_ih_l0, model.weight_hh_l0, model.bias_ih_l0,
                            model.bias_hh_l0)
    torch.testing.assert_close(Hs, model(X, h0.unsqueeze(0))[0])


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_jacobian_norms_match_autograd(nonlinearity):
    torch.manual_seed(0)
    model = RNN(2, 5, nonlinearity=nonlinearity, dtype=F64)
    x = torch.randn(6, 2, dtype=F64)
    norms = rnn.jacobian_norms(model, x)
    assert norms.shape == (7,) and float(norms[-1]) == 1.0

    def last_state(h):                     # h_T as a function of the state h_t
        return model(x[t:], h.unsqueeze(0))[1][0]

    states = torch.cat([torch.zeros(1, 5, dtype=F64), model(x)[0]])   # h_0 .. h_T
    for t in range(6):
        J = torch.autograd.functional.jacobian(last_state, states[t])
        torch.testing.assert_close(norms[t], torch.linalg.matrix_norm(J, ord=2))


def test_jacobian_norms_of_a_scaled_orthogonal_matrix_are_powers():
    """Near zero tanh is the identity: with W_hh = ρ Q and no input, ‖∂h_T/∂h_t‖ = ρ^(T−t)."""
    Q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=F64))
    model = RNN(1, 8, bias=False, dtype=F64)
    with torch.no_grad():
        model.weight_hh_l0.copy_(0.9 * Q)
    norms = rnn.jacobian_norms(model, torch.zeros(10, 1, dtype=F64))
    torch.testing.assert_close(norms, 0.9 ** torch.arange(10, -1, -1, dtype=F64))


# --- the character-level language model ------------------------------------------------------

def test_vocab_round_trip_and_order():
    vocab = rnn.CharVocab("hello, world")
    assert vocab.chars == sorted(set("hello, world")) and len(vocab) == 9
    ids = vocab.encode("low")
    assert ids.dtype == torch.int64 and vocab.decode(ids) == "low"
    assert vocab.decode([0, 1]) == vocab.chars[0] + vocab.chars[1]


def test_batchify_and_chunks_cover_the_text_in_order():
    ids = torch.arange(23)
    streams = rnn.batchify(ids, 4)
    assert streams.shape == (4, 5) and streams[1, 0] == 5
    chunks = list(rnn.tbptt_chunks(streams, 3))
    assert [x.shape[1] for x, _ in chunks] == [3, 1]
    xs = torch.cat([x for x, _ in chunks], dim=1)
    ys = torch.cat([y for _, y in chunks], dim=1)
    torch.testing.assert_close(xs, streams[:, :-1])
    torch.testing.assert_close(ys, streams[:, 1:])


def test_detach_state():
    h = torch.ones(2, requires_grad=True) * 2
    assert not rnn.detach_state(h).requires_grad
    pair = rnn.detach_state((h, h))
    assert isinstance(pair, tuple) and not any(s.requires_grad for s in pair)
    assert rnn.detach_state(None) is None


def test_truncated_bptt_cuts_the_gradient_at_chunk_boundaries():
    """The gradient of the second chunk's loss with respect to the first chunk's inputs is
    zero once the state is detached, and not zero without."""
    model = RNN(2, 3, dtype=F64)
    x = torch.randn(1, 8, 2, dtype=F64, requires_grad=True)
    _, h = model(x[:, :4])
    out, _ = model(x[:, 4:], rnn.detach_state(h))
    grad = torch.autograd.grad(out.sum(), x)[0]
    assert torch.all(grad[:, :4] == 0) and torch.any(grad[:, 4:] != 0)
    out, _ = model(x[:, 4:], h)
    assert torch.any(torch.autograd.grad(out.sum(), x)[0][:, :4] != 0)


def test_tbptt_epoch_learns_and_is_reproducible():
    text = "abcabcabcabcabcabcabcabcabcabc" * 4
    vocab = rnn.CharVocab(text)
    streams = rnn.batchify(vocab.encode(text), 2)
    runs = []
    for _ in range(2):
        model = rnn.CharRNN(len(vocab), 16, seed=0)
        opt = torch.optim.Adam(model.parameters(), lr=3e-2)
        losses = [sum(rnn.tbptt_epoch(model, streams, 10, opt, max_grad_norm=1.0))
                  for _ in range(15)]
        runs.append((losses, model))
    assert runs[0][0] == runs[1][0]
    losses, model = runs[0]
    assert losses[-1] < 0.2 * losses[0]
    assert rnn.evaluate_lm(model, streams, seq_len=7) < 0.3
    # a deterministic pattern is continued exactly
    out = rnn.sample(model, vocab.encode("abc"), 6, temperature=0)
    assert vocab.decode(out) == "abcabc"


def test_evaluate_lm_is_the_mean_cross_entropy_whatever_the_chunks():
    torch.manual_seed(0)
    model = rnn.CharRNN(5, 4, seed=1)
    streams = torch.randint(0, 5, (3, 20))
    logits, _ = model(streams[:, :-1])
    want = F.cross_entropy(logits.reshape(-1, 5), streams[:, 1:].reshape(-1)).item()
    for seq_len in (1, 4, 19, 100):
        assert rnn.evaluate_lm(model, streams, seq_len) == pytest.approx(want, rel=1e-12)


def test_scheduler_steps_once_per_chunk():
    model = rnn.CharRNN(4, 3, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    streams = torch.randint(0, 4, (2, 11))
    losses = rnn.tbptt_epoch(model, streams, 5, opt, scheduler=sched)
    assert len(losses) == 2 and opt.param_groups[0]["lr"] == 0.25


def test_max_grad_norm_clips_the_global_norm():
    model = rnn.CharRNN(4, 3, seed=0)
    seen = []

    class Spy(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(torch.cat([p.grad.flatten() for p in model.parameters()]).norm())
            return super().step(closure)

    rnn.tbptt_epoch(model, torch.randint(0, 4, (2, 11)), 5, Spy(model.parameters(), lr=0.1),
                    max_grad_norm=1e-3)
    assert all(float(n) <= 1e-3 * (1 + 1e-6) for n in seen)


def test_sample_is_reproducible_and_temperature_zero_is_greedy():
    model = rnn.CharRNN(6, 5, seed=2)
    prompt = torch.tensor([1, 2])
    a = rnn.sample(model, prompt, 30, generator=torch.Generator().manual_seed(0))
    b = rnn.sample(model, prompt, 30, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == (30,) and a.dtype == torch.int64
    greedy = rnn.sample(model, prompt, 5, temperature=0)
    logits, _ = model(prompt.unsqueeze(0))
    assert int(greedy[0]) == int(logits[0, -1].argmax())
    hot = rnn.sample(model, prompt, 400, temperature=100.0,
                     generator=torch.Generator().manual_seed(1))
    assert len(hot.unique()) == 6   # near-uniform: every character appears


def test_sample_index_follows_the_probabilities():
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3], dtype=F64)
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([rnn.sample_index(probs, g) for _ in range(4000)]),
                            minlength=4).double() / 4000
    assert counts[1] == 0
    torch.testing.assert_close(counts, probs, atol=0.03, rtol=0)
    assert rnn.sample_index(torch.tensor([0.0, 0.0, 2.0]), g) == 2   # unnormalised is fine


# --- bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(input_size=0, hidden_size=3), "input_size"),
    (dict(input_size=2, hidden_size=2.5), "hidden_size"),
    (dict(input_size=2, hidden_size=3, bias=1), "bias"),
    (dict(input_size=2, hidden_size=3, batch_first="yes"), "batch_first"),
    (dict(input_size=2, hidden_size=3, nonlinearity="sigmoid"), "nonlinearity"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RNN(**kwargs)


def test_bad_forward_inputs():
    model = RNN(3, 4, dtype=F64)
    with pytest.raises(ValueError, match="input_size"):
        model(torch.zeros(2, 5, 4, dtype=F64))
    with pytest.raises(ValueError, match="convert"):
        model(torch.zeros(2, 5, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="float32"):
        model(torch.zeros(2, 5, 3, dtype=torch.float32))
    with pytest.raises(ValueError, match="no time steps"):
        model(torch.zeros(2, 0, 3, dtype=F64))
    with pytest.raises(ValueError, match="initial state"):
        model(torch.zeros(2, 5, 3, dtype=F64), torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ValueError, match="initial state"):
        model(torch.zeros(5, 3, dtype=F64), torch.zeros(1, 1, 4, dtype=F64))
    with pytest.raises(ValueError, match="torch.Tensor"):
        model([[0.0] * 3])


def test_bad_cell_and_bptt_inputs():
    W_ih, W_hh = torch.zeros(4, 3, dtype=F64), torch.zeros(4, 4, dtype=F64)
    with pytest.raises(ValueError, match="unsqueeze"):
        rnn.rnn_cell(torch.zeros(3, dtype=F64), torch.zeros(1, 4, dtype=F64), W_ih, W_hh)
    with pytest.raises(ValueError, match="both biases"):
        rnn.rnn_cell(torch.zeros(1, 3, dtype=F64), torch.zeros(1, 4, dtype=F64), W_ih, W_hh,
                     torch.zeros(4, dtype=F64))
    b = torch.zeros(4, dtype=F64)
    with pytest.raises(ValueError, match="X of shape"):
        rnn.rnn_forward(torch.zeros(2, 3, dtype=F64), torch.zeros(2, 4, dtype=F64), W_ih, W_hh,
                        b, b)
    with pytest.raises(ValueError, match="h0"):
        rnn.rnn_forward(torch.zeros(2, 5, 3, dtype=F64), torch.zeros(3, 4, dtype=F64), W_ih,
                        W_hh, b, b)
    _, cache = rnn.rnn_forward(torch.zeros(2, 5, 3, dtype=F64), torch.zeros(2, 4, dtype=F64),
                               W_ih, W_hh, b, b)
    with pytest.raises(ValueError, match="dH"):
        rnn.rnn_backward(torch.zeros(2, 4, 4, dtype=F64), cache)


def test_bad_language_model_inputs():
    with pytest.raises(ValueError, match="non-empty"):
        rnn.CharVocab("")
    vocab = rnn.CharVocab("abc")
    with pytest.raises(ValueError, match="unknown"):
        vocab.encode("abd")
    with pytest.raises(ValueError, match="ids"):
        vocab.decode([0, 5])
    model = rnn.CharRNN(3, 4, seed=0)
    with pytest.raises(ValueError, match="long"):
        model(torch.zeros(1, 3))
    with pytest.raises(ValueError, match="unsqueeze"):
        model(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model(torch.tensor([[0, 3]]))
    with pytest.raises(ValueError, match="too few"):
        rnn.batchify(torch.arange(5), 4)
    with pytest.raises(ValueError, match="batchify"):
        list(rnn.tbptt_chunks(torch.arange(5), 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    streams = torch.zeros(2, 6, dtype=torch.int64)
    with pytest.raises(ValueError, match="CharRNN"):
        rnn.tbptt_epoch(RNN(3, 4), streams, 2, opt)
    with pytest.raises(ValueError, match="Optimizer"):
        rnn.tbptt_epoch(model, streams, 2, "adam")
    with pytest.raises(ValueError, match="max_grad_norm"):
        rnn.tbptt_epoch(model, streams, 2, opt, max_grad_norm=0)
    with pytest.raises(ValueError, match="temperature"):
        rnn.sample(model, torch.tensor([0]), 3, temperature=-1)
    with pytest.raises(ValueError, match="prompt"):
        rnn.sample(model, torch.tensor([]), 3)
    with pytest.raises(ValueError, match="probs"):
        rnn.sample_index(torch.tensor([0.5, -0.1]))
    with pytest.raises(ValueError, match="dlbook.rnn.RNN"):
        rnn.jacobian_norms(nn.RNN(2, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="one sequence"):
        rnn.jacobian_norms(RNN(2, 3), torch.zeros(1, 4, 2))
