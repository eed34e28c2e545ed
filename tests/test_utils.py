"""dlbook.utils and dlbook.plot: device choice, seeding, source display, plotting helpers."""

from __future__ import annotations

import random

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.animation import FuncAnimation

import dlbook
from dlbook import plot


def test_device_prefers_available_accelerator():
    d = dlbook.device()
    if torch.cuda.is_available():
        assert d.type == "cuda"
    elif torch.backends.mps.is_available():
        assert d.type == "mps"
    else:
        assert d.type == "cpu"
    assert dlbook.device("cpu") == torch.device("cpu")


def test_device_rejects_unknown_or_missing():
    with pytest.raises(ValueError, match="prefer must be"):
        dlbook.device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            dlbook.device("cuda")


def test_seed_everything_repeats_every_generator():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    dlbook.seed_everything(123)
    first = draw()
    dlbook.seed_everything(123)
    assert draw() == first
    dlbook.seed_everything(124)
    assert draw() != first


@pytest.mark.parametrize("bad", [1.5, "0", -1, 2**32, True])
def test_seed_everything_validates(bad):
    with pytest.raises(ValueError):
        dlbook.seed_everything(bad)


def test_show_source():
    code = dlbook.show_source(dlbook.seed_everything)
    text = code.data if hasattr(code, "data") else code
    assert "def seed_everything" in text
    with pytest.raises(ValueError, match="cannot show the source"):
        dlbook.show_source(len)


def test_animation_html_is_offline_and_stable():
    def make():
        fig, ax = plt.subplots()
        (line,) = ax.plot([], [])
        return FuncAnimation(fig, lambda i: line.set_data([0, 1], [0, i]), frames=3)

    html1 = plot.animation_html(make()).data
    html2 = plot.animation_html(make()).data
    assert "https://" not in html1 and "fa-" not in html1
    assert html1 == html2  # the element id no longer changes from run to run
    with pytest.raises(ValueError, match="Animation"):
        plot.animation_html(plt.figure())
    plt.close("all")


def test_explore_builds_widget_and_redraws():
    calls = []

    def draw(ax, w=0.0, n=1):
        calls.append((w, n))
        ax.plot([0, 1], [0, w])

    box = plot.explore(draw, w=(-1.0, 1.0, 0.1, 0.5), n=(1, 5, 1, 2, "int"))
    assert repr(box) == "explore(w, n)"
    assert calls == [(0.5, 2)]
    sliders, image = box.children
    assert image.value[:4] == b"\x89PNG"
    sliders.children[0].value = -0.5
    assert calls[-1] == (-0.5, 2)
    with pytest.raises(ValueError, match="outside"):
        plot.explore(draw, w=(0.0, 1.0, 0.1, 2.0))
    with pytest.raises(ValueError, match="at least one control"):
        plot.explore(draw)
    with pytest.raises(ValueError, match="must be"):
        plot.explore(draw, w=(0, 1))


def test_contour_and_decision_regions_validate_shapes():
    fig, ax = plt.subplots()
    plot.contour(lambda p: (p**2).sum(-1), (-1, 1), (-1, 1), ax=ax, n=20)
    with pytest.raises(ValueError, match="f must map"):
        plot.contour(lambda p: p, (-1, 1), (-1, 1), ax=ax, n=20)
    with pytest.raises(ValueError, match="low < high"):
        plot.contour(lambda p: p.sum(-1), (1, -1), (-1, 1), ax=ax)
    X = torch.randn(10, 2)
    plot.decision_regions(lambda p: torch.sigmoid(p[:, 0]), X, (X[:, 0] > 0).long(), ax=ax, n=20)
    plot.decision_regions(lambda p: p @ torch.eye(2, 3), X, torch.arange(10) % 3, ax=ax, n=20)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        plot.decision_regions(lambda p: p, torch.randn(5, 3), torch.zeros(5), ax=ax)
    with pytest.raises(ValueError, match="give xlim and ylim"):
        plot.decision_regions(lambda p: p[:, 0], torch.zeros(0, 2), torch.zeros(0), ax=ax)
    plt.close("all")
