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


# --------------------------------------------------------------------------- notebook 05


def plot_architecture(config, ax=None, dpi: int = 80):
    """The network of a :class:`semlib.models.Config` (or its name), drawn from its sizes: the
    bottom-up encoder (stem, then stages at /4 ... /64, left, fine at the bottom), the top-down
    decoder (latent blocks at /64 ... /8 and plain residual blocks, right, coarse at the top),
    the encoder features each posterior reads, and the gamma embedding that modulates every
    block (the paper's Fig. 4, for semlib's configuration). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    from semlib.models import CONFIGS, Config, estimate_parameters

    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown configuration {config!r}; known: {', '.join(CONFIGS)}")
        config = CONFIGS[config]
    if not isinstance(config, Config):
        raise TypeError(f"need a semlib.models.Config or its name, got {type(config).__name__}")
    c = config
    if ax is None:
        fig, ax = plt.subplots(figsize=(9, 5.8), dpi=dpi, layout="constrained")
    else:
        fig = ax.figure
    ax.set_xlim(0, 10)
    ax.set_ylim(-0.95, 6.45)
    ax.axis("off")
    box_w, box_h = 3.2, 0.72

    def box(x, y, text, colour):
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h, boxstyle="round,pad=0.04",
                                    facecolor=colour, edgecolor="0.3", linewidth=0.8))
        ax.text(x, y, text, ha="center", va="center", fontsize=8)

    def arrow(x0, y0, x1, y1, **style):
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color=style.pop("color", "0.25"),
                                                            lw=0.9, **style))

    enc_x, dec_x = 1.75, 8.25
    strides = (4, 8, 16, 32, 64)
    ys = [0.5 + 1.2 * s for s in range(5)]                  # /4 at the bottom ... /64 at the top
    box(enc_x, -0.45, "image x (H x W x 3)", "white")
    for s in range(5):
        down = "stem: 4x4 patches" if s == 0 else "2x2 patch merge"
        box(enc_x, ys[s], f"/{strides[s]}: {down}, {c.enc_widths[s]} ch\n"
                          f"{c.enc_blocks[s]} ResBlock{'s' if c.enc_blocks[s] != 1 else ''}, {c.kernels[s]}x{c.kernels[s]} dw",
            "#dbe9f6")
        arrow(enc_x, (ys[s - 1] if s else -0.45) + box_h / 2, enc_x, ys[s] - box_h / 2)
    for t in range(5):                                      # decoder scale t is encoder stage 4 - t
        s = 4 - t
        if t < 4:
            lat = f"{c.latents[t]} latent block{'s' if c.latents[t] != 1 else ''} z: {c.z_dims[t]} ch"
            extra = f", {c.dec_blocks[t]} ResBlock{'s' if c.dec_blocks[t] != 1 else ''}" if c.dec_blocks[t] else ""
            box(dec_x, ys[s], f"/{strides[s]}: {c.dec_widths[t]} ch\n{lat}{extra}", "#fde2c8")
            arrow(enc_x + box_w / 2, ys[s], dec_x - box_w / 2, ys[s], color="#c0504d")
        else:
            box(dec_x, ys[s], f"/{strides[s]}: {c.dec_widths[t]} ch\n"
                              f"{c.dec_blocks[t]} ResBlock{'s' if c.dec_blocks[t] != 1 else ''}, 4x4 patch expand",
                "#e2efda")
        if t:
            arrow(dec_x, ys[s + 1] - box_h / 2, dec_x, ys[s] + box_h / 2)
    box(dec_x, -0.45, "reconstruction x̂", "white")
    arrow(dec_x, ys[0] - box_h / 2, dec_x, -0.45 + box_h / 2)
    ax.text((enc_x + dec_x) / 2, ys[4] + 0.5, "posterior q(z_i | x, z_<i, γ) reads the encoder feature",
            ha="center", fontsize=7, color="#c0504d")
    ax.text(enc_x, 6.25, "bottom-up encoder", ha="center", fontsize=9, weight="bold")
    ax.text(dec_x, 6.25, "top-down decoder (prior p(z_i | z_<i, γ))", ha="center", fontsize=9, weight="bold")
    ax.add_patch(FancyBboxPatch((3.9, -0.76), 2.2, 0.62, boxstyle="round,pad=0.04", facecolor="#eeeeee",
                                edgecolor="0.3", linewidth=0.8, linestyle="--"))
    ax.text(5.0, -0.45, f"γ (or a γ map)\n→ embedding, {c.emb_dim} + 1", ha="center", va="center", fontsize=7)
    ax.text(5.0, 0.0, "conditions every block:\nAdaLN scale and shift in each\nResBlock, gains g(γ) of each latent",
            ha="center", va="bottom", fontsize=7, color="0.35")
    ax.set_title(f"semlib '{c.name}': {estimate_parameters(c) / 1e6:.2f} M parameters, "
                 f"{sum(c.latents)} latent blocks, {sum(c.enc_blocks) + sum(c.dec_blocks)} plain ResBlocks",
                 fontsize=10)
    return fig


def plot_training_batch(x, importance, gamma, gamma_range, dpi: int = 72, title: str | None = None):
    """The crops of a training batch (N x 3 x H x W in [0, 1]), their importance maps
    (N x H x W) and gamma maps (N x H/8 x W/8) in three rows, one column per image."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    n = len(x)
    if not (len(importance) == len(gamma) == n) or n == 0:
        raise ValueError(f"need as many crops, importance maps and gamma maps (>= 1), got "
                         f"{n}, {len(importance)}, {len(gamma)}")
    fig, axes = plt.subplots(3, n, figsize=(2 * n, 6), dpi=dpi, squeeze=False)
    for k in range(n):
        axes[0, k].imshow(np.asarray(x[k]).transpose(1, 2, 0))
        axes[1, k].imshow(np.asarray(importance[k]), cmap="inferno", vmin=0, vmax=1)
        g = np.asarray(gamma[k])
        im = axes[2, k].imshow(g, cmap="viridis", norm=LogNorm(*gamma_range))
        axes[2, k].set_xlabel(f"γ from {g.min():.0f} to {g.max():.0f}", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, label in zip(axes[:, 0], ("crop", "importance", "γ per 8x8 block")):
        ax.set_ylabel(label)
    fig.colorbar(im, ax=axes[2].tolist(), shrink=0.8, label="γ (log scale)")
    if title:
        fig.suptitle(title)
    return fig


def plot_training_log(log, title: str = "", dpi: int = 72):
    """Loss, bpp and PSNR against the step, from the records of :func:`semlib.train.read_log`:
    the training lines (random γ) and the validation points at each validated γ."""
    import matplotlib.pyplot as plt

    trn = [r for r in log if r.get("kind") == "train"]
    val = [r for r in log if r.get("kind") == "val"]
    if not trn:
        raise ValueError("the log has no training records")
    fig, axes = plt.subplots(1, 3, figsize=(11, 3), dpi=dpi, layout="constrained")
    steps = [r["step"] for r in trn]
    axes[0].plot(steps, [r["loss"] for r in trn])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("loss R + γD (nats per sub-pixel)")
    for ax, key, unit in ((axes[1], "bpp", "bits per pixel"), (axes[2], "psnr", "PSNR (dB)")):
        ax.plot(steps, [r[key] for r in trn], label="training crops, random γ")
        for g in sorted({r["gamma"] for r in val}):
            pts = [r for r in val if r["gamma"] == g]
            ax.plot([r["step"] for r in pts], [r[key] for r in pts], "o--", ms=4, label=f"validation, γ={g:.0f}")
        ax.set_ylabel(unit)
    axes[2].legend(fontsize=7)
    for ax in axes:
        ax.set_xlabel("step")
    fig.suptitle(title)
    return fig


def plot_modulations(model, gamma_range, blocks: int = 2, channels: int = 5, dpi: int = 72):
    """The AdaLN scale 1 + s(γ) against γ of the ``channels`` most γ-dependent channels of
    ``blocks`` residual blocks of ``model`` (the first one and evenly spaced others)."""
    import matplotlib.pyplot as plt
    import torch

    from semlib.models import ResBlock

    found = [(name, m) for name, m in model.named_modules() if isinstance(m, ResBlock)]
    if not found:
        raise ValueError("the model has no residual blocks")
    chosen = [found[i * len(found) // blocks] for i in range(min(blocks, len(found)))]
    gammas = torch.logspace(math.log10(gamma_range[0]), math.log10(gamma_range[1]), 50)
    fig, axes = plt.subplots(1, len(chosen), figsize=(4.5 * len(chosen), 3), dpi=dpi, sharey=True,
                             squeeze=False, layout="constrained")
    with torch.no_grad():
        emb = model.embedding(gammas.log().view(-1, 1, 1, 1))
        for ax, (name, block) in zip(axes[0], chosen):
            scale = block.modulation(emb).chunk(2, dim=1)[0][:, :, 0, 0]
            for c in scale.std(dim=0).argsort(descending=True)[:channels]:
                ax.semilogx(gammas, 1 + scale[:, c], label=f"channel {int(c)}")
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("γ")
    axes[0, 0].set_ylabel("AdaLN scale 1 + s(γ)")
    axes[0, -1].legend(fontsize=7)
    fig.suptitle("The most γ-dependent channels of residual blocks")
    return fig


def plot_roi_pair(image, pair, gamma_range, dpi: int = 72):
    """Two rows, the ROI file and the uniform one of a :class:`semlib.demo.RoiPair`: the decoded
    image titled with its scores, its error map (one scale for both), and the block γ map."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    rows = (pair.roi, pair.uniform)
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.4), dpi=dpi, layout="constrained")
    errors = [np.abs(np.asarray(image, float) - r.image.astype(float)).mean(axis=2) for r in rows]
    vmax = max(float(np.quantile(np.concatenate([e.ravel() for e in errors]), 0.99)), 1.0)
    maps = (pair.gamma_map, np.full(pair.gamma_map.shape, pair.uniform_gamma))
    for row, r, e, gm in zip(axes, rows, errors, maps):
        row[0].imshow(r.image)
        row[0].set_title(f"{r.name}: {r.bpp:.3f} bpp\nPSNR {r.psnr:.2f} dB, top 20 % {r.psnr_top:.2f} dB, "
                         f"SI-SSIM {r.si_ssim:.4f}", fontsize=8)
        im_e = row[1].imshow(e, cmap="magma", vmin=0, vmax=vmax)
        row[1].set_title("|error| (8-bit levels)", fontsize=8)
        im_g = row[2].imshow(gm, cmap="viridis", norm=LogNorm(*gamma_range), interpolation="nearest")
        row[2].set_title(f"γ per 8x8 block ({r.setting})", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.colorbar(im_e, ax=axes[:, 1].tolist(), shrink=0.6, label="|error| (8-bit levels)")
    fig.colorbar(im_g, ax=axes[:, 2].tolist(), shrink=0.6, label="γ (log scale)")
    fig.suptitle(f"ROI against uniform at the same {pair.equal}")
    return fig


def gamma_rd_figure(curves: dict, reference=None, reference_label: str = "", title: str = "", dpi: int = 80):
    """RD curves of one model (or several) swept over γ: ``curves`` maps a label to the rows
    (γ, bpp, PSNR) of :func:`semlib.evaluate.gamma_sweep`, each point labelled with its γ;
    ``reference``: rows (knob, bpp, PSNR) of a classical codec, drawn grey."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(dpi=dpi)
    for i, (label, rows) in enumerate(curves.items()):
        rows = np.asarray(rows, float)
        ax.plot(rows[:, 1], rows[:, 2], "o-" if i == len(curves) - 1 else "o--", label=label)
        for g, b, p in rows:
            ax.annotate(f"{g:.0f}", (b, p), textcoords="offset points", xytext=(4, -10), fontsize=7)
    if reference is not None:
        reference = np.asarray(reference, float)
        ax.plot(reference[:, 1], reference[:, 2], "s:", color="grey", label=reference_label)
    ax.set_xlabel("bits per pixel (file size)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def live_explorer(make_controls, draw):
    """An ipywidgets explorer: ``make_controls(widgets)`` returns the controls (name -> widget),
    and ``draw(**values)`` redraws into the output under them whenever one moves. Nothing is
    drawn before that, so executing a notebook stays fast. Returns the box to ``display``, or
    None where ipywidgets is not installed (the notebooks' static figures do not need it)."""
    try:
        import ipywidgets as widgets
    except ImportError:
        return None
    controls = make_controls(widgets)
    out = widgets.Output()

    def redraw(change):
        with out:
            out.clear_output(wait=True)
            draw(**{name: w.value for name, w in controls.items()})

    for w in controls.values():
        w.observe(redraw, names="value")
    return widgets.VBox([*controls.values(), out])


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
