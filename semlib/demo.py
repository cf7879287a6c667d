"""The first run: one photo, the whole method, one figure (``semlib demo``, notebook 00).

:func:`run_demo` takes a photo (by default scikit-image's astronaut, which ships with
a dependency: nothing is downloaded) and

1. computes its Grad-CAM importance map (docs/METHOD.md §1);
2. compresses it at a target bpp twice with the learned codec (docs/METHOD.md §4): once with
   one gamma for the whole image, once with the ROI map gamma_i = gamma (T_i / M)^kappa
   of the 8x8 blocks (docs/METHOD.md §2; by default the two-level map of ``--roi auto``,
   semlib.allocation.auto_allocation at the target bpp); both are real ``.semc`` files on disk, at the same
   rate (rate control within ``SEMLIB_TOLERANCE``);
3. decodes both files and checks that the decoder gives the encoder's reconstruction;
4. compresses it with JPEG at the same bpp (Pillow, quality found by bisection);
5. scores the three by bpp (from the file sizes), PSNR, SI-SSIM (docs/METHOD.md §3) and the
   PSNR of the most important 20 % of the pixels, and draws one figure that states what the ROI
   file gained in the top 20 % and what it cost on the whole image against the uniform one.
"""

from __future__ import annotations

import math
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semlib.errors import SemlibError

DEFAULT_IMAGE = "skimage:astronaut"
TOP_FRACTION = 0.2
JPEG_TOLERANCE = 0.01  # bpp; semlib.baselines.encode_at_bpp stops within this of the target
SEMLIB_TOLERANCE = 0.003  # relative; the two learned files are compared at (nearly) the same rate


# --------------------------------------------------------------------------- the demo


@dataclass
class Reconstruction:
    """One coded version of the photo: the file, its size and its scores."""

    name: str                 # "semlib ROI", "semlib uniform", "JPEG"
    path: Path                # the file written
    num_bytes: int            # its size on disk
    bpp: float                # 8 * num_bytes / (H * W)
    psnr: float               # dB, whole image
    si_ssim: float            # SSIM weighted by the importance of each 8x8 block (docs/METHOD.md §3)
    psnr_top: float           # dB, the most important 20 % of the pixels
    image: np.ndarray         # the decoded image, uint8 H x W x 3
    setting: str              # how it was coded: "gamma 152.2", "quality 37"
    matches_encoder: bool = True  # decode(file) == the encoder's own reconstruction
    met_target: bool = True       # the rate control reached the target bpp (within its tolerance)


@dataclass
class DemoResult:
    """Everything :func:`run_demo` computed."""

    image: np.ndarray         # the original, uint8 H x W x 3
    importance: np.ndarray    # Grad-CAM map, float32 H x W in [0, 1]
    label: str | None         # the class Grad-CAM explained (None for a given map)
    target_bpp: float
    kappa: float
    roi: Reconstruction
    uniform: Reconstruction
    jpeg: Reconstruction
    gamma_map: np.ndarray     # block gammas of the ROI file, ceil(H/8) x ceil(W/8)
    figure_path: Path | None
    allocation: dict = field(default_factory=dict)     # semlib.allocation.allocate options of the ROI file
    figure: object = field(repr=False, default=None)   # the matplotlib Figure
    seconds: dict = field(default_factory=dict)        # time of each step

    @property
    def rows(self) -> list[Reconstruction]:
        return [self.roi, self.uniform, self.jpeg]

    @property
    def top_gain(self) -> float:
        """PSNR of the top 20 % of the pixels, ROI file minus uniform file (dB)."""
        return self.roi.psnr_top - self.uniform.psnr_top

    @property
    def whole_cost(self) -> float:
        """PSNR of the whole image, uniform file minus ROI file (dB): what the ROI cost."""
        return self.uniform.psnr - self.roi.psnr

    def verdict(self) -> str:
        """One line: the ROI file against the uniform one, at their (equal) rates."""
        return (f"ROI vs uniform at {self.roi.bpp:.3f} vs {self.uniform.bpp:.3f} bpp: "
                f"top {TOP_FRACTION:.0%} PSNR {self.top_gain:+.2f} dB, whole image {-self.whole_cost:+.2f} dB")

    def table(self) -> str:
        """The scores as a small plain-text table."""
        top = f"PSNR top {TOP_FRACTION:.0%} dB"
        lines = [f"{'':15s} {'bytes':>7s} {'bpp':>6s} {'PSNR dB':>8s} {'SI-SSIM':>8s} {top:>16s}  setting"]
        for r in self.rows:
            lines.append(f"{r.name:15s} {r.num_bytes:7d} {r.bpp:6.3f} {r.psnr:8.2f} {r.si_ssim:8.4f} "
                         f"{r.psnr_top:16.2f}  {r.setting}")
        return "\n".join(lines)


