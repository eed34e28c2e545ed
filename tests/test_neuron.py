"""Section 1.1: logic gates, the perceptron rule, and the exercise checks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook.data import logic_gate
from dlbook.exercises import neuron as ex
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


def test_exercise_checks():
    assert ex.nand(torch.tensor([-1.0, -1.0]), 1.5)
    assert not ex.nand(torch.tensor([1.0, 1.0]), -1.5)          # that is AND
    assert not ex.nand(torch.tensor([1.0, 1.0, 1.0]), 0.0)      # wrong shape
    assert ex.nand(..., ...).status == "unanswered"
    assert ex.distance(1.0) and not ex.distance(5.0)
    assert ex.loss_grad_w(lambda x, y, w, b: (torch.sigmoid(x @ w + b) - y) * x)
    assert not ex.loss_grad_w(lambda x, y, w, b: (torch.sigmoid(x @ w + b) - y))
    assert not ex.loss_grad_w(lambda x, y, w, b: (y - torch.sigmoid(x @ w + b)) * x)
    W1, b1 = torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), torch.tensor([-0.5, 1.5])
    assert ex.xor_network(W1, b1, torch.tensor([1.0, 1.0]), -1.5)
    assert not ex.xor_network(W1, b1, torch.tensor([1.0, 1.0]), -0.5)   # OR of the units
    assert not ex.xor_network(W1[0], b1, torch.tensor([1.0, 1.0]), -1.5)
    assert ex.xor_network(..., ..., ..., ...).status == "unanswered"
