"""dlbook.utils and dlbook.plot: device choice, seeding, source display, plotting helpers."""

from __future__ import annotations

import random
import re

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


def test_animation_html_is_offline_and_its_ids_do_not_depend_on_pixels(monkeypatch):
    def make(height):
        fig, ax = plt.subplots()
        (line,) = ax.plot([], [])
        ax.set_ylim(0, 3)
        return FuncAnimation(fig, lambda i: line.set_data([0, 1], [0, height * i]), frames=3)

    def player_id(html):
        return re.search(r'id="_anim_img([0-9a-z]+)"', html).group(1)

    monkeypatch.setattr(plot, "_ANIMATIONS", 0)
    first = plot.animation_html(make(1.0)).data
    second = plot.animation_html(make(1.0)).data
    assert "https://" not in first and "fa-" not in first
    assert player_id(first) != player_id(second), "two players on one page need two ids"
    monkeypatch.setattr(plot, "_ANIMATIONS", 0)  # a fresh kernel, and other pixels
    again = plot.animation_html(make(1.001)).data
    assert player_id(again) == player_id(first), "a re-run gives the same id"
    assert again != first, "the frames themselves did change"
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


def test_contour_and_decision_regions_draw_what_they_are_given():
    fig, ax = plt.subplots()
    plot.contour(lambda p: (p**2).sum(-1), (-1, 1), (-1, 1), ax=ax, n=20, levels=[0.25, 1.0])
    # the level set f = 0.25 of x² + y² is the circle of radius 0.5
    vertices = np.concatenate([path.vertices for path in ax.collections[0].get_paths()
                               if len(path.vertices)])
    radii = np.hypot(vertices[:, 0], vertices[:, 1])
    assert len(vertices) > 10 and np.any(np.abs(radii - 0.5) < 0.02)
    assert ax.get_xlim() == (-1, 1)
    fig2, ax2 = plt.subplots()
    X = torch.tensor([[-1.0, 0.0], [1.0, 0.0]])
    plot.decision_regions(lambda p: torch.sigmoid(10 * p[:, 0]), X, torch.tensor([0, 1]), ax=ax2,
                          n=21)
    # the 0.5 contour of sigmoid(10 x) is the line x = 0
    boundary = np.concatenate([path.vertices for c in ax2.collections[1:2] for path in c.get_paths()
                               if len(path.vertices)])
    assert np.allclose(boundary[:, 0], 0.0, atol=1e-6)
    offsets = np.concatenate([c.get_offsets() for c in ax2.collections
                              if hasattr(c, "get_offsets") and len(c.get_offsets()) == 2])
    assert np.allclose(np.sort(offsets[:, 0]), [-1.0, 1.0]), "the data points are drawn"
    plt.close("all")


def test_contour_and_decision_regions_validate_shapes():
    fig, ax = plt.subplots()
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


_INIT_SCRIPT = """
import hashlib, torch, dlbook
from torch import nn
m = nn.Sequential(nn.Linear(64, 48), nn.Conv1d(3, 8, 5), nn.GRU(6, 40), nn.Embedding(20, 16))
dlbook.utils.portable_init_(m, seed=3)
print(hashlib.sha1(b"".join(p.detach().numpy().tobytes() for p in m.parameters())).hexdigest())
"""


def test_portable_init_gives_the_same_weights_with_every_cpu_kernel():
    import os
    import subprocess
    import sys

    digests = set()
    for capability in ("default", "avx2", None):
        env = dict(os.environ)
        env.pop("ATEN_CPU_CAPABILITY", None)
        if capability:
            env["ATEN_CPU_CAPABILITY"] = capability
        out = subprocess.run([sys.executable, "-c", _INIT_SCRIPT], env=env, check=True,
                             capture_output=True, text=True).stdout.strip()
        digests.add(out)
    assert len(digests) == 1


def test_portable_init_draws_pytorchs_default_distributions():
    from torch import nn

    layers = [nn.Linear(400, 300), nn.Conv2d(8, 16, 3, groups=2), nn.LSTM(10, 50)]
    for layer in layers:
        theirs = [p.detach().clone() for p in layer.parameters()]
        dlbook.utils.portable_init_(layer, seed=0)
        for p, q in zip(layer.parameters(), theirs):
            # same bound and the same variance (bound²/3) as PyTorch's own draw
            assert p.abs().max() <= q.abs().max() * 1.02 + 1e-6
            assert abs(p.var().item() / q.var().item() - 1) < 0.25
    a = dlbook.utils.portable_init_(nn.Linear(5, 3), seed=7)
    b = dlbook.utils.portable_init_(nn.Linear(5, 3), seed=7)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    norm = dlbook.utils.portable_init_(nn.LayerNorm(4))
    assert torch.equal(norm.weight, torch.ones(4)) and torch.equal(norm.bias, torch.zeros(4))
    with pytest.raises(ValueError, match="does not know"):
        dlbook.utils.portable_init_(nn.MultiheadAttention(4, 2))
    with pytest.raises(ValueError, match="nn.Module"):
        dlbook.utils.portable_init_(torch.ones(3))


def test_progress_outside_a_notebook_is_a_plain_tqdm_bar_without_timings(capsys):
    bar = dlbook.progress(range(3), desc="steps")
    assert list(bar) == [0, 1, 2]
    assert "it/s" not in bar.bar_format and "elapsed" not in bar.bar_format
    assert bar.format_meter(**bar.format_dict).startswith("steps: 100%|")
    assert list(dlbook.progress(range(2), disable=True)) == [0, 1]


def test_progress_in_a_notebook_stores_its_last_line(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import dlbook\nfor i in dlbook.progress(range(4), desc='work'):\n    pass\nprint('done')")]
    NotebookClient(nb, kernel_name="python3", timeout=60).execute()
    outputs = nb.cells[0].outputs
    text = [o["data"]["text/plain"] for o in outputs if o.output_type == "display_data"]
    assert text == ["work: 100%|##########| 4/4"], text
    assert outputs[-1].text == "done\n"


def test_set_style_outside_ipython_sets_the_book_defaults():
    import matplotlib as mpl

    plot.set_style()
    assert mpl.rcParams["figure.dpi"] == 100 and mpl.rcParams["font.size"] == 10
