"""Shared test set-up: book paths, and how tests are spread over pytest-xdist workers."""

from __future__ import annotations

from pathlib import Path

import os

import matplotlib
import pytest
import torch

from dlbook.book import RUN_ENV

matplotlib.use("Agg")
# Kernels started by the notebook tests inherit this: the stored outputs were made the same way.
os.environ.update(RUN_ENV)
torch.set_num_threads(1)  # and the unit tests in this process share the cores the same way

ROOT = Path(__file__).resolve().parents[1]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep each notebook's cells on one worker, and let everything else spread out.

    With ``--dist loadgroup`` items of the same group run on the same worker in order. A
    notebook's nbval cells share one kernel, so they form one group; each student-edition run
    and each other test file is a group of its own, so the two workers stay busy.
    """
    for item in items:
        path = Path(str(item.fspath))
        if path.suffix == ".ipynb":
            group = f"nb:{path.name}"
        elif "student_nb" in item.fixturenames and hasattr(item, "callspec"):
            group = f"student:{item.callspec.id}"
        else:
            group = f"file:{path.name}"
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT
