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


# ---------------------------------------------------------------------------------------
# Figures of notebook 06 (the paper's tables and figures beside what is measured)


def rd_with_claims(measured, claim_sets, anchors_by_metric: dict, dataset: str = "kodak", titles: dict | None = None,
                   xlim=(0, 2.0), ylims: dict | None = None, figsize=(12.5, 4.8), axes=None):
    """RD plots (one per metric of ``anchors_by_metric``: metric -> published curve names)
    of the ``measured`` results, the published curves, and the paper's claimed points.

    ``claim_sets``: a sequence of ``(claims, marker_style, label)``, each claim drawn at its
    bpp with its PSNR (``psnr-rgb``) or MS-SSIM (``ms-ssim-rgb``). Returns the axes.
    """
    import matplotlib.pyplot as plt

    from semlib.evaluate import plot_rd

    metrics = list(anchors_by_metric)
    if axes is None:
        _, axes = plt.subplots(1, len(metrics), figsize=figsize, squeeze=False)
        axes = axes[0]
    attr = {"psnr-rgb": "psnr", "ms-ssim-rgb": "ms_ssim"}
    for ax, metric in zip(axes, metrics):
        plot_rd(list(measured), metric, anchors=anchors_by_metric[metric], dataset=dataset, ax=ax,
                title=(titles or {}).get(metric))
        for claim_list, style, label in claim_sets:
            claim_list = list(claim_list)
            ax.plot([c.bpp for c in claim_list], [getattr(c, attr[metric]) for c in claim_list], ls="none",
                    label=label, **style)
        ax.set_xlim(*xlim)
        if ylims and metric in ylims:
            ax.set_ylim(*ylims[metric])
        ax.legend(fontsize=6.5, loc="lower right")
    axes[0].figure.tight_layout()
    return axes


def claim_gaps_figure(gaps: list[dict], figsize=(7.5, 3.0)):
    """Horizontal bars of claim − best published value (:func:`semlib.tables.claim_gaps`),
    the paper's own method in black, its ablation rows in grey. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    ax.barh([f"T{g['table']} {g['claim'].split(' (')[0]} · {g['dataset']} @ {g['bpp']}" for g in gaps],
            [0.0 if g["gap"] is None else g["gap"] for g in gaps],
            color=["k" if "Song" in g["claim"] else "0.6" for g in gaps])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("claimed PSNR − best published PSNR at the same bpp (dB)")
    ax.set_title("The paper's own-method claims vs the best published curve")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def fig15_figure(variable: dict, rows15: list[dict], context: dict | None = None, context_label: str | None = None,
                 figsize=(6.6, 4.3)):
    """The paper's Fig. 15 measured here: the γ-conditioned model's curve, the fixed-rate
    models' points (rows of :func:`semlib.tables.fixed_vs_variable`) and, dotted, a
    ``context`` curve (e.g. the shipped model). Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=figsize)
    r = variable["results"]
    q = r.get("quality") or [0]
    ax.plot(r["bpp"], r["psnr-rgb"], "o-", color="C3",
            label=f"one γ-conditioned model (γ {min(q):g}…{max(q):g})")
    ax.plot([x["fixed_bpp"] for x in rows15], [x["fixed"] for x in rows15], "s--", color="k", mfc="none", ms=8,
            label="fixed-rate models, one per γ")
    for x in rows15:
        ax.annotate(f"γ {x['gamma']:g}", (x["fixed_bpp"], x["fixed"]), xytext=(5, -11), textcoords="offset points",
                    fontsize=7)
    if context is not None:
        ax.plot(context["results"]["bpp"], context["results"]["psnr-rgb"], ":", color="C0",
                label=context_label or context.get("name", "context"))
    ax.set(xlabel="bpp", ylabel="PSNR-RGB (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def visual_comparison(original: np.ndarray, panels, top: int, left: int, size: int, title: str = "",
                      width: float = 2.3):
    """Decoded images side by side, each above its zoom on the ``size`` x ``size`` window at
    (``top``, ``left``), framed in red. ``panels``: ``(label, image, bpp)``, the original
    first with bpp None; each title gives the bpp and the PSNR against ``original``.
    Returns the figure."""
    import matplotlib.pyplot as plt

    from semlib import metrics

    panels = list(panels)
    h, w = original.shape[:2]
    fig, axes = plt.subplots(2, len(panels), figsize=(width * len(panels), width * (h / w + 1) + 0.6), squeeze=False,
                             gridspec_kw={"height_ratios": [h / w, 1]})
    for k, (label, img, bpp) in enumerate(panels):
        for ax in axes[:, k]:
            ax.set_xticks([]), ax.set_yticks([])
        axes[0, k].imshow(img)
        axes[0, k].add_patch(plt.Rectangle((left, top), size, size, fill=False, ec="red", lw=1.2))
        axes[1, k].imshow(img[top:top + size, left:left + size], interpolation="nearest")
        axes[0, k].set_title(label if bpp is None else f"{label}\n{bpp:.3f} bpp, {metrics.psnr(original, img):.2f} dB",
                             fontsize=8)
    axes[1, 0].set_ylabel(f"zoom {size}×{size}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def small_sets_figure(curves: dict, titles: dict, claims_by_dataset: dict, notes: dict | None = None,
                      psnr_anchors=("qarv", "vtm18.0"), figsize_row=(12.5, 4.2)):
    """PSNR and MS-SSIM against rate for each dataset of ``curves`` (dataset -> {name: results}),
    one row per dataset, with the published ``psnr_anchors`` and the claims of
    ``claims_by_dataset`` (dataset -> claims) as black stars; ``notes``: a line of text in each
    row's PSNR panel. Returns the figure."""
    import matplotlib.pyplot as plt

    from semlib.evaluate import plot_rd

    sets = list(curves)
    fig, axes = plt.subplots(len(sets), 2, figsize=(figsize_row[0], figsize_row[1] * len(sets)), squeeze=False)
    for row, ds in enumerate(sets):
        plot_rd(list(curves[ds].values()), "psnr-rgb", anchors=psnr_anchors, dataset=ds, ax=axes[row, 0],
                title=f"{titles.get(ds, ds)}: PSNR")
        plot_rd(list(curves[ds].values()), "ms-ssim-rgb", dataset=ds, ax=axes[row, 1],
                title=f"{titles.get(ds, ds)}: MS-SSIM")
        for ax, key in ((axes[row, 0], "psnr"), (axes[row, 1], "ms_ssim")):
            cl = list(claims_by_dataset.get(ds, ()))
            ax.plot([c.bpp for c in cl], [getattr(c, key) for c in cl], "*", color="k", ms=11,
                    label="paper's claims, Table 4 (full set)")
            ax.set_xlim(0, 2.0)
            ax.legend(fontsize=6.5, loc="lower right")
        if notes and ds in notes:
            axes[row, 0].text(0.02, 0.97, notes[ds], transform=axes[row, 0].transAxes, fontsize=7, va="top")
    fig.tight_layout()
    return fig
