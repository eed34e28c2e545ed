"""Tests for dlbook.train (fit, evaluate, History), the data sets of section 2.3 and its checks."""

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
from dlbook.exercises import training as ex
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
    """With lr=0 the model never changes: the epoch's train loss is the dataset's mean loss."""
    torch.manual_seed(1)
    ds = _blobs(103)  # batches of 10 leave a last batch of 3
    model = nn.Linear(2, 2)
    hist = fit(model, _loader(ds, 10), torch.optim.SGD(model.parameters(), lr=0.0), epochs=1,
               progress=False)
    x, y = ds.tensors
    with torch.no_grad():
        logits = model(x)
    assert hist.train_loss[0] == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-5)
    assert hist.train_acc[0] == pytest.approx((logits.argmax(1) == y).float().mean().item())


def test_fit_is_repeatable_with_seeds() -> None:
    def run() -> History:
        torch.manual_seed(3)
        model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
        return fit(model, _loader(_blobs(), seed=5), torch.optim.Adam(model.parameters()),
                   epochs=2, progress=False)

    assert run().train_loss == run().train_loss


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


def test_fit_validates_inputs() -> None:
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = _loader(_blobs(10))
    for bad in (0, -1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="epochs"):
            fit(model, loader, opt, epochs=bad, progress=False)
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, loader, None, epochs=1, progress=False)
    with pytest.raises(ValueError, match="Module"):
        fit(lambda x: x, loader, opt, epochs=1, progress=False)
    empty = DataLoader(_blobs(10), batch_size=32, drop_last=True)
    with pytest.raises(ValueError, match="no examples"):
        fit(model, empty, opt, epochs=1, progress=False)


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


# --- data ------------------------------------------------------------------------------------

def test_mnist1d_shapes_dtypes_and_determinism() -> None:
    import numpy as np

    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    d = data.mnist1d(num_samples=500, seed=7)
    assert np.random.rand() == expected_next  # global NumPy state is left alone
    assert d["x"].shape == (400, 40) and d["x_test"].shape == (100, 40)
    assert d["y"].shape == (400,) and d["y_test"].shape == (100,)
    assert d["x"].dtype == torch.float32 and d["y"].dtype == torch.int64
    assert d["t"].shape == (40,)
    assert set(d["y"].tolist()) <= set(range(10))
    again = data.mnist1d(num_samples=500, seed=7)
    for key in ("x", "y", "x_test", "y_test"):
        assert torch.equal(d[key], again[key])
    other = data.mnist1d(num_samples=500, seed=8)
    assert not torch.equal(d["x"], other["x"])
    with pytest.raises(ValueError, match="num_samples"):
        data.mnist1d(num_samples=5)
    with pytest.raises(ValueError, match="seed"):
        data.mnist1d(seed=-1)


def test_mnist1d_default_is_the_papers_size() -> None:
    d = data.mnist1d()
    assert d["x"].shape == (4000, 40) and d["x_test"].shape == (1000, 40)
    assert torch.bincount(d["y"], minlength=10).min() > 350


def test_digits() -> None:
    X, y = data.digits()
    assert X.shape == (1797, 64) and X.dtype == torch.float32
    assert y.shape == (1797,) and y.dtype == torch.int64
    assert float(X.min()) == 0.0 and float(X.max()) == 1.0
    assert sorted(y.unique().tolist()) == list(range(10))
    X2, y2 = data.digits()
    assert torch.equal(X, X2) and torch.equal(y, y2)


def test_split_partitions_and_repeats() -> None:
    x = torch.arange(100).float()[:, None]
    y = torch.arange(100)
    parts = data.split((x, y), (0.6, 0.2, 0.2), seed=3)
    assert [len(p[1]) for p in parts] == [60, 20, 20]
    together = torch.cat([p[1] for p in parts])
    assert sorted(together.tolist()) == list(range(100))  # a partition: nothing lost or repeated
    for px, py in parts:
        assert torch.equal(px[:, 0].long(), py)  # rows stay aligned
    again = data.split((x, y), (0.6, 0.2, 0.2), seed=3)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(parts, again))
    assert not torch.equal(data.split((x, y), (0.6, 0.4), seed=4)[0][1], parts[0][1][:60])
    ds_parts = data.split(TensorDataset(x, y), [0.5, 0.5], seed=0)
    assert all(isinstance(p, TensorDataset) and len(p) == 50 for p in ds_parts)


def test_split_validates() -> None:
    x, y = torch.zeros(10, 2), torch.zeros(10)
    with pytest.raises(ValueError, match="sum to 1"):
        data.split((x, y), (0.5, 0.4))
    with pytest.raises(ValueError, match="first dimension"):
        data.split((x, y[:5]), (0.5, 0.5))
    with pytest.raises(ValueError, match="too few"):
        data.split((x, y), (0.99, 0.01))
    with pytest.raises(ValueError, match="tuple of tensors"):
        data.split(([1, 2], [3, 4]), (0.5, 0.5))


# --- exercise checks -------------------------------------------------------------------------

def test_exercise_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert ex.mlp_parameters(17226)
    assert not ex.mlp_parameters(17216)
    assert not ex.mlp_parameters(...) and "not answered" in capsys.readouterr().out

    def right(n: int, b: int, drop_last: bool) -> int:
        return n // b if drop_last else math.ceil(n / b)

    assert ex.batches_per_epoch(right)
    assert not ex.batches_per_epoch(lambda n, b, d: n // b)
    capsys.readouterr()
    assert not ex.batches_per_epoch(lambda n, b, d: None)
    assert "not answered" in capsys.readouterr().out
    # The reference agrees with DataLoader itself.
    for n, b, d in [(1078, 64, False), (1078, 64, True), (10, 32, False)]:
        assert right(n, b, d) == len(DataLoader(range(n), batch_size=b, drop_last=d))

    assert ex.accuracy(lambda z, y: (z.argmax(-1) == y).float().mean())
    assert ex.accuracy(lambda z, y: (z.argmax(-1) == y).sum().item() / len(y))
    assert not ex.accuracy(lambda z, y: (z.argmax(-1) == y).sum())
    assert not ex.accuracy(lambda z, y: (z.argmin(-1) == y).float().mean())
    capsys.readouterr()
    assert not ex.accuracy(lambda z, y: None)
    assert "not answered" in capsys.readouterr().out

    assert ex.choose_weight_decay("validation set")
    assert not ex.choose_weight_decay("test set")
    assert not ex.choose_weight_decay(...)
