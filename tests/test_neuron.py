"""Section 1.1: logic gates and the perceptron rule (exercise checks: test_exercises_neuron)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook.data import logic_gate
from dlbook.neuron import perceptron_fit, step


@pytest.mark.parametrize("gate", ["AND", "OR", "NAND", "NOR"])
def test_perceptron_converges_on_separable_gates(gate):
    X, y = logic_gate(gate)
    run = perceptron_fit(X, y, epochs=100)
    assert run.converged and run.mistakes[-1] == 0
    assert torch.equal(step(X @ run.w + run.b), y)


@pytest.mark.parametrize("gate", ["XOR", "XNOR"])
def test_perceptron_cycles_on_xor(gate):
    X, y = logic_gate(gate)
    run = perceptron_fit(X, y, epochs=100)
    assert not run.converged
    assert run.cycle_start is not None and all(m > 0 for m in run.mistakes)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=3, max_size=3)
       .filter(lambda v: abs(v[0]) + abs(v[1]) > 0.1),
       st.integers(0, 2**16))
def test_perceptron_separates_random_separable_data(wb, seed):
    """Novikoff: on linearly separable data the rule stops with every point right."""
    gen = torch.Generator().manual_seed(seed)
    w_true, b_true = torch.tensor(wb[:2]), wb[2]
    X = torch.randn(30, 2, generator=gen, dtype=torch.float64)
    margin = (X @ w_true.double() + b_true) / w_true.norm()
    X = X[margin.abs() > 0.2]  # keep a margin so convergence is quick
    y = (X @ w_true.double() + b_true >= 0).double()
    run = perceptron_fit(X, y, epochs=2000)
    assert run.converged
    assert torch.equal(step(X @ run.w + run.b), y)
    if len(X):  # Novikoff's bound on the total number of mistakes, (R / gamma)^2
        X1 = torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)
        u = torch.tensor([*wb[:2], b_true], dtype=X.dtype)
        gamma = (X1 @ u).abs().min() / u.norm()
        R = X1.norm(dim=1).max()
        assert sum(run.mistakes) <= (R / gamma) ** 2


def test_no_neuron_computes_xor():
    """The proof in 1.1 says no (w, b) works; a dense grid of candidates agrees."""
    X, y = logic_gate("XOR")
    g = torch.linspace(-3, 3, 61)
    W = torch.cartesian_prod(g, g, g)
    pred = step(X @ W[:, :2].T + W[:, 2])
    assert int(((pred == y[:, None]).sum(0) == 4).sum()) == 0


def test_logic_gate_and_perceptron_validation():
    X, y = logic_gate("and")
    assert X.shape == (4, 2) and y.tolist() == [0, 0, 0, 1]
    with pytest.raises(ValueError, match="unknown gate"):
        logic_gate("IMPLIES")
    with pytest.raises(ValueError, match=r"shape \(n, d\)"):
        perceptron_fit(torch.zeros(4), y)
    with pytest.raises(ValueError, match="to match X"):
        perceptron_fit(X, y[:3])
    with pytest.raises(ValueError, match="0 or 1"):
        perceptron_fit(X, y * 2)
    with pytest.raises(ValueError, match="lr > 0"):
        perceptron_fit(X, y, lr=0)


# --- the step function ------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=1,
                max_size=10), st.booleans())
def test_step_is_zero_or_one_and_keeps_nan_and_dtype(values, double):
    dtype = torch.float64 if double else torch.float32
    z = torch.tensor(values, dtype=dtype)
    out = step(z)
    assert out.dtype == dtype and out.shape == z.shape
    for v, o in zip(values, out.tolist()):
        if math.isnan(v):
            assert math.isnan(o)
        else:
            assert o == (1.0 if v >= 0 else 0.0)


def test_step_of_integers_and_bad_input():
    assert step(torch.tensor([-2, 0, 3])).tolist() == [0.0, 1.0, 1.0]
    assert step(torch.tensor([-2, 0, 3])).dtype == torch.float32
    with pytest.raises(ValueError, match="torch.Tensor"):
        step([0.5, -0.5])


# --- properties of the perceptron rule ------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(-3, 3), st.integers(-3, 3), st.booleans()),
                min_size=1, max_size=12),
       st.sampled_from([0.25, 0.5, 2.0, 4.0]), st.integers(1, 30))
def test_perceptron_from_zero_is_the_same_run_at_any_learning_rate(rows, lr, epochs):
    """From w = 0, b = 0 the rule with rate lr is the run with rate 1 scaled by lr: the same
    mistakes, the same stopping epoch (lr a power of two and integer data keep it exact)."""
    X = torch.tensor([r[:2] for r in rows], dtype=torch.float64)
    y = torch.tensor([float(r[2]) for r in rows], dtype=torch.float64)
    one, scaled = perceptron_fit(X, y, epochs=epochs), perceptron_fit(X, y, lr=lr, epochs=epochs)
    assert scaled.mistakes == one.mistakes and scaled.converged == one.converged
    assert scaled.cycle_start == one.cycle_start
    torch.testing.assert_close(scaled.w, lr * one.w, rtol=0, atol=0)
    torch.testing.assert_close(scaled.b, lr * one.b, rtol=0, atol=0)
    assert all(0 <= m <= len(X) for m in one.mistakes) and len(one.mistakes) <= epochs
    if one.converged:
        assert torch.equal(step(X @ one.w + one.b), y)
    if one.cycle_start is not None:
        assert not one.converged and 0 <= one.cycle_start < len(one.mistakes)


def test_perceptron_keeps_dtype_and_accepts_integer_or_bool_labels():
    X, y = logic_gate("OR")
    for labels in (y.long(), y.bool(), y.double()):
        run = perceptron_fit(X.double(), labels)
        assert run.converged and run.w.dtype == torch.float64 and run.b.dtype == torch.float64
    run = perceptron_fit(X, y, w0=torch.tensor([0.5, -0.5], dtype=torch.float64), b0=1)
    assert run.w.dtype == torch.float32 and run.converged


@pytest.mark.parametrize("kwargs, match", [
    (dict(X=torch.tensor([[0, 1], [1, 0]]), y=torch.tensor([0.0, 1.0])), r"X.float\(\)"),
    (dict(X=[[0.0, 1.0]], y=torch.tensor([1.0])), "torch.Tensor"),
    (dict(X=torch.tensor([[0.0, math.nan]]), y=torch.tensor([1.0])), "nan"),
    (dict(X=torch.tensor([[0.0, math.inf]]), y=torch.tensor([1.0])), "inf"),
    (dict(X=torch.zeros(2, 2), y=torch.tensor([0.0, 0.5])), "0 or 1"),
    (dict(X=torch.zeros(2, 2), y=torch.zeros(2, 1)), r"shape \(2,\)"),
    (dict(X=torch.zeros(2, 2), y=torch.zeros(2), lr=math.nan), "lr > 0"),
    (dict(X=torch.zeros(2, 2), y=torch.zeros(2), lr=math.inf), "lr > 0"),
    (dict(X=torch.zeros(2, 2), y=torch.zeros(2), epochs=2.5), "integer epochs"),
    (dict(X=torch.zeros(2, 2), y=torch.zeros(2), w0=torch.zeros(3)), r"shape \(2,\)"),
    (dict(X=torch.zeros(2, 2), y=torch.zeros(2), w0=torch.zeros(2, dtype=torch.int64)),
     "floating-point"),
    (dict(X=torch.zeros(2, 2), y=torch.zeros(2), b0=torch.tensor([1.0, 2.0])), "b0"),
])
def test_perceptron_bad_input_names_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        perceptron_fit(**kwargs)
