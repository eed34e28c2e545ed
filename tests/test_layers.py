"""Tests of dlbook.layers (section 2.4): init against torch.nn.init, hand-written backward
passes against autograd, finite differences and PyTorch's own layers (RMSNorm included),
properties of the normalisations, residual branches and the effective rank, and bad input.
The exercise checks are tested in test_exercises_deep.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlbook import layers as L

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
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_init_draws_exactly_what_torch_draws(ours, theirs, kw_ours, kw_theirs, shape, dtype):
    a, b = torch.empty(shape, dtype=dtype), torch.empty(shape, dtype=dtype)
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
    with pytest.raises(ValueError, match=r"gamma of shape \(3,\)"):
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


# ---------------------------------------------------------------------------- RMS norm


@FAST
@given(st.lists(st.integers(1, 5), min_size=0, max_size=2), st.integers(1, 9),
       st.floats(1e-8, 1e-2), st.integers(0, 10_000))
def test_rmsnorm_backward_matches_autograd_and_torch(lead, d, eps, seed):
    x, gamma, _, dy = _inputs((*lead, d), d, seed)
    y, cache = L.rmsnorm_forward(x, gamma, eps=eps)
    ours = L.rmsnorm_backward(dy, cache)
    _, *auto = _autograd(lambda a, b, c: L.rmsnorm_forward(a, b, eps=eps)[0], x, gamma,
                         torch.zeros(d, dtype=F64), dy)
    for got, want in zip(ours, auto[:2]):
        torch.testing.assert_close(got, want)
    rms = nn.RMSNorm(d, eps=eps, dtype=F64)
    with torch.no_grad():
        rms.weight.copy_(gamma)
    xt = x.clone().requires_grad_(True)
    y_t = rms(xt)
    y_t.backward(dy)
    torch.testing.assert_close(y, y_t)
    torch.testing.assert_close(ours[0], xt.grad)
    torch.testing.assert_close(ours[1], rms.weight.grad)


def test_rmsnorm_function_gradcheck_and_module():
    x, gamma, _, _ = _inputs((2, 3, 6), 6, 4)
    args = (x.requires_grad_(), gamma.requires_grad_(), 1e-6)
    assert torch.autograd.gradcheck(L.RMSNormFunction.apply, args)
    ours, theirs = L.RMSNorm(6, dtype=F64), nn.RMSNorm(6, eps=1e-6, dtype=F64)
    xd = x.detach().clone().requires_grad_(True)
    xt = x.detach().clone().requires_grad_(True)
    torch.testing.assert_close(ours(xd), theirs(xt))
    ours(xd).sum().backward()
    theirs(xt).sum().backward()
    torch.testing.assert_close(xd.grad, xt.grad)
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    assert not hasattr(ours, "bias") or ours.bias is None  # a scale, no shift
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        ours(torch.randn(3, 4, dtype=F64))


# ---------------------------------------------------------------------------- properties


@FAST
@given(st.integers(2, 12), st.integers(1, 5), st.floats(0.1, 10.0), st.floats(-5.0, 5.0),
       st.integers(0, 10_000))
def test_batchnorm_ignores_shift_and_scale_of_each_feature(b, d, scale, shift, seed):
    x, gamma, beta, dy = _inputs((b, d), d, seed)
    y = L.batchnorm_forward(x, gamma, beta, eps=0.0)[0]
    torch.testing.assert_close(L.batchnorm_forward(scale * x + shift, gamma, beta, eps=0.0)[0], y)
    dx, dgamma, dbeta = L.batchnorm_backward(dy, L.batchnorm_forward(x, gamma, beta, eps=0.0)[1])
    # no gradient along the directions BN removes: the mean and (eps = 0) the scale
    torch.testing.assert_close(dx.sum(0), torch.zeros(d, dtype=F64), atol=1e-9, rtol=0)
    torch.testing.assert_close((dx * x).sum(0), torch.zeros(d, dtype=F64), atol=1e-8, rtol=0)


@FAST
@given(st.lists(st.integers(1, 4), min_size=1, max_size=2), st.integers(2, 8),
       st.floats(0.1, 10.0), st.floats(-5.0, 5.0), st.integers(0, 10_000))
def test_layernorm_and_rmsnorm_invariances(lead, d, scale, shift, seed):
    x, gamma, beta, _ = _inputs((*lead, d), d, seed)
    ln = L.layernorm_forward(x, gamma, beta, eps=0.0)[0]
    torch.testing.assert_close(L.layernorm_forward(scale * x + shift, gamma, beta, eps=0.0)[0],
                               ln)
    rms = L.rmsnorm_forward(x, gamma, eps=0.0)[0]
    torch.testing.assert_close(L.rmsnorm_forward(scale * x, gamma, eps=0.0)[0], rms)
    # each example on its own: normalising one row alone gives the same row
    torch.testing.assert_close(L.layernorm_forward(x[:1], gamma, beta)[0],
                               L.layernorm_forward(x, gamma, beta)[0][:1])


def test_rmsnorm_is_not_shift_invariant():
    x, gamma, _, _ = _inputs((4, 6), 6, 0)
    assert not torch.allclose(L.rmsnorm_forward(x + 1.0, gamma)[0], L.rmsnorm_forward(x, gamma)[0])


@FAST
@given(st.integers(1, 12), st.integers(1, 12), st.floats(1e-3, 1e3), st.integers(0, 10_000))
def test_effective_rank_bounds_and_scale_invariance(b, d, scale, seed):
    h = torch.randn(b, d, generator=torch.Generator().manual_seed(seed), dtype=F64)
    r = L.effective_rank(h)
    assert 1.0 - 1e-9 <= r <= min(b, d) + 1e-9
    assert L.effective_rank(scale * h) == pytest.approx(r, rel=1e-9)
    u = torch.randn(b, 1, dtype=F64) @ torch.randn(1, d, dtype=F64)  # rank one
    assert L.effective_rank(u) == pytest.approx(1.0, abs=1e-6)


def test_effective_rank_of_orthonormal_rows_is_their_number():
    assert L.effective_rank(torch.eye(5, 8, dtype=F64)) == pytest.approx(5.0)
    assert L.effective_rank(torch.diag(torch.tensor([1.0, 1.0, 0.0]))) == pytest.approx(2.0)


@FAST
@given(st.integers(1, 6), st.floats(0.0, 2.0), st.integers(0, 10_000))
def test_scale_residual_branches(depth, scale, seed):
    torch.manual_seed(seed)
    model = L.DeepMLP(depth, 8, residual=True, dtype=F64)
    before = [lin.weight.detach().clone() for lin in model.hidden]
    L.scale_residual_branches_(model, scale)
    for w, lin in zip(before, model.hidden):
        torch.testing.assert_close(lin.weight, scale * w)
    if scale == 0.0:  # every block is the identity; every branch still gets a gradient
        x, y = torch.randn(5, 40, dtype=F64), torch.randint(0, 10, (5,))
        with torch.no_grad():
            _, zs = model.forward_all(x)
        for z in zs[1:]:
            torch.testing.assert_close(z, zs[0])
        assert bool((L.weight_grad_norms(model, x, y)[1:-1] > 0).all())


def test_residual_branch_scaling_controls_growth():
    # 40 blocks, He init in the branches: the variance doubles per block; scaled by 1/sqrt(L)
    # the growth stays near (1 + 1/L)^(L/2) < sqrt(e).
    x = torch.randn(256, 40, generator=torch.Generator().manual_seed(0), dtype=F64)
    ratios = {}
    for scale in (1.0, 1 / math.sqrt(40)):
        torch.manual_seed(0)
        model = L.DeepMLP(40, 128, residual=True, dtype=F64)
        with torch.no_grad():
            for lin in model.linears():
                lin.bias.zero_()
            for lin in model.hidden:
                L.kaiming_normal_(lin.weight)
        L.scale_residual_branches_(model, scale)
        with torch.no_grad():
            _, zs = model.forward_all(x)
        ratios[scale] = float(zs[-1].std() / zs[0].std())
    assert ratios[1.0] > 1e4                                  # 2^20 ≈ 1e6 predicted
    assert 1.2 < ratios[1 / math.sqrt(40)] < 2.5              # 1.64 predicted


# ---------------------------------------------------------------------------- DeepMLP options


def test_deep_mlp_dtype_and_torch_norm_layers():
    model = L.DeepMLP(3, 8, dtype=F64)
    assert all(p.dtype == F64 for p in model.parameters())
    # drawn directly in float64: the same numbers as nn.Linear(..., dtype=float64)
    torch.manual_seed(5)
    ours = L.DeepMLP(1, 4, in_features=3, out_features=2, dtype=F64)
    torch.manual_seed(5)
    ref = nn.Linear(3, 4, dtype=F64)
    assert torch.equal(ours.inp.weight, ref.weight)
    x = torch.randn(6, 40, dtype=F64)
    for name, cls in (("layer", nn.LayerNorm), ("batch", nn.BatchNorm1d), ("rms", nn.RMSNorm)):
        torch.manual_seed(1)
        a = L.DeepMLP(4, 8, norm=name, dtype=F64)
        torch.manual_seed(1)
        b = L.DeepMLP(4, 8, norm=cls, dtype=F64)
        assert all(isinstance(n, cls) for n in b.norms)
        if name == "rms":  # nn.RMSNorm's default eps depends on the dtype; ours is 1e-6
            for n in b.norms:
                n.eps = 1e-6
        torch.testing.assert_close(a(x), b(x))


# ---------------------------------------------------------------------------- bad input

x4, g4, b4, dy4 = _inputs((4, 3), 3, 0)
_, cache4 = L.batchnorm_forward(x4, g4, b4)

BAD_INPUTS = [
    # (callable, args, kwargs, words the message must contain)
    (L.fans, (torch.empty(3, 4),), {}, "w.shape"),
    (L.fans, ((3, 0),), {}, ">= 1"),
    (L.fans, ((3.5, 2),), {}, "whole numbers"),
    (L.xavier_normal_, (torch.empty(3, 3),), {"gain": -1.0}, "gain"),
    (L.kaiming_normal_, (torch.empty(3, 3),), {"generator": 3}, "torch.Generator"),
    (L.kaiming_uniform_, (torch.empty(0, 3),), {}, ">= 1"),
    (L.batchnorm_forward, (x4.float(), g4, b4), {}, "convert with gamma.to(x.dtype)"),
    (L.batchnorm_forward, (x4, g4.float(), b4), {}, "convert with gamma.to(x.dtype)"),
    (L.batchnorm_forward, (x4, g4, b4.float()), {}, "convert with beta.to(x.dtype)"),
    (L.batchnorm_forward, (x4.long(), g4, b4), {}, ".float()"),
    (L.batchnorm_forward, (x4.tolist(), g4, b4), {}, "torch.Tensor"),
    (L.batchnorm_forward, (x4, g4[:, None], b4), {}, "gamma of shape (3,)"),
    (L.batchnorm_forward, (x4, g4, b4), {"eps": -1e-5}, "eps"),
    (L.batchnorm_forward, (x4, g4, b4), {"eps": float("nan")}, "eps"),
    (L.batchnorm_forward, (x4, g4, b4), {"eps": True}, "eps"),
    (L.batchnorm_forward, (torch.ones(4, 3, dtype=F64), g4, b4), {"eps": 0.0}, "eps > 0"),
    (L.batchnorm_forward, (x4[:0], g4, b4), {}, "one example"),
    (L.layernorm_forward, (x4, g4[:2], b4[:2]), {}, "gamma of shape (3,)"),
    (L.layernorm_forward, (torch.tensor(1.0, dtype=F64), g4[:1], b4[:1]), {}, "features"),
    (L.layernorm_forward, (torch.zeros(2, 3, dtype=F64), g4, b4), {"eps": 0.0}, "eps > 0"),
    (L.rmsnorm_forward, (x4, g4.float()), {}, "convert with gamma.to(x.dtype)"),
    (L.rmsnorm_forward, (torch.zeros(2, 3, dtype=F64), g4), {"eps": 0.0}, "eps > 0"),
    (L.rmsnorm_forward, (x4, g4), {"eps": "1e-6"}, "eps"),
    (L.batchnorm_backward, (dy4.float(), cache4), {}, "dy.to"),
    (L.batchnorm_backward, (dy4[:2], cache4), {}, "dy of shape (4, 3)"),
    (L.batchnorm_backward, (dy4, (x4, g4)), {}, "NormCache"),
    (L.layernorm_backward, (dy4.long(), cache4), {}, ".float()"),
    (L.rmsnorm_backward, (dy4, "cache"), {}, "NormCache"),
    (L.BatchNorm1d, (3,), {"eps": 0.0}, "eps"),
    (L.BatchNorm1d, (3,), {"momentum": None}, "momentum"),
    (L.LayerNorm, (0,), {}, "num_features"),
    (L.RMSNorm, (True,), {}, "num_features"),
    (L.DeepMLP, (2, 8), {"activation": "gelu"}, "activation"),
    (L.DeepMLP, (2, 8), {"norm": "group"}, "norm"),
    (L.DeepMLP, (2.5, 8), {}, "depth"),
    (L.DeepMLP, (2, 8), {"residual": "yes"}, "residual"),
    (L.scale_residual_branches_, (L.DeepMLP(2, 8), 0.5), {}, "residual DeepMLP"),
    (L.scale_residual_branches_, (L.DeepMLP(2, 8, residual=True), -1.0), {}, "scale"),
    (L.init_weights_, ("model", L.kaiming_normal_), {}, "nn.Module"),
    (L.init_weights_, (L.DeepMLP(2, 8), "he"), {}, "init"),
    (L.effective_rank, (torch.zeros(3, 4),), {}, "all zeros"),
    (L.effective_rank, (torch.ones(3),), {}, "matrix"),
    (L.effective_rank, (torch.tensor([[1.0, float("nan")]]),), {}, "nan"),
    (L.effective_rank, (torch.ones(3, 4, dtype=torch.int64),), {}, ".float()"),
]


@pytest.mark.parametrize("fn, args, kwargs, words", BAD_INPUTS,
                         ids=[f"{f.__name__}-{i}" for i, (f, *_) in enumerate(BAD_INPUTS)])
def test_bad_input_gives_a_clear_value_error(fn, args, kwargs, words):
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    assert words in str(info.value)


@pytest.mark.parametrize("layer", [L.BatchNorm1d(3), L.LayerNorm(3), L.RMSNorm(3)])
def test_layers_name_the_fix_for_dtype_and_shape(layer):
    with pytest.raises(ValueError, match=r"x is torch.float64 but .*convert with x.to"):
        layer(torch.randn(4, 3, dtype=F64))
    with pytest.raises(ValueError, match="convert with x.float"):
        layer(torch.ones(4, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="expected x of shape"):
        layer(torch.randn(4, 2))


def test_deep_mlp_and_grad_norms_name_the_fix():
    model = L.DeepMLP(2, 8)
    with pytest.raises(ValueError, match=r"x is torch.float64 but the DeepMLP"):
        model(torch.randn(3, 40, dtype=F64))
    with pytest.raises(ValueError, match=r"convert with x.float"):
        model(torch.ones(3, 40, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"convert with .long\(\)"):
        L.weight_grad_norms(model, torch.randn(3, 40), torch.zeros(3, dtype=torch.uint8))
    with pytest.raises(ValueError, match="one target per example"):
        L.weight_grad_norms(model, torch.randn(3, 40), torch.zeros(2, dtype=torch.int64))


@FAST
@given(st.sampled_from([torch.float16, torch.bfloat16, torch.float32, F64]),
       st.sampled_from([torch.float16, torch.bfloat16, torch.float32, F64]))
def test_any_dtype_mix_is_refused_and_no_mix_works(dx_, dg):
    x = torch.randn(4, 3).to(dx_)
    gamma, beta = torch.ones(3, dtype=dg), torch.zeros(3, dtype=dg)
    for forward in (lambda: L.batchnorm_forward(x, gamma, beta),
                    lambda: L.layernorm_forward(x, gamma, beta),
                    lambda: L.rmsnorm_forward(x, gamma)):
        if dx_ == dg:
            y, _ = forward()
            assert y.dtype == dx_
        else:
            with pytest.raises(ValueError, match="convert with"):
                forward()


@pytest.mark.parametrize("forward", [
    lambda: L.batchnorm_forward(x4, None, b4), lambda: L.batchnorm_forward(x4, g4, None),
    lambda: L.layernorm_forward(x4, g4, None), lambda: L.rmsnorm_forward(x4, None)])
def test_missing_affine_parameters_are_named(forward):
    with pytest.raises(ValueError, match=r"(gamma|beta) must be a torch.Tensor"):
        forward()