def load_demo_image(image) -> np.ndarray:
    """``'skimage:NAME'`` (a photo shipped with scikit-image), a path, or an image array."""
    from semlib import data

    if isinstance(image, str):
        return data.load_image(data.image_path(image))
    if isinstance(image, Path):
        return data.load_image(image)
    return data.as_array(image)


def check_settings(bpp, kappa) -> tuple[float, float]:
    """The target bpp must be a finite number > 0, kappa a finite number >= 0."""
    try:
        b, k = float(bpp), float(kappa)
    except (TypeError, ValueError):
        raise SemlibError(f"bpp and kappa must be numbers, got {bpp!r} and {kappa!r}") from None
    if not (math.isfinite(b) and b > 0):
        raise SemlibError(f"bpp must be a finite number > 0, got {bpp!r}")
    if not (math.isfinite(k) and k >= 0):
        raise SemlibError(f"kappa must be a finite number >= 0, got {kappa!r}")
    return b, k


def _score(name, path, original, decoded, importance, setting, matches=True, met=True) -> Reconstruction:
    from semlib import metrics

    h, w = original.shape[:2]
    n = path.stat().st_size
    return Reconstruction(
        name=name, path=path, num_bytes=n, bpp=8.0 * n / (h * w),
        psnr=float(metrics.psnr(original, decoded)),
        si_ssim=float(metrics.si_ssim(original, decoded, importance)),
        psnr_top=metrics.roi_psnr(original, decoded, importance, TOP_FRACTION),
        image=decoded, setting=setting + ("" if met else " (target not met)"),
        matches_encoder=matches, met_target=met)


def _write(path: Path, data: bytes) -> Path:
    try:
        path.write_bytes(data)
    except OSError as e:
        raise SemlibError(f"cannot write {path}: {e.strerror or e}") from None
    return path


def _output_place(out) -> tuple[Path | None, Path, str]:
    """(figure path, folder for the files, their stem) for ``out``; a temporary folder if None."""
    if out is None:
        return None, Path(tempfile.mkdtemp(prefix="semlib_demo_")), "demo"
    fig_path = Path(out)
    if fig_path.suffix.lower() != ".png":
        raise SemlibError(f"{fig_path}: the figure is written as PNG, give a name ending in .png")
    if fig_path.is_dir():
        raise SemlibError(f"{fig_path} is a directory")
    folder = fig_path.parent if str(fig_path.parent) else Path(".")
    if not folder.is_dir():
        raise SemlibError(f"output folder {folder} does not exist")
    return fig_path, folder, fig_path.stem


