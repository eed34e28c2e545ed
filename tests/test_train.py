"""Tests for dlbook.train: fit, evaluate and History (the data sets are in test_data.py, the
exercise checks of section 2.3 in test_exercises_training.py)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dlbook import data
from dlbook.optim import EarlyStopping
from dlbook.train import History, evaluate, fit


def _blobs(n: int = 400, seed: int = 0) -> TensorDataset:
    """Two well-separated Gaussian blobs in 2-D: an easy problem."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 2, generator=g) + 3.0 * (2 * y[:, None] - 1)
    return TensorDataset(x, y)


def _loader(ds: TensorDataset, batch_size: int = 32, seed: int = 0) -> DataLoader:
    return DataLoader(ds, batch_size=batch_size, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def _line(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A regression: y = 2 x_0 - x_1 + 0.5 + noise, targets of shape (n, 1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return x, (2 * x[:, :1] - x[:, 1:] + 0.5 + 0.1 * torch.randn(n, 1, generator=g))


# --- fit and History -------------------------------------------------------------------------

def test_fit_learns_an_easy_problem_and_keeps_books() -> None:
    torch.manual_seed(0)
    ds = _blobs()
    model = nn.Linear(2, 2)
    before = evaluate(model, DataLoader(ds, batch_size=1000))
    hist = fit(model, _loader(ds), torch.optim.SGD(model.parameters(), lr=0.1), epochs=5,
               val_loader=DataLoader(ds, batch_size=64), progress=False)
    assert isinstance(hist, History)
    assert len(hist) == 5
    for values in (hist.train_loss, hist.train_acc, hist.val_loss, hist.val_acc):
        assert len(values) == 5 and all(isinstance(v, float) for v in values)
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.val_loss[-1] < before[0] / 2
    assert hist.val_acc[-1] > 0.97
    assert all(0.0 <= a <= 1.0 for a in hist.train_acc + hist.val_acc)
    # The last validation numbers are those of the final model.
    assert evaluate(model, DataLoader(ds, batch_size=1000)) == pytest.approx(
        (hist.val_loss[-1], hist.val_acc[-1]), rel=1e-5)
    # One entry per step, and no clipping, no early stopping.
    assert len(hist.step_loss) == len(hist.step_lr) == 5 * math.ceil(400 / 32)
    assert hist.step_lr == [0.1] * len(hist.step_lr)
    assert hist.grad_norm == [] and hist.stopped_epoch is None and hist.restored_epoch is None


def test_fit_without_validation_leaves_val_lists_empty() -> None:
    ds = _blobs(100)
    model = nn.Linear(2, 2)
    hist = fit(model, _loader(ds), torch.optim.SGD(model.parameters(), lr=0.1), epochs=2,
               progress=False)
    assert len(hist.train_loss) == 2 and hist.val_loss == [] and hist.val_acc == []
    with pytest.raises(ValueError, match="val_loader"):
        hist.best_epoch()
    assert hist.best_epoch("train_loss") in (0, 1)


def test_fit_train_metrics_are_example_weighted() -> None:
    """With lr=0 the model never changes: the epoch's train loss is the dataset's mean loss,
    and the step losses are the batches' losses."""
    torch.manual_seed(1)
    ds = _blobs(103)  # batches of 10 leave a last batch of 3
    model = nn.Linear(2, 2)
    hist = fit(model, DataLoader(ds, batch_size=10), torch.optim.SGD(model.parameters(), lr=0.0),
               epochs=1, progress=False)
    x, y = ds.tensors
    with torch.no_grad():
        logits = model(x)
        batch_losses = [F.cross_entropy(model(x[i:i + 10]), y[i:i + 10]).item()
                        for i in range(0, 103, 10)]
    assert hist.train_loss[0] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert hist.train_acc[0] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert hist.step_loss == pytest.approx(batch_losses, rel=1e-6)


def test_fit_is_repeatable_with_seeds() -> None:
    def run() -> History:
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
        return fit(model, data.loader(_blobs(), 32, shuffle=True, seed=5),
                   torch.optim.Adam(model.parameters()), epochs=2, progress=False)

    assert run().step_loss == run().step_loss


def test_fit_uses_train_and_eval_modes() -> None:
    modes: list[bool] = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            modes.append(self.training)
            assert torch.is_grad_enabled() == self.training
            return self.lin(x)

    ds = _blobs(64)
    model = Spy()
    fit(model, _loader(ds, 32), torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
        val_loader=DataLoader(ds, batch_size=64), progress=False)
    assert modes == [True, True, False]


# --- metrics: classification, regression, tokens ---------------------------------------------

def test_a_regression_records_no_accuracy() -> None:
    x, y = _line()
    model = nn.Linear(2, 1)
    hist = fit(model, data.loader((x, y), 50, shuffle=True), torch.optim.SGD(model.parameters(),
               lr=0.1), epochs=30, loss_fn=F.mse_loss, val_loader=data.loader((x, y), 200),
               progress=False)
    assert hist.train_acc == [] and hist.val_acc == []
    assert hist.val_loss[-1] < 0.02  # the noise variance is 0.01
    loss, acc = evaluate(model, data.loader((x, y), 64), F.mse_loss)
    assert acc is None
    with torch.no_grad():
        assert loss == pytest.approx(F.mse_loss(model(x), y).item(), rel=1e-6)
    with pytest.raises(ValueError, match="classification"):
        hist.best_epoch("val_acc")
    axes = hist.plot()  # one panel: the loss
    assert len(axes) == 1 and len(axes[0].lines) == 2
    plt.close("all")


def test_token_targets_count_accuracy_over_every_position() -> None:
    """Logits (B, T, V) for targets (B, T): the accuracy is over all B*T positions."""
    torch.manual_seed(0)
    tokens = torch.randint(0, 5, (12, 7))
    targets = tokens.clone()
    targets[:, 0] = (targets[:, 0] + 1) % 5  # the first position of every row is always wrong

    class Copy(nn.Module):  # predicts its input token: right everywhere but position 0
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(10.0))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.scale * F.one_hot(x, 5).float()

    def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.flatten(0, 1), y.flatten())

    model = Copy()
    loss, acc = evaluate(model, data.loader((tokens, targets), 5), loss_fn)
    assert acc == pytest.approx(6 / 7)
    hist = fit(model, data.loader((tokens, targets), 5), torch.optim.SGD(model.parameters(),
               lr=0.0), epochs=1, loss_fn=loss_fn, progress=False)
    assert hist.train_acc == [pytest.approx(6 / 7)]
    assert hist.train_loss[0] == pytest.approx(loss, rel=1e-6)


def test_accuracy_can_be_switched() -> None:
    ds = _blobs(64)
    model = nn.Linear(2, 2)
    hist = fit(model, _loader(ds), torch.optim.SGD(model.parameters(), lr=0.1), epochs=1,
               accuracy=False, progress=False)
    assert hist.train_acc == []
    assert evaluate(model, DataLoader(ds, batch_size=64), accuracy=False)[1] is None
    x, y = _line(40)
    with pytest.raises(ValueError, match="accuracy=True"):
        evaluate(nn.Linear(2, 1), data.loader((x, y), 10), F.mse_loss, accuracy=True)


# --- scheduler, clipping, early stopping -----------------------------------------------------

def test_a_scheduler_steps_per_step_or_per_epoch() -> None:
    ds = _blobs(100)
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps = 3 * math.ceil(100 / 32)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    hist = fit(model, _loader(ds), opt, epochs=3, scheduler=cosine, progress=False)
    expected = [0.5 * 0.1 * (1 + math.cos(math.pi * t / steps)) for t in range(steps)]
    assert hist.step_lr == pytest.approx(expected, abs=1e-12)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)

    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    hist = fit(model, _loader(ds), opt, epochs=3, scheduler=decay, scheduler_interval="epoch",
               progress=False)
    per_epoch = math.ceil(100 / 32)
    assert hist.step_lr == pytest.approx([0.1] * per_epoch + [0.05] * per_epoch +
                                         [0.025] * per_epoch)


