"""Tests for dlbook.losses (section 1.3); its exercise checks are tested in
test_exercises_losses.py."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from dlbook import losses as L

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


# --- entropy, KL divergence, perplexity ------------------------------------------------------

@st.composite
def distributions(draw, max_batch: int = 5, max_classes: int = 8):
    """(logits, q): float64 logits and target distributions q of the same shape, some of whose
    entries are exactly 0 (0 log 0 = 0 must hold)."""
    n, c = draw(st.integers(1, max_batch)), draw(st.integers(1, max_classes))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    spread = draw(st.sampled_from([0.1, 1.0, 10.0, 100.0]))
    z = torch.randn(n, c, generator=g, dtype=torch.float64) * spread
    q = torch.softmax(torch.randn(n, c, generator=g, dtype=torch.float64) * spread, -1)
    if draw(st.booleans()) and c > 1:
        q[:, 0] = 0.0
        q = q / q.sum(-1, keepdim=True)
    return z, q


@SETTINGS
@given(distributions())
def test_cross_entropy_is_entropy_plus_kl(zq):
    z, q = zq
    ce, h, kl = L.cross_entropy(z, q), L.entropy(q), L.kl_divergence(z, q)
    torch.testing.assert_close(ce, h + kl)
    torch.testing.assert_close(kl, F.kl_div(F.log_softmax(z, -1), q, reduction="batchmean"))
    assert float(kl) >= -1e-12                                     # Gibbs' inequality
    assert -1e-12 <= float(h) <= math.log(z.shape[1]) + 1e-12     # 0 <= H(q) <= log C
    torch.testing.assert_close(L.kl_divergence(torch.log(q.clamp_min(1e-300)), q),
                               torch.zeros((), dtype=torch.float64), atol=1e-9, rtol=0)


@SETTINGS
@given(logits_and_targets())
def test_perplexity_is_one_over_the_geometric_mean_probability(zy):
    z, y = zy
    z = z.double()
    p_true = torch.softmax(z, -1)[torch.arange(len(y)), y]
    pp = L.perplexity(z, y)
    torch.testing.assert_close(pp, torch.exp(F.cross_entropy(z, y)))
    if bool((p_true > 1e-200).all()):
        torch.testing.assert_close(pp, 1 / torch.exp(torch.log(p_true).mean()))
    assert float(pp) >= 1 - 1e-12
    # one-hot targets: the KL divergence is the cross-entropy, the entropy 0
    torch.testing.assert_close(L.kl_divergence(z, y), L.cross_entropy(z, y))
    torch.testing.assert_close(L.entropy(F.one_hot(y, z.shape[1]).double()),
                               torch.zeros((), dtype=torch.float64))


@pytest.mark.parametrize("c", [1, 2, 10, 1000])
def test_uniform_prediction_has_perplexity_c(c):
    y = torch.arange(4) % c
    assert float(L.perplexity(torch.zeros(4, c), y)) == pytest.approx(c, rel=1e-5)
    assert float(L.entropy(torch.full((2, c), 1.0 / c))) == pytest.approx(math.log(c), abs=1e-5)


# --- integer targets of any dtype ---------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.uint8, torch.int8, torch.int16, torch.int32,
                                   torch.int64])
def test_class_targets_of_any_integer_dtype(dtype):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 3, 1, 2, 2, 0])
    torch.testing.assert_close(L.cross_entropy(z, y.to(dtype)), F.cross_entropy(z, y))
    torch.testing.assert_close(L.cross_entropy_grad(z, y.to(dtype)), L.cross_entropy_grad(z, y))
    lp = torch.log_softmax(z, -1)
    torch.testing.assert_close(L.nll_loss(lp, y.to(dtype)), F.nll_loss(lp, y))
    torch.testing.assert_close(L.perplexity(z, y.to(dtype)), L.perplexity(z, y))


# --- input validation -------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: L.logsumexp(torch.tensor([1, 2])), r"int64; convert it with z\.float\(\)"),
    (lambda: L.softmax([1.0, 2.0]), "got list"),
    (lambda: L.log_softmax(torch.randn(2, 3), dim=2), "out of range"),
    (lambda: L.logsumexp(torch.empty(2, 0)), "empty dimension"),
    (lambda: L.mse(torch.randn(5, 1), torch.randn(5)), r"squeeze\(-1\)"),
    (lambda: L.mse(torch.randn(0), torch.randn(0)), "empty"),
    (lambda: L.mse(torch.randn(3), torch.tensor([1, 2, 3])), r"target\.float\(\)"),
    (lambda: L.gaussian_nll(torch.randn(3), torch.randn(3), 0.0), "positive"),
    (lambda: L.gaussian_nll(torch.randn(3), torch.randn(3), float("nan")), "positive"),
    (lambda: L.gaussian_nll(torch.randn(3), torch.randn(3), "1"), "positive number"),
    (lambda: L.gaussian_nll(torch.randn(3), torch.randn(4), 1.0), "make them equal"),
    (lambda: L.binary_cross_entropy_with_logits(torch.randn(4, 1), torch.ones(4)), "shape"),
    (lambda: L.binary_cross_entropy_with_logits(torch.randn(4), torch.ones(4, dtype=torch.long)),
     r"\.float\(\)"),
    (lambda: L.binary_cross_entropy_with_logits_grad(torch.randn(4), torch.ones(4).bool()),
     r"\.float\(\)"),
    (lambda: L.cross_entropy(torch.randn(3), torch.tensor(1)), r"logits\[None\]"),
    (lambda: L.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1])), r"shape \(3,\)"),
    (lambda: L.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 4])), r"\[0, 3\]"),
    (lambda: L.cross_entropy(torch.randn(3, 4), torch.tensor([0, -1, 2])), r"\[0, 3\]"),
    (lambda: L.cross_entropy(torch.randn(3, 4), torch.tensor([True, False, True])),
     r"torch\.bool.*\.long\(\)"),
    (lambda: L.cross_entropy(torch.randn(3, 4), torch.tensor([0.0, 1.0, 2.0])),
     r"integer tensor.*\.long\(\)"),
    (lambda: L.cross_entropy(torch.randn(3, 4), [0, 1, 2]), "must be a tensor"),
    (lambda: L.cross_entropy(torch.randn(3, 4), torch.rand(3, 5)), "logits' shape"),
    (lambda: L.cross_entropy(torch.randn(3, 4), torch.rand(3, 4)), "probability distribution"),
    (lambda: L.cross_entropy(torch.randn(3, 4), -torch.softmax(torch.randn(3, 4), 1)),
     "probability distribution"),
    (lambda: L.cross_entropy(torch.randn(0, 4), torch.zeros(0, dtype=torch.long)), "empty"),
    (lambda: L.cross_entropy(torch.randn(3, 4).long(), torch.tensor([0, 1, 2])),
     r"logits\.float\(\)"),
    (lambda: L.nll_loss(torch.randn(3, 4), torch.rand(3, 4)), r"integer class targets"),
    (lambda: L.cross_entropy_grad(torch.randn(3, 4), torch.tensor([0, 1, 9])), r"\[0, 3\]"),
    (lambda: L.entropy(torch.tensor([0.5, 0.5])), r"probs\[None\]"),
    (lambda: L.entropy(torch.tensor([[0.5, 0.6]])), "probability distribution"),
    (lambda: L.entropy(torch.tensor([[1, 0]])), r"probs\.float\(\)"),
    (lambda: L.kl_divergence(torch.randn(2, 3), torch.rand(2, 3)), "probability distribution"),
    (lambda: L.perplexity(torch.randn(2, 3), torch.tensor([0, 3])), r"\[0, 2\]"),
])
def test_bad_inputs_raise_a_value_error_that_says_what_to_do(call, message):
    with pytest.raises(ValueError, match=message):
        call()
