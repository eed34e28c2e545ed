"""Tests for dlbook.activations (section 1.2); the exercise checks: test_exercises_activations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from dlbook import activations as A


NAMES = list(A.ACTIVATIONS)
floats = st.floats(min_value=-50, max_value=50, allow_nan=False, allow_infinity=False)
vectors = st.lists(floats, min_size=1, max_size=12)


def _autograd_derivative(fn, z: torch.Tensor) -> torch.Tensor:
    z = z.clone().requires_grad_()
    fn(z).sum().backward()
    return z.grad


# --- element-wise activations: values and hand-derived derivatives ------------------------

@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(values=vectors)
def test_function_matches_pytorch(name: str, values: list[float]) -> None:
    a = A.ACTIVATIONS[name]
    z = torch.tensor(values, dtype=torch.float64)
    torch.testing.assert_close(a.fn(z), a.reference(z), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(values=vectors)
def test_derivative_matches_autograd(name: str, values: list[float]) -> None:
    a = A.ACTIVATIONS[name]
    z = torch.tensor(values, dtype=torch.float64)
    torch.testing.assert_close(a.grad(z), _autograd_derivative(a.reference, z),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "elu", "gelu", "silu"])
def test_derivative_matches_finite_differences(name: str) -> None:
    a = A.ACTIVATIONS[name]
    z = torch.linspace(-6, 6, 101, dtype=torch.float64)
    h = 1e-6
    numeric = (a.fn(z + h) - a.fn(z - h)) / (2 * h)
    torch.testing.assert_close(a.grad(z), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_through_from_scratch_formula(name: str) -> None:
    z = torch.linspace(-5, 5, 23, dtype=torch.float64).requires_grad_()
    z = z[z.abs() > 1e-3].detach().requires_grad_()  # away from the kinks of ReLU and Leaky
    assert torch.autograd.gradcheck(A.ACTIVATIONS[name].fn, (z,))


@pytest.mark.parametrize("name", NAMES)
def test_extreme_inputs_are_finite(name: str) -> None:
    a = A.ACTIVATIONS[name]
    z = torch.tensor([-1e4, -1000.0, -80.0, 0.0, 80.0, 1000.0, 1e4])
    assert torch.isfinite(a.fn(z)).all()
    assert torch.isfinite(a.grad(z)).all()
    torch.testing.assert_close(a.fn(z), a.reference(z))


def test_kink_conventions_match_pytorch() -> None:
    zero = torch.zeros(1, dtype=torch.float64)
    assert A.relu_grad(zero).item() == 0.0
    assert A.leaky_relu_grad(zero).item() == 0.01
    assert A.elu_grad(zero, alpha=2.0).item() == 2.0
    torch.testing.assert_close(A.elu_grad(zero, alpha=2.0),
                               _autograd_derivative(lambda t: F.elu(t, alpha=2.0), zero))


def test_parameters_leaky_slope_and_elu_alpha() -> None:
    z = torch.linspace(-4, 4, 81, dtype=torch.float64)
    torch.testing.assert_close(A.leaky_relu(z, 0.2), F.leaky_relu(z, 0.2))
    torch.testing.assert_close(A.leaky_relu_grad(z, 0.2),
                               _autograd_derivative(lambda t: F.leaky_relu(t, 0.2), z))
    torch.testing.assert_close(A.elu(z, 0.5), F.elu(z, alpha=0.5))
    torch.testing.assert_close(A.elu_grad(z, 0.5),
                               _autograd_derivative(lambda t: F.elu(t, alpha=0.5), z))


def test_sigmoid_bounds_and_identities() -> None:
    z = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    assert A.sigmoid_grad(z).max().item() == pytest.approx(0.25)
    assert A.tanh_grad(z).max().item() == pytest.approx(1.0)
    torch.testing.assert_close(A.tanh(z), 2 * A.sigmoid(2 * z) - 1)
    torch.testing.assert_close(A.sigmoid(-z), 1 - A.sigmoid(z))


def test_tanh_keeps_relative_precision_near_zero() -> None:
    """tanh(z) ≈ z for tiny z: the library must not lose it to the cancellation in 1 - e^(-2|z|)."""
    z = torch.tensor([1e-30, -1e-12, 1e-8, -1e-6, 1e-4, 1e-2])
    torch.testing.assert_close(A.tanh(z) / torch.tanh(z), torch.ones(6), rtol=1e-6, atol=0)
    z64 = torch.logspace(-300, 0, 301, dtype=torch.float64)
    torch.testing.assert_close(A.tanh(z64), torch.tanh(z64), rtol=1e-14, atol=0)


def test_gelu_tanh_approximation() -> None:
    z = torch.linspace(-8, 8, 1601, dtype=torch.float64)
    torch.testing.assert_close(A.gelu_tanh(z), F.gelu(z, approximate="tanh"))
    assert (A.gelu(z) - A.gelu_tanh(z)).abs().max().item() < 1e-3


def test_normal_cdf_and_pdf() -> None:
    z = torch.linspace(-5, 5, 101, dtype=torch.float64)
    normal = torch.distributions.Normal(0.0, 1.0)
    torch.testing.assert_close(A.normal_cdf(z), normal.cdf(z))
    torch.testing.assert_close(A.normal_pdf(z), normal.log_prob(z).exp())


# --- softmax -----------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(values=vectors, shift=floats)
def test_softmax_matches_pytorch_and_is_shift_invariant(values: list[float], shift: float) -> None:
    z = torch.tensor(values, dtype=torch.float64)
    p = A.softmax(z)
    torch.testing.assert_close(p, F.softmax(z, dim=-1))
    torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(A.softmax(z + shift), p)


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.floats(-10, 10), min_size=2, max_size=8))
def test_softmax_jacobian_matches_autograd(values: list[float]) -> None:
    z = torch.tensor(values, dtype=torch.float64)
    J = torch.autograd.functional.jacobian(lambda v: F.softmax(v, dim=-1), z)
    torch.testing.assert_close(A.softmax_jacobian(z), J)
    torch.testing.assert_close(A.softmax_jacobian(z), A.softmax_jacobian(z).T)


def test_softmax_batched_jacobian_and_backward() -> None:
    g = torch.Generator().manual_seed(0)
    Z = torch.randn(3, 4, 5, generator=g, dtype=torch.float64) * 4
    G = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    J = A.softmax_jacobian(Z)
    assert J.shape == (3, 4, 5, 5)
    torch.testing.assert_close(J.sum(dim=-1), torch.zeros(3, 4, 5, dtype=torch.float64))
    Z_ = Z.clone().requires_grad_()
    (F.softmax(Z_, dim=-1) * G).sum().backward()
    torch.testing.assert_close(A.softmax_backward(A.softmax(Z), G), Z_.grad)
    torch.testing.assert_close((J @ G.unsqueeze(-1)).squeeze(-1), Z_.grad)


def test_softmax_large_logits_and_two_classes() -> None:
    p = A.softmax(torch.tensor([1000.0, 1001.0, 1002.0]))
    torch.testing.assert_close(p, F.softmax(torch.tensor([0.0, 1.0, 2.0]), dim=-1))
    z = torch.linspace(-30, 30, 61, dtype=torch.float64)
    two = torch.stack([z, torch.zeros_like(z)], dim=1)
    torch.testing.assert_close(A.softmax(two)[:, 0], A.sigmoid(z))


# --- input validation ----------------------------------------------------------------------

@pytest.mark.parametrize("bad", [[1.0, 2.0], 3.0, torch.tensor([1, 2])])
def test_rejects_non_float_tensors(bad) -> None:
    with pytest.raises(ValueError, match="tensor"):
        A.sigmoid(bad)


def test_rejects_bad_parameters() -> None:
    z = torch.zeros(3)
    with pytest.raises(ValueError, match="slope"):
        A.leaky_relu(z, slope=-0.1)
    with pytest.raises(ValueError, match="slope"):
        A.leaky_relu_grad(z, slope=1.5)
    with pytest.raises(ValueError, match="alpha"):
        A.elu(z, alpha=0.0)
    with pytest.raises(ValueError, match="0-d"):
        A.softmax(torch.tensor(1.0))
    with pytest.raises(ValueError, match="same shape"):
        A.softmax_backward(torch.ones(3) / 3, torch.ones(4))


# --- collapse of linear layers --------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5), seed=st.integers(0, 1000))
def test_collapse_linear_equals_the_stack(sizes: list[int], seed: int) -> None:
    torch.manual_seed(seed)
    layers = [nn.Linear(a, b, bias=(i % 2 == 0)) for i, (a, b) in
              enumerate(zip(sizes[:-1], sizes[1:]))]
    W, b = A.collapse_linear(layers)
    assert W.shape == (sizes[-1], sizes[0]) and b.shape == (sizes[-1],)
    x = torch.randn(7, sizes[0])
    torch.testing.assert_close(nn.Sequential(*layers)(x), x @ W.T + b, rtol=1e-5, atol=1e-5)


def test_collapse_linear_validates() -> None:
    with pytest.raises(ValueError, match="at least one"):
        A.collapse_linear([])
    with pytest.raises(ValueError, match="not an nn.Linear"):
        A.collapse_linear([nn.Linear(2, 3), nn.ReLU()])
    with pytest.raises(ValueError, match="expects 4 inputs"):
        A.collapse_linear([nn.Linear(2, 3), nn.Linear(4, 1)])


# --- dead units, shallow fits, interpolation ------------------------------------------------

def test_dead_units_and_preactivations() -> None:
    net = A.mlp([1, 3, 2, 1], nn.ReLU)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0], [1.0], [0.5]]))
        net[0].bias.copy_(torch.tensor([-5.0, 0.0, 0.5]))  # unit 0 is dead on [-1, 1]
    x = torch.linspace(-1, 1, 11).unsqueeze(1)
    pre = A.hidden_preactivations(net, x)
    assert [p.shape for p in pre] == [(11, 3), (11, 2)]
    assert A.dead_units(pre[0]).tolist() == [True, False, False]
    net[0:2](x).sum().backward()
    assert net[0].weight.grad[0].item() == 0.0 and net[0].bias.grad[0].item() == 0.0
    with pytest.raises(ValueError, match="shape"):
        A.dead_units(torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(n, 1\)"):
        A.hidden_preactivations(net, torch.zeros(5, 2))


def test_mlp_shapes_and_validation() -> None:
    net = A.mlp([2, 5, 3], nn.Tanh)
    assert [type(m) for m in net] == [nn.Linear, nn.Tanh, nn.Linear]
    with pytest.raises(ValueError, match="sizes"):
        A.mlp([4], nn.ReLU)


def test_fit_shallow_equals_separate_training() -> None:
    """Side by side, each network gets exactly the run it would get alone."""
    x = torch.linspace(-2, 2, 40).unsqueeze(1)
    y = torch.sin(2 * x)
    steps, lr = 60, 0.05
    together = A.fit_shallow(x, y, [3, 5], nn.Tanh, steps=steps, lr=lr)
    alone = A.fit_shallow(x, y, [3, 5], nn.Tanh, steps=0, lr=lr)  # the same starting points
    for net, joint in zip(alone, together):
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            loss = F.mse_loss(net(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        for p, q in zip(net.parameters(), joint.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_fit_shallow_and_fit_regression_reduce_the_loss() -> None:
    x = torch.linspace(-1, 1, 50).unsqueeze(1)
    y = x ** 2
    (net,) = A.fit_shallow(x, y, [8], nn.ReLU, steps=300, lr=0.05)
    start = A.fit_shallow(x, y, [8], nn.ReLU, steps=0, lr=0.05)[0]
    assert F.mse_loss(net(x), y) < 0.5 * F.mse_loss(start(x), y)
    losses = A.fit_regression(start, x, y, steps=100, lr=0.05, optimizer="adam")
    assert len(losses) == 100 and losses[-1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match="optimizer"):
        A.fit_shallow(x, y, [8], nn.ReLU, steps=1, lr=0.1, optimizer="lbfgs")
    with pytest.raises(ValueError, match="widths"):
        A.fit_shallow(x, y, [], nn.ReLU, steps=1, lr=0.1)
    with pytest.raises(ValueError, match=r"\(n, 1\)"):
        A.fit_shallow(x, y.squeeze(1), [2], nn.ReLU, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="same number"):
        A.fit_regression(start, x, y[:10], steps=1, lr=0.1)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 20), seed=st.integers(0, 1000))
def test_relu_interpolant_is_the_broken_line(n: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    knots = torch.sort(torch.rand(n + 1, generator=g, dtype=torch.float64) * 10 - 5).values
    knots = knots + torch.arange(n + 1, dtype=torch.float64) * 1e-3  # strictly increasing
    values = torch.randn(n + 1, generator=g, dtype=torch.float64)
    net = A.relu_interpolant(knots, values)
    assert net[0].out_features == n
    x = torch.linspace(float(knots[0]), float(knots[-1]), 97, dtype=torch.float64)
    expected = torch.from_numpy(np.interp(x.numpy(), knots.numpy(), values.numpy()))
    with torch.no_grad():
        torch.testing.assert_close(net(x.unsqueeze(1)).squeeze(1), expected)


def test_relu_interpolant_validates() -> None:
    with pytest.raises(ValueError, match="increasing"):
        A.relu_interpolant(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="same shape"):
        A.relu_interpolant(torch.tensor([0.0, 1.0]), torch.tensor([1.0]))


# --- NaN, infinities, dtypes and shapes --------------------------------------------------------

SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", NAMES)
def test_nan_and_infinities_propagate_as_in_pytorch(name: str, dtype: torch.dtype) -> None:
    """Every function gives what PyTorch gives on nan and ±inf (relu(nan) is nan), in either
    precision. The reference is PyTorch in float64: its float32 GELU kernel returns nan at
    +inf on some CPUs, where the formula (and PyTorch in float64) gives inf."""
    a = A.ACTIVATIONS[name]
    z = torch.tensor(SPECIAL, dtype=dtype)
    torch.testing.assert_close(a.fn(z), a.reference(z.double()).to(dtype), equal_nan=True,
                               rtol=0, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_derivatives_at_nan_are_nan_and_at_infinity_match_autograd(name: str) -> None:
    a = A.ACTIVATIONS[name]
    assert torch.isnan(a.grad(torch.tensor([math.nan]))).all()
    z = torch.tensor([math.inf, -math.inf, 1e300, -1e300], dtype=torch.float64)
    torch.testing.assert_close(a.grad(z), _autograd_derivative(a.reference, z), equal_nan=True)


def test_relu_of_nan_is_nan_not_zero() -> None:
    z = torch.tensor([math.nan, -1.0, 2.0])
    assert torch.isnan(A.relu(z)[0]) and torch.isnan(torch.relu(z)[0])
    assert A.relu(z)[1:].tolist() == [0.0, 2.0]
    assert torch.isnan(A.relu_grad(z)[0]) and torch.isnan(A.leaky_relu_grad(z)[0])


def test_softmax_with_infinite_logits_matches_pytorch() -> None:
    for row in ([-math.inf, 0.0, 1.0], [math.inf, 0.0], [math.nan, 0.0], [-math.inf] * 3):
        z = torch.tensor(row)
        torch.testing.assert_close(A.softmax(z), F.softmax(z, dim=-1), equal_nan=True)


shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=15, deadline=None)
@given(shape=shapes, seed=st.integers(0, 2**16), double=st.booleans())
def test_functions_keep_shape_and_dtype(name: str, shape: list[int], seed: int,
                                        double: bool) -> None:
    dtype = torch.float64 if double else torch.float32
    z = 5 * torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    a = A.ACTIVATIONS[name]
    for out in (a.fn(z), a.grad(z)):
        assert out.shape == z.shape and out.dtype == dtype
    torch.testing.assert_close(a.fn(z), a.reference(z))


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), seed=st.integers(0, 2**16),
       scale=st.sampled_from([1.0, 100.0, 1e4]))
def test_softmax_is_a_probability_vector_along_the_last_dimension(shape, seed, scale) -> None:
    z = scale * torch.randn(shape, generator=torch.Generator().manual_seed(seed),
                            dtype=torch.float64)
    p = A.softmax(z)
    assert p.shape == z.shape and bool((p >= 0).all())
    torch.testing.assert_close(p.sum(-1), torch.ones(shape[:-1], dtype=torch.float64))
    torch.testing.assert_close(p, F.softmax(z, dim=-1))
    g = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    torch.testing.assert_close(A.softmax_backward(p, g),
                               (A.softmax_jacobian(z) @ g.unsqueeze(-1)).squeeze(-1))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 12), width=st.integers(1, 6), seed=st.integers(0, 2**16))
def test_dead_units_is_off_on_every_row(n: int, width: int, seed: int) -> None:
    z = torch.randn(n, width, generator=torch.Generator().manual_seed(seed)) - 0.8
    expected = [all(z[i, j] <= 0 for i in range(n)) for j in range(width)]
    assert A.dead_units(z).tolist() == expected


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5), seed=st.integers(0, 1000))
def test_mlp_structure_and_preactivations(sizes: list[int], seed: int) -> None:
    torch.manual_seed(seed)
    net = A.mlp(sizes, nn.Tanh, dtype=torch.float64)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    assert all(p.dtype == torch.float64 for p in net.parameters())
    assert sum(isinstance(m, nn.Tanh) for m in net) == len(sizes) - 2
    assert isinstance(net[-1], nn.Linear)  # the output is not squashed: logits or values
    x = torch.randn(3, sizes[0], dtype=torch.float64)
    pre = A.hidden_preactivations(net, x)
    assert len(pre) == len(sizes) - 2
    h = x
    for layer, z in zip([m for m in net if isinstance(m, nn.Linear)], pre):
        torch.testing.assert_close(z, layer(h).detach())
        h = torch.tanh(z)


def test_mlp_is_float32_by_default_and_follows_device() -> None:
    net = A.mlp([2, 3, 1], nn.ReLU)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in net.parameters())
    net = A.mlp([2, 3, 1], nn.ReLU, device="cpu", dtype=torch.float64)
    assert net[0].weight.dtype == torch.float64


# --- bad input: a ValueError that names the fix -------------------------------------------------

def test_fit_regression_refuses_y_that_would_broadcast() -> None:
    x = torch.linspace(-1, 1, 10).unsqueeze(1)
    net = A.mlp([1, 4, 1], nn.ReLU)
    with pytest.raises(ValueError, match=r"shape \(10, 1\).*\(10,\).*unsqueeze\(1\)"):
        A.fit_regression(net, x, (x ** 2).squeeze(1), steps=1, lr=0.1)
    with pytest.raises(ValueError, match=r"shape \(10, 1\) but y has shape \(10, 2\)"):
        A.fit_regression(net, x, x.repeat(1, 2), steps=1, lr=0.1)


@pytest.mark.parametrize("x_dtype, y_dtype, model_dtype, match", [
    (torch.float64, torch.float64, torch.float32, r"model.double\(\)"),
    (torch.float32, torch.float32, torch.float64, r"x.to\(torch.float64\)"),
    (torch.float64, torch.float32, torch.float64, r"y.to\(x.dtype\)"),
    (torch.int64, torch.float32, torch.float32, r"x.float\(\)"),
])
def test_fit_regression_dtype_mixes(x_dtype, y_dtype, model_dtype, match) -> None:
    x = torch.arange(6).unsqueeze(1).to(x_dtype)
    y = torch.zeros(6, 1, dtype=y_dtype)
    net = A.mlp([1, 3, 1], nn.ReLU, dtype=model_dtype)
    with pytest.raises(ValueError, match=match):
        A.fit_regression(net, x, y, steps=1, lr=0.1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0, lr=0.1), "steps >= 1"), (dict(steps=2.0, lr=0.1), "integer steps"),
    (dict(steps=1, lr=0.0), "lr > 0"), (dict(steps=1, lr=math.nan), "lr > 0"),
    (dict(steps=1, lr=0.1, optimizer="lbfgs"), "optimizer"),
])
def test_fit_regression_bad_arguments(kwargs, match) -> None:
    x = torch.zeros(4, 1)
    with pytest.raises(ValueError, match=match):
        A.fit_regression(A.mlp([1, 2, 1], nn.ReLU), x, x, **kwargs)


def test_training_refuses_nan_data() -> None:
    x = torch.tensor([[0.0], [math.nan]])
    with pytest.raises(ValueError, match="nan"):
        A.fit_regression(A.mlp([1, 2, 1], nn.ReLU), x, torch.zeros(2, 1), steps=1, lr=0.1)
    with pytest.raises(ValueError, match="nan"):
        A.fit_shallow(torch.zeros(2, 1), x, [2], nn.ReLU, steps=1, lr=0.1)


def test_fit_shallow_in_float64_and_bad_arguments() -> None:
    x = torch.linspace(-1, 1, 20, dtype=torch.float64).unsqueeze(1)
    nets = A.fit_shallow(x, x ** 2, [2, 3], nn.Tanh, steps=5, lr=0.05)
    assert all(p.dtype == torch.float64 for net in nets for p in net.parameters())
    start32 = A.fit_shallow(x.float(), (x ** 2).float(), [2, 3], nn.Tanh, steps=0, lr=0.05)
    start64 = A.fit_shallow(x, x ** 2, [2, 3], nn.Tanh, steps=0, lr=0.05)
    for a, b in zip(start32, start64):  # one seed, one set of networks, in either precision
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p.double(), q)
    with pytest.raises(ValueError, match="without parentheses"):
        A.fit_shallow(x, x ** 2, [2], nn.Tanh(), steps=1, lr=0.1)
    with pytest.raises(ValueError, match="y.to"):
        A.fit_shallow(x, (x ** 2).float(), [2], nn.Tanh, steps=1, lr=0.1)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        A.fit_shallow(x.squeeze(1), x, [2], nn.Tanh, steps=1, lr=0.1)
    with pytest.raises(ValueError, match="widths"):
        A.fit_shallow(x, x ** 2, [2, True], nn.Tanh, steps=1, lr=0.1)


def test_mlp_and_tools_bad_input() -> None:
    with pytest.raises(ValueError, match="without parentheses"):
        A.mlp([2, 3, 1], nn.ReLU())
    with pytest.raises(ValueError, match="sizes"):
        A.mlp([2, True, 1], nn.ReLU)
    net = A.mlp([2, 3, 1], nn.ReLU)
    with pytest.raises(ValueError, match=r"model.double\(\)"):
        A.hidden_preactivations(net, torch.zeros(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"float\(\)"):
        A.hidden_preactivations(net, torch.zeros(4, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="nan"):
        A.dead_units(torch.tensor([[math.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"\.double\(\)"):
        A.collapse_linear([nn.Linear(2, 3), nn.Linear(3, 1, dtype=torch.float64)])
    with pytest.raises(ValueError, match="values.to"):
        A.relu_interpolant(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="finite"):
        A.relu_interpolant(torch.tensor([0.0, math.nan]), torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("fn", [A.sigmoid, A.tanh, A.relu, A.relu_grad, A.elu, A.gelu, A.silu,
                                A.gelu_tanh, A.normal_cdf, A.softmax])
@pytest.mark.parametrize("bad, match", [([0.5, 1.0], "torch.Tensor"), (2.0, "torch.Tensor"),
                                        (torch.tensor([1, 2]), r"z.float\(\)"),
                                        (torch.tensor([True]), r"z.float\(\)")])
def test_every_function_names_the_fix_for_a_bad_z(fn, bad, match) -> None:
    with pytest.raises(ValueError, match=match):
        fn(bad)
