"""Tests for dlbook.activations (section 1.2) and its exercise checks."""

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
from dlbook.exercises import activations as ex


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


# --- exercise checks --------------------------------------------------------------------------

def _stable_softmax(z: torch.Tensor) -> torch.Tensor:
    e = torch.exp(z - z.amax(dim=-1, keepdim=True))
    return e / e.sum(dim=-1, keepdim=True)


def _naive_softmax(z: torch.Tensor) -> torch.Tensor:
    return torch.exp(z) / torch.exp(z).sum(dim=-1, keepdim=True)


def _unfinished(z):
    ...


@pytest.mark.parametrize("check, right, wrong", [
    (ex.tanh_derivative, 1 - math.tanh(1.0) ** 2, 1 - math.tanh(1.0)),
    (ex.softmax, _stable_softmax, _naive_softmax),
    (ex.gelu_minimum, (-0.75179, -0.169971), (-0.5, -0.154)),
    (ex.gelu_minimum, (-0.75179, -0.169971), (-0.75179, -0.2)),
    (ex.non_monotonic, {"gelu", "silu"}, {"gelu", "silu", "elu"}),
    (ex.non_monotonic, ["GELU", "SiLU"], {"relu"}),
    (ex.collapse, ([[-1.0, 3.0]], [-2.5]), ([[-1.0, 3.0]], [2.5])),
    (ex.collapse, (torch.tensor([-1.0, 3.0]), -2.5), ([[3.0, -1.0]], [-2.5])),
])
def test_exercise_checks(check, right, wrong, capsys) -> None:
    assert check(right)
    assert not check(wrong)
    out = capsys.readouterr().out
    assert "✅" in out and "❌" in out


@pytest.mark.parametrize("check, unanswered", [
    (ex.tanh_derivative, ...),
    (ex.softmax, _unfinished),
    (ex.gelu_minimum, (..., ...)),
    (ex.non_monotonic, ...),
    (ex.collapse, (..., ...)),
])
def test_exercise_checks_unanswered(check, unanswered, capsys) -> None:
    result = check(unanswered)
    assert not result and result.status == "unanswered"
    assert "not answered yet" in capsys.readouterr().out


def test_exercise_checks_do_not_crash_on_junk(capsys) -> None:
    assert not ex.gelu_minimum("abc")
    assert not ex.non_monotonic(42)
    assert not ex.collapse(([1, 2, 3], 1))
    assert not ex.softmax(lambda z: 1 / 0)
    assert capsys.readouterr().out.count("❌") == 4