def test_reduce_on_plateau_gets_the_validation_loss() -> None:
    ds = _blobs(64)
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # threshold=1: an epoch "improves" only if its loss is below 0, so every epoch cuts the lr
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5,
                                                         threshold=1.0)
    seen: list[float] = []
    original = plateau.step
    plateau.step = lambda metric: (seen.append(metric), original(metric))[1]
    val = DataLoader(ds, batch_size=64)
    hist = fit(model, _loader(ds), opt, epochs=3, scheduler=plateau, scheduler_interval="epoch",
               val_loader=val, progress=False)
    assert seen == hist.val_loss
    k = math.ceil(64 / 32)
    assert hist.step_lr == pytest.approx([0.1] * k + [0.05] * k + [0.025] * k)
    with pytest.raises(ValueError, match="scheduler_interval='epoch'"):
        fit(model, _loader(ds), opt, epochs=1, scheduler=plateau, progress=False)


def test_gradient_clipping_bounds_the_global_norm() -> None:
    """The recorded norms are the norms before clipping; the step uses the clipped gradient."""
    x, y = _line(64)
    y = 100 * y  # large errors, large gradients

    def run(max_norm):
        torch.manual_seed(0)
        model = nn.Linear(2, 1)
        start = [p.detach().clone() for p in model.parameters()]
        hist = fit(model, data.loader((x, y), 64), torch.optim.SGD(model.parameters(), lr=1e-3),
                   epochs=1, loss_fn=F.mse_loss, max_grad_norm=max_norm, progress=False)
        step = torch.cat([(p.detach() - s).flatten() for p, s in zip(model.parameters(), start)])
        return hist, step

    hist, step = run(1.0)
    assert len(hist.grad_norm) == 1 and hist.grad_norm[0] > 10
    assert step.norm().item() == pytest.approx(1e-3 * 1.0, rel=1e-5)  # lr * clipped norm
    hist, step = run(1e6)  # a bound far above the norm leaves the gradient alone
    assert step.norm().item() == pytest.approx(1e-3 * hist.grad_norm[0], rel=1e-5)


