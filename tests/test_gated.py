"""Tests of dlbook.gated (section 3.4): the LSTM and GRU written from their equations against
torch.nn.LSTM and torch.nn.GRU in float64 (outputs, states and every gradient, on many random
configurations), state_dict round trips both ways, the same initial weights as torch for the
same seed, cells that broadcast over stacked weights, and bad input.
The exercise checks are tested in test_exercises_gated.py."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlbook import gated
from dlbook.gated import GRU, LSTM

F64 = torch.float64
PAIRS = [(LSTM, nn.LSTM), (GRU, nn.GRU)]
IDS = ["LSTM", "GRU"]


def _configs(n: int, seed: int) -> list[dict]:
    """Random configurations: sizes, bias, batch_first, batched or not, state given or not."""
    rng = random.Random(seed)
    return [dict(input_size=rng.randint(1, 6), hidden_size=rng.randint(1, 7),
                 bias=rng.random() < 0.7, batch_first=rng.random() < 0.5,
                 batch=rng.choice([None, 1, 2, 3, 5]), length=rng.randint(1, 7),
                 with_state=rng.random() < 0.5)
            for _ in range(n)]


def _pair(mine_cls, theirs_cls, cfg: dict, seed: int):
    torch.manual_seed(seed)
    theirs = theirs_cls(cfg["input_size"], cfg["hidden_size"], bias=cfg["bias"],
                        batch_first=cfg["batch_first"], dtype=F64)
    mine = mine_cls(cfg["input_size"], cfg["hidden_size"], bias=cfg["bias"],
                    batch_first=cfg["batch_first"], dtype=F64)
    mine.load_state_dict(theirs.state_dict())
    return mine, theirs


def _inputs(cfg: dict, lstm: bool, gen: torch.Generator):
    B, L, d, H = cfg["batch"], cfg["length"], cfg["input_size"], cfg["hidden_size"]
    if B is None:
        x = torch.randn(L, d, generator=gen, dtype=F64)
        state_shape = (1, H)
    else:
        x = torch.randn((B, L, d) if cfg["batch_first"] else (L, B, d), generator=gen,
                        dtype=F64)
        state_shape = (1, B, H)
    state = None
    if cfg["with_state"]:
        h0 = torch.randn(state_shape, generator=gen, dtype=F64)
        state = (h0, torch.randn(state_shape, generator=gen, dtype=F64)) if lstm else h0
    return x, state


def _leaves(x, state):
    tensors = [x] + (list(state) if isinstance(state, tuple) else [state] if state is not None
                     else [])
    return [t.detach().clone().requires_grad_() for t in tensors]


def _run(model, x, state, lstm: bool):
    """Forward, then a random weighted sum of every output; returns outputs and gradients."""
    leaves = _leaves(x, state)
    x_, rest = leaves[0], leaves[1:]
    st = (tuple(rest) if lstm else rest[0]) if rest else None
    out, final = model(x_, st)
    finals = list(final) if lstm else [final]
    gen = torch.Generator().manual_seed(99)
    loss = sum((t * torch.randn(t.shape, generator=gen, dtype=F64)).sum()
               for t in [out] + finals)
    grads = torch.autograd.grad(loss, leaves + list(model.parameters()))
    return [out] + finals, grads


@pytest.mark.parametrize("mine_cls, theirs_cls", PAIRS, ids=IDS)
@pytest.mark.parametrize("i, cfg", list(enumerate(_configs(40, seed=0))))
def test_forward_and_backward_equal_torch(mine_cls, theirs_cls, i, cfg):
    lstm = mine_cls is LSTM
    mine, theirs = _pair(mine_cls, theirs_cls, cfg, seed=i)
    x, state = _inputs(cfg, lstm, torch.Generator().manual_seed(i))
    outs_mine, grads_mine = _run(mine, x, state, lstm)
    outs_theirs, grads_theirs = _run(theirs, x, state, lstm)
    for a, b in zip(outs_mine, outs_theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert len(grads_mine) == len(grads_theirs)
    for a, b in zip(grads_mine, grads_theirs):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("mine_cls, theirs_cls", PAIRS, ids=IDS)
@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_round_trips_both_ways(mine_cls, theirs_cls, bias):
    theirs = theirs_cls(4, 6, bias=bias, batch_first=True, dtype=F64)
    mine = mine_cls(4, 6, bias=bias, dtype=F64)
    ours, torch_sd = mine.state_dict(), theirs.state_dict()
    assert list(ours) == list(torch_sd)
    assert all(ours[k].shape == torch_sd[k].shape for k in ours)
    mine.load_state_dict(torch_sd)  # torch -> ours
    assert all(torch.equal(mine.state_dict()[k], torch_sd[k]) for k in torch_sd)
    fresh = mine_cls(4, 6, bias=bias, dtype=F64)
    theirs.load_state_dict(fresh.state_dict())  # ours -> torch
    x = torch.randn(3, 5, 4, dtype=F64)
    torch.testing.assert_close(fresh(x), theirs(x))


@pytest.mark.parametrize("mine_cls, theirs_cls", PAIRS, ids=IDS)
def test_same_seed_same_initial_weights_as_torch(mine_cls, theirs_cls):
    torch.manual_seed(5)
    theirs = theirs_cls(3, 8, dtype=F64)
    torch.manual_seed(5)
    mine = mine_cls(3, 8, dtype=F64)
    for (k, a), (k2, b) in zip(mine.named_parameters(), theirs.named_parameters()):
        assert k == k2 and torch.equal(a, b)
    bound = 1 / 8 ** 0.5
    assert all(p.abs().max() <= bound for p in mine.parameters())


def test_gate_order_is_torchs():
    """Only the forget gate's bias set high: then c_t = c_{t-1} + (something small) · g, so
    c hardly forgets; only the GRU's update gate's bias high: h hardly moves."""
    lstm = LSTM(1, 1, dtype=F64)
    gru = GRU(1, 1, dtype=F64)
    with torch.no_grad():
        for m in (lstm, gru):
            for p in m.parameters():
                p.zero_()
        lstm.bias_ih_l0[1] = 30.0   # f: open
        lstm.bias_ih_l0[0] = -30.0  # i: closed
        lstm.bias_ih_l0[3] = 30.0   # o: open
        gru.bias_ih_l0[1] = 30.0    # z: keep the old state
    x = torch.randn(6, 1, dtype=F64)
    c0 = torch.full((1, 1), 0.7, dtype=F64)
    _, (h, c) = lstm(x, (torch.zeros(1, 1, dtype=F64), c0))
    torch.testing.assert_close(c, c0)
    torch.testing.assert_close(h, torch.tanh(c0))
    _, h = gru(x, c0)
    torch.testing.assert_close(h, c0)


@pytest.mark.parametrize("cell, gates", [(gated.lstm_cell, 4), (gated.gru_cell, 3)],
                         ids=IDS)
def test_cells_broadcast_over_stacked_weights(cell, gates):
    """Weights (G, kH, d), biases (G, 1, kH), input (G, B, d): G independent networks."""
    G, B, d, H = 3, 4, 5, 6
    gen = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(*shape, generator=gen, dtype=F64)

    w_ih, w_hh, b_ih, b_hh = r(G, gates * H, d), r(G, gates * H, H), r(G, gates * H), \
        r(G, gates * H)
    x, h, c = r(G, B, d), r(G, B, H), r(G, B, H)
    state = (h, c) if gates == 4 else h
    stacked = cell(x, state, w_ih, w_hh, b_ih.unsqueeze(1), b_hh.unsqueeze(1))
    for g in range(G):
        one = cell(x[g], (h[g], c[g]) if gates == 4 else h[g], w_ih[g], w_hh[g], b_ih[g],
                   b_hh[g])
        for a, b in zip(stacked if gates == 4 else [stacked], one if gates == 4 else [one]):
            torch.testing.assert_close(a[g], b, rtol=1e-13, atol=1e-13)


def test_affine_is_linear_and_broadcasts():
    gen = torch.Generator().manual_seed(3)
    x, w, b = (torch.randn(*s, generator=gen, dtype=F64) for s in [(2, 5, 3), (2, 4, 3), (4,)])
    for g in range(2):
        torch.testing.assert_close(gated.affine(x, w, b)[g], F.linear(x[g], w[g], b))
        torch.testing.assert_close(gated.affine(x[g], w[g], None), F.linear(x[g], w[g]))


@pytest.mark.parametrize("mine_cls", [LSTM, GRU], ids=IDS)
def test_gradcheck(mine_cls):
    model = mine_cls(2, 3, dtype=F64)
    x = torch.randn(2, 4, 2, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: model(x)[0], (x,))


@pytest.mark.parametrize("mine_cls, theirs_cls", PAIRS, ids=IDS)
def test_float32_and_empty_batch_follow_torch(mine_cls, theirs_cls):
    theirs = theirs_cls(3, 4, batch_first=True)
    mine = mine_cls(3, 4)
    mine.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 5, 3)
    out_mine, out_theirs = mine(x)[0], theirs(x)[0]
    assert out_mine.dtype == torch.float32
    torch.testing.assert_close(out_mine, out_theirs, rtol=1e-5, atol=1e-6)
    empty = torch.randn(0, 5, 3)
    assert mine(empty)[0].shape == theirs(empty)[0].shape == (0, 5, 4)


def test_repr_like_torch():
    assert repr(LSTM(3, 5)) == "LSTM(3, 5, batch_first=True)"
    assert repr(GRU(2, 4, bias=False, batch_first=False)) == repr(nn.GRU(2, 4, bias=False))


# -------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("args, kwargs, match", [
    ((0, 4), {}, "input_size"),
    ((3, 0), {}, "hidden_size"),
    ((3.0, 4), {}, "input_size"),
    ((3, True), {}, "hidden_size"),
    ((3, 4), {"bias": 1}, "bias"),
    ((3, 4), {"batch_first": "yes"}, "batch_first"),
])
@pytest.mark.parametrize("cls", [LSTM, GRU], ids=IDS)
def test_bad_constructor_arguments(cls, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(*args, **kwargs)


BAD_INPUTS = [
    ([[0.0, 1.0, 2.0]], "tensor"),
    (torch.zeros(2, 5, 4, dtype=F64), r"\(B, L, 3\)"),
    (torch.zeros(5, dtype=F64), r"\(B, L, 3\)"),
    (torch.zeros(1, 2, 5, 3, dtype=F64), r"\(B, L, 3\)"),
    (torch.zeros(2, 5, 3, dtype=torch.int64), "floating-point"),
    (torch.zeros(2, 5, 3, dtype=torch.float32), "float32.*float64"),
    (torch.zeros(2, 0, 3, dtype=F64), "no time steps"),
    (torch.zeros(0, 3, dtype=F64), "no time steps"),
]


@pytest.mark.parametrize("x, match", BAD_INPUTS)
@pytest.mark.parametrize("cls", [LSTM, GRU], ids=IDS)
def test_bad_input(cls, x, match):
    with pytest.raises(ValueError, match=match):
        cls(3, 4, dtype=F64)(x)


def _h(*shape, dtype=F64):
    return torch.zeros(*shape, dtype=dtype)


@pytest.mark.parametrize("x, state, match", [
    (torch.zeros(2, 5, 3, dtype=F64), _h(1, 3, 4), r"\(1, 2, 4\)"),     # wrong batch
    (torch.zeros(2, 5, 3, dtype=F64), _h(1, 2, 5), r"\(1, 2, 4\)"),     # wrong hidden size
    (torch.zeros(2, 5, 3, dtype=F64), _h(2, 4), "batched 3-D"),         # 2-D for batched
    (torch.zeros(5, 3, dtype=F64), _h(1, 1, 4), "unbatched 2-D"),       # 3-D for unbatched
    (torch.zeros(2, 5, 3, dtype=F64), _h(1, 2, 4, dtype=torch.float32), "h_0 is torch.float32"),
    (torch.zeros(2, 5, 3, dtype=F64), [[0.0] * 4] * 2, "h_0 must be a tensor"),
])
def test_bad_gru_state(x, state, match):
    with pytest.raises(ValueError, match=match):
        GRU(3, 4, dtype=F64)(x, state)


@pytest.mark.parametrize("state, match", [
    (_h(1, 2, 4), "pair"),
    ((_h(1, 2, 4),), "pair"),
    ((_h(1, 2, 4), _h(1, 2, 5)), r"c_0 must have shape \(1, 2, 4\)"),
    ((_h(2, 4), _h(1, 2, 4)), "h_0"),
    ((_h(1, 2, 4), _h(1, 2, 4, dtype=torch.float32)), "c_0 is torch.float32"),
])
def test_bad_lstm_state(state, match):
    with pytest.raises(ValueError, match=match):
        LSTM(3, 4, dtype=F64)(torch.zeros(2, 5, 3, dtype=F64), state)


def test_batch_first_false_state_uses_the_batch_axis():
    """With batch_first=False the batch is the input's second axis; the state is (1, B, H)."""
    model = GRU(3, 4, batch_first=False, dtype=F64)
    x = torch.zeros(5, 2, 3, dtype=F64)   # L = 5, B = 2
    assert model(x, _h(1, 2, 4))[1].shape == (1, 2, 4)
    with pytest.raises(ValueError, match=r"\(1, 2, 4\)"):
        model(x, _h(1, 5, 4))


