"""Tests for dlbook.losses (section 1.3) and its exercise checks."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook import losses as L
from dlbook.exercises import losses as ex

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def logits_and_targets(draw, max_batch: int = 6, max_classes: int = 7, scale: float = 50.0):
    """A (batch, classes) float32 logit tensor with integer targets; logits up to ±scale*10."""
    n = draw(st.integers(1, max_batch))
    c = draw(st.integers(1, max_classes))
    seed = draw(st.integers(0, 2**31 - 1))
    spread = draw(st.sampled_from([0.1, 1.0, scale, 10 * scale]))
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, c, generator=g) * spread
    y = torch.randint(0, c, (n,), generator=g)
    return z, y


# --- normalising functions ------------------------------------------------------------------

@SETTINGS
@given(logits_and_targets(), st.sampled_from([0, 1, -1]))
def test_logsumexp_softmax_log_softmax_match_torch(zy, dim):
    z, _ = zy
    torch.testing.assert_close(L.logsumexp(z, dim), torch.logsumexp(z, dim))
    torch.testing.assert_close(L.logsumexp(z, dim, keepdim=True),
                               torch.logsumexp(z, dim, keepdim=True))
    torch.testing.assert_close(L.softmax(z, dim), torch.softmax(z, dim))
    torch.testing.assert_close(L.log_softmax(z, dim), torch.log_softmax(z, dim))
    assert torch.isfinite(L.log_softmax(z, dim)).all()


def test_extreme_logits_stay_finite():
    z = torch.tensor([[1000.0, 1001.0], [-1000.0, 0.0], [-200.0, 0.0]])
    # The naive formulas fail here; the stable ones do not.
    assert torch.isnan(torch.exp(z[0]) / torch.exp(z[0]).sum()).all()
    assert torch.isinf(torch.log(torch.softmax(z[1], 0))[0])
    torch.testing.assert_close(L.logsumexp(z), torch.logsumexp(z, -1))
    torch.testing.assert_close(L.log_softmax(z), torch.log_softmax(z, -1))
    assert float(L.log_softmax(z)[2, 0]) == pytest.approx(-200.0)
    torch.testing.assert_close(L.softmax(z), torch.softmax(z, -1))


def test_all_minus_inf_row_matches_torch():
    z = torch.full((1, 3), -math.inf)
    assert float(L.logsumexp(z)) == -math.inf
    torch.testing.assert_close(L.softmax(z), torch.softmax(z, -1), equal_nan=True)


def test_softplus_and_log_sigmoid_match_torch():
    z = torch.tensor([-1000.0, -100.0, -20.0, -1.0, 0.0, 1.0, 20.0, 100.0, 1000.0])
    torch.testing.assert_close(L.softplus(z), F.softplus(z))
    torch.testing.assert_close(L.log_sigmoid(z), F.logsigmoid(z))


def test_gradients_pass_gradcheck_in_float64():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 4, (3,), generator=g)
    t = torch.rand(3, 4, generator=g, dtype=torch.float64)
    for f in (L.logsumexp, L.softmax, L.log_softmax, L.softplus,
              lambda z: L.cross_entropy(z, y),
              lambda z: L.binary_cross_entropy_with_logits(z, t),
              lambda z: L.mse(z, t),
              lambda z: L.gaussian_nll(z, t, 0.7)):
        assert torch.autograd.gradcheck(f, (z,))


def test_logsumexp_gradient_is_softmax_even_for_huge_logits():
    z = torch.tensor([[1000.0, 1001.0, 990.0]], requires_grad=True)
    L.logsumexp(z).sum().backward()
    torch.testing.assert_close(z.grad, torch.softmax(z.detach(), -1))


# --- cross-entropy ----------------------------------------------------------------------------

@SETTINGS
@given(logits_and_targets())
def test_cross_entropy_value_and_gradient(zy):
    z, y = zy
    z = z.requires_grad_()
    ours = L.cross_entropy(z, y)
    (g_ours,) = torch.autograd.grad(ours, z)
    ref = F.cross_entropy(z, y)
    (g_ref,) = torch.autograd.grad(ref, z)
    torch.testing.assert_close(ours, ref)
    torch.testing.assert_close(g_ours, g_ref)
    # The hand-derived gradient (p - y) / N is what autograd computes.
    torch.testing.assert_close(L.cross_entropy_grad(z.detach(), y), g_ref)


@SETTINGS
@given(logits_and_targets())
def test_cross_entropy_with_probability_targets(zy):
    z, y = zy
    q = torch.softmax(torch.randn(z.shape, generator=torch.Generator().manual_seed(1)), -1)
    torch.testing.assert_close(L.cross_entropy(z, q), F.cross_entropy(z, q))
    onehot = F.one_hot(y, z.shape[1]).float()
    torch.testing.assert_close(L.cross_entropy(z, onehot), L.cross_entropy(z, y))
    z = z.requires_grad_()
    (g,) = torch.autograd.grad(L.cross_entropy(z, q), z)
    torch.testing.assert_close(L.cross_entropy_grad(z.detach(), q), g)


def test_nll_loss_matches_torch():
    g = torch.Generator().manual_seed(0)
    lp = torch.log_softmax(torch.randn(5, 3, generator=g), -1)
    y = torch.tensor([0, 2, 1, 1, 0])
    torch.testing.assert_close(L.nll_loss(lp, y), F.nll_loss(lp, y))


def test_cross_entropy_of_equal_logits_is_log_classes():
    for c in (2, 10, 1000):
        loss = L.cross_entropy(torch.zeros(4, c), torch.zeros(4, dtype=torch.long))
        assert float(loss) == pytest.approx(math.log(c), rel=1e-6)


# --- binary cross-entropy, MSE, Gaussian NLL --------------------------------------------------

@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(1, 20),
       st.sampled_from([0.1, 1.0, 30.0, 300.0]), st.booleans())
def test_bce_with_logits_value_and_gradient(seed, n, spread, soft):
    g = torch.Generator().manual_seed(seed)
    z = (torch.randn(n, generator=g) * spread).requires_grad_()
    y = torch.rand(n, generator=g) if soft else torch.randint(0, 2, (n,), generator=g).float()
    ours = L.binary_cross_entropy_with_logits(z, y)
    ref = F.binary_cross_entropy_with_logits(z, y)
    torch.testing.assert_close(ours, ref)
    assert torch.isfinite(ours)
    (g_ours,) = torch.autograd.grad(ours, z)
    (g_ref,) = torch.autograd.grad(ref, z)
    torch.testing.assert_close(g_ours, g_ref)
    torch.testing.assert_close(L.binary_cross_entropy_with_logits_grad(z.detach(), y), g_ref)


def test_bce_gradient_at_zero_is_half_minus_y():
    z = torch.zeros(2, requires_grad=True)
    L.binary_cross_entropy_with_logits(z, torch.tensor([0.0, 1.0])).backward()
    torch.testing.assert_close(z.grad, torch.tensor([0.25, -0.25]))


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(1, 30), st.floats(0.05, 20.0))
def test_mse_and_gaussian_nll(seed, n, sigma):
    g = torch.Generator().manual_seed(seed)
    pred, target = torch.randn(n, generator=g, dtype=torch.float64), \
        torch.randn(n, generator=g, dtype=torch.float64)
    torch.testing.assert_close(L.mse(pred, target), F.mse_loss(pred, target))
    nll = L.gaussian_nll(pred, target, sigma)
    ref = -torch.distributions.Normal(pred, sigma).log_prob(target).mean()
    torch.testing.assert_close(nll, ref)
    # The identity the section derives: NLL = MSE / (2 sigma^2) + log(sigma) + log(2 pi) / 2.
    const = math.log(sigma) + 0.5 * math.log(2 * math.pi)
    torch.testing.assert_close(nll, L.mse(pred, target) / (2 * sigma**2) + const)


def test_gaussian_nll_with_tensor_sigma_matches_torch():
    g = torch.Generator().manual_seed(0)
    mu, y = torch.randn(6, generator=g), torch.randn(6, generator=g)
    var = torch.rand(6, generator=g) + 0.1
    torch.testing.assert_close(L.gaussian_nll(mu, y, var.sqrt()),
                               F.gaussian_nll_loss(mu, y, var, full=True))


def test_output_follows_input_dtype():
    z = torch.randn(3, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 3])
    assert L.cross_entropy(z, y).dtype == torch.float64
    assert L.softmax(z).dtype == torch.float64
    assert L.gaussian_nll(z, z, 1.0).dtype == torch.float64


# --- input validation -------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda: L.logsumexp(torch.tensor([1, 2])),                      # integer tensor
    lambda: L.softmax([1.0, 2.0]),                                  # a list
    lambda: L.log_softmax(torch.randn(2, 3), dim=2),                # dim out of range
    lambda: L.logsumexp(torch.empty(2, 0)),                         # empty dimension
    lambda: L.mse(torch.randn(5, 1), torch.randn(5)),               # would broadcast to (5, 5)
    lambda: L.gaussian_nll(torch.randn(3), torch.randn(3), 0.0),    # sigma not positive
    lambda: L.gaussian_nll(torch.randn(3), torch.randn(4), 1.0),    # shapes differ
    lambda: L.binary_cross_entropy_with_logits(torch.randn(4, 1), torch.ones(4)),
    lambda: L.binary_cross_entropy_with_logits(torch.randn(4), torch.ones(4, dtype=torch.long)),
    lambda: L.cross_entropy(torch.randn(3), torch.tensor(1)),       # unbatched logits
    lambda: L.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1])),  # wrong batch
    lambda: L.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 4])),  # class out of range
    lambda: L.cross_entropy(torch.randn(3, 4), torch.tensor([0, -1, 2])),
    lambda: L.cross_entropy(torch.randn(3, 4), torch.rand(3, 5)),   # soft targets, wrong shape
    lambda: L.nll_loss(torch.randn(3, 4), torch.rand(3, 4)),        # nll needs indices
    lambda: L.cross_entropy_grad(torch.randn(3, 4), torch.tensor([0, 1, 9])),
])
def test_bad_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


# --- exercise checks --------------------------------------------------------------------------

def _ce_grad_answer():
    z = torch.tensor(ex.GRAD_LOGITS)
    return torch.softmax(z, 0) - F.one_hot(torch.tensor(ex.GRAD_TARGET), 3).float()


CASES = [
    (ex.ce_by_hand, float(torch.logsumexp(torch.tensor(ex.HAND_LOGITS), 0)
                          - ex.HAND_LOGITS[ex.HAND_TARGET]), 1.0),
    (ex.stable_log_softmax, lambda z: z - torch.logsumexp(z, -1, keepdim=True),
     lambda z: torch.log(torch.exp(z) / torch.exp(z).sum(-1, keepdim=True))),
    (ex.ce_gradient, _ce_grad_answer(), torch.softmax(torch.tensor(ex.GRAD_LOGITS), 0)),
    (ex.initial_loss, math.log(100), math.log10(100)),
    (ex.choose_losses,
     {"price": "MSELoss", "digit": "nn.CrossEntropyLoss", "spam": "BCEWithLogitsLoss",
      "tags": "bcewithlogitsloss"},
     {"price": "MSELoss", "digit": "CrossEntropyLoss", "spam": "BCEWithLogitsLoss",
      "tags": "CrossEntropyLoss"}),
]


@pytest.mark.parametrize("fn,right,wrong", CASES)
def test_exercise_checks(fn, right, wrong, capsys):
    assert fn(right)
    assert "✅" in capsys.readouterr().out
    assert not fn(wrong)
    assert "❌" in capsys.readouterr().out
    assert not fn(...)
    assert "not answered yet" in capsys.readouterr().out


def test_unfinished_function_and_dict_count_as_unanswered(capsys):
    def my_log_softmax(z):
        ...

    assert not ex.stable_log_softmax(my_log_softmax)
    assert not ex.choose_losses({"price": ..., "digit": ..., "spam": ..., "tags": ...})
    out = capsys.readouterr().out
    assert out.count("not answered yet") == 2


def test_choose_losses_rejects_unknown_names_and_missing_tasks(capsys):
    assert not ex.choose_losses({"price": "HuberLoss", "digit": "CrossEntropyLoss",
                                 "spam": "BCEWithLogitsLoss", "tags": "BCEWithLogitsLoss"})
    assert not ex.choose_losses({"price": "MSELoss"})
    assert not ex.choose_losses(["MSELoss"])
    out = capsys.readouterr().out
    assert "not one of" in out and "lacks" in out and "expected a dict" in out


def test_initial_loss_hint_for_log10(capsys):
    ex.initial_loss(2.0)
    assert "natural logarithm" in capsys.readouterr().out


def test_checks_do_not_print_the_solution(capsys):
    ex.ce_by_hand(5.0)
    ex.initial_loss(1.0)
    out = capsys.readouterr().out
    assert "0.417" not in out and "4.605" not in out