def test_early_stopping_restores_the_best_weights() -> None:
    torch.manual_seed(0)
    ds = _blobs(200)
    val = DataLoader(_blobs(200, seed=1), batch_size=200)
    model = nn.Sequential(nn.Linear(2, 32), nn.ReLU(), nn.Linear(32, 2))
    saved: list[dict] = []

    class Keep(EarlyStopping):  # remembers every epoch's weights to compare with
        def step(self, val_loss, model=None):
            saved.append({k: v.clone() for k, v in model.state_dict().items()})
            return super().step(val_loss, model)

    hist = fit(model, _loader(ds, 16), torch.optim.Adam(model.parameters(), lr=0.05),
               epochs=200, val_loader=val, early_stopping=Keep(patience=3), progress=False)
    assert hist.stopped_epoch is not None and len(hist) == hist.stopped_epoch + 1 < 200
    best = hist.restored_epoch
    assert best == hist.best_epoch("val_loss") == hist.stopped_epoch - 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[best][key])
    assert evaluate(model, val)[0] == pytest.approx(hist.val_loss[best], rel=1e-6)


def test_early_stopping_on_accuracy_and_by_patience() -> None:
    torch.manual_seed(0)
    ds = _blobs(200)
    val = DataLoader(_blobs(100, seed=2), batch_size=100)
    model = nn.Linear(2, 2)
    hist = fit(model, _loader(ds, 20), torch.optim.SGD(model.parameters(), lr=0.1), epochs=50,
               val_loader=val, early_stopping=2, monitor="val_acc", progress=False)
    assert hist.restored_epoch == hist.best_epoch("val_acc")
    assert hist.stopped_epoch == hist.restored_epoch + 2
    assert evaluate(model, val)[1] == hist.val_acc[hist.restored_epoch]


# --- History ---------------------------------------------------------------------------------

def test_history_best_epoch_and_plot() -> None:
    h = History(train_loss=[3.0, 2.0, 1.0], train_acc=[0.1, 0.5, 0.9],
                val_loss=[2.0, 1.0, 1.5], val_acc=[0.2, 0.4, 0.6])
    assert h.best_epoch() == 1
    assert h.best_epoch("val_acc") == 2
    assert h.best_epoch("train_loss") == 2
    with pytest.raises(ValueError, match="metric"):
        h.best_epoch("accuracy")
    axes = h.plot()
    assert len(axes) == 2 and len(axes[0].lines) == 2 and len(axes[1].lines) == 2
    fig, pair = plt.subplots(1, 2)
    assert h.plot(pair) is pair
    with pytest.raises(ValueError, match="pair"):
        h.plot([pair[0]])
    plt.close("all")


