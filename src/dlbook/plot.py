"""Plotting defaults and the two ways the book makes a figure move.

* :func:`explore` — sliders that redraw a figure while a kernel runs (JupyterLab, Colab).
* :func:`animation_html` — a precomputed animation that still moves on the static website.
"""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any, Callable, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt

#: The book's figure defaults: small, readable, and light on ink.
STYLE: dict[str, Any] = {
    "figure.figsize": (5.6, 3.4),
    # 100 CSS pixels per inch on the page; notebooks store PNGs at twice that ("retina"), so
    # figures stay crisp on HiDPI screens and 10 pt text is about 14 px on screen.
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 1.8,
    "image.cmap": "RdBu_r",
    "svg.hashsalt": "dlbook",  # stable ids if a figure is ever saved as SVG
}


def set_style() -> None:
    """Apply the book's matplotlib defaults (call once in a notebook's set-up cell).

    In a notebook, figures are also stored as PNGs at twice their displayed resolution, with
    their display size recorded, so that they are sharp on high-density screens.
    """
    mpl.rcParams.update(STYLE)
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # plain Python: nothing to configure
        return
    if get_ipython() is not None:
        set_matplotlib_formats("retina")


# Characters that common fonts (DejaVu included) have; each button also has a tooltip.
_ICONS = {"fa-minus": "&minus;", "fa-plus": "+", "fa-fast-backward": "&#x21E4;",
          "fa-step-backward": "&#x2190;", "fa-play": "&#x25B6;", "fa-pause": "&#x275A;&#x275A;",
          "fa-step-forward": "&#x2192;", "fa-fast-forward": "&#x21E5;"}


_ANIMATIONS = 0  # animations rendered in this session (part of each player's element id)


def animation_html(anim: Any, *, fps: int = 6, default_mode: str = "loop",
                   dpi: float | None = None, alt: str | None = None) -> Any:
    """Render a ``matplotlib.animation.Animation`` as self-contained HTML (no kernel needed).

    This is the static twin of an interactive widget: the frames are computed once, embedded
    as PNG images, and play with the player's own buttons on the website. The random element
    id matplotlib uses is replaced by one derived from the frames, so a re-run is identical.
    The animation's figure is closed so it is not shown a second time. Frames are saved at
    ``dpi`` (default: ``savefig.dpi``); a lower one keeps the notebook small. ``alt`` is the
    frames' text for readers who cannot see them (the book's pages need one).
    """
    from matplotlib.animation import Animation

    if not isinstance(anim, Animation):
        raise ValueError("animation_html expects a matplotlib.animation.Animation, e.g. "
                         f"FuncAnimation(fig, update, frames=...), got {type(anim).__name__}")
    if default_mode not in {"loop", "once", "reflect"}:
        raise ValueError(f"default_mode must be 'loop', 'once' or 'reflect', got {default_mode!r}")
    if dpi is not None and not dpi > 0:
        raise ValueError(f"dpi must be a positive number, got {dpi!r}")
    with mpl.rc_context({"savefig.dpi": dpi} if dpi else {}):
        html = anim.to_jshtml(fps=fps, default_mode=default_mode)
    plt.close(anim._fig)  # noqa: SLF001
    # The player's buttons use an icon font from a CDN; plain characters work offline.
    html = re.sub(r'<link rel="stylesheet"\s+href="https://[^"]*font-awesome[^"]*">', "", html)
    html = re.sub(r'<i class="fa (fa-[a-z-]+)( fa-flip-horizontal)?"></i>',
                  lambda m: "&#x25C0;" if m.group(2) else _ICONS[m.group(1)], html)
    if alt is not None:
        import html as html_lib

        html = re.sub(r'<img id="_anim_img', f'<img alt="{html_lib.escape(alt)}" id="_anim_img',
                      html, count=1)
    uid = re.search(r'id="_anim_img([0-9a-f]+)"', html)
    if uid:
        # The id must not depend on pixel values (they differ in the last bit between CPUs):
        # hash the player's HTML without its frames, and count animations in this session so
        # that two alike on one page still get different ids.
        global _ANIMATIONS
        _ANIMATIONS += 1
        skeleton = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=\\\n]+", "", html)
        skeleton = re.sub(r"[0-9a-f]{32}", "", skeleton)
        digest = hashlib.sha1(f"{_ANIMATIONS}:{skeleton}".encode()).hexdigest()[:16]
        html = html.replace(uid.group(1), "a" + digest)
    from IPython.display import HTML

    return HTML(html)


