"""Tests of dlbook.layers (section 2.4): init against torch.nn.init, hand-written backward
passes against autograd, finite differences and PyTorch's own layers, and the exercise checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlbook import layers as L
from dlbook.exercises import deep as ex

FAST = settings(max_examples=25, deadline=None)
F64 = torch.float64


# ---------------------------------------------------------------------------- initialisation

INITS = [
    (L.xavier_normal_, nn.init.xavier_normal_, {}, {}),
    (L.xavier_uniform_, nn.init.xavier_uniform_, {}, {}),
    (L.kaiming_normal_, nn.init.kaiming_normal_, {}, {"nonlinearity": "relu"}),
    (L.kaiming_uniform_, nn.init.kaiming_uniform_, {}, {"nonlinearity": "relu"}),
    (L.xavier_normal_, nn.init.xavier_normal_, {"gain": 5 / 3}, {"gain": 5 / 3}),
    (L.kaiming_normal_, nn.init.kaiming_normal_, {"nonlinearity": "tanh", "mode": "fan_out"},
     {"nonlinearity": "tanh", "mode": "fan_out"}),
]


@FAST
@given(st.lists(st.integers(1, 7), min_size=2, max_size=4))
def test_fans_match_torch(shape):
    expected = nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))  # noqa: SLF001
    assert L.fans(shape) == expected


@pytest.mark.parametrize("ours, theirs, kw_ours, kw_theirs", INITS)
@pytest.mark.parametrize("shape", [(30, 20), (7, 3, 5), (4, 2, 3, 3)])
def test_init_draws_exactly_what_torch_draws(ours, theirs, kw_ours, kw_theirs, shape):
    a, b = torch.empty(shape), torch.empty(shape)
    ours(a, generator=torch.Generator().manual_seed(3), **kw_ours)
    theirs(b, generator=torch.Generator().manual_seed(3), **kw_theirs)
    assert torch.equal(a, b)


@pytest.mark.parametrize("ours, theirs, kw_ours, kw_theirs", INITS)
def test_init_std_matches_formula_and_torch(ours, theirs, kw_ours, kw_theirs):
    # Large samples (640,000 numbers): the sample std is within 1 % of the formula's.
    fan_in, fan_out = 400, 1600
    a, b = torch.empty(fan_out, fan_in), torch.empty(fan_out, fan_in)
    ours(a, generator=torch.Generator().manual_seed(0), **kw_ours)
    theirs(b, generator=torch.Generator().manual_seed(1), **kw_theirs)
    name = ours.__name__
    if name.startswith("xavier"):
        std = kw_ours.get("gain", 1.0) * math.sqrt(2 / (fan_in + fan_out))
    else:
        fan = fan_in if kw_ours.get("mode", "fan_in") == "fan_in" else fan_out
        std = L.gain(kw_ours.get("nonlinearity", "relu")) / math.sqrt(fan)
    assert abs(float(a.std()) / std - 1) < 0.01
    assert abs(float(b.std()) / std - 1) < 0.01
    assert abs(float(a.mean())) < 0.01 * std
    if name.endswith("uniform_"):
        assert float(a.abs().max()) <= math.sqrt(3) * std


def test_gain_matches_torch():
    for name in ("linear", "sigmoid", "tanh", "relu"):
        assert L.gain(name) == pytest.approx(nn.init.calculate_gain(name))


def test_he_keeps_relu_activation_std_constant_and_xavier_halves_variance():
    torch.manual_seed(0)
    x = torch.randn(512, 40)
    stds = {}
    for name, init in (("he", L.kaiming_normal_), ("xavier", L.xavier_normal_)):
        model = L.init_weights_(L.DeepMLP(20, 256), init)
        with torch.no_grad():
            _, zs = model.forward_all(x)
        stds[name] = torch.stack([z.std() for z in zs])
    ratio_he = float(stds["he"][-1] / stds["he"][0])
    assert 0.5 < ratio_he < 2.0                       # stays O(1) over 20 layers
    # Xavier with n_in = n_out gives Var[w] = 1/n: each ReLU layer halves the variance.
    ratio_xavier = float(stds["xavier"][-1] / stds["xavier"][0])
    assert 0.5 < ratio_xavier / 2 ** (-20 / 2) < 2.0


def test_init_validation():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        L.kaiming_normal_(torch.empty(5))
    with pytest.raises(ValueError, match="floating-point"):
        L.xavier_normal_(torch.empty(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="nonlinearity"):
        L.kaiming_normal_(torch.empty(3, 3), nonlinearity="gelu")
    with pytest.raises(ValueError, match="mode"):
        L.kaiming_uniform_(torch.empty(3, 3), mode="fan_avg")


# ---------------------------------------------------------------------------- batch norm


def _inputs(shape, d, seed):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(*shape, generator=g, dtype=F64) + 0.5
    gamma = torch.randn(d, generator=g, dtype=F64)
    beta = torch.randn(d, generator=g, dtype=F64)
    dy = torch.randn(*shape, generator=g, dtype=F64)
    return x, gamma, beta, dy


def _autograd(fn, x, gamma, beta, dy):
    x, gamma, beta = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
    y = fn(x, gamma, beta)
    y.backward(dy)
    return y.detach(), x.grad, gamma.grad, beta.grad


@FAST
@given(st.integers(2, 24), st.integers(1, 6), st.integers(0, 10_000))
def test_batchnorm_backward_matches_autograd_and_torch(n, d, seed):
    x, gamma, beta, dy = _inputs((n, d), d, seed)
    y, cache = L.batchnorm_forward(x, gamma, beta)
    ours = L.batchnorm_backward(dy, cache)
    # 1. autograd through the same forward pass
    _, *auto = _autograd(lambda a, b, c: L.batchnorm_forward(a, b, c)[0], x, gamma, beta, dy)
    for got, want in zip(ours, auto):
        torch.testing.assert_close(got, want)
    # 2. PyTorch's batch norm in training mode (biased variance in the normalisation, eps)
    y_t, *torch_grads = _autograd(
        lambda a, b, c: F.batch_norm(a, None, None, b, c, training=True, eps=1e-5),
        x, gamma, beta, dy)
    torch.testing.assert_close(y, y_t)
    for got, want in zip(ours, torch_grads):
        torch.testing.assert_close(got, want)
    # 3. dx sums to zero over the batch: the gradient cannot move the batch's mean, which
    #    batch norm removes anyway. With eps = 0 it cannot change the scale either.
    torch.testing.assert_close(ours[0].sum(0), torch.zeros(d, dtype=F64), atol=1e-9, rtol=0)
    _, cache0 = L.batchnorm_forward(x, gamma, beta, eps=0.0)
    dx0 = L.batchnorm_backward(dy, cache0)[0]
    torch.testing.assert_close((dx0 * cache0.xhat).sum(0), torch.zeros(d, dtype=F64),
                               atol=1e-9, rtol=0)


def test_batchnorm_function_gradcheck():
    x, gamma, beta, _ = _inputs((10, 4), 4, 0)
    args = (x.requires_grad_(), gamma.requires_grad_(), beta.requires_grad_(), 1e-5)
    assert torch.autograd.gradcheck(L.BatchNormFunction.apply, args)


@FAST
@given(st.integers(2, 16), st.integers(1, 5), st.floats(0.0, 1.0), st.integers(1, 4),
       st.integers(0, 10_000))
def test_batchnorm1d_running_stats_and_eval_match_torch(n, d, momentum, steps, seed):
    ours = L.BatchNorm1d(d, momentum=momentum).double()
    theirs = nn.BatchNorm1d(d, momentum=momentum).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = torch.randn(d, generator=g, dtype=F64)
        ours.weight.copy_(w)
        theirs.weight.copy_(w)
    for _ in range(steps):
        x = 3 * torch.randn(n, d, generator=g, dtype=F64) - 1
        torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)  # unbiased, as PyTorch
    ours.eval()
    theirs.eval()
    x = torch.randn(3, d, generator=g, dtype=F64)
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours(x[:1]), theirs(x[:1]))  # eval mode takes one example


def test_batchnorm1d_trains_like_torch():
    torch.manual_seed(0)
    ours, theirs = L.BatchNorm1d(3).double(), nn.BatchNorm1d(3).double()
    x = torch.randn(6, 3, dtype=F64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    dy = torch.randn(6, 3, dtype=F64)
    ours(x).backward(dy)
    theirs(x2).backward(dy)
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)


def test_batchnorm_validation():
    x, gamma, beta, _ = _inputs((4, 3), 3, 0)
    with pytest.raises(ValueError, match="batch, features"):
        L.batchnorm_forward(x[None], gamma, beta)
    with pytest.raises(ValueError, match="gamma and beta"):
        L.batchnorm_forward(x, gamma[:2], beta)
    _, cache = L.batchnorm_forward(x, gamma, beta)
    with pytest.raises(ValueError, match="dy of shape"):
        L.batchnorm_backward(torch.zeros(4, 2, dtype=F64), cache)
    bn = L.BatchNorm1d(3)
    with pytest.raises(ValueError, match="at least 2 examples"):
        bn(torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"\(batch, 3\)"):
        bn(torch.randn(4, 5))
    with pytest.raises(ValueError):
        L.BatchNorm1d(3, momentum=1.5)


# ---------------------------------------------------------------------------- layer norm


@FAST
@given(st.lists(st.integers(1, 5), min_size=0, max_size=2), st.integers(2, 8),
       st.integers(0, 10_000))
def test_layernorm_backward_matches_autograd_and_torch(lead, d, seed):
    x, gamma, beta, dy = _inputs((*lead, d), d, seed)
    y, cache = L.layernorm_forward(x, gamma, beta)
    ours = L.layernorm_backward(dy, cache)
    _, *auto = _autograd(lambda a, b, c: L.layernorm_forward(a, b, c)[0], x, gamma, beta, dy)
    for got, want in zip(ours, auto):
        torch.testing.assert_close(got, want)
    y_t, *torch_grads = _autograd(lambda a, b, c: F.layer_norm(a, (d,), b, c, eps=1e-5),
                                  x, gamma, beta, dy)
    torch.testing.assert_close(y, y_t)
    for got, want in zip(ours, torch_grads):
        torch.testing.assert_close(got, want)


def test_layernorm_function_gradcheck_and_module():
    x, gamma, beta, _ = _inputs((2, 3, 6), 6, 1)
    args = (x.requires_grad_(), gamma.requires_grad_(), beta.requires_grad_(), 1e-5)
    assert torch.autograd.gradcheck(L.LayerNormFunction.apply, args)
    ours, theirs = L.LayerNorm(6).double(), nn.LayerNorm(6).double()
    with torch.no_grad():
        ours.weight.copy_(gamma)
        theirs.weight.copy_(gamma)
    xd = x.detach()
    torch.testing.assert_close(ours(xd), theirs(xd))
    ours.eval()
    torch.testing.assert_close(ours(xd[:1]), theirs(xd[:1]))  # no batch dependence
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        ours(torch.randn(3, 4, dtype=F64))


# ---------------------------------------------------------------------------- deep MLP


def test_deep_mlp_shapes_residual_and_grad_norms():
    torch.manual_seed(0)
    x, y = torch.randn(8, 40), torch.randint(0, 10, (8,))
    for kw in ({}, {"norm": "batch"}, {"norm": "layer"}, {"residual": True},
               {"activation": "tanh"}, {"activation": "sigmoid"}):
        model = L.DeepMLP(5, 16, **kw)
        logits, zs = model.forward_all(x)
        assert logits.shape == (8, 10) and len(zs) == 6 and zs[-1].shape == (8, 16)
        norms = L.weight_grad_norms(model, x, y)
        assert norms.shape == (7,) and bool((norms > 0).all())
        assert all(p.grad is None for p in model.parameters())
        # the same numbers by hand
        F.cross_entropy(model(x), y).backward()
        torch.testing.assert_close(norms, torch.stack([m.weight.grad.norm()
                                                       for m in model.linears()]))
    # A residual block whose branch is zero passes its input on unchanged.
    model = L.DeepMLP(3, 16, residual=True)
    L.init_weights_(model, lambda w: w.zero_())
    with torch.no_grad():
        model.inp.weight.normal_()
        _, zs = model.forward_all(x)
    for z in zs[1:]:
        torch.testing.assert_close(z, zs[0])


def test_init_weights_and_deep_mlp_validation():
    model = L.init_weights_(L.DeepMLP(2, 8), L.kaiming_normal_,
                            generator=torch.Generator().manual_seed(0))
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in model.linears())
    with pytest.raises(ValueError, match="activation"):
        L.DeepMLP(2, 8, activation="gelu")
    with pytest.raises(ValueError, match="norm"):
        L.DeepMLP(2, 8, norm="group")
    with pytest.raises(ValueError, match="depth"):
        L.DeepMLP(0, 8)
    with pytest.raises(ValueError, match=r"\(batch, 40\)"):
        model(torch.randn(40))
    with pytest.raises(ValueError, match="DeepMLP"):
        L.weight_grad_norms(nn.Linear(2, 2), torch.randn(1, 2), torch.zeros(1, dtype=int))


# ---------------------------------------------------------------------------- exercises


def _bn_dx(dy, x, gamma, eps=1e-5):
    _, cache = L.batchnorm_forward(x, gamma, torch.zeros_like(gamma), eps)
    return L.batchnorm_backward(dy, cache)[0]


@pytest.mark.parametrize("check, right, wrong", [
    (ex.he_std, math.sqrt(2 / 512), math.sqrt(1 / 512)),
    (ex.relu_variance, 3 * 1.5 ** 9, 3 * 1.5 ** 10),
    (ex.batchnorm_backward, _bn_dx, lambda dy, x, gamma, eps=1e-5: gamma * dy),
    (ex.batch_of_one, (0.3, 0.0), (0.3, 2.0)),
    (ex.residual_growth, (7 / 6) ** 20, 20 / 6),
])
def test_exercise_checks(check, right, wrong, capsys):
    assert check(right)
    assert "✅" in capsys.readouterr().out
    assert not check(wrong)
    assert "❌" in capsys.readouterr().out
    result = check(...)
    assert not result and result.status == "unanswered"
    assert "not answered yet" in capsys.readouterr().out


def test_batchnorm_exercise_starter_counts_as_unanswered(capsys):
    def bn_backward(dy, x, gamma, eps=1e-5):
        ...  # the starter's body

    assert ex.batchnorm_backward(bn_backward).status == "unanswered"
    assert "⏳" in capsys.readouterr().out
