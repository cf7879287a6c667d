"""Figures the notebooks share, kept here so that their cells stay short."""

from __future__ import annotations

import math

import numpy as np


def overlay_grid(images, maps, titles, cols: int = 6, cell=(2.3, 1.95), dpi: int = 72, alpha: float = 0.5,
                 cmap: str = "jet", suptitle: str | None = None):
    """A grid of photos, each with its map in [0, 1] laid over it; returns the figure.

    ``images``, ``maps`` and ``titles`` are sequences of the same length; the grid has
    ``min(cols, n)`` columns and as many rows as needed, the unused cells left blank.
    """
    import matplotlib.pyplot as plt

    images, maps, titles = list(images), list(maps), list(titles)
    if not (len(images) == len(maps) == len(titles)) or not images:
        raise ValueError(f"need as many images, maps and titles (>= 1), got {len(images)}, {len(maps)}, {len(titles)}")
    n = len(images)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cell[0] * cols, cell[1] * rows), dpi=dpi, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, m, title in zip(axes.flat, images, maps, titles):
        ax.imshow(image)
        ax.imshow(np.asarray(m), cmap=cmap, alpha=alpha, vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def binned_means(x, y, bins):
    """Mean of ``y`` in each bin of ``x`` (edges ``bins``): (bin centres, means, counts),
    empty bins left out; geometric centres when every edge is > 0, else arithmetic."""
    x, y, bins = np.ravel(x), np.ravel(y), np.asarray(bins, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in size: {x.size} and {y.size}")
    which = np.clip(np.digitize(x, bins) - 1, 0, len(bins) - 2)
    inside = (x >= bins[0]) & (x <= bins[-1])
    counts = np.bincount(which[inside], minlength=len(bins) - 1)
    sums = np.bincount(which[inside], weights=y[inside], minlength=len(bins) - 1)
    centres = np.sqrt(bins[:-1] * bins[1:]) if (bins > 0).all() else (bins[:-1] + bins[1:]) / 2
    keep = counts > 0
    return centres[keep], sums[keep] / counts[keep], counts[keep]


def map_row(panels, figsize=None, dpi: int = 80, xy_labels: bool = True):
    """One row of images or maps, each with its title and, if a label is given, a colour bar.

    ``panels``: a sequence of ``(array, title, colorbar_label_or_None, imshow_kwargs)``; an
    array H x W x 3 is shown as a photo. Axes are labelled in pixels unless ``xy_labels`` is
    False. Returns (figure, axes).
    """
    import matplotlib.pyplot as plt

    panels = list(panels)
    if not panels:
        raise ValueError("no panels to draw")
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=figsize or (4.4 * n, 3.4), dpi=dpi, layout="constrained", squeeze=False)
    axes = axes[0]
    for ax, (m, title, label, style) in zip(axes, panels):
        im = ax.imshow(np.asarray(m), **(style or {}))
        if label is not None:
            fig.colorbar(im, ax=ax, label=label)
        ax.set_title(title)
        if xy_labels:
            ax.set(xlabel="x (pixels)", ylabel="y (pixels)")
        else:
            ax.axis("off")
    return fig, axes


def level_axis(ax, ticks=(0.25, 0.5, 1, 2, 4), axis: str = "x"):
    """A log axis for block levels with plain tick labels at ``ticks`` (no minor ticks)."""
    if axis not in ("x", "y"):
        raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
    set_scale, set_ticks = (ax.set_xscale, ax.set_xticks) if axis == "x" else (ax.set_yscale, ax.set_yticks)
    set_scale("log")
    set_ticks(list(ticks), labels=[f"{t:g}" for t in ticks], minor=False)
    set_ticks([], minor=True)
    return ax