def test_best_epoch_skips_nan_and_refuses_all_nan() -> None:
    nan = float("nan")
    h = History(train_loss=[nan, 2.0, nan, 1.0, nan], val_acc=[nan, 0.3, 0.2, nan, nan],
                val_loss=[nan, nan])
    assert h.best_epoch("train_loss") == 3
    assert h.best_epoch("val_acc") == 1
    with pytest.raises(ValueError, match="NaN"):
        h.best_epoch("val_loss")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), min_size=1,
                max_size=30))
def test_best_epoch_is_the_first_best_finite_value(values: list[float]) -> None:
    h = History(train_loss=values, train_acc=values)
    finite = [(v, i) for i, v in enumerate(values) if not math.isnan(v)]
    if not finite:
        with pytest.raises(ValueError, match="NaN"):
            h.best_epoch("train_loss")
        return
    low = min(v for v, _ in finite)
    high = max(v for v, _ in finite)
    assert h.best_epoch("train_loss") == next(i for v, i in finite if v == low)
    assert h.best_epoch("train_acc") == next(i for v, i in finite if v == high)


# --- evaluate --------------------------------------------------------------------------------

@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 60), batch_size=st.integers(1, 25), seed=st.integers(0, 1000))
def test_evaluate_matches_one_whole_set_computation(n: int, batch_size: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 5, generator=g), torch.randint(0, 3, (n,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3))
    loss, acc = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=batch_size))
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5, abs=1e-6)
    assert acc == pytest.approx((logits.argmax(1) == y).sum().item() / n)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 50), batch_size=st.integers(1, 20), epochs=st.integers(1, 3),
       drop_last=st.booleans(), seed=st.integers(0, 1000))
def test_fit_records_one_entry_per_epoch_and_per_step(n: int, batch_size: int, epochs: int,
                                                      drop_last: bool, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (n,), generator=g)
    batches = data.loader((x, y), batch_size, shuffle=True, seed=seed, drop_last=drop_last)
    torch.manual_seed(seed)
    model = nn.Linear(3, 4, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    if len(batches) == 0:
        with pytest.raises(ValueError, match="no examples"):
            fit(model, batches, opt, epochs=epochs, progress=False)
        return
    hist = fit(model, batches, opt, epochs=epochs, val_loader=data.loader((x, y), 7),
               max_grad_norm=1.0, progress=False)
    assert len(hist) == len(hist.train_acc) == len(hist.val_loss) == len(hist.val_acc) == epochs
    assert len(hist.step_loss) == len(hist.step_lr) == len(hist.grad_norm) == \
        epochs * len(batches)
    assert all(0 <= a <= 1 for a in hist.train_acc + hist.val_acc)
    assert all(math.isfinite(v) and v >= 0 for v in hist.step_loss + hist.grad_norm)
    # The last validation numbers are the final model's.
    assert evaluate(model, data.loader((x, y), n)) == pytest.approx(
        (hist.val_loss[-1], hist.val_acc[-1]), rel=1e-9)


def test_evaluate_restores_mode_and_takes_a_loss() -> None:
    model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5))
    model.train()
    x, y = torch.randn(20, 4), torch.randint(0, 2, (20,))
    dl = DataLoader(TensorDataset(x, y), batch_size=8)
    first = evaluate(model, dl)
    assert model.training
    assert evaluate(model, dl) == first  # dropout was off: deterministic
    mse = lambda logits, t: ((logits[:, 1] - t.float()) ** 2).mean()  # noqa: E731
    loss, _ = evaluate(model, dl, loss_fn=mse)
    model.eval()
    with torch.no_grad():
        assert loss == pytest.approx(mse(model(x), y).item(), rel=1e-5)
    with pytest.raises(ValueError, match="no examples"):
        evaluate(model, [])


# --- bad input: a ValueError that names the fix ----------------------------------------------

def _fit(model, x, y, **kwargs):
    opt = kwargs.pop("optimizer", None) or torch.optim.SGD(model.parameters(), lr=0.1)
    kwargs.setdefault("progress", False)
    return fit(model, data.loader((x, y), 10), opt, epochs=kwargs.pop("epochs", 1), **kwargs)


X2 = torch.randn(20, 2)
LABELS = torch.randint(0, 2, (20,))


