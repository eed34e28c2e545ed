"""Test set-up for the whole repository (unit tests in tests/, notebooks in chapters/).

It lives at the root so that it also applies when only notebooks are tested. With
``-n 2 --dist loadfile`` each notebook's cells run in order on one worker and one kernel.
"""

from __future__ import annotations

import os

import matplotlib
import torch

from dlbook.book import RUN_ENV

matplotlib.use("Agg")
# Kernels started by the notebook tests inherit this: the stored outputs were made the same way.
os.environ.update(RUN_ENV)
torch.set_num_threads(1)  # and the unit tests in this process share the cores the same way
