"""Tests for dlbook.data: the data sets, data.split and data.loader."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader, TensorDataset

from dlbook import data

# --- the data sets ---------------------------------------------------------------------------


def test_mnist1d_shapes_dtypes_and_determinism() -> None:
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


def test_mnist1d_in_float64_holds_the_same_values() -> None:
    d32 = data.mnist1d(num_samples=200, seed=3)
    d64 = data.mnist1d(num_samples=200, seed=3, dtype=torch.float64)
    for key in ("x", "x_test", "t"):
        assert d64[key].dtype == torch.float64
        assert torch.equal(d64[key], d32[key].double())  # float32 values, exactly
    assert d64["y"].dtype == torch.int64 and torch.equal(d64["y"], d32["y"])


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
    X64, _ = data.digits(dtype=torch.float64)
    assert X64.dtype == torch.float64 and torch.equal(X64, X.double())


@pytest.mark.parametrize("call, match", [
    (lambda: data.mnist1d(num_samples=5), "num_samples"),
    (lambda: data.mnist1d(num_samples=100.0), "num_samples"),
    (lambda: data.mnist1d(num_samples=True), "num_samples"),
    (lambda: data.mnist1d(seed=-1), "seed"),
    (lambda: data.mnist1d(seed=2**32), "seed"),
    (lambda: data.mnist1d(seed="0"), "seed"),
    (lambda: data.mnist1d(dtype=torch.int64), "dtype"),
    (lambda: data.mnist1d(dtype="float64"), "dtype"),
    (lambda: data.digits(dtype=torch.float16), "dtype"),
    (lambda: data.logic_gate("MAYBE"), "unknown gate"),
    (lambda: data.logic_gate(3), "unknown gate"),
])
def test_data_sets_reject_bad_arguments(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


# --- split -----------------------------------------------------------------------------------


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
    assert len(data.split((x, y), (0.5, 0.5), seed=np.int64(2))[0][0]) == 50


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 300), k=st.integers(1, 4), seed=st.integers(0, 2**31),
       shares=st.lists(st.integers(1, 10), min_size=1, max_size=4))
def test_split_is_a_seeded_partition(n: int, k: int, seed: int, shares: list[int]) -> None:
    fractions = [s / sum(shares) for s in shares]
    X = torch.arange(n * k, dtype=torch.float64).reshape(n, k)
    y = torch.arange(n)
    try:
        parts = data.split((X, y), fractions, seed=seed)
    except ValueError as err:  # only when some part would be empty
        assert "too few" in str(err)
        return
    assert len(parts) == len(fractions)
    assert sum(len(p[1]) for p in parts) == n
    assert sorted(torch.cat([p[1] for p in parts]).tolist()) == list(range(n))
    for px, py in parts:
        assert len(py) >= 1 and torch.equal(px, X[py])  # rows stay with their labels
    for part, f in zip(parts[:-1], fractions[:-1]):
        assert abs(len(part[1]) - f * n) <= 0.5 + 1e-9  # sizes are the rounded shares
    again = data.split((X, y), fractions, seed=seed)
    assert all(torch.equal(a[1], b[1]) for a, b in zip(parts, again))


@pytest.mark.parametrize("args, match", [
    (((torch.zeros(10, 2), torch.zeros(10)), (0.5, 0.4)), "sum to 1"),
    (((torch.zeros(10, 2), torch.zeros(10)), (0.5, float("nan"))), "sum to 1"),
    (((torch.zeros(10, 2), torch.zeros(10)), (1.5, -0.5)), "positive"),
    (((torch.zeros(10, 2), torch.zeros(10)), "0.5"), "tuple of numbers"),
    (((torch.zeros(10, 2), torch.zeros(10)), (True, False)), "tuple of numbers"),
    (((torch.zeros(10, 2), torch.zeros(10)), ()), "sum to 1"),
    (((torch.zeros(10, 2), torch.zeros(5)), (0.5, 0.5)), "first dimension"),
    (((torch.zeros(10, 2), torch.zeros(10)), (0.99, 0.01)), "too few"),
    ((([1, 2], [3, 4]), (0.5, 0.5)), "tuple of tensors"),
    ((torch.zeros(10, 2), (0.8, 0.2)), "pass \\(X,\\)"),
    (((torch.tensor(1.0),), (0.5, 0.5)), "0-d"),
    (((), (0.5, 0.5)), "tuple of tensors"),
])
def test_split_rejects_bad_input(args, match) -> None:
    with pytest.raises(ValueError, match=match):
        data.split(*args)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, 2**63])
def test_split_rejects_bad_seeds(seed) -> None:
    with pytest.raises(ValueError, match="seed"):
        data.split((torch.zeros(10),), (0.5, 0.5), seed=seed)


# --- loader ----------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 120), batch_size=st.integers(1, 50), shuffle=st.booleans(),
       drop_last=st.booleans(), seed=st.integers(0, 2**31))
def test_loader_serves_what_a_dataloader_serves(n: int, batch_size: int, shuffle: bool,
                                                drop_last: bool, seed: int) -> None:
    """The same batches as DataLoader with a generator seeded the same way, epoch after
    epoch, and each epoch uses every example at most once."""
    X, y = torch.randn(n, 3, dtype=torch.float64), torch.arange(n)
    ours = data.loader((X, y), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
    theirs = DataLoader(TensorDataset(X, y), batch_size=batch_size, shuffle=shuffle,
                        drop_last=drop_last,
                        generator=torch.Generator().manual_seed(seed) if shuffle else None)
    expected_len = n // batch_size if drop_last else math.ceil(n / batch_size)
    assert len(ours) == len(theirs) == expected_len
    for _ in range(2):
        a, b = list(ours), list(theirs)
        assert len(a) == len(b) == expected_len
        for (xa, ya), (xb, yb) in zip(a, b):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)
            assert torch.equal(xa, X[ya])
        seen = torch.cat([ya for _, ya in a]) if a else torch.tensor([], dtype=torch.long)
        assert len(set(seen.tolist())) == len(seen)
        if not drop_last:
            assert sorted(seen.tolist()) == list(range(n))
        if not shuffle:
            assert seen.tolist() == list(range(len(seen)))


def test_loader_order_depends_only_on_its_seed() -> None:
    X = torch.arange(50.0)[:, None]
    torch.manual_seed(0)
    first = [yb.tolist() for _, yb in data.loader((X, torch.arange(50)), 10, shuffle=True,
                                                  seed=4)]
    torch.manual_seed(123)  # the global random state does not matter
    torch.rand(7)
    again = [yb.tolist() for _, yb in data.loader((X, torch.arange(50)), 10, shuffle=True,
                                                  seed=4)]
    assert first == again
    other = [yb.tolist() for _, yb in data.loader((X, torch.arange(50)), 10, shuffle=True,
                                                  seed=5)]
    assert other != first


def test_loader_takes_any_dataset() -> None:
    class Squares(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 7

        def __getitem__(self, i: int):
            return torch.tensor([float(i)]), torch.tensor(i * i)

    batches = list(data.loader(Squares(), 3))
    assert [len(yb) for _, yb in batches] == [3, 3, 1]
    assert batches[1][1].tolist() == [9, 16, 25]


@pytest.mark.parametrize("kwargs, match", [
    (dict(dataset=torch.zeros(10, 2), batch_size=2), "pass \\(X,\\)"),
    (dict(dataset=(torch.zeros(10, 2), torch.zeros(3)), batch_size=2), "first dimension"),
    (dict(dataset=([1, 2],), batch_size=2), "tuple of tensors"),
    (dict(dataset=[1, 2, 3], batch_size=2), "Dataset"),
    (dict(dataset=(torch.zeros(4),), batch_size=0), "batch_size"),
    (dict(dataset=(torch.zeros(4),), batch_size=2.0), "batch_size"),
    (dict(dataset=(torch.zeros(4),), batch_size=True), "batch_size"),
    (dict(dataset=(torch.zeros(4),), batch_size=2, shuffle=1), "shuffle"),
    (dict(dataset=(torch.zeros(4),), batch_size=2, drop_last="no"), "drop_last"),
    (dict(dataset=(torch.zeros(4),), batch_size=2, seed=-3), "seed"),
    (dict(dataset=(torch.zeros(4),), batch_size=2, seed=0.5), "seed"),
])
def test_loader_rejects_bad_input(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        data.loader(**kwargs)


def test_the_shipped_text_loads_offline_and_is_what_its_readme_says():
    from dlbook import data

    text = data.text()
    assert len(text) == 996_655 and len(text.encode("utf-8")) < 1_000_000
    assert text.startswith("CHAPTER 1. Loomings.\n\nCall me Ishmael.")
    assert text.count("\nCHAPTER ") == 108  # chapters 1-109
    assert {c for c in text if ord(c) > 127} == {"—"}
    assert data.text(chars=20) == text[:20]
    with pytest.raises(ValueError, match="unknown text"):
        data.text("hamlet")
    with pytest.raises(ValueError, match="chars"):
        data.text(chars=0)