# Long: the demo's story in order (map, two learned files, JPEG, scores, figure), one step a few lines.
def run_demo(image=DEFAULT_IMAGE, bpp: float = 1.0, kappa: float | None = None, checkpoint=None,
             out="demo.png", progress: bool = True, importance=None, model=None,
             allocation: dict | None = None, refine: int = 0) -> DemoResult:
    """Compress one photo with and without ROI and with JPEG at ``bpp``; score and draw it.

    ``image``: ``'skimage:NAME'``, a path, or an RGB array. ``checkpoint``: the codec's
    weights (None: the checkpoint shipped with semlib; ``model`` may be given instead).
    ``out``: the figure (PNG); the three files are written beside it as
    ``<stem>_roi.semc``, ``<stem>_uniform.semc`` and ``<stem>_jpeg.jpg`` (existing files
    of these names are replaced). With ``out=None`` nothing is saved but the files, which
    go to a temporary folder. ``importance``: a precomputed map (skips Grad-CAM).
    ``kappa``: the ROI strength (None: :data:`semlib.codec.DEFAULT_KAPPA`).
    ``progress``: print each step and the table. ``allocation``: options of
    :func:`semlib.allocation.allocate` for the ROI file; the missing ones come from
    :func:`semlib.allocation.auto_allocation` at ``bpp``, the default of ``--roi auto``
    (``top=None``: the paper's map). ``refine``: steps of encoder-side refinement for both learned files
    (:mod:`semlib.refine`; about one decoding each), so that both are coded the same way.
    """
    from semlib.allocation import auto_allocation
    from semlib import baselines, codec
    from semlib import importance as imp

    kappa = codec.DEFAULT_KAPPA if kappa is None else kappa
    target, kappa = check_settings(bpp, kappa)
    if isinstance(refine, bool) or not isinstance(refine, int) or not 0 <= refine <= codec.MAX_REFINE:
        raise SemlibError(f"refine must be a whole number of steps in [0, {codec.MAX_REFINE}], got {refine!r}")
    alloc = {**auto_allocation(target), **(allocation or {})}
    say = print if progress else (lambda *a, **k: None)
    seconds = {}
    t = time.perf_counter()

    def lap(step):
        nonlocal t
        now = time.perf_counter()
        seconds[step] = now - t
        t = now
        return seconds[step]

    img = load_demo_image(image)
    h, w = img.shape[:2]
    fig_path, folder, stem = _output_place(out)
    model, _ = codec.get_model(model, checkpoint)   # fails early, before Grad-CAM, if missing
    lap("load")

    if importance is None:
        cam = imp.gradcam(img)
        g, label = cam.map, cam.name
        say(f"importance map (Grad-CAM, class '{label}' p={cam.probability:.2f}) "
            f"{w}x{h} ... {lap('importance'):.1f} s")
    else:
        g, label = imp.importance_map(img, mask=importance), None
        lap("importance")

    coded = {}
    for key, roi in (("roi", g), ("uniform", None)):
        enc = codec.encode_image(img, target_bpp=target, importance=roi, kappa=kappa, model=model,
                                 tolerance=SEMLIB_TOLERANCE, refine=refine, **(alloc if roi is not None else {}))
        path = _write(folder / f"{stem}_{key}.semc", enc.data)
        decoded = codec.decode(path.read_bytes(), model=model)
        matches = bool(np.array_equal(decoded, enc.x_hat))
        if not matches:
            warnings.warn(f"{path}: the decoded image differs from the encoder's reconstruction", stacklevel=2)
        if enc.met_target is False:
            warnings.warn(f"semlib {key}: target {target:g} bpp not reachable with this checkpoint; "
                          f"closest {enc.bpp:.3f} bpp at gamma {enc.gamma:.1f}", stacklevel=2)
        coded[key] = (enc, path, decoded, matches)
        say(f"semlib {key:7s} {enc.bpp:.3f} bpp (gamma {enc.gamma:.1f}), decoded "
            f"{'= encoder' if matches else 'DIFFERS'} ... {lap(key):.1f} s")

    jpeg = baselines.encode_at_bpp("jpeg", img, target, tol=JPEG_TOLERANCE)
    jpath = _write(folder / f"{stem}_jpeg.jpg", jpeg.data)
    jdec = baselines.get_codec("jpeg").decode(jpath.read_bytes())
    lap("jpeg")

    rows = {}
    for key, (enc, path, decoded, matches) in coded.items():
        name = "semlib ROI" if key == "roi" else "semlib uniform"
        setting = (f"gamma {enc.gamma:.1f}" + (f", kappa {kappa:g}, {_describe(alloc)}" if key == "roi" else "")
                   + (f", refine {refine}" if refine else ""))
        rows[key] = _score(name, path, img, decoded, g, setting, matches, enc.met_target is not False)
    jpeg_met = abs(jpeg.bpp - target) <= JPEG_TOLERANCE
    rows["jpeg"] = _score("JPEG", jpath, img, jdec, g, f"quality {jpeg.quality:g}", True, jpeg_met)
    result = DemoResult(image=img, importance=g, label=label, target_bpp=target, kappa=kappa,
                        roi=rows["roi"], uniform=rows["uniform"], jpeg=rows["jpeg"],
                        gamma_map=coded["roi"][0].gamma_map, figure_path=fig_path, seconds=seconds,
                        allocation=alloc)
    lap("metrics")

    result.figure = plot_demo(result)
    if fig_path is not None:
        result.figure.savefig(fig_path)
    lap("figure")
    say("")
    say(result.table())
    say(result.verdict())
    say("")
    where = f"{fig_path}; files " if fig_path is not None else "files "
    say(f"wrote {where}{', '.join(str(r.path) for r in result.rows)} "
        f"({sum(v for k, v in seconds.items() if k != 'load'):.1f} s)")
    return result


