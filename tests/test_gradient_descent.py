"""Tests for dlbook.gd (section 1.4); its exercise checks are tested in
test_exercises_gradient_descent.py."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook import gd, losses

F64 = torch.float64
SETTINGS = settings(max_examples=25, deadline=None)


def random_spd(d: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    M = torch.randn(d, d, generator=gen, dtype=F64)
    return M @ M.T + 0.1 * torch.eye(d, dtype=F64)


# --- gradient_descent ---------------------------------------------------------------------

@SETTINGS
@given(L=st.floats(0.1, 10.0), lr_times_L=st.floats(0.05, 2.5), x0=st.floats(-5.0, 5.0),
       steps=st.integers(0, 30))
def test_gradient_descent_matches_closed_form_1d(L, lr_times_L, x0, steps):
    lr = lr_times_L / L
    xs = gd.gradient_descent(lambda x: L * x, torch.tensor(x0, dtype=F64), lr, steps)
    assert xs.shape == (steps + 1,)
    expected = (1 - lr * L) ** torch.arange(steps + 1, dtype=F64) * x0
    torch.testing.assert_close(xs, expected, rtol=1e-9, atol=1e-12)


def test_gradient_descent_keeps_start_and_shape():
    x0 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    xs = gd.gradient_descent(lambda x: x, x0, 0.5, 3)
    assert xs.shape == (4, 2, 2)
    torch.testing.assert_close(xs[0], x0)
    torch.testing.assert_close(xs[-1], x0 * 0.5**3)


def test_gradient_descent_works_with_autograd_gradients():
    """A gradient computed by autograd inside grad() gives the same path as the formula."""
    q = gd.Quadratic(random_spd(3, 0))

    def autograd_grad(x):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(q(x), x)
        return g

    x0 = torch.tensor([1.0, -1.0, 0.5], dtype=F64)
    torch.testing.assert_close(gd.gradient_descent(autograd_grad, x0, 0.05, 20),
                               gd.gradient_descent(q.grad, x0, 0.05, 20))


@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan"), float("inf"), True, "0.1"])
def test_gradient_descent_rejects_bad_lr(lr):
    with pytest.raises(ValueError, match="learning rate"):
        gd.gradient_descent(lambda x: x, torch.tensor(1.0), lr, 3)


def test_gradient_descent_rejects_bad_inputs():
    with pytest.raises(ValueError, match="steps"):
        gd.gradient_descent(lambda x: x, torch.tensor(1.0), 0.1, -1)
    with pytest.raises(ValueError, match=r"int64: convert it with x0\.float\(\)"):
        gd.gradient_descent(lambda x: x, torch.tensor([1, 2]), 0.1, 3)
    with pytest.raises(ValueError, match="grad must be a function"):
        gd.gradient_descent(torch.tensor(1.0), torch.tensor(1.0), 0.1, 3)


# --- Quadratic -----------------------------------------------------------------------------

@SETTINGS
@given(d=st.integers(1, 5), seed=st.integers(0, 10_000))
def test_quadratic_value_and_gradient_match_autograd(d, seed):
    q = gd.Quadratic(random_spd(d, seed))
    x = torch.randn(4, d, dtype=F64, generator=torch.Generator().manual_seed(seed + 1))
    torch.testing.assert_close(q(x), 0.5 * torch.einsum("ni,ij,nj->n", x, q.A, x))
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(q(x).sum(), x)
    torch.testing.assert_close(q.grad(x), g)


def test_quadratic_gradcheck():
    q = gd.Quadratic(random_spd(3, 1))
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: q(z), (x,))


def test_quadratic_follows_the_dtype_of_its_input():
    q = gd.quadratic_2d(1.0, 4.0)                        # float64 matrix
    x = torch.randn(7, 5, 2)                             # float32 grid, as plot.contour passes
    assert q(x).shape == (7, 5) and q(x).dtype == torch.float32
    assert q.grad(x).shape == (7, 5, 2)


@SETTINGS
@given(d=st.integers(2, 5), seed=st.integers(0, 10_000))
def test_quadratic_learning_rates(d, seed):
    q = gd.Quadratic(random_spd(d, seed))
    lam = torch.linalg.eigvalsh(q.A)
    kappa = float(lam[-1] / lam[0])
    assert math.isclose(q.condition_number, kappa, rel_tol=1e-9)
    assert math.isclose(q.max_lr, 2 / float(lam[-1]), rel_tol=1e-9)
    assert math.isclose(q.rate(q.best_lr), (kappa - 1) / (kappa + 1), rel_tol=1e-9, abs_tol=1e-12)
    # η* minimises the worst-case rate: no learning rate on a fine grid does better.
    grid = torch.linspace(0.01, 1.0, 400, dtype=F64) * q.max_lr
    assert min(q.rate(float(lr)) for lr in grid) >= q.rate(q.best_lr) - 1e-12
    assert q.rate(0.999 * q.max_lr) < 1 < q.rate(1.001 * q.max_lr)


@SETTINGS
@given(seed=st.integers(0, 10_000), frac=st.floats(0.05, 0.95))
def test_gradient_descent_on_quadratic_contracts_at_the_predicted_rate(seed, frac):
    q = gd.Quadratic(random_spd(3, seed))
    lr = frac * q.max_lr
    x0 = torch.randn(3, dtype=F64, generator=torch.Generator().manual_seed(seed))
    xs = gd.gradient_descent(q.grad, x0, lr, 50)
    norms = xs.norm(dim=1)
    bound = q.rate(lr) ** torch.arange(51, dtype=F64) * x0.norm()
    assert bool((norms <= bound * (1 + 1e-9) + 1e-300).all())


def test_quadratic_diverges_above_max_lr():
    q = gd.quadratic_2d(1.0, 10.0, angle=0.3)
    xs = gd.gradient_descent(q.grad, torch.tensor([1.0, 1.0], dtype=F64), 1.05 * q.max_lr, 200)
    assert xs[-1].norm() > 1e3 * xs[0].norm()


def test_quadratic_2d_has_the_requested_axes():
    angle = 0.7
    q = gd.quadratic_2d(2.0, 5.0, angle=angle)
    lam, vecs = torch.linalg.eigh(q.A)
    torch.testing.assert_close(lam, torch.tensor([2.0, 5.0], dtype=F64))
    floor = torch.tensor([math.cos(angle), math.sin(angle)], dtype=F64)
    assert math.isclose(abs(float(vecs[:, 0] @ floor)), 1.0, rel_tol=1e-9)


def test_quadratic_validation():
    with pytest.raises(ValueError, match="symmetric"):
        gd.Quadratic(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive definite"):
        gd.Quadratic(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="square"):
        gd.Quadratic(torch.ones(2, 3))
    with pytest.raises(ValueError, match="floating-point"):
        gd.Quadratic(torch.eye(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="lam_min"):
        gd.quadratic_2d(3.0, 1.0)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        gd.quadratic_2d(1.0, 2.0)(torch.ones(3))
    with pytest.raises(ValueError, match="learning rate"):
        gd.quadratic_2d(1.0, 2.0).rate(-1.0)


# --- fit_rate ------------------------------------------------------------------------------

@SETTINGS
@given(rho=st.floats(0.05, 1.5), c=st.floats(0.1, 10.0), start=st.integers(0, 5))
def test_fit_rate_recovers_a_geometric_sequence(rho, c, start):
    t = torch.arange(20, dtype=F64)
    traj = torch.stack([c * rho**t, -0.5 * c * rho**t], dim=1)
    assert math.isclose(gd.fit_rate(traj, start=start), rho, rel_tol=1e-9)


def test_fit_rate_on_1d_and_validation():
    assert math.isclose(gd.fit_rate((-0.5) ** torch.arange(10, dtype=F64)), 0.5, rel_tol=1e-9)
    with pytest.raises(ValueError, match="at least 2"):
        gd.fit_rate(torch.ones(3, 2), start=2)
    with pytest.raises(ValueError, match="non-zero"):
        gd.fit_rate(torch.tensor([1.0, 0.0, 0.0]))


# --- linear regression and mini-batches ----------------------------------------------------

def test_linear_regression_data_is_reproducible():
    a = gd.linear_regression_data(50, 3, generator=torch.Generator().manual_seed(5))
    b = gd.linear_regression_data(50, 3, generator=torch.Generator().manual_seed(5))
    assert [t.shape for t in a] == [(50, 3), (50,), (3,)]
    for s, t in zip(a, b):
        assert torch.equal(s, t)
    X, y, w = gd.linear_regression_data(10, 2, noise=0.0)
    torch.testing.assert_close(y, X @ w)
    with pytest.raises(ValueError, match="noise"):
        gd.linear_regression_data(10, 2, noise=-1.0)


def test_mse_and_per_example_grads_match_torch():
    X, y, _ = gd.linear_regression_data(40, 4, generator=torch.Generator().manual_seed(0))
    X, y = X.double(), y.double()
    w = torch.randn(4, dtype=F64, requires_grad=True)
    loss = gd.mse(X, y, w)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(X @ w, y))
    (g,) = torch.autograd.grad(loss, w)
    G = gd.per_example_grads(X, y, w.detach())
    torch.testing.assert_close(G.mean(0), g)
    w1 = w.detach().requires_grad_(True)
    (g3,) = torch.autograd.grad((X[3] @ w1 - y[3]) ** 2, w1)
    torch.testing.assert_close(G[3], g3)
    with pytest.raises(ValueError, match=r"w of shape \(4,\)"):
        gd.mse(X, y, torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match=r"y of shape \(40,\)"):
        gd.per_example_grads(X, y[:-1], w.detach())


@pytest.mark.parametrize("n,batch_size", [(6, 1), (6, 2), (6, 3), (7, 4), (5, 5)])
def test_minibatch_noise_formula_is_exact(n, batch_size):
    """Average over every possible batch: the formula with (n - B)/(n - 1) is exact."""
    G = torch.randn(n, 3, dtype=F64, generator=torch.Generator().manual_seed(n + batch_size))
    mean = G.mean(0)
    exact = torch.stack([((G[list(c)].mean(0) - mean) ** 2).sum()
                         for c in itertools.combinations(range(n), batch_size)]).mean()
    assert math.isclose(gd.minibatch_noise_theory(G, batch_size), float(exact), rel_tol=1e-9,
                        abs_tol=1e-15)


def test_minibatch_noise_monte_carlo_agrees_with_theory():
    G = torch.randn(200, 5, dtype=F64, generator=torch.Generator().manual_seed(0))
    for B in [1, 10, 100]:
        mc = gd.minibatch_noise(G, B, 4000, generator=torch.Generator().manual_seed(B))
        assert math.isclose(mc, gd.minibatch_noise_theory(G, B), rel_tol=0.1)
    assert gd.minibatch_noise(G, 200, 10) < 1e-20
    assert gd.minibatch_noise_theory(G, 200) == 0.0


def test_minibatch_noise_validation():
    G = torch.randn(10, 2)
    with pytest.raises(ValueError, match="exceeds"):
        gd.minibatch_noise(G, 11)
    with pytest.raises(ValueError, match="batch_size"):
        gd.minibatch_noise_theory(G, 0)
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        gd.minibatch_noise(torch.randn(10), 2)


def test_full_batch_sgd_is_gradient_descent():
    X, y, _ = gd.linear_regression_data(64, 3, generator=torch.Generator().manual_seed(1))
    X, y = X.double(), y.double()
    seen, losses, w = gd.sgd_linear_regression(X, y, batch_size=64, lr=0.1, epochs=15)
    path = gd.gradient_descent(lambda v: 2 / 64 * X.T @ (X @ v - y),
                               torch.zeros(3, dtype=F64), 0.1, 15)
    torch.testing.assert_close(w, path[-1])
    assert seen == [64 * t for t in range(16)]
    torch.testing.assert_close(torch.tensor(losses, dtype=F64),
                               torch.stack([gd.mse(X, y, v) for v in path]))


def test_sgd_is_reproducible_and_uses_the_schedule():
    X, y, _ = gd.linear_regression_data(32, 2, generator=torch.Generator().manual_seed(2))
    run = lambda lr: gd.sgd_linear_regression(  # noqa: E731
        X, y, batch_size=4, lr=lr, epochs=3, log_every=8,
        generator=torch.Generator().manual_seed(0))
    a, b = run(0.05), run(0.05)
    assert a[1] == b[1] and torch.equal(a[2], b[2])
    assert len(a[0]) == 1 + 3 * 32 // 8
    c = run(lambda t: 0.05)                               # a constant schedule is the same
    torch.testing.assert_close(c[2], a[2])
    d = run(lambda t: 0.05 / (1 + t))
    assert not torch.allclose(d[2], a[2])


def test_sgd_validation():
    X, y, _ = gd.linear_regression_data(8, 2)
    with pytest.raises(ValueError, match="exceeds"):
        gd.sgd_linear_regression(X, y, batch_size=9, lr=0.1, epochs=1)
    with pytest.raises(ValueError, match="learning rate"):
        gd.sgd_linear_regression(X, y, batch_size=2, lr=0.0, epochs=1)
    with pytest.raises(ValueError, match=r"X of shape \(n, d\)"):
        gd.sgd_linear_regression(X[0], y, batch_size=2, lr=0.1, epochs=1)


# --- one mse, and bad input ------------------------------------------------------------------

@SETTINGS
@given(n=st.integers(1, 30), d=st.integers(1, 6), seed=st.integers(0, 10_000),
       dtype=st.sampled_from([torch.float32, torch.float64]))
def test_mse_is_losses_mse_of_the_predictions(n, d, seed, dtype):
    X, y, w = gd.linear_regression_data(n, d, generator=torch.Generator().manual_seed(seed),
                                        dtype=dtype)
    assert X.dtype == y.dtype == w.dtype == dtype
    torch.testing.assert_close(gd.mse(X, y, w), losses.mse(X @ w, y))
    torch.testing.assert_close(gd.mse(X, y, w), torch.nn.functional.mse_loss(X @ w, y))
    G = gd.per_example_grads(X, y, w)
    assert G.shape == (n, d) and G.dtype == dtype
    assert gd.minibatch_noise_theory(G, n) == 0.0 and gd.minibatch_noise_theory(G, 1) >= 0


@SETTINGS
@given(seed=st.integers(0, 10_000), batch_size=st.integers(1, 12),
       replacement=st.booleans())
def test_sgd_logs_what_it_promises(seed, batch_size, replacement):
    X, y, _ = gd.linear_regression_data(12, 3, generator=torch.Generator().manual_seed(seed),
                                        dtype=F64)
    seen, history, w = gd.sgd_linear_regression(
        X, y, batch_size=batch_size, lr=0.01, epochs=2, replacement=replacement,
        log_every=batch_size, generator=torch.Generator().manual_seed(seed))
    assert len(seen) == len(history) == 1 + 2 * (12 // batch_size)       # once a step
    assert len(gd.sgd_linear_regression(X, y, batch_size=batch_size, lr=0.01, epochs=2)[0]) == 3
    assert seen == sorted(seen) and history[0] == pytest.approx(float(gd.mse(X, y, 0 * w)))
    assert history[-1] == pytest.approx(float(gd.mse(X, y, w)))
    assert w.dtype == F64 and w.shape == (3,)


def test_sgd_with_replacement_differs_but_reproduces():
    X, y, _ = gd.linear_regression_data(32, 2, generator=torch.Generator().manual_seed(3))
    run = lambda r: gd.sgd_linear_regression(  # noqa: E731
        X, y, batch_size=4, lr=0.05, epochs=2, replacement=r,
        generator=torch.Generator().manual_seed(0))[2]
    assert torch.equal(run(True), run(True))
    assert not torch.equal(run(True), run(False))


def test_sgd_leaves_w0_alone():
    X, y, _ = gd.linear_regression_data(16, 2, generator=torch.Generator().manual_seed(4))
    w0 = torch.ones(2)
    gd.sgd_linear_regression(X, y, batch_size=4, lr=0.05, epochs=1, w0=w0)
    assert torch.equal(w0, torch.ones(2))


def test_quadratic_grad_refuses_an_integer_point():
    """x @ A with an integer x used to cast A to int and round: [1, 8] instead of [1.75, 7.3]."""
    q = gd.quadratic_2d(1.0, 4.0, angle=0.5)
    with pytest.raises(ValueError, match=r"int64: convert it with x\.float\(\)"):
        q.grad(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"x\.float\(\)"):
        q(torch.tensor([1, 2]))
    torch.testing.assert_close(q.grad(torch.tensor([1.0, 2.0], dtype=F64)),
                               q.A @ torch.tensor([1.0, 2.0], dtype=F64))


X8, y8, w8 = (t.double() for t in gd.linear_regression_data(
    8, 2, generator=torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("call, message", [
    (lambda: gd.gradient_descent(lambda x: x.float(), torch.tensor([1.0], dtype=F64), 0.1, 2),
     r"grad\(x\) is torch.float32 but x is torch.float64"),
    (lambda: gd.gradient_descent(lambda x: x[:, None], torch.tensor([1.0, 2.0]), 0.1, 2),
     r"x's shape \(2,\), got \(2, 1\)"),
    (lambda: gd.gradient_descent(lambda x: 1.0, torch.tensor([1.0]), 0.1, 2), "got float"),
    (lambda: gd.gradient_descent(lambda x: x, True, 0.1, 2), "got bool"),
    (lambda: gd.Quadratic(torch.eye(2)).grad([1.0, 2.0]), "must be a tensor"),
    (lambda: gd.Quadratic(torch.eye(2)).grad(torch.tensor(1.0)), r"shape \(\.\.\., 2\)"),
    (lambda: gd.quadratic_2d(1.0, float("inf")), "0 < lam_min <= lam_max"),
    (lambda: gd.quadratic_2d("1", 2.0), "numbers"),
    (lambda: gd.fit_rate([1.0, 0.5]), "tensor of iterates"),
    (lambda: gd.linear_regression_data(10, 2, noise=float("nan")), "noise"),
    (lambda: gd.linear_regression_data(10, 2, dtype=torch.int64), "floating-point"),
    (lambda: gd.mse(X8, y8.float(), w8), r"y is torch.float32 but X is torch.float64"),
    (lambda: gd.mse(X8, y8, w8.float()), r"w\.to\(X\.dtype\)"),
    (lambda: gd.mse(X8.long(), y8, w8), r"X\.float\(\)"),
    (lambda: gd.mse(X8, y8[:, None], w8), r"y of shape \(8,\)"),
    (lambda: gd.mse(X8.numpy(), y8, w8), "must be a tensor"),
    (lambda: gd.per_example_grads(X8, y8, w8.float()), "float32"),
    (lambda: gd.minibatch_noise(torch.ones(4, 2, dtype=torch.long), 2), r"G\.float\(\)"),
    (lambda: gd.minibatch_noise_theory(torch.ones(0, 2), 1), "n >= 1"),
    (lambda: gd.minibatch_noise(torch.ones(4, 2), 2, trials=0), "trials"),
    (lambda: gd.sgd_linear_regression(X8, y8, batch_size=2, lr=0.1, epochs=1,
                                      w0=torch.zeros(2)), r"w is torch.float32"),
    (lambda: gd.sgd_linear_regression(X8.float(), y8, batch_size=2, lr=0.1, epochs=1),
     r"y is torch.float64 but X is torch.float32"),
    (lambda: gd.sgd_linear_regression(X8, y8, batch_size=2, lr=0.1, epochs=1, log_every=0),
     "log_every"),
    (lambda: gd.sgd_linear_regression(X8, y8, batch_size=2.0, lr=0.1, epochs=1), "batch_size"),
    (lambda: gd.sgd_linear_regression(X8, y8, batch_size=2, lr=0.1, epochs=1,
                                      w0=[0.0, 0.0]), "must be a tensor"),
])
def test_bad_inputs_raise_a_value_error_that_says_what_to_do(call, message):
    with pytest.raises(ValueError, match=message):
        call()
