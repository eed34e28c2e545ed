"""Section 1.5: the from-scratch optimizers, schedules and regularizers against PyTorch's own."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as S

from dlbook import optim as O

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


# --- gradient clipping ----------------------------------------------------------------------

def _with_grads(shapes, scale, seed, dtype=torch.float64, none_at=()):
    """Two identical parameter lists with the same random gradients (None at ``none_at``)."""
    gen = torch.Generator().manual_seed(seed)
    ours, theirs = [], []
    for i, shape in enumerate(shapes):
        p = torch.randn(shape, generator=gen, dtype=dtype)
        g = scale * torch.randn(shape, generator=gen, dtype=dtype)
        a, b = p.clone().requires_grad_(), p.clone().requires_grad_()
        if i not in none_at:
            a.grad, b.grad = g.clone(), g.clone()
        ours.append(a)
        theirs.append(b)
    return ours, theirs


shape_lists = st.lists(st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
                       min_size=1, max_size=4)


@settings(max_examples=80, deadline=None)
@given(shapes=shape_lists, scale=st.sampled_from([1e-4, 0.01, 0.3, 1.0, 5.0, 100.0]),
       max_norm=st.sampled_from([0.0, 0.1, 1.0, 2.5, 50.0, math.inf]), seed=st.integers(0, 99),
       dtype=st.sampled_from([torch.float32, torch.float64]),
       none_at=st.sets(st.integers(0, 3), max_size=2))
def test_clip_grad_norm_matches_torch(shapes, scale, max_norm, seed, dtype, none_at):
    ours, theirs = _with_grads(shapes, scale, seed, dtype, none_at)
    total = O.clip_grad_norm_(ours, max_norm)
    want = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
    tol = dict(rtol=1e-5, atol=1e-7) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(total, want, **tol)
    for a, b in zip(ours, theirs):
        assert (a.grad is None) == (b.grad is None)
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, **tol)


@settings(max_examples=60, deadline=None)
@given(shapes=shape_lists, scale=st.floats(1e-3, 1e3), max_norm=st.floats(1e-3, 1e3),
       seed=st.integers(0, 99))
def test_clipping_keeps_the_direction_and_bounds_the_norm(shapes, scale, max_norm, seed):
    params, _ = _with_grads(shapes, scale, seed)
    before = torch.cat([p.grad.flatten() for p in params])
    total = O.clip_grad_norm_(params, max_norm)
    after = torch.cat([p.grad.flatten() for p in params])
    torch.testing.assert_close(total, before.norm(), rtol=1e-12, atol=0)  # the norm from before
    assert after.norm() <= max_norm * (1 + 1e-9) or after.norm() <= before.norm()
    if before.norm() <= max_norm:                         # short enough: (almost) untouched
        torch.testing.assert_close(after, before, rtol=1e-6, atol=0)
    else:                                                 # one factor for every entry
        want = max_norm * total / (total + 1e-6)          # max_norm, but for torch's ε = 1e-6
        torch.testing.assert_close(after.norm(), want, rtol=1e-9, atol=0)
        ratio = after[before != 0] / before[before != 0]
        torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), rtol=1e-12, atol=0)


def test_clip_grad_norm_forms_and_edge_cases():
    w = torch.zeros(2, requires_grad=True)
    w.grad = torch.tensor([3.0, 4.0])
    assert O.clip_grad_norm_(w, 1.0).item() == 5.0                  # a single tensor works
    torch.testing.assert_close(w.grad, torch.tensor([0.6, 0.8]), rtol=1e-5, atol=0)
    model = torch.nn.Linear(3, 2)
    assert O.clip_grad_norm_(model.parameters(), 1.0).item() == 0.0  # no grads yet: norm 0
    model(torch.ones(1, 3)).sum().backward()
    total = O.clip_grad_norm_(model.parameters(), math.inf)          # inf: only measure
    torch.testing.assert_close(total, torch.cat([p.grad.flatten() for p in
                                                 model.parameters()]).norm())
    w.grad = torch.tensor([math.nan, 1.0])
    assert math.isnan(O.clip_grad_norm_([w], 1.0).item())            # as torch: shown, not hidden
    w.grad = torch.tensor([math.inf, 1.0])
    with pytest.raises(ValueError, match="cannot be clipped"):
        O.clip_grad_norm_([w], 1.0, error_if_nonfinite=True)


@pytest.mark.parametrize("parameters, max_norm, message", [
    (torch.nn.Linear(2, 2), 1.0, "model.parameters()"),
    ([torch.zeros(1, requires_grad=True)], -1.0, "max_norm must be a number ≥ 0"),
    ([torch.zeros(1, requires_grad=True)], math.nan, "max_norm"),
    ([torch.zeros(1, requires_grad=True)], "1", "max_norm"),
    ([torch.zeros(1, requires_grad=True)], None, "max_norm"),
    ([1.0, 2.0], 1.0, "must hold tensors"),
    (3.0, 1.0, "iterable of tensors"),
])
def test_clip_grad_norm_bad_input(parameters, max_norm, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        O.clip_grad_norm_(parameters, max_norm)


def test_clip_grad_norm_refuses_sparse_gradients():
    emb = torch.nn.Embedding(4, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(ValueError, match="dense gradients"):
        O.clip_grad_norm_(emb.parameters(), 1.0)


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, bad, message", [
    ("SGD", dict(lr=math.nan), "Invalid learning rate"),
    ("SGD", dict(lr="0.1"), "Invalid learning rate"),
    ("SGD", dict(momentum=1.0), r"momentum must be a finite number in \[0, 1\)"),
    ("SGD", dict(lr=0.1, nesterov=True), "pass momentum > 0"),
    ("Adagrad", dict(eps=math.inf), "Invalid epsilon value"),
    ("RMSprop", dict(alpha=1.5), r"alpha must be a finite number in \[0, 1\]"),
    ("Adam", dict(betas=0.9), r"betas must be a pair"),
    ("Adam", dict(betas=(0.9,)), r"betas must be a pair"),
    ("Adam", dict(betas=(0.9, "0.999")), "Invalid beta parameter at index 1"),
    ("AdamW", dict(weight_decay=math.nan), "Invalid weight_decay value"),
])
def test_bad_hyperparameters_say_what_to_pass(name, bad, message):
    with pytest.raises(ValueError, match=message):
        getattr(O, name)([torch.zeros(1)], **bad)


def test_bad_params_and_groups_get_a_value_error():
    w = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="wrap a single tensor in a list"):
        O.SGD(w, lr=0.1)
    with pytest.raises(ValueError, match=r"model.parameters\(\), not the model"):
        O.Adam(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="must hold tensors"):
        O.SGD([w, 1.0], lr=0.1)
    with pytest.raises(ValueError, match="iterable of tensors"):
        O.SGD(3, lr=0.1)
    with pytest.raises(ValueError, match="Invalid learning rate"):    # a group's own value
        O.SGD([{"params": [w], "lr": -1.0}], lr=0.1)
    opt = O.Adam([w])
    with pytest.raises(ValueError, match="Invalid beta"):
        opt.add_param_group({"params": [torch.zeros(1, requires_grad=True)], "betas": (1, 0)})
    z = torch.zeros(2, dtype=torch.complex64, requires_grad=True)
    opt = O.Adam([z])
    z.grad = torch.ones_like(z)
    with pytest.raises(ValueError, match="complex parameters"):
        opt.step()


@pytest.mark.parametrize("call, message", [
    (lambda: O.step_lr(-1, 0.1, 10), "t must be an integer ≥ 0"),
    (lambda: O.step_lr(2.5, 0.1, 10), "t must be an integer"),
    (lambda: O.step_lr(3, -0.1, 10), "Invalid lr"),
    (lambda: O.step_lr(3, 0.1, 10, gamma=-0.5), "Invalid gamma"),
    (lambda: O.cosine_lr(3, math.nan, 10), "Invalid lr"),
    (lambda: O.cosine_lr(3, 0.1, 10, eta_min=-1.0), "Invalid eta_min"),
    (lambda: O.linear_warmup_lr(3, 0.1, 0), "warmup must be an integer ≥ 1"),
    (lambda: O.warmup_cosine_lr(3, 0.1, -1, 10), "warmup must be an integer ≥ 0"),
    (lambda: O.warmup_cosine_lr(3, 0.1, 5, 2.5), "total must be an integer"),
    (lambda: O.rosenbrock([1.0, 1.0]), "expected a tensor"),
    (lambda: O.rosenbrock(torch.tensor(1.0)), r"shape \(\.\.\., 2\)"),
    (lambda: O.trajectory(O.SGD, O.rosenbrock, ("a", 1), 3, lr=0.1), "start must be"),
    (lambda: O.trajectory(O.SGD, O.rosenbrock, (math.nan, 1), 3, lr=0.1), "start must be"),
    (lambda: O.trajectories(O.SGD, O.rosenbrock, (0, 1), 3, [0.1]), "list of dicts"),
    (lambda: O.trajectory(O.SGD, O.rosenbrock, (0, 1), 2.5, lr=0.1), "steps must be"),
    (lambda: O.dropout(torch.ones(3, dtype=torch.long), 0.5), r"convert it with \.float\(\)"),
    (lambda: O.dropout([1.0, 2.0], 0.5), "x must be a tensor"),
    (lambda: O.dropout(torch.ones(3), "0.5"), "between 0 and 1"),
    (lambda: O.dropout(torch.ones(3), math.nan), "between 0 and 1"),
    (lambda: O.EarlyStopping(patience=True), "patience"),
    (lambda: O.EarlyStopping(min_delta=math.nan), "min_delta"),
    (lambda: O.EarlyStopping().step(torch.ones(2)), "single number"),
    (lambda: O.EarlyStopping().step("0.3"), "single number"),
    (lambda: O.EarlyStopping().step(0.3, model={"w": 1}), "nn.Module"),
])
def test_bad_input_raises_a_value_error_that_names_the_fix(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_early_stopping_never_counts_a_nan_epoch_as_best():
    stopper = O.EarlyStopping(patience=2)
    for loss in [1.0, math.nan, torch.tensor(0.5), math.nan, math.nan]:
        stopper.step(loss)
    assert stopper.best_epoch == 2 and stopper.best_loss == 0.5 and stopper.stopped_epoch == 4


@settings(max_examples=50, deadline=None)
@given(lr=st.floats(0, 10), t=st.integers(0, 500), warmup=st.integers(0, 50),
       rest=st.integers(1, 200), start=st.floats(1e-3, 1.0), eta_min=st.floats(0, 1e-3))
def test_warmup_cosine_stays_between_its_ends(lr, t, warmup, rest, start, eta_min):
    total = warmup + rest
    rate = O.warmup_cosine_lr(min(t, total), lr, warmup, total, start, min(eta_min, lr))
    assert min(start * lr, min(eta_min, lr)) - 1e-12 <= rate <= lr * (1 + 1e-12)
    if warmup == 0 or t >= warmup:
        assert O.warmup_cosine_lr(total, lr, warmup, total, start, eta_min) == \
            pytest.approx(eta_min, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=3), p=st.floats(0, 1),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 99))
def test_dropout_keeps_or_scales_every_entry(shape, p, dtype, seed):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    out = O.dropout(x, p, generator=torch.Generator().manual_seed(seed))
    assert out.shape == x.shape and out.dtype == x.dtype
    if p < 1:
        kept = out != 0
        torch.testing.assert_close(out[kept], x[kept] / (1 - p))
    else:
        assert torch.equal(out, torch.zeros_like(x))