def _describe(alloc: dict) -> str:
    """The ROI map in a few words: 'top 20 % x4' or "paper's map"."""
    if alloc.get("top") is None:
        return "paper's map" + (f", {alloc['steps']} levels" if alloc.get("steps") else "")
    return f"top {alloc['top']:.0%} x{alloc.get('boost', 3.0):g}"


# --------------------------------------------------------------------------- the figure


def plot_demo(result: DemoResult, compact: bool = False, dpi: int = 80):
    """A 3 x 3 figure: original / importance / block gamma; the three reconstructions
    titled with bpp, PSNR and SI-SSIM; their error maps on one colour scale.
    ``compact``: only the last two rows, smaller (for a slider that redraws it)."""
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    h, w = result.image.shape[:2]
    panel = 2.6 if compact else 3.6
    rows = 2 if compact else 3
    fig = Figure(figsize=(3 * panel, rows * panel * h / w + 0.8 * rows), dpi=dpi, layout="constrained")
    axes = fig.subplots(rows, 3)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    size = 8 if compact else 10

    if not compact:
        g = result.importance
        threshold = np.quantile(g, 1.0 - TOP_FRACTION)
        axes[0, 0].imshow(result.image)
        axes[0, 0].set_title(f"original, {w}x{h} px", fontsize=size)
        im = axes[0, 1].imshow(g, cmap="inferno", vmin=0, vmax=1)
        if g.max() > threshold:
            axes[0, 1].contour(g, levels=[threshold], colors="cyan", linewidths=1.0)
        what = f"Grad-CAM for '{result.label}'" if result.label else "importance map"
        axes[0, 1].set_title(f"{what}\n(cyan: top {TOP_FRACTION:.0%} of pixels)", fontsize=size)
        fig.colorbar(im, ax=axes[0, 1], location="bottom", shrink=0.8, aspect=30, label="importance")
        gm = result.gamma_map
        lo, hi = float(gm.min()), float(gm.max())
        norm = LogNorm(lo, hi) if hi > lo else LogNorm(lo / 2, hi * 2)
        im = axes[0, 2].imshow(gm, cmap="viridis", norm=norm, extent=(0, w, h, 0), interpolation="nearest")
        axes[0, 2].set_title(f"ROI: gamma per 8x8 block\n({_describe(result.allocation)}, kappa {result.kappa:g})",
                             fontsize=size)
        cb = fig.colorbar(im, ax=axes[0, 2], location="bottom", shrink=0.8, aspect=30, label="gamma (log scale)")
        ticks = [norm.vmin, math.sqrt(norm.vmin * norm.vmax), norm.vmax]
        cb.set_ticks(ticks, labels=[f"{v:.0f}" for v in ticks])
        cb.ax.xaxis.set_minor_formatter(NullFormatter())

    recon, err = axes[-2], axes[-1]
    errors = [np.abs(result.image.astype(np.float32) - r.image.astype(np.float32)).mean(axis=2)
              for r in result.rows]
    vmax = max(float(np.quantile(np.concatenate([e.ravel() for e in errors]), 0.99)), 1.0)
    for col, (r, e) in enumerate(zip(result.rows, errors)):
        recon[col].imshow(r.image)
        recon[col].set_title(f"{r.name}: {r.bpp:.3f} bpp\nPSNR {r.psnr:.2f} dB, SI-SSIM {r.si_ssim:.4f}",
                             fontsize=size)
        im = err[col].imshow(e, cmap="magma", vmin=0, vmax=vmax)
        err[col].set_title(f"{r.name} |error|\nPSNR in top {TOP_FRACTION:.0%}: {r.psnr_top:.2f} dB",
                           fontsize=size)
    fig.colorbar(im, ax=list(err), location="bottom", shrink=0.5, aspect=40,
                 label="|error| (8-bit levels, mean of RGB; one scale for the three)")
    fig.suptitle(f"semlib demo: {result.target_bpp:g} bpp target, learned codec with and without "
                 f"ROI vs JPEG\n{result.verdict()}", fontsize=size + 2)
    return fig


