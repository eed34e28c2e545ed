"""Section 1.5: the from-scratch optimizers, schedules and regularizers against PyTorch's own."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as S

from dlbook import optim as O
from dlbook.exercises import optimizers as ex

SHAPES = [[(3,)], [(2, 3), (4,)], [(1,), (2, 2, 2), (5, 1)]]
TIGHT = dict(rtol=1e-10, atol=1e-12)


def _run(cls, shapes, steps, seed, groups=None, before_step=None, **hyper):
    """Minimise a non-stationary, non-convex loss; return the parameters and the optimizer."""
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(s, generator=gen, dtype=torch.float64).requires_grad_()
              for s in shapes]
    targets = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    opt = cls(params if groups is None else groups(params), **hyper)
    for _ in range(steps):
        opt.zero_grad()
        loss = 0
        for p, y in zip(params, targets):
            w = torch.rand(p.shape, generator=gen, dtype=torch.float64) + 0.1  # new each step
            loss = loss + (w * torch.log(torch.cosh(p - y)) + 0.3 * torch.sin(3 * p)).sum()
        loss.backward()
        if before_step is not None:
            before_step(params)
        opt.step()
    return params, opt


def _assert_same(ours, theirs, state_keys=()):
    (p_ours, opt_ours), (p_theirs, opt_theirs) = ours, theirs
    for a, b in zip(p_ours, p_theirs):
        torch.testing.assert_close(a.detach(), b.detach(), **TIGHT)
        for key in state_keys:
            torch.testing.assert_close(opt_ours.state[a][key], opt_theirs.state[b][key], **TIGHT)


def _both(name, shapes, steps, seed, state_keys=(), **hyper):
    ours = _run(getattr(O, name), shapes, steps, seed, **hyper)
    theirs = _run(getattr(torch.optim, name), shapes, steps, seed, **hyper)
    _assert_same(ours, theirs, state_keys)


common = dict(shapes=st.sampled_from(SHAPES), steps=st.integers(1, 8), seed=st.integers(0, 999),
              lr=st.floats(1e-4, 0.3), weight_decay=st.sampled_from([0.0, 1e-3, 0.05, 0.5]))


@settings(max_examples=60, deadline=None)
@given(momentum=st.sampled_from([0.0, 0.3, 0.9, 0.99]), nesterov=st.booleans(), **common)
def test_sgd_matches_torch(shapes, steps, seed, lr, weight_decay, momentum, nesterov):
    nesterov = nesterov and momentum > 0
    keys = ("momentum_buffer",) if momentum > 0 else ()
    _both("SGD", shapes, steps, seed, keys, lr=lr, momentum=momentum, weight_decay=weight_decay,
          nesterov=nesterov)


@settings(max_examples=40, deadline=None)
@given(eps=st.sampled_from([1e-10, 1e-6, 0.1]), init=st.sampled_from([0.0, 0.1, 1.0]), **common)
def test_adagrad_matches_torch(shapes, steps, seed, lr, weight_decay, eps, init):
    _both("Adagrad", shapes, steps, seed, ("sum",), lr=lr, weight_decay=weight_decay, eps=eps,
          initial_accumulator_value=init)


@settings(max_examples=50, deadline=None)
@given(alpha=st.sampled_from([0.0, 0.5, 0.9, 0.99]), eps=st.sampled_from([1e-8, 1e-3]),
       momentum=st.sampled_from([0.0, 0.5, 0.9]), **common)
def test_rmsprop_matches_torch(shapes, steps, seed, lr, weight_decay, alpha, eps, momentum):
    keys = ("square_avg",) + (("momentum_buffer",) if momentum > 0 else ())
    _both("RMSprop", shapes, steps, seed, keys, lr=lr, alpha=alpha, eps=eps,
          weight_decay=weight_decay, momentum=momentum)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
@settings(max_examples=40, deadline=None)
@given(beta1=st.sampled_from([0.0, 0.5, 0.9]), beta2=st.sampled_from([0.9, 0.99, 0.999]),
       eps=st.sampled_from([1e-8, 1e-4, 0.1]), **common)
def test_adam_and_adamw_match_torch(name, shapes, steps, seed, lr, weight_decay, beta1, beta2,
                                    eps):
    _both(name, shapes, steps, seed, ("exp_avg", "exp_avg_sq"), lr=lr, betas=(beta1, beta2),
          eps=eps, weight_decay=weight_decay)


@pytest.mark.parametrize("name,hyper", [
    ("SGD", dict(lr=0.1)), ("Adagrad", dict(lr=0.1)), ("RMSprop", dict(lr=0.01)),
    ("Adam", dict(lr=0.01)), ("AdamW", dict(lr=0.01))])
def test_defaults_and_many_steps_match_torch(name, hyper):
    _both(name, [(3, 4), (5,)], 50, 7, **hyper)
    for key in ["lr", "eps", "alpha", "betas", "weight_decay", "momentum", "nesterov",
                "initial_accumulator_value"]:
        ours = getattr(O, name)([torch.zeros(1)]).defaults
        theirs = getattr(torch.optim, name)([torch.zeros(1)]).defaults
        if key in ours:
            assert ours[key] == theirs[key], (name, key)


def test_param_groups_with_their_own_hyperparameters():
    def groups(params):
        return [{"params": params[:1], "lr": 0.05, "momentum": 0.9},
                {"params": params[1:], "nesterov": True, "momentum": 0.5}]
    ours = _run(O.SGD, SHAPES[2], 5, 3, groups=groups, lr=0.1)
    theirs = _run(torch.optim.SGD, SHAPES[2], 5, 3, groups=groups, lr=0.1)
    _assert_same(ours, theirs)


def test_parameters_without_gradient_are_left_alone_and_closure_is_used():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    opt = O.Adam([a, b], lr=0.1)

    def closure():
        opt.zero_grad()
        loss = (a**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert loss.item() == 2.0
    assert torch.equal(b, torch.ones(2)) and not opt.state[b]
    assert torch.all(a < 1)


def test_works_with_torch_lr_schedulers():
    for cls in (O.SGD, O.Adam):
        p = torch.zeros(1, requires_grad=True)
        opt = cls([p], lr=0.1)
        sched = S.StepLR(opt, step_size=2, gamma=0.5)
        lrs = []
        for _ in range(5):
            lrs.append(opt.param_groups[0]["lr"])
            p.grad = torch.ones(1)
            opt.step()
            sched.step()
        assert lrs == [0.1, 0.1, 0.05, 0.05, 0.025]


@pytest.mark.parametrize("name,bad", [
    ("SGD", dict(lr=-1.0)), ("SGD", dict(momentum=-0.1)), ("SGD", dict(weight_decay=-1e-3)),
    ("Adagrad", dict(lr=-1.0)), ("Adagrad", dict(weight_decay=-1.0)),
    ("Adagrad", dict(initial_accumulator_value=-1.0)), ("Adagrad", dict(eps=-1.0)),
    ("RMSprop", dict(lr=-1.0)), ("RMSprop", dict(eps=-1.0)), ("RMSprop", dict(momentum=-1.0)),
    ("RMSprop", dict(weight_decay=-1.0)), ("RMSprop", dict(alpha=-0.5)),
    ("Adam", dict(lr=-1.0)), ("Adam", dict(eps=-1.0)), ("Adam", dict(betas=(1.0, 0.999))),
    ("Adam", dict(betas=(0.9, -0.1))), ("Adam", dict(weight_decay=-1.0)),
    ("AdamW", dict(betas=(0.9, 1.5))), ("AdamW", dict(weight_decay=-0.01))])
def test_invalid_arguments_raise_the_same_message_as_torch(name, bad):
    with pytest.raises(ValueError) as theirs:
        getattr(torch.optim, name)([torch.zeros(1)], **bad)
    with pytest.raises(ValueError, match=str(theirs.value).replace("(", r"\(").replace(")", r"\)")):
        getattr(O, name)([torch.zeros(1)], **bad)


def test_nesterov_needs_momentum_and_sparse_gradients_are_refused():
    with pytest.raises(ValueError, match="Nesterov momentum requires a momentum"):
        O.SGD([torch.zeros(1)], lr=0.1, nesterov=True)
    emb = torch.nn.Embedding(4, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(ValueError, match="sparse gradients"):
        O.Adam(emb.parameters()).step()


# --- trajectories ---------------------------------------------------------------------------

def test_rosenbrock_minimum_and_validation():
    assert float(O.rosenbrock(torch.tensor([1.0, 1.0]))) == 0.0
    assert O.rosenbrock(torch.zeros(4, 5, 2)).shape == (4, 5)
    grad = torch.func.grad(O.rosenbrock)(torch.tensor([1.0, 1.0]))
    assert torch.equal(grad, torch.zeros(2))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        O.rosenbrock(torch.zeros(3))


def test_side_by_side_runs_equal_separate_runs_and_divergence_is_cut():
    settings_ = [dict(lr=1e-3, momentum=0.9), dict(lr=1e-3), dict(lr=0.05)]  # the last diverges
    together = O.trajectories(O.SGD, O.rosenbrock, (-1.2, 1.0), 40, settings_)
    assert together.shape == (3, 41, 2) and together.dtype == torch.float64
    for k, s in enumerate(settings_[:2]):
        alone = O.trajectory(O.SGD, O.rosenbrock, (-1.2, 1.0), 40, **s)
        torch.testing.assert_close(together[k], alone, rtol=0, atol=0)
        p = torch.tensor([-1.2, 1.0], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([p], **s)
        for _ in range(40):
            opt.zero_grad()
            O.rosenbrock(p).backward()
            opt.step()
        torch.testing.assert_close(alone[-1], p.detach(), **TIGHT)
    assert torch.isnan(together[2, -1]).all() and torch.isfinite(together[2, 0]).all()
    with pytest.raises(ValueError, match="steps"):
        O.trajectory(O.SGD, O.rosenbrock, (0.0, 0.0), -1, lr=0.1)
    with pytest.raises(ValueError, match="settings"):
        O.trajectories(O.SGD, O.rosenbrock, (0.0, 0.0), 3, [])


# --- learning-rate schedules ----------------------------------------------------------------

def _torch_lrs(make, steps, lr):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return torch.tensor(out, dtype=torch.float64)


def _ours(fn, steps, *args, **kw):
    return torch.tensor([fn(t, *args, **kw) for t in range(steps)], dtype=torch.float64)


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-4, 1.0), step_size=st.integers(1, 20), gamma=st.floats(0.05, 0.95))
def test_step_lr_matches_torch(lr, step_size, gamma):
    want = _torch_lrs(lambda o: S.StepLR(o, step_size, gamma), 60, lr)
    torch.testing.assert_close(_ours(O.step_lr, 60, lr, step_size, gamma), want, **TIGHT)


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-4, 1.0), t_max=st.integers(1, 80), eta_min=st.floats(0, 1e-4))
def test_cosine_lr_matches_torch(lr, t_max, eta_min):
    want = _torch_lrs(lambda o: S.CosineAnnealingLR(o, t_max, eta_min), t_max + 1, lr)
    torch.testing.assert_close(_ours(O.cosine_lr, t_max + 1, lr, t_max, eta_min), want,
                               rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-4, 1.0), warmup=st.integers(1, 30), start=st.floats(0.001, 1.0))
def test_linear_warmup_matches_linear_lr(lr, warmup, start):
    want = _torch_lrs(lambda o: S.LinearLR(o, start_factor=start, total_iters=warmup),
                      warmup + 10, lr)
    torch.testing.assert_close(_ours(O.linear_warmup_lr, warmup + 10, lr, warmup, start), want,
                               rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-4, 1.0), warmup=st.integers(1, 20), rest=st.integers(1, 60),
       start=st.floats(0.001, 1.0))
def test_warmup_cosine_matches_sequential_and_lambda_lr(lr, warmup, rest, start):
    total = warmup + rest

    def sequential(o):
        return S.SequentialLR(o, [S.LinearLR(o, start_factor=start, total_iters=warmup),
                                  S.CosineAnnealingLR(o, T_max=rest)], milestones=[warmup])

    ours = _ours(O.warmup_cosine_lr, total + 1, lr, warmup, total, start)
    torch.testing.assert_close(ours, _torch_lrs(sequential, total + 1, lr), rtol=1e-9,
                               atol=1e-12)
    lam = _torch_lrs(lambda o: S.LambdaLR(
        o, lambda t: O.warmup_cosine_lr(t, 1.0, warmup, total, start)), total + 1, lr)
    torch.testing.assert_close(ours, lam, rtol=1e-12, atol=1e-15)


def test_schedule_validation():
    with pytest.raises(ValueError, match="step_size"):
        O.step_lr(3, 0.1, 0)
    with pytest.raises(ValueError, match="t_max"):
        O.cosine_lr(3, 0.1, 0)
    with pytest.raises(ValueError, match="start_factor"):
        O.linear_warmup_lr(3, 0.1, 10, 0.0)
    with pytest.raises(ValueError, match="larger than warmup"):
        O.warmup_cosine_lr(3, 0.1, 10, 10)


# --- weight decay ---------------------------------------------------------------------------

def test_l2_equals_decoupled_decay_for_plain_sgd_but_not_for_adam():
    wd, lr = 0.1, 0.05
    sgd_l2 = _run(O.SGD, SHAPES[1], 10, 0, lr=lr, weight_decay=wd)[0]

    def shrink(params):                      # decoupled: p ← (1 − lr·wd)·p, then a plain step
        with torch.no_grad():
            for p in params:
                p.mul_(1 - lr * wd)

    sgd_decoupled = _run(O.SGD, SHAPES[1], 10, 0, before_step=shrink, lr=lr)[0]
    for a, b in zip(sgd_l2, sgd_decoupled):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    adam = _run(O.Adam, SHAPES[1], 10, 0, lr=lr, weight_decay=wd)[0]
    adamw = _run(O.AdamW, SHAPES[1], 10, 0, lr=lr, weight_decay=wd)[0]
    assert max((a - b).abs().max().item() for a, b in zip(adam, adamw)) > 1e-3


def test_adam_l2_moves_a_gradient_free_weight_by_about_lr_per_step():
    for wd in (1e-3, 1e-1):
        w = torch.ones(1, dtype=torch.float64, requires_grad=True)
        opt = O.Adam([w], lr=0.01, weight_decay=wd)
        for _ in range(20):
            w.grad = torch.zeros(1, dtype=torch.float64)   # the loss ignores w
            opt.step()
        assert abs(w.item() - (1 - 20 * 0.01)) < 5e-3       # ≈ lr per step, whatever wd
        w2 = torch.ones(1, dtype=torch.float64, requires_grad=True)
        opt = O.AdamW([w2], lr=0.01, weight_decay=wd)
        for _ in range(20):
            w2.grad = torch.zeros(1, dtype=torch.float64)
            opt.step()
        assert math.isclose(w2.item(), (1 - 0.01 * wd) ** 20, rel_tol=1e-12)


# --- dropout --------------------------------------------------------------------------------

def test_dropout_is_unbiased_and_has_the_right_variance():
    torch.manual_seed(0)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    p, n = 0.3, 40_000
    out = O.dropout(x.expand(n, -1), p)
    se = x.abs() * math.sqrt(p / (1 - p) / n)
    assert torch.all((out.mean(0) - x).abs() <= 5 * se + 1e-12)
    torch.testing.assert_close(out.var(0), x**2 * p / (1 - p), rtol=0.05, atol=1e-12)
    kept = out != 0
    assert abs(float(kept[:, x != 0].double().mean()) - (1 - p)) < 0.01
    torch.testing.assert_close(out[kept], x.expand(n, -1)[kept] / (1 - p), rtol=0, atol=0)


def test_dropout_modes_edges_and_validation():
    x = torch.randn(5, 4)
    assert O.dropout(x, 0.5, training=False) is x and O.dropout(x, 0.0) is x
    assert torch.equal(O.dropout(x, 1.0), torch.zeros_like(x))
    layer = O.Dropout(0.5).eval()
    assert torch.equal(layer(x), torch.nn.Dropout(0.5).eval()(x)) and "p=0.5" in repr(layer)
    layer.train()
    g = torch.Generator().manual_seed(1)
    a = O.dropout(x, 0.5, generator=g)
    assert set(torch.unique(a[x != 0] / x[x != 0]).tolist()) <= {0.0, 2.0}
    xr = x.clone().requires_grad_()
    y = layer(xr)
    y.sum().backward()
    torch.testing.assert_close(xr.grad, (y != 0).float() * 2.0)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            O.dropout(x, bad)
        with pytest.raises(ValueError, match="between 0 and 1"):
            O.Dropout(bad)


# --- early stopping -------------------------------------------------------------------------

def test_early_stopping_picks_the_best_epoch_and_waits_patience_epochs():
    losses = [5.0, 3.0, 2.0, 2.5, 1.9, 2.2, 2.3, 2.1, 2.4, 1.95]
    stopper = O.EarlyStopping(patience=3)
    model = torch.nn.Linear(1, 1)
    stops = []
    for epoch, loss in enumerate(losses):
        with torch.no_grad():
            model.weight.fill_(epoch)
        stops.append(stopper.step(loss, model))
    assert stopper.best_epoch == 4 and stopper.best_loss == 1.9
    assert stopper.stopped_epoch == 7 and stops.index(True) == 7 and all(stops[7:])
    assert float(stopper.best_state["weight"]) == 4.0     # a copy, not a view
    strict = O.EarlyStopping(patience=3, min_delta=0.2)
    for loss in losses:
        strict.step(loss)
    assert strict.best_epoch == 2 and strict.stopped_epoch == 5 and strict.best_state is None
    with pytest.raises(ValueError, match="patience"):
        O.EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="min_delta"):
        O.EarlyStopping(min_delta=-1.0)


# --- exercise checks ------------------------------------------------------------------------

def test_exercise_checks_pass_right_fail_wrong_and_wait_for_answers(capsys):
    p1 = 0.5 + 0.1 * 3.0 / (3.0 + 1e-8)
    assert ex.adam_first_step(p1) and not ex.adam_first_step(0.5 + 0.1 * 3.0 * 0.1)
    assert ex.momentum_gain(20) and not ex.momentum_gain(0.95)
    assert ex.warmup_cosine(0.1 * (1 + math.cos(math.pi * 25 / 100)) / 2)
    assert not ex.warmup_cosine(0.1 * (1 + math.cos(math.pi * 35 / 110)) / 2)
    assert ex.dropout_variance(1.0) and not ex.dropout_variance(4.0)

    def right(p, g, buf, lr, mu):
        b = mu * buf + g
        return p - lr * b, b

    def nesterov(p, g, buf, lr, mu):
        b = mu * buf + g
        return p - lr * (g + mu * b), b

    def todo(p, g, buf, lr, mu):
        ...

    assert ex.momentum_step(right)
    assert not ex.momentum_step(nesterov)
    assert not ex.momentum_step(lambda *a: a[0])
    capsys.readouterr()
    for check, blank in [(ex.adam_first_step, ...), (ex.momentum_gain, ...),
                         (ex.warmup_cosine, ...), (ex.dropout_variance, ...),
                         (ex.momentum_step, ...), (ex.momentum_step, todo)]:
        result = check(blank)
        assert not result and result.status == "unanswered"
    assert capsys.readouterr().out.count("not answered yet") == 6