def figure_png(fig: plt.Figure, dpi: int | None = None) -> bytes:
    """Return a figure as PNG bytes (used by :func:`explore` to update its image)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or mpl.rcParams["savefig.dpi"], bbox_inches="tight")
    return buf.getvalue()


def explore(draw: Callable[..., None], *, figsize: tuple[float, float] | None = None,
            **controls: Any) -> Any:
    """Sliders that redraw a figure: ``explore(draw, w1=(-3, 3, 0.1, 1.0), ...)``.

    ``draw(ax, **values)`` draws on a cleared axis. Each control is ``(min, max, step, value)``
    for a float slider, ``(min, max, step, value, "int")`` for an integer slider, or an
    ipywidgets widget. The figure is shown as an image widget, so running the cell prints
    nothing but the widget itself (stable for the notebook tests) and the saved widget state
    shows the first drawing on the website; moving the sliders needs a running kernel.
    """
    import ipywidgets as W

    if not callable(draw):
        raise ValueError("explore expects draw(ax, **values) as its first argument")
    if not controls:
        raise ValueError("explore needs at least one control, e.g. w=(-3, 3, 0.1, 1.0)")
    widgets: dict[str, W.ValueWidget] = {}
    for name, spec in controls.items():
        if isinstance(spec, W.ValueWidget):
            widgets[name] = spec
            continue
        if not isinstance(spec, tuple) or len(spec) not in (4, 5):
            raise ValueError(f"control {name!r} must be (min, max, step, value) or "
                             f"(min, max, step, value, 'int'), got {spec!r}")
        lo, hi, step, value = spec[:4]
        if not lo <= value <= hi:
            raise ValueError(f"control {name!r}: value {value} is outside [{lo}, {hi}]")
        cls = W.IntSlider if len(spec) == 5 and spec[4] == "int" else W.FloatSlider
        widgets[name] = cls(min=lo, max=hi, step=step, value=value, description=name,
                            continuous_update=False)
    fig, ax = plt.subplots(figsize=figsize)
    plt.close(fig)  # drawn into the image widget only
    image = W.Image(format="png")

    def redraw(_change: Any = None) -> None:
        ax.clear()
        draw(ax, **{k: w.value for k, w in widgets.items()})
        image.value = figure_png(fig)

    for w in widgets.values():
        w.observe(redraw, names="value")
    redraw()
    return _Explorer([W.VBox(list(widgets.values())), image], names=list(widgets))


def _explorer_class() -> type:
    import ipywidgets as W

    class Explorer(W.HBox):
        """An HBox whose text form is short and stable (no PNG bytes in the notebook)."""

        def __init__(self, children: list, names: list[str]) -> None:
            super().__init__(children)
            self._names = names

        def __repr__(self) -> str:
            return f"explore({', '.join(self._names)})"

    return Explorer


def _Explorer(children: list, names: list[str]) -> Any:  # noqa: N802 - acts as a class
    return _explorer_class()(children, names)


def _grid(xlim: tuple[float, float], ylim: tuple[float, float], n: int) -> Any:
    import torch

    if not (len(xlim) == 2 and len(ylim) == 2 and xlim[0] < xlim[1] and ylim[0] < ylim[1]):
        raise ValueError(f"xlim and ylim must be (low, high) with low < high, got {xlim}, {ylim}")
    xs = torch.linspace(float(xlim[0]), float(xlim[1]), n)
    ys = torch.linspace(float(ylim[0]), float(ylim[1]), n)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    return gx, gy, torch.stack([gx, gy], dim=-1)


def contour(f: Callable[[Any], Any], xlim: tuple[float, float], ylim: tuple[float, float], *,
            ax: plt.Axes | None = None, n: int = 200, levels: int | Sequence[float] = 30,
            log: bool = False) -> plt.Axes:
    """Contour lines of a function of two variables, e.g. a loss surface.

    ``f`` takes a tensor of points with shape (..., 2) and returns their values, shape (...).
    With ``log=True`` the levels are spaced evenly in log(1 + f), which shows narrow valleys.
    """
    import torch

    gx, gy, points = _grid(xlim, ylim, n)
    with torch.no_grad():
        z = torch.as_tensor(f(points), dtype=torch.float32)
    if z.shape != gx.shape:
        raise ValueError(f"f must map points of shape (..., 2) to values of shape (...); for a "
                         f"{tuple(points.shape)} grid it returned {tuple(z.shape)}")
    ax = ax or plt.gca()
    ax.contour(gx.numpy(), gy.numpy(), (torch.log1p(z) if log else z).numpy(), levels=levels,
               cmap="viridis", linewidths=0.8)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    return ax


def decision_regions(predict: Callable[[Any], Any], X: Any, y: Any, *, ax: plt.Axes | None = None,
                     xlim: tuple[float, float] | None = None,
                     ylim: tuple[float, float] | None = None, n: int = 200) -> plt.Axes:
    """Shade where a 2-D classifier predicts each class, and scatter the data on top.

    ``predict`` maps points of shape (m, 2) to scores: shape (m,) for a probability of class 1,
    or (m, k) for k classes (the arg-max is shaded). ``X`` has shape (n, 2), ``y`` shape (n,);
    pass an empty ``X`` (shape (0, 2)) with ``xlim`` and ``ylim`` to draw the regions alone.
    """
    import torch

    X = torch.as_tensor(X, dtype=torch.float32)
    y = torch.as_tensor(y)
    if X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"expected X of shape (n, 2), got {tuple(X.shape)}")
    if y.shape != (X.shape[0],):
        raise ValueError(f"expected y of shape ({X.shape[0]},), got {tuple(y.shape)}")
    if len(X) == 0 and (xlim is None or ylim is None):
        raise ValueError("with no data points (empty X), give xlim and ylim")
    pad = 0.5
    xlim = xlim or (float(X[:, 0].min()) - pad, float(X[:, 0].max()) + pad)
    ylim = ylim or (float(X[:, 1].min()) - pad, float(X[:, 1].max()) + pad)
    gx, gy, points = _grid(xlim, ylim, n)
    with torch.no_grad():
        scores = torch.as_tensor(predict(points.reshape(-1, 2)), dtype=torch.float32)
    ax = ax or plt.gca()
    if scores.ndim == 1 or scores.shape[-1] == 1:
        p = scores.reshape(gx.shape)
        ax.contourf(gx.numpy(), gy.numpy(), p.numpy(), levels=20, cmap="RdBu_r", alpha=0.35,
                    vmin=0, vmax=1)
        ax.contour(gx.numpy(), gy.numpy(), p.numpy(), levels=[0.5], colors="k", linewidths=1)
    else:
        k = scores.shape[-1]
        cls = scores.argmax(-1).reshape(gx.shape)
        ax.contourf(gx.numpy(), gy.numpy(), cls.numpy(), levels=torch.arange(k + 1).numpy() - 0.5,
                    cmap="tab10", alpha=0.25, vmin=0, vmax=9)
    if len(X):  # an empty X draws the regions alone
        binary = int(y.max()) <= 1
        ax.scatter(X[:, 0].numpy(), X[:, 1].numpy(), c=y.numpy(),
                   cmap="RdBu_r" if binary else "tab10", edgecolors="k", s=25, vmin=0,
                   vmax=1 if binary else 9)
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    return ax