@pytest.mark.parametrize("make, match", [
    (lambda: _fit(nn.Linear(2, 2).double(), X2, LABELS), "model.to\\(torch.float32\\)"),
    (lambda: _fit(nn.Linear(2, 2), X2.double(), LABELS), "X.to\\(torch.float32\\)"),
    (lambda: _fit(nn.Linear(2, 2), X2.long(), LABELS), "floating-point input"),
    (lambda: _fit(nn.Linear(2, 2), X2, LABELS.int()), "y.long\\(\\)"),
    (lambda: _fit(nn.Linear(2, 2), X2, LABELS.float()), "int64"),
    (lambda: _fit(nn.Linear(2, 1), X2, X2[:, 0], loss_fn=F.mse_loss), "broadcast"),
    (lambda: evaluate(nn.Linear(2, 2).double(), data.loader((X2, LABELS), 5)), "float64"),
    (lambda: evaluate(nn.Linear(2, 1), data.loader((X2, X2[:, 0]), 5), F.mse_loss),
     "reshape y"),
])
def test_dtype_and_shape_mistakes_get_a_clear_error(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_integer_inputs_to_an_embedding_are_fine() -> None:
    model = nn.Sequential(nn.Embedding(5, 3), nn.Flatten(), nn.Linear(6, 5))
    x = torch.randint(0, 5, (20, 2))
    hist = _fit(model, x, x[:, 0])
    assert len(hist.train_acc) == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), "epochs"), (dict(epochs=1.5), "epochs"), (dict(epochs=True), "epochs"),
    (dict(epochs="3"), "epochs"),
    (dict(optimizer="adam"), "optimizer"),
    (dict(loss_fn="mse"), "loss_fn"),
    (dict(val_loader=torch.zeros(3)), "loader"),
    (dict(accuracy="yes"), "accuracy"),
    (dict(scheduler=object()), "scheduler"),
    (dict(scheduler_interval="batch"), "scheduler_interval"),
    (dict(max_grad_norm=0.0), "max_grad_norm"), (dict(max_grad_norm=-1), "max_grad_norm"),
    (dict(max_grad_norm=float("inf")), "max_grad_norm"),
    (dict(max_grad_norm="1"), "max_grad_norm"),
    (dict(early_stopping=3), "val_loader"),
    (dict(early_stopping=0, val_loader=[]), "patience"),
    (dict(early_stopping=True, val_loader=[]), "early_stopping"),
    (dict(early_stopping=2.5, val_loader=[]), "early_stopping"),
    (dict(monitor="val_accuracy"), "monitor"),
    (dict(early_stopping=2, val_loader=[], monitor="val_acc", accuracy=False), "accuracy"),
])
def test_fit_rejects_bad_arguments(kwargs, match) -> None:
    model = nn.Linear(2, 2)
    optimizer = kwargs.pop("optimizer", torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match=match):
        fit(model, _loader(_blobs(10)), optimizer, **{"epochs": 1, "progress": False, **kwargs})


def test_fit_rejects_other_mistakes() -> None:
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = _loader(_blobs(10))
    with pytest.raises(ValueError, match="Module"):
        fit(lambda x: x, loader, opt, epochs=1, progress=False)
    with pytest.raises(ValueError, match="none of this model's parameters"):
        fit(nn.Linear(2, 2), loader, opt, epochs=1, progress=False)
    other = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.StepLR(other, 1)
    with pytest.raises(ValueError, match="this optimizer"):
        fit(model, loader, opt, epochs=1, scheduler=schedule, progress=False)
    used = EarlyStopping(2)
    used.step(1.0)
    with pytest.raises(ValueError, match="fresh"):
        fit(model, loader, opt, epochs=1, early_stopping=used, val_loader=loader,
            progress=False)
    empty = DataLoader(_blobs(10), batch_size=32, drop_last=True)
    with pytest.raises(ValueError, match="no examples"):
        fit(model, empty, opt, epochs=1, progress=False)
    with pytest.raises(ValueError, match="pair of tensors"):
        fit(model, [torch.zeros(4, 2)], opt, epochs=1, progress=False)
    x, y = _line(20)
    with pytest.raises(ValueError, match="monitor='val_loss'"):  # a regression has no accuracy
        _fit(nn.Linear(2, 1), x, y, loss_fn=F.mse_loss, early_stopping=1, monitor="val_acc",
             val_loader=data.loader((x, y), 10))