def test_the_random_configurations_cover_every_switch():
    cfgs = _configs(40, seed=0)
    for key in ("bias", "batch_first", "with_state"):
        assert {c[key] for c in cfgs} == {True, False}
    assert {None, 1} <= {c["batch"] for c in cfgs}
    assert {c["hidden_size"] for c in cfgs} >= {1, 7} and {c["length"] for c in cfgs} >= {1, 7}


# -------------------------------------------------------------------------- experiments' tools

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_each_stacked_network_is_a_torch_network(cell):
    model = gated.Stacked(cell, [3, 5, 8], input_size=2, hidden_size=4, output_size=2)
    x = torch.rand(3, 6, 7, 2, dtype=F64)
    out = model(x)
    assert out.shape == (3, 6, 2)
    for g in range(3):
        rnn, head = model.network(g)
        ref = head(rnn(x[g])[0][:, -1])
        torch.testing.assert_close(out[g], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("all_steps", [False, True], ids=["last", "all-steps"])
def test_each_bidirectional_stacked_network_is_a_torch_network(cell, all_steps):
    """Both directions, and a read-out of the last states or of every step, as in torch."""
    L = 5
    model = gated.Stacked(cell, [2, 6], input_size=3, hidden_size=4, output_size=3,
                          bidirectional=True, sequence_length=L if all_steps else None)
    x = torch.rand(2, 7, L, 3, dtype=F64, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 7, 3)
    for g in range(2):
        rnn, head = model.network(g)
        assert rnn.bidirectional and head.in_features == 2 * 4 * (L if all_steps else 1)
        output, final = rnn(x[g])
        h_n = final[0] if cell == "lstm" else final          # (2 directions, B, H)
        features = output.flatten(1) if all_steps else h_n.transpose(0, 1).flatten(1)
        torch.testing.assert_close(out[g], head(features), rtol=1e-12, atol=1e-12)
    # the gradients agree too: the input's, and every parameter's against torch's copy
    w = torch.rand(2, 7, 3, dtype=F64)
    grads = torch.autograd.grad((out * w).sum(), [x, *model.parameters()])
    for g in range(2):
        rnn, head = model.network(g)
        xg = x[g].detach().requires_grad_()
        output, final = rnn(xg)
        h_n = final[0] if cell == "lstm" else final
        features = output.flatten(1) if all_steps else h_n.transpose(0, 1).flatten(1)
        theirs = torch.autograd.grad((head(features) * w[g]).sum(),
                                     [xg, *rnn.parameters(), *head.parameters()])
        torch.testing.assert_close(grads[0][g], theirs[0], rtol=1e-11, atol=1e-12)
        ours = {"weight_ih": grads[1], "weight_hh": grads[2], "bias_ih": grads[3],
                "bias_hh": grads[4]}
        named = dict(zip([n for n, _ in rnn.named_parameters()], theirs[1:]))
        for d, suffix in enumerate(["", "_reverse"]):
            for name, grad in ours.items():
                torch.testing.assert_close(grad[g, d].reshape(-1),
                                           named[f"{name}_l0{suffix}"].reshape(-1),
                                           rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(grads[5][g], theirs[-2], rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(grads[6][g, 0], theirs[-1], rtol=1e-11, atol=1e-12)


def test_stacked_draws_like_torch_initialises():
    """U(±1/√H) for the recurrent weights and U(±1/√fan_in) for the read-out, per group; a
    unidirectional stack draws the same numbers as the forward direction of a bidirectional
    one with the same seed."""
    uni = gated.Stacked("gru", [3], 2, 5, output_size=4)
    bi = gated.Stacked("gru", [3], 2, 5, output_size=4, bidirectional=True, sequence_length=6)
    assert bi.weight_ih.shape == (1, 2, 15, 2) and bi.head_weight.shape == (1, 4, 60)
    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert torch.equal(getattr(uni, name)[:, 0], getattr(bi, name)[:, 0])
        assert not torch.equal(getattr(bi, name)[:, 0], getattr(bi, name)[:, 1])
        assert getattr(bi, name).abs().max() <= 1 / 5 ** 0.5
    assert bi.head_weight.abs().max() <= 1 / 60 ** 0.5 < bi.head_weight.abs().max() * 1.2
    assert uni.head_weight.abs().max() <= 1 / 5 ** 0.5


def test_stacked_groups_train_as_they_would_alone():
    """Summed losses, per-group clipping and Adam: group 1 of a stack of 2 follows the same
    trajectory as a stack holding only its seed."""
    def train(seeds, steps=5):
        model = gated.Stacked("lstm", seeds, 2, 3)
        opt = torch.optim.Adam(model.parameters(), lr=0.05)
        gen = torch.Generator().manual_seed(0)
        for _ in range(steps):
            x, y = gated.adding_problem(8, 5, 3, gen)
            xs = x.expand(len(seeds), -1, -1, -1)
            loss = ((model(xs).squeeze(-1) - y) ** 2).mean(1).sum()
            opt.zero_grad()
            loss.backward()
            norms = model.clip_grad_norm_(0.1)
            assert norms.shape == (len(seeds),)
            opt.step()
        return model

    both, alone = train([4, 9]), train([9])
    for p_both, p_alone in zip(both.parameters(), alone.parameters()):
        torch.testing.assert_close(p_both[1], p_alone[0], rtol=1e-10, atol=1e-12)


def test_stacked_clip_matches_torch_per_group():
    model = gated.Stacked("gru", [0, 1], 2, 3)
    x = torch.rand(2, 4, 5, 2, dtype=F64)
    model(x).pow(2).sum().mul(100).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.clip_grad_norm_(0.5)
    for g in range(2):
        one = [gr[g].clone() for gr in grads]
        norm = torch.sqrt(sum((t ** 2).sum() for t in one))
        scale = min(1.0, 0.5 / (float(norm) + 1e-6))
        for p, t in zip(model.parameters(), one):
            torch.testing.assert_close(p.grad[g], t * scale)


def test_stacked_seed_fixes_the_weights_of_its_group():
    a = gated.Stacked("rnn", [7, 1], 2, 3)
    b = gated.Stacked("rnn", [2, 7], 2, 3)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa[0], pb[1]) and not torch.equal(pa[1], pb[0])
        assert pa.abs().max() <= 1 / 3 ** 0.5


@pytest.mark.parametrize("kwargs, x, match", [
    ({"cell": "lstmm"}, None, "cell"),
    ({"seeds": []}, None, "seeds"),
    ({"seeds": [0.5]}, None, "seeds"),
    ({"output_size": 0}, None, "output_size"),
    ({}, torch.zeros(3, 4, 5, 2, dtype=F64), r"groups=2"),
    ({}, torch.zeros(2, 4, 5, 3, dtype=F64), r"\(groups=2, B, L, 2\)"),
    ({}, torch.zeros(2, 4, 0, 2, dtype=F64), "L >= 1"),
    ({}, torch.zeros(2, 4, 5, 2), "float32"),
    ({"bidirectional": 1}, None, "bidirectional"),
    ({"sequence_length": 0}, None, "sequence_length"),
    ({"sequence_length": 4}, torch.zeros(2, 4, 5, 2, dtype=F64), "L = 4"),
])
def test_stacked_bad_input(kwargs, x, match):
    args = {"cell": "gru", "seeds": [0, 1], "input_size": 2, "hidden_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        model = gated.Stacked(**args)
        model(x)


def test_adding_problem():
    x, y = gated.adding_problem(1000, 10, 4, torch.Generator().manual_seed(0))
    assert x.shape == (1000, 10, 2) and y.shape == (1000,) and x.dtype == F64
    marks = x[..., 1]
    assert torch.equal(marks.sum(1), torch.full((1000,), 2.0, dtype=F64))
    assert torch.all(marks[:, 6] == 1) and torch.all(marks[:, :6] == 0)   # first mark: D before
    assert set(marks[:, 7:].argmax(1).tolist()) == {0, 1, 2}               # second: any later step
    torch.testing.assert_close((x[..., 0] * marks).sum(1), y)
    assert 0.14 < float(((y - 1) ** 2).mean()) < 0.19                     # baseline MSE ≈ 1/6
    again = gated.adding_problem(1000, 10, 4, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], x)
    assert gated.adding_problem(3, 5, 5)[0][:, 0, 1].eq(1).all()           # delay = length


@pytest.mark.parametrize("args, match", [((0, 5, 2), "n"), ((3, 5, 1), "delay"),
                                         ((3, 5, 6), "delay"), ((3, 2.0, 2), "length")])
def test_adding_problem_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        gated.adding_problem(*args)


def test_copy_task_and_encoder_decoder():
    src, tgt_in = gated.copy_task(50, 6, 5, torch.Generator().manual_seed(0))
    assert src.shape == tgt_in.shape == (50, 6) and src.dtype == torch.int64
    assert src.min() >= 0 and src.max() < 5 and set(src.flatten().tolist()) == set(range(5))
    assert torch.all(tgt_in[:, 0] == 5) and torch.equal(tgt_in[:, 1:], src[:, :-1])
    model = gated.EncoderDecoder(5, 7, seed=3)
    logits = model(src, tgt_in)
    assert logits.shape == (50, 6, 5) and logits.dtype == F64
    # the decoder sees the source only through the encoder's last state
    _, state = model.encoder(F.one_hot(src, 5).to(F64))
    out, _ = model.decoder(F.one_hot(tgt_in, 6).to(F64), state)
    torch.testing.assert_close(logits, model.head(out))
    assert torch.equal(gated.EncoderDecoder(5, 7, seed=3).head.weight, model.head.weight)
    with pytest.raises(ValueError, match="src"):
        model(src.double(), tgt_in)
    with pytest.raises(ValueError, match="tgt_in"):
        model(src, tgt_in + 1)
    with pytest.raises(ValueError, match="vocab_size"):
        gated.EncoderDecoder(0, 4)
    with pytest.raises(ValueError, match="length"):
        gated.copy_task(3, 0, 4)




@settings(max_examples=15, deadline=None)
@given(d=st.integers(1, 5), H=st.integers(1, 6), B=st.integers(1, 4), L=st.integers(1, 6),
       bias=st.booleans(), batch_first=st.booleans(), lstm=st.booleans(),
       seed=st.integers(0, 2**16))
def test_hypothesis_forward_and_input_gradient_equal_torch(d, H, B, L, bias, batch_first, lstm,
                                                           seed):
    ours_cls, torch_cls = (LSTM, nn.LSTM) if lstm else (GRU, nn.GRU)
    torch.manual_seed(seed)
    theirs = torch_cls(d, H, bias=bias, batch_first=batch_first, dtype=F64)
    ours = ours_cls(d, H, bias=bias, batch_first=batch_first, dtype=F64)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn((B, L, d) if batch_first else (L, B, d), dtype=F64, requires_grad=True)
    a, b = ours(x)[0], theirs(x)[0]
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    ga, = torch.autograd.grad(a.sin().sum(), x)
    gb, = torch.autograd.grad(b.sin().sum(), x)
    torch.testing.assert_close(ga, gb, rtol=1e-11, atol=1e-12)