# --------------------------------------------------------------------------- reading the result


def reachable_bpp(image, importance=None, kappa: float | None = None, model=None, checkpoint=None,
                  allocation: dict | None = None) -> tuple[float, float]:
    """(lowest, highest) bpp the model can code ``image`` at: the files at the two ends of its
    trained gamma range (:func:`semlib.codec.trained_range`), where rate control stops. With an
    ``importance`` map the ROI file's range is intersected with the uniform one, so that a
    target inside the result is reachable by both files of :func:`run_demo` (``allocation`` as
    there)."""
    from semlib import codec
    from semlib.allocation import AUTO_ALLOCATION

    kappa = codec.DEFAULT_KAPPA if kappa is None else kappa
    alloc = {**AUTO_ALLOCATION, **(allocation or {})}
    model, _ = codec.get_model(model, checkpoint)
    img = load_demo_image(image)
    pixels = img.shape[0] * img.shape[1]
    ends = []
    for roi in ([None] if importance is None else [None, importance]):
        ends.append([8 * len(codec.encode(img, gamma=g, importance=roi, kappa=kappa, model=model,
                                          **(alloc if roi is not None else {}))) / pixels
                     for g in codec.trained_range(model)])
    return max(e[0] for e in ends), min(e[1] for e in ends)


def _signed(value: float, unit: str, digits: int = 2) -> str:
    return f"{value:+.{digits}f}{unit}"


def roi_verdict(roi: Reconstruction, uniform: Reconstruction, top: float = TOP_FRACTION, tie_ssim: float = 0.002) -> str:
    """One plain sentence, from the numbers, on what the ROI file gains and what it costs
    against the uniform one at (about) the same bpp: the PSNR of the most important ``top``
    of the pixels, the whole-image PSNR and SI-SSIM (a change under ``tie_ssim`` is a tie)."""
    d_top, d_all, d_si = roi.psnr_top - uniform.psnr_top, roi.psnr - uniform.psnr, roi.si_ssim - uniform.si_ssim
    bpp = f"At {roi.bpp:.3f} bpp against {uniform.bpp:.3f} bpp"
    if d_top > 0:
        gain = (f"the ROI file gains {_signed(d_top, ' dB')} of PSNR in the most important {top * 100:.0f} % of the "
                f"pixels ({roi.psnr_top:.2f} against {uniform.psnr_top:.2f} dB)")
    else:
        gain = (f"the ROI file does not gain in the most important {top * 100:.0f} % of the pixels "
                f"({_signed(d_top, ' dB')}: {roi.psnr_top:.2f} against {uniform.psnr_top:.2f} dB)")
    if d_all < 0:
        cost = (f"it pays with the rest of the image: {_signed(d_all, ' dB')} of whole-image PSNR "
                f"({roi.psnr:.2f} against {uniform.psnr:.2f} dB), since the same bits moved from the background "
                f"to the important blocks")
    else:
        cost = f"and the whole-image PSNR does not fall ({_signed(d_all, ' dB')})"
    if abs(d_si) < tie_ssim:
        si = f"SI-SSIM is about the same ({roi.si_ssim:.4f} against {uniform.si_ssim:.4f})"
    else:
        si = (f"SI-SSIM {'rises' if d_si > 0 else 'falls'} by {abs(d_si):.4f} "
              f"({roi.si_ssim:.4f} against {uniform.si_ssim:.4f})")
    return f"{bpp}, {gain}; {cost}. {si}."


def equal_bpp_rows(roi_results: dict, uniform_results: dict,
                   metrics=("psnr-roi20", "si-ssim", "ms-ssim-rgb", "psnr-rgb")) -> list[dict]:
    """ROI against uniform at each target bpp the two results files (CompressAI shape, from
    ``semlib eval --target-bpp``) share: one row per target with the bpp of each and, for
    each of ``metrics``, (roi, uniform, roi - uniform)."""
    r, u = roi_results["results"], uniform_results["results"]
    if "target_bpp" not in r or "target_bpp" not in u:
        raise SemlibError("both results must come from a target-bpp run (a 'target_bpp' list in 'results')")
    rows = []
    for i, t in enumerate(r["target_bpp"]):
        matches = [j for j, v in enumerate(u["target_bpp"]) if abs(v - t) < 1e-9]
        if not matches:
            continue
        j = matches[0]
        row = {"target_bpp": t, "bpp": (r["bpp"][i], u["bpp"][j])}
        for m in metrics:
            if m in r and m in u:
                row[m] = (r[m][i], u[m][j], r[m][i] - u[m][j])
        rows.append(row)
    return rows



