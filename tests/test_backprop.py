"""Tests for dlbook.backprop (hand-written backward passes) and its exercise checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook import backprop as bp
from dlbook.exercises import backprop as ex

SETTINGS = settings(max_examples=15, deadline=None)
sizes = st.integers(min_value=1, max_value=6)


def _rand(*shape, seed: int = 0, away_from_zero: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.randn(*shape, generator=g, dtype=torch.float64)
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
    assert torch.autograd.gradcheck(bp.as_autograd(forward, backward), (Z.detach().requires_grad_(),))


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


def test_gradcheck_catches_a_wrong_backward():
    def wrong_backward(dY, cache):  # forgets the transpose's partner: dW = dY^T X is wrong
        dX, dW, db = bp.linear_backward(dY, cache)
        return dX, 2 * dW, db

    fn = bp.as_autograd(bp.linear_forward, wrong_backward)
    inputs = (_rand(3, 2).requires_grad_(), _rand(2, 2, seed=1).requires_grad_(),
              _rand(2, seed=2).requires_grad_())
    assert not torch.autograd.gradcheck(fn, inputs, raise_exception=False)


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

@pytest.mark.parametrize("call", [
    lambda: bp.linear_forward(torch.randn(3), torch.randn(3, 2), torch.zeros(2)),
    lambda: bp.linear_forward(torch.randn(4, 3), torch.randn(2, 3), torch.zeros(3)),
    lambda: bp.linear_forward(torch.randn(4, 3), torch.randn(3, 2), torch.zeros(3)),
    lambda: bp.linear_forward([[1.0]], torch.randn(1, 1), torch.zeros(1)),
    lambda: bp.linear_backward(torch.randn(4, 3),
                               bp.linear_forward(torch.randn(4, 3), torch.randn(3, 2),
                                                 torch.zeros(2))[1]),
    lambda: bp.tanh_backward(torch.randn(2, 3), bp.tanh_forward(torch.randn(3, 2))[1]),
    lambda: bp.relu_backward(torch.randn(2), bp.relu_forward(torch.randn(3))[1]),
    lambda: bp.mse_forward(torch.randn(4, 1), torch.randn(4)),
    lambda: bp.softmax_cross_entropy_forward(torch.randn(4, 3), torch.zeros(4)),
    lambda: bp.softmax_cross_entropy_forward(torch.randn(4, 3), torch.tensor([0, 1, 2, 3])),
    lambda: bp.softmax_cross_entropy_forward(torch.randn(3), torch.tensor([0, 1, 2])),
    lambda: bp.mlp_forward({"W1": torch.randn(2, 3)}, torch.randn(4, 2), torch.zeros(4).long()),
    lambda: bp.mlp_forward({}, torch.randn(4, 2), torch.zeros(4).long(), activation="gelu"),
    lambda: bp.sgd_step({"W": torch.ones(1)}, {"V": torch.ones(1)}, lr=0.1),
    lambda: bp.params_from_torch(torch.nn.Linear(2, 3, bias=False), torch.nn.Linear(3, 2)),
    lambda: bp.as_autograd(bp.linear_forward, None),
    lambda: bp.linear_flops(0, 2, 3),
    lambda: bp.mlp_logits({}, torch.randn(4, 2), activation="gelu"),
])
def test_validation_raises_value_error(call):
    with pytest.raises(ValueError):
        call()


# --- exercise checks ------------------------------------------------------------------------------

def test_exercise_dw_shape(capsys):
    assert ex.dw_shape((100, 10), (10, 100))
    assert not ex.dw_shape((10, 100), (10, 100))
    assert not ex.dw_shape((100, 10), (100, 10))
    assert not ex.dw_shape(..., ...)
    assert "not answered yet" in capsys.readouterr().out.splitlines()[-1]


def test_exercise_sigmoid_backward(capsys):
    assert ex.sigmoid_backward(lambda dA, A: dA * A * (1 - A))
    assert not ex.sigmoid_backward(lambda dA, A: dA * (1 - A * A))

    def starter(dA, A):
        ...

    assert not ex.sigmoid_backward(starter)
    assert "not answered yet" in capsys.readouterr().out.splitlines()[-1]


def test_exercise_linear_nobias_backward(capsys):
    assert ex.linear_nobias_backward(lambda dY, X, W: (dY @ W.T, X.T @ dY))
    assert not ex.linear_nobias_backward(lambda dY, X, W: (dY @ W.T, (dY.T @ X)))
    assert not ex.linear_nobias_backward(lambda dY, X, W: (dY @ W.T, 2 * X.T @ dY))
    assert not ex.linear_nobias_backward(lambda dY, X, W: dY @ W.T)

    def starter(dY, X, W):
        ...

    assert not ex.linear_nobias_backward(starter)
    assert "not answered yet" in capsys.readouterr().out.splitlines()[-1]
    assert not ex.linear_nobias_backward(...)
    assert "not answered yet" in capsys.readouterr().out.splitlines()[-1]


def test_exercise_softmax_ce_grad(capsys):
    P = torch.softmax(ex.CE_LOGITS, dim=1)
    Y = F.one_hot(ex.CE_LABELS, 3).float()
    assert ex.softmax_ce_grad((P - Y) / 2)
    assert not ex.softmax_ce_grad(P - Y)  # forgot the mean's 1/B
    assert not ex.softmax_ce_grad(...)
    assert "not answered yet" in capsys.readouterr().out.splitlines()[-1]


def test_exercise_backward_flops(capsys):
    unit = 2 * 64 * 512 * 256
    assert ex.backward_flops(2 * unit, unit)
    assert not ex.backward_flops(unit, 2 * unit)
    assert "swapped" in capsys.readouterr().out
    assert not ex.backward_flops(unit, unit)
    assert "swapped" not in capsys.readouterr().out
    assert not ex.backward_flops(3 * unit, unit)
    assert not ex.backward_flops("many", unit)
    assert not ex.backward_flops(..., unit)
    assert "not answered yet" in capsys.readouterr().out.splitlines()[-1]
