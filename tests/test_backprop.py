"""Tests for dlbook.backprop (hand-written backward passes); its exercise checks are tested in
tests/test_exercises_backprop.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook import backprop as bp
from dlbook import losses

SETTINGS = settings(max_examples=15, deadline=None)
sizes = st.integers(min_value=1, max_value=6)


def _rand(*shape, seed: int = 0, away_from_zero: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(shape, generator=g, dtype=torch.float64)
    if away_from_zero:  # relu has a kink at 0 that finite differences must not straddle
        t = t + 0.1 * torch.sign(t)
    return t


# --- each layer against autograd and gradcheck ------------------------------------------------

@SETTINGS
@given(B=sizes, d_in=sizes, d_out=sizes, seed=st.integers(0, 10_000))
def test_linear_matches_nn_linear(B, d_in, d_out, seed):
    torch.manual_seed(seed)
    layer = torch.nn.Linear(d_in, d_out).double()
    X = _rand(B, d_in, seed=seed).requires_grad_()
    dY = _rand(B, d_out, seed=seed + 1)
    Y = layer(X)
    Y.backward(dY)
    Y_ours, cache = bp.linear_forward(X.detach(), layer.weight.detach().T, layer.bias.detach())
    dX, dW, db = bp.linear_backward(dY, cache)
    torch.testing.assert_close(Y_ours, Y.detach())
    torch.testing.assert_close(dX, X.grad)
    torch.testing.assert_close(dW, layer.weight.grad.T)
    torch.testing.assert_close(db, layer.bias.grad)


@SETTINGS
@given(B=sizes, d_in=sizes, d_out=sizes, seed=st.integers(0, 10_000))
def test_linear_gradcheck(B, d_in, d_out, seed):
    inputs = (_rand(B, d_in, seed=seed).requires_grad_(),
              _rand(d_in, d_out, seed=seed + 1).requires_grad_(),
              _rand(d_out, seed=seed + 2).requires_grad_())
    assert torch.autograd.gradcheck(bp.as_autograd(bp.linear_forward, bp.linear_backward), inputs)


@SETTINGS
@given(B=sizes, d=sizes, seed=st.integers(0, 10_000),
       name=st.sampled_from(["tanh", "relu"]))
def test_activations(B, d, seed, name):
    forward, backward, reference = {"tanh": (bp.tanh_forward, bp.tanh_backward, torch.tanh),
                                    "relu": (bp.relu_forward, bp.relu_backward, torch.relu)}[name]
    Z = _rand(B, d, seed=seed, away_from_zero=True).requires_grad_()
    dA = _rand(B, d, seed=seed + 1)
    A = reference(Z)
    A.backward(dA)
    A_ours, cache = forward(Z.detach())
    torch.testing.assert_close(A_ours, A.detach())
    torch.testing.assert_close(backward(dA, cache), Z.grad)
    assert torch.autograd.gradcheck(bp.as_autograd(forward, backward),
                                    (Z.detach().requires_grad_(),))


@SETTINGS
@given(B=sizes, d=sizes, seed=st.integers(0, 10_000))
def test_mse(B, d, seed):
    Y_hat = _rand(B, d, seed=seed).requires_grad_()
    Y = _rand(B, d, seed=seed + 1)
    loss = F.mse_loss(Y_hat, Y)
    loss.backward()
    ours, cache = bp.mse_forward(Y_hat.detach(), Y)
    torch.testing.assert_close(ours, loss.detach())
    torch.testing.assert_close(bp.mse_backward(1.0, cache), Y_hat.grad)
    assert torch.autograd.gradcheck(bp.as_autograd(bp.mse_forward, bp.mse_backward),
                                    (Y_hat.detach().requires_grad_(), Y))


@SETTINGS
@given(B=sizes, K=st.integers(2, 6), seed=st.integers(0, 10_000),
       scale=st.sampled_from([1.0, 30.0]))
def test_softmax_cross_entropy(B, K, seed, scale):
    S = (_rand(B, K, seed=seed) * scale).requires_grad_()
    y = torch.randint(0, K, (B,), generator=torch.Generator().manual_seed(seed))
    loss = F.cross_entropy(S, y)
    loss.backward()
    ours, cache = bp.softmax_cross_entropy_forward(S.detach(), y)
    torch.testing.assert_close(ours, loss.detach())
    torch.testing.assert_close(bp.softmax_cross_entropy_backward(1.0, cache), S.grad)
    if scale == 1.0:
        fn = bp.as_autograd(bp.softmax_cross_entropy_forward, bp.softmax_cross_entropy_backward)
        assert torch.autograd.gradcheck(fn, (S.detach().requires_grad_(), y))


def test_softmax_cross_entropy_is_stable_for_large_logits():
    S = torch.tensor([[1000.0, 0.0], [0.0, -1000.0]])
    loss, cache = bp.softmax_cross_entropy_forward(S, torch.tensor([1, 0]))
    torch.testing.assert_close(loss, F.cross_entropy(S, torch.tensor([1, 0])))
    assert torch.isfinite(bp.softmax_cross_entropy_backward(1.0, cache)).all()


def test_upstream_gradient_of_a_loss_scales_the_result():
    S, y = _rand(4, 3), torch.tensor([0, 1, 2, 1])
    _, cache = bp.softmax_cross_entropy_forward(S, y)
    torch.testing.assert_close(bp.softmax_cross_entropy_backward(3.0, cache),
                               3.0 * bp.softmax_cross_entropy_backward(1.0, cache))


# --- broadcasting <-> summing --------------------------------------------------------------------

@st.composite
def broadcast_pairs(draw):
    """A shape S and a shape s that broadcasts to S (fewer leading dims, some sizes set to 1)."""
    full = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=4)))
    kept = full[draw(st.integers(0, len(full))):]
    small = tuple(1 if draw(st.booleans()) else n for n in kept)
    return full, small


@SETTINGS
@given(shapes=broadcast_pairs(), seed=st.integers(0, 10_000))
def test_unbroadcast_matches_autograd(shapes, seed):
    full, small = shapes
    a = _rand(*small, seed=seed).requires_grad_()
    dY = _rand(*full, seed=seed + 1)
    (a + torch.zeros(full, dtype=torch.float64)).backward(dY)  # autograd sums the copies
    got = bp.unbroadcast(dY, small)
    assert got.shape == a.shape
    torch.testing.assert_close(got, a.grad)


@SETTINGS
@given(shapes=broadcast_pairs(), seed=st.integers(0, 10_000))
def test_unbroadcast_both_operands_of_a_product(shapes, seed):
    full, small = shapes
    a = _rand(*full, seed=seed).requires_grad_()
    b = _rand(*small, seed=seed + 1).requires_grad_()
    dY = _rand(*full, seed=seed + 2)
    (a * b).backward(dY)
    torch.testing.assert_close(bp.unbroadcast(dY * b.detach(), a.shape), a.grad)
    torch.testing.assert_close(bp.unbroadcast(dY * a.detach(), b.shape), b.grad)


def test_unbroadcast_is_the_bias_gradient():
    X, W, b = _rand(6, 3), _rand(3, 2, seed=1), _rand(2, seed=2)
    _, cache = bp.linear_forward(X, W, b)
    dY = _rand(6, 2, seed=3)
    torch.testing.assert_close(bp.unbroadcast(dY, b.shape), bp.linear_backward(dY, cache)[2])
    assert bp.unbroadcast(dY, ()).shape == ()
    torch.testing.assert_close(bp.unbroadcast(dY, torch.Size([6, 1])), dY.sum(1, keepdim=True))


# --- embedding: gather forward, scatter-add backward --------------------------------------------

@SETTINGS
@given(V=st.integers(1, 6), d=st.integers(1, 4),
       ids_shape=st.sampled_from([(), (1,), (5,), (2, 3), (3, 4)]), seed=st.integers(0, 10_000))
def test_embedding_matches_nn_embedding(V, d, ids_shape, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, ids_shape, generator=g)  # repeats are likely
    table = torch.nn.Embedding(V, d).double()
    with torch.no_grad():
        table.weight.copy_(_rand(V, d, seed=seed))
    dY = _rand(*ids_shape, d, seed=seed + 1)
    Y = table(ids)
    Y.backward(dY)
    Y_ours, cache = bp.embedding_forward(table.weight.detach(), ids)
    dE = bp.embedding_backward(dY, cache)
    torch.testing.assert_close(Y_ours, Y.detach())
    torch.testing.assert_close(dE, table.weight.grad)
    one_hot = F.one_hot(ids.reshape(-1), V).double()  # a linear layer on one-hot rows
    torch.testing.assert_close(dE, one_hot.T @ dY.reshape(-1, d))
    assert bp.gradcheck(bp.embedding_forward, bp.embedding_backward,
                        (table.weight.detach().requires_grad_(), ids))


def test_embedding_repeated_ids_accumulate_and_unused_rows_get_zero():
    E = _rand(4, 2)
    _, cache = bp.embedding_forward(E, torch.tensor([1, 1, 1, 3]))
    dE = bp.embedding_backward(torch.ones(4, 2, dtype=torch.float64), cache)
    torch.testing.assert_close(dE, torch.tensor([[0.0, 0], [3, 3], [0, 0], [1, 1]],
                                                dtype=torch.float64))


def test_embedding_takes_any_integer_ids():
    E = _rand(4, 2)
    for dtype in (torch.int32, torch.int64, torch.uint8, torch.int16):
        Y, _ = bp.embedding_forward(E, torch.tensor([3, 0, 3], dtype=dtype))
        torch.testing.assert_close(Y, E[[3, 0, 3]])


# --- softmax -> log -> NLL, unfused ---------------------------------------------------------------

@SETTINGS
@given(B=sizes, K=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_unfused_chain_equals_fused_gradient_and_autograd(B, K, seed):
    S = _rand(B, K, seed=seed).requires_grad_()
    y = torch.randint(0, K, (B,), generator=torch.Generator().manual_seed(seed))
    F.cross_entropy(S, y).backward()
    P, c1 = bp.softmax_forward(S.detach())
    G, c2 = bp.log_forward(P)
    loss, c3 = bp.nll_forward(G, y)
    dS = bp.softmax_backward(bp.log_backward(bp.nll_backward(1.0, c3), c2), c1)
    fused, cache = bp.softmax_cross_entropy_forward(S.detach(), y)
    torch.testing.assert_close(loss, fused)
    torch.testing.assert_close(dS, bp.softmax_cross_entropy_backward(1.0, cache))
    torch.testing.assert_close(dS, S.grad)


@SETTINGS
@given(B=sizes, K=st.integers(2, 6), seed=st.integers(0, 10_000))
def test_unfused_steps_gradcheck(B, K, seed):
    S = _rand(B, K, seed=seed)
    y = torch.randint(0, K, (B,), generator=torch.Generator().manual_seed(seed))
    P = torch.softmax(S, dim=1)
    assert bp.gradcheck(bp.softmax_forward, bp.softmax_backward, (S.requires_grad_(),))
    assert bp.gradcheck(bp.log_forward, bp.log_backward, (P.requires_grad_(),))
    G = torch.log(P).detach().requires_grad_()
    assert bp.gradcheck(bp.nll_forward, bp.nll_backward, (G, y))


def test_unfused_chain_breaks_where_a_probability_underflows():
    S, y = torch.tensor([[0.0, 800.0]], dtype=torch.float64), torch.tensor([0])
    P, c1 = bp.softmax_forward(S)
    G, c2 = bp.log_forward(P)
    _, c3 = bp.nll_forward(G, y)
    dS = bp.softmax_backward(bp.log_backward(bp.nll_backward(1.0, c3), c2), c1)
    assert torch.isnan(dS).any()
    loss, cache = bp.softmax_cross_entropy_forward(S, y)
    torch.testing.assert_close(loss, torch.tensor(800.0, dtype=torch.float64))
    torch.testing.assert_close(bp.softmax_cross_entropy_backward(1.0, cache),
                               torch.tensor([[-1.0, 1.0]], dtype=torch.float64))


def test_softmax_cross_entropy_is_section_1_3s_loss():
    S, y = _rand(5, 3), torch.tensor([0, 2, 1, 1, 0])
    loss, cache = bp.softmax_cross_entropy_forward(S, y)
    torch.testing.assert_close(loss, losses.cross_entropy(S, y))
    torch.testing.assert_close(bp.softmax_cross_entropy_backward(2.0, cache),
                               2.0 * losses.cross_entropy_grad(S, y))


# --- the book's gradient check catches a wrong backward ----------------------------------------

def _book_pairs():
    """Each hand-written pair with float64 inputs at which to check it."""
    Z = _rand(5, 4, away_from_zero=True)
    y = torch.tensor([0, 3, 1, 1, 2])

    def leaf(t):
        return t.detach().requires_grad_()

    return {
        "linear": (bp.linear_forward, bp.linear_backward,
                   (leaf(_rand(5, 3)), leaf(_rand(3, 3, seed=1)), leaf(_rand(3, seed=2)))),
        "tanh": (bp.tanh_forward, bp.tanh_backward, (leaf(Z),)),
        "relu": (bp.relu_forward, bp.relu_backward, (leaf(Z),)),
        "mse": (bp.mse_forward, bp.mse_backward, (leaf(Z), _rand(5, 4, seed=3))),
        "softmax cross-entropy": (bp.softmax_cross_entropy_forward,
                                  bp.softmax_cross_entropy_backward, (leaf(Z), y)),
        "softmax": (bp.softmax_forward, bp.softmax_backward, (leaf(Z),)),
        "log": (bp.log_forward, bp.log_backward, (leaf(torch.softmax(Z, 1)),)),
        "nll": (bp.nll_forward, bp.nll_backward, (leaf(torch.log_softmax(Z, 1)), y)),
        "embedding": (bp.embedding_forward, bp.embedding_backward,
                      (leaf(_rand(4, 3)), torch.tensor([[1, 3, 1], [0, 1, 1]]))),
    }


def _scaled(backward, factor):  # a constant such as 2 or 1/B forgotten or doubled
    def wrong(d_out, cache):
        out = backward(d_out, cache)
        return tuple(factor * g for g in out) if isinstance(out, tuple) else factor * out
    return wrong


def _no_upstream(backward):  # forgets to multiply by the upstream gradient
    return lambda d_out, cache: backward(torch.ones_like(d_out), cache)


def _transposed_dX(backward):  # dY @ W instead of dY @ W.T (the square layer still fits)
    def wrong(dY, cache):
        X, W = cache
        _, dW, db = backward(dY, cache)
        return dY @ W, dW, db
    return wrong


def _assigned_not_added(backward):  # dE[ids] = dY: repeated rows keep one contribution
    def wrong(dY, cache):
        ids, E = cache
        dE = torch.zeros_like(E)
        dE[ids.reshape(-1)] = dY.reshape(-1, E.shape[1])
        return dE
    return wrong


MUTANTS = [(name, label, mutate) for name in _book_pairs()
           for label, mutate in [("x2", lambda b: _scaled(b, 2.0)),
                                 ("x1.01", lambda b: _scaled(b, 1.01))]]
MUTANTS += [(name, "no upstream", _no_upstream)
            for name in ("linear", "tanh", "relu", "softmax", "log", "embedding")]
MUTANTS += [("linear", "dY @ W", _transposed_dX), ("embedding", "assigned", _assigned_not_added)]


@pytest.mark.parametrize("name, label, mutate", MUTANTS,
                         ids=[f"{n}-{lab}" for n, lab, _ in MUTANTS])
def test_gradcheck_catches_a_mutated_book_backward(name, label, mutate):
    forward, backward, inputs = _book_pairs()[name]
    assert bp.gradcheck(forward, backward, inputs)
    assert not bp.gradcheck(forward, mutate(backward), inputs)


def test_as_autograd_calls_our_backward():
    calls = []

    def spy(dY, cache):
        calls.append(dY.shape)
        return bp.tanh_backward(dY, cache)

    Z = _rand(3, 2).requires_grad_()
    bp.as_autograd(bp.tanh_forward, spy)(Z).sum().backward()
    assert calls == [torch.Size([3, 2])]
    torch.testing.assert_close(Z.grad, 1 - torch.tanh(Z.detach()) ** 2)


_BOOK = {"linear_backward": bp.linear_backward,
         "softmax_cross_entropy_backward": bp.softmax_cross_entropy_backward}


def _db_as_mean(dY, cache, need_dX=True):  # the bias gradient averaged instead of summed
    dX, dW, _ = _BOOK["linear_backward"](dY, cache, need_dX=need_dX)
    return dX, dW, dY.mean(dim=0)


def _ce_without_mean(dL, cache):  # (P - Y) without the 1/B
    return _BOOK["softmax_cross_entropy_backward"](dL, cache) * len(cache[1])


def _tanh_without_slope(dA, cache):  # forgot f'(Z)
    return dA


@pytest.mark.parametrize("layer, bug", [("linear_backward", _db_as_mean),
                                        ("softmax_cross_entropy_backward", _ce_without_mean),
                                        ("tanh", _tanh_without_slope)])
def test_mlp_comparison_catches_a_wrong_layer(monkeypatch, layer, bug):
    """The MLP's comparison with autograd fails when one of the book's layers is wrong."""
    torch.manual_seed(0)
    lin1, lin2 = torch.nn.Linear(3, 5).double(), torch.nn.Linear(5, 4).double()
    X, y = _rand(6, 3), torch.tensor([0, 1, 2, 3, 1, 0])
    F.cross_entropy(lin2(torch.tanh(lin1(X))), y).backward()
    reference = {"W1": lin1.weight.grad.T, "b1": lin1.bias.grad,
                 "W2": lin2.weight.grad.T, "b2": lin2.bias.grad}
    params = bp.params_from_torch(lin1, lin2)

    def matches():
        grads = bp.mlp_backward(bp.mlp_forward(params, X, y)[1])
        return all(torch.allclose(grads[k], reference[k]) for k in reference)

    assert matches()
    if layer == "tanh":
        monkeypatch.setitem(bp._ACTIVATIONS, "tanh", (bp.tanh_forward, bug))
    else:
        monkeypatch.setattr(bp, layer, bug)
    assert not matches()


# --- the MLP ------------------------------------------------------------------------------------

@SETTINGS
@given(B=sizes, d_in=sizes, H=sizes, K=st.integers(2, 5), seed=st.integers(0, 10_000),
       activation=st.sampled_from(["tanh", "relu"]))
def test_mlp_matches_autograd(B, d_in, H, K, seed, activation):
    torch.manual_seed(seed)
    lin1, lin2 = torch.nn.Linear(d_in, H).double(), torch.nn.Linear(H, K).double()
    X = _rand(B, d_in, seed=seed)
    y = torch.randint(0, K, (B,))
    act = torch.tanh if activation == "tanh" else torch.relu
    loss = F.cross_entropy(lin2(act(lin1(X))), y)
    loss.backward()
    params = bp.params_from_torch(lin1, lin2)
    ours, caches = bp.mlp_forward(params, X, y, activation=activation)
    grads = bp.mlp_backward(caches)
    torch.testing.assert_close(ours, loss.detach())
    torch.testing.assert_close(grads["W1"], lin1.weight.grad.T)
    torch.testing.assert_close(grads["b1"], lin1.bias.grad)
    torch.testing.assert_close(grads["W2"], lin2.weight.grad.T)
    torch.testing.assert_close(grads["b2"], lin2.bias.grad)


def test_training_tracks_autograd_step_for_step():
    torch.manual_seed(0)
    X = torch.randn(32, 2)
    y = (X[:, 0] * X[:, 1] > 0).long()
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    params = bp.params_from_torch(net[0], net[2])
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(20):
        _, caches = bp.mlp_forward(params, X, y)
        params = bp.sgd_step(params, bp.mlp_backward(caches), lr=0.5)
        opt.zero_grad()
        F.cross_entropy(net(X), y).backward()
        opt.step()
    for key, value in bp.params_from_torch(net[0], net[2]).items():
        torch.testing.assert_close(params[key], value)


def test_linear_backward_can_skip_dX():
    X, W, b = _rand(4, 3), _rand(3, 2, seed=1), _rand(2, seed=2)
    _, cache = bp.linear_forward(X, W, b)
    dY = _rand(4, 2, seed=3)
    dX, dW, db = bp.linear_backward(dY, cache, need_dX=False)
    _, dW_full, db_full = bp.linear_backward(dY, cache)
    assert dX is None
    torch.testing.assert_close(dW, dW_full)
    torch.testing.assert_close(db, db_full)


def test_mlp_logits_match_the_forward_pass():
    torch.manual_seed(0)
    lin1, lin2 = torch.nn.Linear(3, 5).double(), torch.nn.Linear(5, 4).double()
    X = _rand(6, 3)
    for activation, act in (("tanh", torch.tanh), ("relu", torch.relu)):
        logits = bp.mlp_logits(bp.params_from_torch(lin1, lin2), X, activation=activation)
        torch.testing.assert_close(logits, lin2(act(lin1(X))).detach())


def test_follows_the_input_dtype():
    X = torch.randn(3, 2, dtype=torch.float64)
    Y, cache = bp.linear_forward(X, torch.randn(2, 4, dtype=torch.float64),
                                 torch.zeros(4, dtype=torch.float64))
    assert Y.dtype == torch.float64
    assert all(g.dtype == torch.float64 for g in bp.linear_backward(torch.ones(3, 4,
                                                                     dtype=torch.float64), cache))


# --- FLOPs ----------------------------------------------------------------------------------------

@settings(max_examples=8, deadline=None)
@given(B=sizes, d_in=sizes, d_out=sizes)
def test_linear_flops_match_flop_counter(B, d_in, d_out):
    from torch.utils.flop_counter import FlopCounterMode

    layer = torch.nn.Linear(d_in, d_out)
    X = torch.randn(B, d_in, requires_grad=True)
    with FlopCounterMode(display=False) as fwd:
        Y = layer(X)
    with FlopCounterMode(display=False) as bwd:
        Y.sum().backward()
    assert bp.linear_flops(B, d_in, d_out) == (fwd.get_total_flops(), bwd.get_total_flops())
    forward, backward = bp.linear_flops(B, d_in, d_out, need_dX=False)
    assert backward == forward


# --- input validation -----------------------------------------------------------------------------

f32, f64 = torch.float32, torch.float64


def _lin_cache(dtype=f32):
    return bp.linear_forward(torch.randn(4, 3, dtype=dtype), torch.randn(3, 2, dtype=dtype),
                             torch.zeros(2, dtype=dtype))[1]


def _params(**change):
    p = {"W1": torch.randn(2, 3), "b1": torch.zeros(3), "W2": torch.randn(3, 2),
         "b2": torch.zeros(2)}
    p.update(change)
    return p


# (call, words the message must contain: what is wrong and the fix)
BAD = [
    # shapes
    (lambda: bp.linear_forward(torch.randn(3), torch.randn(3, 2), torch.zeros(2)),
     "reshape(1, -1)"),
    (lambda: bp.linear_forward(torch.randn(4, 3), torch.randn(2, 3), torch.zeros(3)),
     "must have shape (3, d_out)"),
    (lambda: bp.linear_forward(torch.randn(4, 3), torch.randn(3, 2), torch.zeros(3)),
     "one bias per output"),
    (lambda: bp.linear_forward(torch.randn(4, 3), torch.randn(3, 2), torch.zeros(1, 2)),
     "one bias per output"),
    (lambda: bp.linear_backward(torch.randn(4, 3), _lin_cache()), "(4, 2)"),
    (lambda: bp.tanh_backward(torch.randn(2, 3), bp.tanh_forward(torch.randn(3, 2))[1]),
     "(3, 2)"),
    (lambda: bp.relu_backward(torch.randn(2), bp.relu_forward(torch.randn(3))[1]), "(3,)"),
    (lambda: bp.mse_forward(torch.randn(4, 1), torch.randn(4)), "squeeze"),
    (lambda: bp.softmax_cross_entropy_forward(torch.randn(3), torch.tensor([0, 1, 2])),
     "(batch, classes)"),
    (lambda: bp.softmax_cross_entropy_forward(torch.randn(4, 3), torch.tensor([0, 1])),
     "one class index per row"),
    (lambda: bp.embedding_backward(torch.randn(3, 2),
                                   bp.embedding_forward(torch.randn(5, 2),
                                                        torch.tensor([1, 2]))[1]), "(2, 2)"),
    (lambda: bp.embedding_forward(torch.randn(5), torch.tensor([1])), "(num_embeddings, dim)"),
    (lambda: bp.softmax_forward(torch.randn(5)), "(batch, classes)"),
    (lambda: bp.mlp_forward(_params(W2=torch.randn(4, 2)), torch.randn(4, 2),
                            torch.zeros(4).long()), "W2 must have 3 rows"),
    (lambda: bp.sgd_step({"W": torch.ones(3)}, {"W": torch.ones(1)}, lr=0.1), "shape (3,)"),
    # dtypes: integer inputs and float32/float64 mixes
    (lambda: bp.linear_forward(torch.ones(4, 3, dtype=torch.long), torch.randn(3, 2),
                               torch.zeros(2)), "X.float()"),
    (lambda: bp.linear_forward(torch.randn(4, 3), torch.randn(3, 2, dtype=f64),
                               torch.zeros(2)), "W.to(X.dtype)"),
    (lambda: bp.linear_forward(torch.randn(4, 3), torch.randn(3, 2),
                               torch.zeros(2, dtype=f64)), "b.to(X.dtype)"),
    (lambda: bp.linear_backward(torch.randn(4, 2, dtype=f64), _lin_cache()),
     "dY.to(torch.float32)"),
    (lambda: bp.linear_backward(torch.ones(4, 2, dtype=torch.long), _lin_cache()),
     "dY.to(torch.float32)"),
    (lambda: bp.relu_forward(torch.tensor([1, -2])), "Z.float()"),
    (lambda: bp.tanh_forward(torch.tensor([1, -2])), "Z.float()"),
    (lambda: bp.tanh_backward(torch.randn(3, dtype=f64), bp.tanh_forward(torch.randn(3))[1]),
     "dA.to(torch.float32)"),
    (lambda: bp.mse_forward(torch.randn(4), torch.randn(4, dtype=f64)), "Y.to(Y_hat.dtype)"),
    (lambda: bp.mse_forward(torch.randn(4), torch.tensor([1, 2, 3, 4])), "Y.float()"),
    (lambda: bp.softmax_cross_entropy_forward(torch.tensor([[1, 2]]), torch.tensor([0])),
     "S.float()"),
    (lambda: bp.softmax_cross_entropy_forward(torch.randn(4, 3), torch.zeros(4)), "y.long()"),
    (lambda: bp.softmax_cross_entropy_forward(torch.randn(2, 3), torch.tensor([True, False])),
     "y.long()"),
    (lambda: bp.softmax_cross_entropy_forward(torch.randn(2, 3), [0, 1]), "torch.tensor(y)"),
    (lambda: bp.embedding_forward(torch.randn(5, 2), torch.tensor([1.0, 2.0])), ".long()"),
    (lambda: bp.embedding_forward(torch.randn(5, 2), torch.tensor([True])), ".long()"),
    (lambda: bp.embedding_forward(torch.tensor([[1, 2]]), torch.tensor([0])), "E.float()"),
    (lambda: bp.nll_forward(torch.randn(2, 3), torch.tensor([0.0, 1.0])), "y.long()"),
    (lambda: bp.mlp_forward(_params(W2=torch.randn(3, 2, dtype=f64)), torch.randn(4, 2),
                            torch.zeros(4).long()), "W.to(X.dtype)"),
    (lambda: bp.gradcheck(bp.tanh_forward, bp.tanh_backward,
                          (torch.randn(3, requires_grad=True),)), ".double()"),
    # devices
    (lambda: bp.linear_forward(torch.randn(4, 3, device="meta"), torch.randn(3, 2),
                               torch.zeros(2)), "W.to(X.device)"),
    (lambda: bp.tanh_backward(torch.randn(3, device="meta"), bp.tanh_forward(torch.randn(3))[1]),
     "dA.to('cpu')"),
    # values
    (lambda: bp.softmax_cross_entropy_forward(torch.randn(4, 3), torch.tensor([0, 1, 2, 3])),
     "[0, 3)"),
    (lambda: bp.softmax_cross_entropy_forward(torch.randn(0, 3), torch.zeros(0).long()),
     "empty"),
    (lambda: bp.mse_forward(torch.randn(0), torch.randn(0)), "empty"),
    (lambda: bp.embedding_forward(torch.randn(5, 2), torch.tensor([5])), "[0, 5)"),
    (lambda: bp.embedding_forward(torch.randn(5, 2), torch.tensor([-1])), "[0, 5)"),
    (lambda: bp.mse_backward(torch.ones(3), bp.mse_forward(torch.randn(3), torch.randn(3))[1]),
     "upstream gradient of a scalar loss"),
    (lambda: bp.softmax_cross_entropy_backward(
        "1", bp.softmax_cross_entropy_forward(torch.randn(2, 3), torch.tensor([0, 1]))[1]),
     "a number"),
    (lambda: bp.unbroadcast(torch.ones(2, 3), (2,)), "cannot be broadcast"),
    (lambda: bp.unbroadcast(torch.ones(3), (2, 3)), "cannot be broadcast"),
    (lambda: bp.unbroadcast(torch.ones(2, 3), torch.ones(3)), "b.shape"),
    (lambda: bp.unbroadcast(torch.ones(2, 3), (-1, 3)), "non-negative"),
    (lambda: bp.unbroadcast([1.0, 2.0], (2,)), "torch.Tensor"),
    # the rest of the API
    (lambda: bp.mlp_forward({"W1": torch.randn(2, 3)}, torch.randn(4, 2),
                            torch.zeros(4).long()), "W1, b1, W2, b2"),
    (lambda: bp.mlp_forward(_params(), torch.randn(4, 2), torch.zeros(4).long(),
                            activation="gelu"), "relu"),
    (lambda: bp.mlp_logits(_params(), torch.randn(4, 2), activation="gelu"), "relu"),
    (lambda: bp.sgd_step({"W": torch.ones(1)}, {"V": torch.ones(1)}, lr=0.1), "keys"),
    (lambda: bp.sgd_step({"W": torch.ones(1)}, {"W": torch.ones(1)}, lr="0.1"), "number"),
    (lambda: bp.params_from_torch(torch.nn.Linear(2, 3, bias=False), torch.nn.Linear(3, 2)),
     "bias=True"),
    (lambda: bp.as_autograd(bp.linear_forward, None), "two functions"),
    (lambda: bp.gradcheck(bp.tanh_forward, bp.tanh_backward, torch.randn(3, dtype=f64)),
     "tuple"),
    (lambda: bp.gradcheck(bp.tanh_forward, bp.tanh_backward, (torch.randn(3, dtype=f64),)),
     "requires_grad_()"),
    (lambda: bp.linear_flops(0, 2, 3), "positive integer"),
    (lambda: bp.linear_flops(2, 2.5, 3), "positive integer"),
    (lambda: bp.linear_flops(2, 2, 3, need_dX="no"), "True or False"),
]


@pytest.mark.parametrize("call, words", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_gives_a_value_error_that_names_the_fix(call, words):
    with pytest.raises(ValueError) as info:
        call()
    assert words in str(info.value)


@SETTINGS
@given(first=st.sampled_from([f32, f64, torch.int64]), second=st.sampled_from([f32, f64]),
       which=st.integers(0, 2))
def test_any_dtype_mix_in_a_linear_layer_is_a_value_error(first, second, which):
    dtypes = [second, second, second]
    dtypes[which] = first
    X, W, b = (torch.ones(shape, dtype=d) for shape, d in zip([(2, 3), (3, 4), (4,)], dtypes))
    if len(set(dtypes)) == 1:
        assert bp.linear_forward(X, W, b)[0].dtype == first
    else:
        with pytest.raises(ValueError, match="convert"):
            bp.linear_forward(X, W, b)


@SETTINGS
@given(dtype=st.sampled_from([f32, f64]), B=sizes, d=sizes, V=sizes,
       upstream=st.sampled_from([f32, f64, torch.int64]))
def test_backwards_follow_the_forward_dtype_and_refuse_another(dtype, B, d, V, upstream):
    """Every output has the input's dtype; an upstream gradient of another dtype is refused."""
    g = torch.Generator().manual_seed(B * 31 + d)
    X = torch.randn(B, d, generator=g, dtype=dtype)
    pairs = [(bp.tanh_forward, bp.tanh_backward, (X,)),
             (bp.relu_forward, bp.relu_backward, (X,)),
             (bp.softmax_forward, bp.softmax_backward, (X,)),
             (bp.log_forward, bp.log_backward, (X.abs() + 0.1,)),
             (bp.linear_forward, bp.linear_backward,
              (X, torch.randn(d, V, generator=g, dtype=dtype), torch.zeros(V, dtype=dtype))),
             (bp.embedding_forward, bp.embedding_backward,
              (X, torch.randint(0, B, (V,), generator=g)))]
    for forward, backward, inputs in pairs:
        out, cache = forward(*inputs)
        assert out.dtype == dtype
        d_out = torch.ones(out.shape, dtype=upstream)
        if upstream == dtype:
            grads = backward(d_out, cache)
            grads = grads if isinstance(grads, tuple) else (grads,)
            assert all(g_.dtype == dtype for g_ in grads)
        else:
            with pytest.raises(ValueError, match="convert it with"):
                backward(d_out, cache)


def test_labels_of_any_integer_dtype_are_class_indices():
    S = _rand(3, 4)
    want, _ = bp.softmax_cross_entropy_forward(S, torch.tensor([3, 0, 2]))
    for dtype in (torch.uint8, torch.int32, torch.int16):
        loss, cache = bp.softmax_cross_entropy_forward(S, torch.tensor([3, 0, 2], dtype=dtype))
        torch.testing.assert_close(loss, want)
        assert bp.softmax_cross_entropy_backward(1.0, cache).shape == (3, 4)


@SETTINGS
@given(small=st.lists(st.integers(1, 3), max_size=3), full=st.lists(st.integers(1, 3), max_size=3))
def test_unbroadcast_accepts_exactly_the_shapes_torch_can_broadcast(small, full):
    small, full = tuple(small), tuple(full)
    try:
        ok = torch.broadcast_shapes(small, full) == full
    except RuntimeError:
        ok = False
    if ok:
        assert bp.unbroadcast(torch.ones(full), small).shape == small
    else:
        with pytest.raises(ValueError, match="cannot be broadcast"):
            bp.unbroadcast(torch.ones(full), small)