def format_equal_bpp_rows(rows: list[dict]) -> str:
    """The rows of :func:`equal_bpp_rows` as a text table: target, the two files' bpp, and the
    ROI - uniform difference of the top-20 % PSNR, SI-SSIM, MS-SSIM and whole-image PSNR."""
    columns = (("psnr-roi20", "top-20% PSNR", "{:+10.2f} dB"), ("si-ssim", "SI-SSIM", "{:+8.4f}"),
               ("ms-ssim-rgb", "MS-SSIM", "{:+8.4f}"), ("psnr-rgb", "PSNR", "{:+5.2f} dB"))
    lines = [f"{'target':>6s} {'bpp ROI/uni':>12s} " + " ".join(f"{title:>{len(fmt.format(0))}s}"
                                                               for _, title, fmt in columns)]
    for r in rows:
        cells = [fmt.format(r[m][2]) if m in r else "-".rjust(len(fmt.format(0))) for m, _, fmt in columns]
        lines.append(f"{r['target_bpp']:6.2f} {r['bpp'][0]:5.3f}/{r['bpp'][1]:5.3f} " + " ".join(cells))
    return "\n".join(lines)


# --------------------------------------------------------------------------- ROI against uniform


@dataclass
class RoiPair:
    """An ROI file and the uniform file it is compared with (:func:`roi_against_uniform`)."""

    roi: Reconstruction
    uniform: Reconstruction
    gamma_map: np.ndarray     # the ROI file's block gammas (clipped to the trained range)
    uniform_gamma: float      # the uniform file's one gamma
    equal: str                # what the two share: "bpp" or "gamma"


def roi_against_uniform(image, importance, gamma: float, kappa: float | None = None, equal: str = "bpp",
                        model=None, checkpoint=None, allocation: dict | None = None) -> RoiPair:
    """The ROI file at base ``gamma`` and the uniform file to compare it with: at the ROI file's
    bpp (``equal='bpp'``, by rate control) or at the same ``gamma`` (``equal='gamma'``). Both are
    decoded and scored like :func:`run_demo`'s rows (their files go to a temporary folder).
    ``allocation``: as in :func:`run_demo` (missing options from
    :data:`semlib.allocation.AUTO_ALLOCATION`, the allocation of ``--roi auto``)."""
    from semlib import codec

    if equal not in ("bpp", "gamma"):
        raise SemlibError(f"equal must be 'bpp' or 'gamma', got {equal!r}")
    from semlib.allocation import AUTO_ALLOCATION

    kappa = codec.DEFAULT_KAPPA if kappa is None else kappa
    alloc = {**AUTO_ALLOCATION, **(allocation or {})}
    model, _ = codec.get_model(model, checkpoint)
    img = load_demo_image(image)
    folder = Path(tempfile.mkdtemp(prefix="semlib_pair_"))
    enc = codec.encode_image(img, gamma=gamma, importance=importance, kappa=kappa, model=model, **alloc)
    if equal == "bpp":
        uni = codec.encode_image(img, target_bpp=enc.bpp, model=model)
    else:
        uni = codec.encode_image(img, gamma=gamma, model=model)
    rows = []
    for key, e, setting in (("roi", enc, f"gamma {enc.gamma:.1f}, kappa {kappa:g}"),
                            ("uniform", uni, f"gamma {uni.gamma:.1f}")):
        path = _write(folder / f"{key}.semc", e.data)
        decoded = codec.decode(e.data, model=model)
        rows.append(_score(f"semlib {'ROI' if key == 'roi' else key}", path, img, decoded, importance, setting,
                           bool(np.array_equal(decoded, e.x_hat)), e.met_target is not False))
    return RoiPair(rows[0], rows[1], enc.gamma_map, uni.gamma, equal)
