"""dlbook.distributed.fault: atomic checkpoints, a job whose killed worker is resumed from the
last checkpoint with bit-identical final weights, and torchrun's elastic restart."""

from __future__ import annotations

import os

import pytest
import torch

from dlbook.distributed import fault as FT
from dlbook.distributed.launch import WorkerError, launch


def _equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_save_is_atomic_and_load_round_trips(tmp_path):
    path = tmp_path / "ckpt.pt"
    assert FT.load_checkpoint(path) is None
    state = {"w": torch.randn(3, 4, dtype=torch.float64), "step": 7}
    FT.save_checkpoint(path, state)
    got = FT.load_checkpoint(path)
    assert got["step"] == 7 and torch.equal(got["w"], state["w"])
    assert os.listdir(tmp_path) == ["ckpt.pt"], "no temporary file is left behind"
    FT.save_checkpoint(path, {"w": torch.zeros(2), "step": 8})   # replaces the old one
    assert FT.load_checkpoint(path)["step"] == 8


def test_a_torn_plain_write_cannot_be_loaded(tmp_path):
    path = tmp_path / "ckpt.pt"
    FT.save_checkpoint(path, {"w": torch.randn(100), "step": 1})
    FT.torn_write(path, {"w": torch.randn(100), "step": 2}, 0.5)
    with pytest.raises(Exception):
        FT.load_checkpoint(path)


def test_a_failed_save_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    FT.save_checkpoint(path, {"step": 1})

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        FT.save_checkpoint(path, {"step": 2, "bad": Boom()})
    assert FT.load_checkpoint(path) == {"step": 1}
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_bad_inputs_raise_value_errors(tmp_path):
    with pytest.raises(ValueError, match="dict"):
        FT.save_checkpoint(tmp_path / "x.pt", [1, 2])
    with pytest.raises(ValueError, match="does not exist"):
        FT.save_checkpoint(tmp_path / "missing" / "x.pt", {})
    with pytest.raises(ValueError, match="fraction"):
        FT.torn_write(tmp_path / "x.pt", {}, 1.5)


def test_killed_worker_resumes_from_the_last_checkpoint_with_identical_weights(tmp_path):
    full_dir, crash_dir = tmp_path / "full", tmp_path / "crash"
    full_dir.mkdir()
    crash_dir.mkdir()
    full = launch(FT.train, 2, str(full_dir), steps=12, every=3, timeout=90)
    assert full[0]["resumed_from"] == 0 and _equal(full[0]["final"], full[1]["final"])
    ref = FT.reference_train(12)
    for k in ref:  # the 2-rank run is the one-process full-batch run to round-off
        torch.testing.assert_close(full[0]["final"][k], ref[k], rtol=0, atol=1e-12)
    with pytest.raises(WorkerError):
        launch(FT.train, 2, str(crash_dir), steps=12, every=3, crash_at=8, timeout=90)
    assert FT.load_checkpoint(crash_dir / FT.CHECKPOINT)["step"] == 6
    again = launch(FT.train, 2, str(crash_dir), steps=12, every=3, timeout=90)
    assert again[0]["resumed_from"] == 6
    assert sorted(again[0]["losses"]) == list(range(7, 13))
    assert all(again[0]["losses"][s] == full[0]["losses"][s] for s in range(7, 13))
    assert _equal(again[0]["final"], full[0]["final"])


def test_torchrun_elastic_restart_resumes_and_finishes(tmp_path):
    out = FT.torchrun_train(str(tmp_path), steps=9, every=3, crash_at=5)
    assert out["returncode"] == 0, out["log"][-2000:]
    assert out["lines"] == ["[fault] attempt 1: resumed from step 3, finished step 9"]
    assert (tmp_path / "crashed").exists()
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    uninterrupted = launch(FT.train, 2, str(fresh), steps=9, every=3, timeout=90)[0]["final"]
    assert _equal(out["final"], uninterrupted)
