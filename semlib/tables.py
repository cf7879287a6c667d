"""The paper's reported numbers, as CLAIMS, and the tables that set them beside what can
be looked up or measured here (docs/METHOD.md §7).

:data:`CLAIMS` holds every number of the paper's Tables 1–4 (the paper behind this
project, whose own method is the "Song method"; Kodak at 1.12, 0.75 and 1.25 bpp, and the
ablation on Kodak, Tecnick and CLIC 2022). Each :class:`Claim` names the table, row and
column it was copied from. They are what the paper *says*, never results of this project.

A row of a comparison table (:func:`comparison_rows`) puts four things side by side:

- the paper's figure (the claim);
- the published anchor at the same bpp, where a public RD curve of that method exists
  (:func:`semlib.evaluate.load_anchors`), linearly interpolated in bpp, never
  extrapolated outside the curve;
- the value measured here, where the method runs here: the measured RD curve
  interpolated at that bpp, and the mean over images encoded *at* that bpp;
- a one-line note of what differs.

A method with no public code or weights here is never filled in: its cells say
:data:`NOT_MEASURED`. The project's own learned codec says :data:`PENDING` when no
trained checkpoint is found. Tables are lists of dicts; :func:`markdown` renders them
(no pandas needed). :func:`sweep` measures rate, PSNR and MS-SSIM of a codec on large
images (Tecnick, CLIC), and :func:`important_window` picks the zoomed region of a
visual comparison from the Grad-CAM map (the paper's Figs. 13–14).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NOT_MEASURED = "not measured: no public code/weights here"
PENDING = "not measured here: no trained checkpoint found"
TARGET_SLACK = 0.05                 # an encoding whose mean bpp misses the target by more than 5 % is not "at" it
OWN_METHOD = "Song method"          # the paper's name for its own method
PAPER = "the paper"                 # paper/000_61c259a5c6b3995e.txt in the project's shared folder


@dataclass(frozen=True)
class Claim:
    """One number pair of the paper's Tables 1–4: what the paper reports, not a measurement.

    ``row`` and ``column`` are the paper's own labels, so :attr:`citation` points at the
    cell. ``method`` is the method the numbers belong to; ``dataset`` uses the names of
    :mod:`semlib.anchors` ("kodak", "tecnick", "clic2022").
    """

    table: int
    row: str
    column: str
    method: str
    dataset: str
    bpp: float
    psnr: float          # dB
    ms_ssim: float
    ref: str = ""        # the method's entry in the paper's bibliography, "[1]"
    year: int | None = None

    @property
    def citation(self) -> str:
        return f"{PAPER}, Table {self.table}, row '{self.row}', column {self.column}"

    @property
    def label(self) -> str:
        """'JPEG [1] (1991)' or 'Song method (the paper)' or 'Baseline, Kodak'."""
        if self.table == 4:
            return f"{self.method} ({self.row})"
        if self.method == OWN_METHOD:
            return f"{OWN_METHOD} (the paper's method)"
        return f"{self.method} {self.ref} ({self.year})".strip()


def _rows(table: int, dataset: str, bpp: float, rows) -> list[Claim]:
    return [Claim(table, method, "PSNR / MS-SSIM", method, dataset, bpp, psnr, msssim, ref, year)
            for year, ref, method, psnr, msssim in rows]


# The paper's Tables 1–3: (Literature date, Bibliography, Module, PSNR, MS-SSIM), as printed.
TABLE1 = _rows(1, "kodak", 1.12, [
    (1991, "[1]", "JPEG", 33.2, 0.950),
    (2002, "[2]", "JPEG2000", 37.5, 0.960),
    (2017, "[3]", "BPG", 38.5, 0.973),
    (2023, "[29]", "TCM", 39.5, 0.994),
    (2021, "[30]", "INN", 38.2, 0.992),
    (None, "", OWN_METHOD, 40.1, 0.998),
])
TABLE2 = _rows(2, "kodak", 0.75, [
    (2019, "[18]", "DSSLIC", 39.8, 0.991),
    (2021, "[31]", "EDMS", 34.2, 0.993),
    (2018, "[32]", "DeepSIC", 37.3, 0.985),
    (2023, "[33]", "ADAPTIVE DIC", 39.7, 0.992),
    (None, "", OWN_METHOD, 40.1, 0.996),
])
TABLE3 = _rows(3, "kodak", 1.25, [
    (2020, "[9]", "MAE", 38.0, 0.985),
    (2021, "[10]", "Coarse-to-Fine", 41.2, 0.987),
    (2022, "[11]", "ELIC", 38.8, 0.993),
    (2023, "[12]", "QVRF", 39.8, 0.995),
    (None, "", OWN_METHOD, 41.5, 0.997),
])
# The paper's Table 4 (ablation): rows are datasets (with their bpp), columns the two models.
_T4 = [("Kodak", "kodak", 1.124, (40.34, 0.995), (40.57, 0.998)),
       ("Tecnick TESTIMAGES", "tecnick", 0.846, (40.40, 0.993), (40.42, 0.996)),
       ("CLIC 2022", "clic2022", 0.836, (39.42, 0.992), (39.41, 0.994))]
TABLE4 = [Claim(4, row, col, col, ds, bpp, v[0], v[1])
          for row, ds, bpp, base, sem in _T4
          for col, v in (("Baseline", base), ("Baseline+semantic", sem))]
CLAIMS: dict[int, list[Claim]] = {1: TABLE1, 2: TABLE2, 3: TABLE3, 4: TABLE4}
TABLE_TITLES = {
    1: "Table 1: Kodak at 1.12 bpp, classical and learned codecs",
    2: "Table 2: Kodak at 0.75 bpp, semantic methods",
    3: "Table 3: Kodak at 1.25 bpp, variable-rate methods",
    4: "Table 4: ablation, baseline vs baseline + semantic",
}
# Fig. 15 gives no numbers, only curves: fixed-rate models at these gammas (dashed) and one
# gamma-conditioned model at FIG15_VARIABLE_GAMMAS (the paper, §3.6).
FIG15_FIXED_GAMMAS = (32, 128, 512, 2048)
FIG15_VARIABLE_GAMMAS = (32, 64, 128, 256, 512, 1024, 2048)
FIG15_CLAIM = ("one γ-conditioned model 'achieves a continuous variable rate compression while outperforming "
               "the baseline + semantic at all rates', its PSNR-bpp curve 'close to the fixed rate performance' "
               "(the paper, §3.6 and Fig. 15; no numbers are given)")


def claims(table: int) -> list[Claim]:
    """The claims of the paper's Table ``table`` (1–4), in the paper's row order."""
    if table not in CLAIMS:
        raise ValueError(f"the paper has Tables 1-4, not {table!r}")
    return list(CLAIMS[table])


# ---------------------------------------------------------------------------------------
# What each claimed method corresponds to here


@dataclass(frozen=True)
class Counterpart:
    """Where a claimed method can be looked up (``anchor``: a curve of semlib/anchors)
    or run (``codec``: a key of the measured results, e.g. a classical codec name or
    ``"semlib"``); ``learned``: it is the project's own model (pending until trained)."""

    anchor: str | None = None
    codec: str | None = None
    note: str = ""
    learned: bool = False


COUNTERPARTS: dict[str, Counterpart] = {
    "JPEG": Counterpart("jpeg", "jpeg", "the paper names no encoder or settings; anchor: CompressAI's Pillow 7.1.2 "
                        "defaults; here: libjpeg-turbo 4:2:0, optimised Huffman tables"),
    "JPEG2000": Counterpart("jpeg2000", "jpeg2000", "the paper names no encoder; anchor: CompressAI's ffmpeg 3.4.6; "
                            "here: OpenJPEG, 9/7 wavelet with the colour transform"),
    "BPG": Counterpart("bpg444", "hevc", "anchor: BPG 0.9.8 4:4:4 (CompressAI); here: HEVC intra 4:4:4 (x265) in "
                       "HEIF, BPG's coder in another container; the paper does not say which BPG settings"),
    "ELIC": Counterpart("elic2022", None, "anchor: numbers from the ELIC paper as collected by CompressAI"),
    OWN_METHOD: Counterpart(None, "semlib", "here: the project's γ-conditioned hierarchical VAE (the shipped "
                            "'small' configuration), far smaller and shorter-trained than the paper's", learned=True),
    "Baseline+semantic": Counterpart(None, "semlib", "here: the project's γ-conditioned model with the SI-SSIM "
                                     "loss; the paper's is a fixed-rate model", learned=True),
    "Baseline": Counterpart(None, "semlib-baseline", "here: a fixed-rate model (one γ) with β = 0, no semantic loss "
                            "(docs/METHOD.md §6), trained to a scaled-down budget (scripts/train_ablations.sh)", learned=True),
}
# Published curves shown beside every table for context (they exist for all three datasets).
CONTEXT_ANCHORS = ("vtm18.0", "qarv")


# ---------------------------------------------------------------------------------------
# Reading a value off a curve


def curve_points(curve: dict, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(bpp, values) of a results dict or anchor curve, sorted by bpp; None when it has
    no values of ``metric``."""
    r = curve.get("results", {})
    if metric not in r or r[metric] is None:
        return None
    pts = sorted((float(b), float(v)) for b, v in zip(r["bpp"], r[metric]) if b is not None and v is not None)
    if not pts:
        return None
    x, y = map(np.asarray, zip(*pts))
    return x, y


def value_at(curve: dict, bpp: float, metric: str = "psnr-rgb") -> float | None:
    """``metric`` of ``curve`` at ``bpp``, linearly interpolated between its two nearest
    points; None outside the curve's bpp range (no extrapolation) or without the metric."""
    pts = curve_points(curve, metric)
    if pts is None:
        return None
    x, y = pts
    if not (x[0] <= bpp <= x[-1]):
        return None
    return float(np.interp(bpp, x, y))


def rate_at(curve: dict, value: float, metric: str = "psnr-rgb") -> float | None:
    """The bpp at which ``curve`` first reaches ``value`` of ``metric`` (linear between
    its points); None when the curve never reaches it or starts above it."""
    pts = curve_points(curve, metric)
    if pts is None:
        return None
    x, y = pts
    for k in range(len(x) - 1):
        lo, hi = y[k], y[k + 1]
        if lo <= value <= hi and hi > lo:
            return float(x[k] + (value - lo) / (hi - lo) * (x[k + 1] - x[k]))
    return None


def at_target(results: dict, bpp: float, metric: str) -> float | None:
    """Mean ``metric`` of a target-bpp results dict (``evaluate_codec(target_bpps=...)``)
    at the target ``bpp``; None when ``bpp`` was not one of its targets."""
    r = results.get("results", {})
    for j, t in enumerate(r.get("target_bpp", [])):
        if abs(float(t) - bpp) < 1e-9:
            v = r.get(metric, [None] * (j + 1))[j]
            return None if v is None else float(v)
    return None


def best_published(anchors: dict[str, dict], bpp: float, metric: str = "psnr-rgb") -> tuple[str, float] | None:
    """(name, value) of the published curve with the highest ``metric`` at ``bpp``,
    among those that cover that bpp; None when none does."""
    vals = [(v, name) for name, c in anchors.items() if (v := value_at(c, bpp, metric)) is not None]
    if not vals:
        return None
    v, name = max(vals)
    return name, v


# ---------------------------------------------------------------------------------------
# Table rows


def pair(psnr: float | None, ms_ssim: float | None, digits: int = 2) -> str:
    """'33.46 dB / 0.9827'; a missing value is shown as 'n/a'."""
    p = "n/a" if psnr is None else f"{psnr:.{digits}f} dB"
    m = "n/a" if ms_ssim is None else f"{ms_ssim:.4f}"
    return f"{p} / {m}"


def _anchor_cell(c: dict, bpp: float) -> tuple[str, float | None, float | None]:
    p, m = value_at(c, bpp, "psnr-rgb"), value_at(c, bpp, "ms-ssim-rgb")
    label = f"{c.get('label', c.get('name'))}, {c.get('source', '?').split(':')[0]}"
    if p is None:
        x = curve_points(c, "psnr-rgb")[0]
        text = f"curve covers {x[0]:.3f}–{x[-1]:.3f} bpp only: no value at {bpp:g} (not extrapolated) [{label}]"
        return text, None, None
    return f"{pair(p, m)} (published, interpolated) [{label}]", p, m


def fixed_point_cell(results: dict) -> str:
    """'34.10 dB / 0.9850 at 1.203 bpp (fixed-rate model, its own rate; 24 images)'."""
    b, p = point(results)
    m = results.get("results", {}).get("ms-ssim-rgb") or [None]
    n = results.get("meta", {}).get("num_images", "?")
    return f"{pair(p, m[0])} at {b:.3f} bpp (fixed-rate model, its own rate; {n} images)"


def _measured_cells(cp: Counterpart, bpp: float, curves: dict, encoded: dict, points: dict | None = None) -> dict:
    out = {"curve_psnr": None, "curve_ms_ssim": None, "enc_psnr": None, "enc_ms_ssim": None}
    if cp.codec is None:
        out.update(curve=NOT_MEASURED, encoded=NOT_MEASURED)
        return out
    missing = PENDING if cp.learned else "not run here"
    c = curves.get(cp.codec)
    if c is None and cp.codec in (points or {}):
        out.update(curve=fixed_point_cell(points[cp.codec]), encoded="— (a fixed-rate model has one rate)")
        return out
    if c is None:
        out["curve"] = missing
    else:
        p, m = value_at(c, bpp, "psnr-rgb"), value_at(c, bpp, "ms-ssim-rgb")
        text = f"{pair(p, m)} (interpolated)" if p is not None else f"outside the measured curve at {bpp:g} bpp"
        out.update(curve_psnr=p, curve_ms_ssim=m, curve=text)
    e = encoded.get(cp.codec)
    if e is None:
        out["encoded"] = missing
    else:
        p, m = at_target(e, bpp, "psnr-rgb"), at_target(e, bpp, "ms-ssim-rgb")
        reached = at_target(e, bpp, "bpp")
        n = e.get("meta", {}).get("num_images", "?")
        if p is None:
            out["encoded"] = f"not encoded at {bpp:g} bpp"
        elif abs(reached - bpp) > TARGET_SLACK * bpp:
            out["encoded"] = f"target {bpp:g} bpp not reached: {pair(p, m)} at {reached:.3f} bpp ({n} images)"
        else:
            out.update(enc_psnr=p, enc_ms_ssim=m, encoded=f"{pair(p, m)} at {reached:.3f} bpp ({n} images)")
    return out


def comparison_row(claim: Claim, anchors: dict[str, dict], curves: dict[str, dict] | None = None,
                   encoded: dict[str, dict] | None = None, points: dict[str, dict] | None = None) -> dict:
    """One row: the claim, the published anchor at its bpp, and what was measured here.

    ``anchors``: the published curves of the claim's dataset (:func:`semlib.evaluate.load_anchors`).
    ``curves``: measured RD curves of that dataset by codec name (results dicts, e.g. from
    ``results/kodak/*.json``; ``"semlib"`` for the project's model). ``encoded``: results
    dicts of ``evaluate_codec(..., target_bpps=[...])`` by codec name. ``points``: results
    dicts of fixed-rate models (one point each, at their own rate) by codec name, shown as
    that point where the codec has no curve. Display keys:
    ``method``, ``paper (claim)``, ``published anchor``, ``measured here: curve``,
    ``measured here: encoded at bpp``, ``what differs``; numbers under ``claim_psnr``,
    ``anchor_psnr``, ``curve_psnr``, ``enc_psnr`` (and ``*_ms_ssim``) for computing.
    """
    curves, encoded = curves or {}, encoded or {}
    cp = COUNTERPARTS.get(claim.method)
    row = {"table": claim.table, "bpp": claim.bpp, "dataset": claim.dataset, "citation": claim.citation,
           "claim_psnr": claim.psnr, "claim_ms_ssim": claim.ms_ssim, "anchor_psnr": None, "anchor_ms_ssim": None,
           "method": claim.label, "paper (claim)": f"{claim.psnr:g} dB / {claim.ms_ssim:.3f} (claim)"}
    if cp is None:
        row.update({"published anchor": "no published curve here", "measured here: curve": NOT_MEASURED,
                    "measured here: encoded at bpp": NOT_MEASURED, "what differs": "no public code/weights here",
                    "curve_psnr": None, "curve_ms_ssim": None, "enc_psnr": None, "enc_ms_ssim": None})
        return row
    if cp.anchor is not None and cp.anchor in anchors:
        text, p, m = _anchor_cell(anchors[cp.anchor], claim.bpp)
        row.update({"published anchor": text, "anchor_psnr": p, "anchor_ms_ssim": m})
    else:
        row["published anchor"] = "no published curve here"
    cells = _measured_cells(cp, claim.bpp, curves, encoded, points)
    row["measured here: curve"] = cells.pop("curve")
    row["measured here: encoded at bpp"] = cells.pop("encoded")
    row.update(cells)
    note = cp.note
    measured = row["enc_psnr"] if row["enc_psnr"] is not None else row["curve_psnr"]
    if row["anchor_psnr"] is not None:
        note += f"; claim − published: {claim.psnr - row['anchor_psnr']:+.2f} dB"
    if measured is not None:
        note += f"; claim − measured here: {claim.psnr - measured:+.2f} dB"
    row["what differs"] = note
    return row


def context_row(name: str, anchors: dict[str, dict], bpp: float) -> dict:
    """A published curve at ``bpp``, for context beside a table (not a row of the paper)."""
    c = anchors[name]
    text, p, m = _anchor_cell(c, bpp)
    return {"method": f"{c.get('label', name)} (context: not in the paper's table)", "paper (claim)": "—",
            "published anchor": text, "measured here: curve": "—", "measured here: encoded at bpp": "—",
            "what differs": c.get("note", ""), "anchor_psnr": p, "anchor_ms_ssim": m, "bpp": bpp}


def measured_context_row(name: str, curves: dict[str, dict], bpp: float, label: str | None = None) -> dict:
    """A curve measured here at ``bpp``, for context beside a table (not a row of the paper)."""
    c = curves[name]
    p, m = value_at(c, bpp, "psnr-rgb"), value_at(c, bpp, "ms-ssim-rgb")
    meta = c.get("meta", {})
    where = f"{meta.get('dataset', '?')}, {meta.get('num_images', '?')} images"
    cell = (pair(p, m) + f" (interpolated; {where})") if p is not None else f"outside the measured curve at {bpp:g} bpp"
    return {"method": f"{label or name} (context: measured here, not in the paper's table)", "paper (claim)": "—",
            "published anchor": "—", "measured here: curve": cell, "measured here: encoded at bpp": "—",
            "what differs": c.get("description", ""), "curve_psnr": p, "curve_ms_ssim": m, "bpp": bpp}


def comparison_rows(claim_list: list[Claim], anchors_by_dataset: dict[str, dict], curves_by_dataset: dict | None = None,
                    encoded_by_dataset: dict | None = None, context: tuple[str, ...] = CONTEXT_ANCHORS,
                    measured_context: tuple[str, ...] = (), points_by_dataset: dict | None = None) -> list[dict]:
    """:func:`comparison_row` for every claim, each dataset's rows followed by the
    published ``context`` curves at the same bpp (those present for that dataset) and
    the measured curves named in ``measured_context`` (those measured on that dataset).
    ``points_by_dataset``: fixed-rate models' single points (see :func:`comparison_row`)."""
    curves_by_dataset, encoded_by_dataset = curves_by_dataset or {}, encoded_by_dataset or {}
    points_by_dataset = points_by_dataset or {}
    rows, groups = [], []
    for c in claim_list:
        if (c.dataset, c.bpp) not in groups:
            groups.append((c.dataset, c.bpp))
    for ds, bpp in groups:
        anchors = anchors_by_dataset.get(ds, {})
        for c in claim_list:
            if (c.dataset, c.bpp) == (ds, bpp):
                rows.append(comparison_row(c, anchors, curves_by_dataset.get(ds), encoded_by_dataset.get(ds),
                                           points_by_dataset.get(ds)))
        rows += [context_row(n, anchors, bpp) for n in context if n in anchors]
        curves = curves_by_dataset.get(ds) or {}
        rows += [measured_context_row(n, curves, bpp) for n in measured_context if n in curves]
    return rows


def claim_gaps(claim_list: list[Claim], anchors_by_dataset: dict[str, dict], metric: str = "psnr-rgb") -> list[dict]:
    """For each claim: the best published value at its bpp (:func:`best_published`) and
    the gap claim − best (positive: the claim is above every published curve)."""
    rows = []
    for c in claim_list:
        claimed = c.psnr if metric == "psnr-rgb" else c.ms_ssim
        best = best_published(anchors_by_dataset.get(c.dataset, {}), c.bpp, metric)
        rows.append({"claim": c.label, "table": c.table, "dataset": c.dataset, "bpp": c.bpp, "metric": metric,
                     "claimed": claimed, "best_published": None if best is None else best[0],
                     "best_value": None if best is None else best[1],
                     "gap": None if best is None else claimed - best[1]})
    return rows


# ---------------------------------------------------------------------------------------
# The ablations measured here (Table 4, Fig. 15): fixed-rate models, one point each


def point(results: dict, metric: str = "psnr-rgb", index: int = 0) -> tuple[float, float]:
    """(bpp, ``metric``) of one operating point of a results dict (a fixed-rate model
    evaluated at its own γ has exactly one)."""
    r = results.get("results", {})
    if metric not in r or r[metric] is None or len(r["bpp"]) <= index or r[metric][index] is None:
        raise ValueError(f"results {results.get('name', '?')!r} have no {metric} at point {index}")
    return float(r["bpp"][index]), float(r[metric][index])


def slope_at(curve: dict, bpp: float, metric: str = "psnr-rgb") -> float | None:
    """d ``metric`` / d bpp of ``curve`` at ``bpp``: the slope of the segment between its
    two nearest points (the end segment just outside the curve, within half a segment);
    None when the curve has fewer than two points or ``bpp`` lies further out."""
    pts = curve_points(curve, metric)
    if pts is None or len(pts[0]) < 2:
        return None
    x, y = pts
    k = int(np.clip(np.searchsorted(x, bpp) - 1, 0, len(x) - 2))
    width = x[k + 1] - x[k]
    if width <= 0 or bpp < x[0] - width / 2 or bpp > x[-1] + width / 2:
        return None
    return float((y[k + 1] - y[k]) / width)


def ablation_difference(baseline: dict, semantic: dict, reference: dict | None = None) -> dict:
    """Table 4 measured here: "baseline + semantic" minus "baseline", two fixed-rate models
    (one point each, at bpp that differ a little).

    Raw differences of bpp, PSNR, MS-SSIM and SI-SSIM, and, where a ``reference`` RD curve
    has a slope at the two points' mean bpp (:func:`slope_at`), the PSNR difference at equal
    rate *estimated* with that slope: ΔPSNR − slope · Δbpp (``psnr_at_equal_rate``; None
    without a slope).
    """
    out = {}
    for key, metric in (("bpp", "bpp"), ("psnr", "psnr-rgb"), ("ms_ssim", "ms-ssim-rgb"), ("si_ssim", "si-ssim")):
        vals = []
        for res in (baseline, semantic):
            v = res.get("results", {}).get(metric)
            vals.append(None if not v or v[0] is None else float(v[0]))
        out[key] = None if None in vals else vals[1] - vals[0]
    out["slope"] = None
    out["psnr_at_equal_rate"] = None
    if reference is not None and out["bpp"] is not None and out["psnr"] is not None:
        mid = (point(baseline)[0] + point(semantic)[0]) / 2
        out["slope"] = slope_at(reference, mid)
        if out["slope"] is not None:
            out["psnr_at_equal_rate"] = out["psnr"] - out["slope"] * out["bpp"]
    return out


def fixed_vs_variable(variable: dict, fixed: dict[float, dict], metric: str = "psnr-rgb") -> list[dict]:
    """Fig. 15 measured here: each fixed-rate model (γ -> its results, one point) beside the
    one γ-conditioned model (``variable``: a γ sweep) at the same γ and at the same bpp.

    ``gap``: the variable model's curve interpolated at the fixed model's bpp minus the
    fixed model (negative: the fixed-rate model is better there); None where the fixed
    model's bpp lies outside the variable model's curve (no extrapolation).
    """
    r = variable.get("results", {})
    by_gamma = {float(q): j for j, q in enumerate(r.get("quality", []))}
    rows = []
    for g in sorted(fixed):
        b, v = point(fixed[g], metric)
        j = by_gamma.get(float(g))
        same_g = None if j is None else (float(r["bpp"][j]), float(r[metric][j]))
        at_b = value_at(variable, b, metric)
        rows.append({"gamma": g, "fixed_bpp": b, "fixed": v,
                     "variable_bpp_same_gamma": None if same_g is None else same_g[0],
                     "variable_same_gamma": None if same_g is None else same_g[1],
                     "variable_at_fixed_bpp": at_b, "gap": None if at_b is None else at_b - v})
    return rows


# ---------------------------------------------------------------------------------------
# A light sweep for large images


def sweep(codec, images: dict[str, np.ndarray], qualities, dataset: str = "images") -> dict:
    """Rate, PSNR and MS-SSIM of ``codec`` at each of ``qualities`` over ``images``
    (name -> uint8 H x W x 3), as a results dict in CompressAI's shape (means over images
    under ``results``, values per image under ``per_image``).

    It is :func:`semlib.evaluate.evaluate_codec` asked for these three metrics alone
    (its ``keys``), without SSIM, SI-SSIM and timings: on the 2-3 megapixel Tecnick and CLIC images
    those take most of the time. ``codec``: a name of :data:`semlib.baselines.CODECS`
    or a codec object.
    """
    from semlib.baselines import get_codec
    from semlib.evaluate import evaluate_codec

    codec = get_codec(codec)
    full = evaluate_codec(codec, images, qualities=qualities, importance=None, cache_dir=None, dataset=dataset,
                          progress=False, threads=None, keys=("bpp", "psnr-rgb", "ms-ssim-rgb"))
    meta = {k: full["meta"][k] for k in ("codec", "dataset", "num_images", "images", "quality_name")}
    return {"name": codec.name, "description": full["description"], "meta": meta,
            "results": full["results"], "per_image": full["per_image"]}


# ---------------------------------------------------------------------------------------
# Rendering and figure helpers

DISPLAY_COLUMNS = ("method", "paper (claim)", "published anchor", "measured here: curve",
                   "measured here: encoded at bpp", "what differs")


def _cell(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        v = f"{v:.4g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown(rows: list[dict], columns=DISPLAY_COLUMNS) -> str:
    """A Markdown table of ``rows`` (dicts) with ``columns`` (keys, used as headers)."""
    columns = list(columns)
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def important_window(importance: np.ndarray, size: int) -> tuple[int, int]:
    """(top, left) of the ``size`` x ``size`` window with the largest mean importance
    (a box sum over the Grad-CAM map, docs/METHOD.md §1); the first one on ties."""
    g = np.asarray(importance, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"importance must be an H x W map, got shape {g.shape}")
    h, w = g.shape
    if not (0 < size <= min(h, w)):
        raise ValueError(f"window of {size} pixels does not fit a {h} x {w} map")
    s = np.pad(g.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    box = s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]
    top, left = np.unravel_index(int(np.argmax(box)), box.shape)
    return int(top), int(left)


# ---------------------------------------------------------------------------------------
# Which weights a results file measured (``meta.model_fingerprint``, written by
# semlib.evaluate.evaluate_codec for the learned codec)

FINGERPRINT_UNKNOWN = "unknown"


def model_fingerprint(checkpoint=None) -> str:
    """:func:`semlib.models.fingerprint` (hex) of a checkpoint's weights; None: the shipped one."""
    from semlib.codec import get_model

    return get_model(checkpoint=None if checkpoint is None else str(checkpoint))[1].hex()


def fingerprint_status(results: dict, fingerprint: str) -> str:
    """'matches' or 'differs' when ``results`` record a model fingerprint, else
    :data:`FINGERPRINT_UNKNOWN` (files written before the fingerprint was recorded)."""
    recorded = (results.get("meta") or {}).get("model_fingerprint")
    if not recorded:
        return FINGERPRINT_UNKNOWN
    return "matches" if str(recorded).lower() == str(fingerprint).lower() else "differs"


def fingerprint_check(results_by_name: dict[str, dict], fingerprint: str) -> list[dict]:
    """One row per results file: ``file``, ``recorded`` fingerprint (or None), ``status``
    (:func:`fingerprint_status`) and the ``date`` it was written."""
    rows = []
    for name, r in results_by_name.items():
        meta = r.get("meta") or {}
        rows.append({"file": name, "recorded": meta.get("model_fingerprint"),
                     "status": fingerprint_status(r, fingerprint), "date": meta.get("date")})
    return rows


def fingerprint_note(rows: list[dict], fingerprint: str, regenerate: str = "scripts/evaluate_shipped.sh") -> str:
    """A Markdown paragraph saying, for the rows of :func:`fingerprint_check`, which files
    measured the model loaded here, which measured other weights (stale numbers), and which
    cannot tell (no fingerprint recorded)."""
    if not rows:
        return "No results file of the learned codec is read."
    by = {k: [r for r in rows if r["status"] == k] for k in ("matches", "differs", FINGERPRINT_UNKNOWN)}
    names = lambda rs: ", ".join(f"`{r['file']}`" for r in rs)
    out = []
    if by["matches"]:
        out.append(f"{names(by['matches'])}: measured with the model loaded here (fingerprint `{fingerprint}`).")
    if by["differs"]:
        out.append(f"**Stale**: {names(by['differs'])} measured other weights (fingerprint "
                   f"{', '.join(sorted({'`' + str(r['recorded']) + '`' for r in by['differs']}))}, not `{fingerprint}`"
                   f"): their numbers are not those of the model loaded here; rerun `{regenerate}`.")
    if by["unknown"]:
        dates = sorted({str(r["date"])[:10] for r in by["unknown"] if r.get("date")})
        out.append(f"**Model unknown**: {names(by['unknown'])} record no model fingerprint (written before results "
                   f"files recorded one{', on ' + ', '.join(dates) if dates else ''}), so whether they measured the "
                   f"model loaded here (`{fingerprint}`) cannot be checked; `{regenerate}` rewrites them with it.")
    return " ".join(out)


# ---------------------------------------------------------------------------------------
# Reading the committed results and measuring the learned codec


def read_results_dir(folder, skip_prefixes: tuple[str, ...] = ()) -> dict[str, dict]:
    """Every results file ``<name>.json`` of ``folder`` by name (sorted), less the names
    starting with one of ``skip_prefixes``."""
    from pathlib import Path

    from semlib.evaluate import load_results

    return {p.stem: load_results(p) for p in sorted(Path(folder).glob("*.json"))
            if not p.stem.startswith(tuple(skip_prefixes))}


def learned_results(model_codec, roi_codec, paths, table_bpps, roi_bpps, committed: dict | None = None,
                    **options) -> dict:
    """The learned codec's Kodak results: ``curve`` (γ sweep), ``encoded`` (rate control to
    each of ``table_bpps``, uniform γ) and ``roi`` (rate control to ``roi_bpps`` with the
    block γs of ``roi_codec``), and ``source``, a sentence saying where they come from.

    ``committed``: results read from files (keys ``curve``, ``encoded``, ``roi``); when all
    three are given they are used as they are, else the three are measured now on ``paths``
    (the uniform encodings with Grad-CAM maps too, so that top-20 % PSNR and SI-SSIM compare);
    ``options`` go to :func:`semlib.evaluate.evaluate_codec` (e.g. ``cache_dir``).
    """
    import time

    from semlib.evaluate import evaluate_codec

    if committed and all(committed.get(k) is not None for k in ("curve", "encoded", "roi")):
        out = {k: committed[k] for k in ("curve", "encoded", "roi")}
        n = out["curve"]["meta"]["num_images"]
        out["source"] = f"read from the committed results files ({n} Kodak images, scripts/evaluate_shipped.sh)"
        return out
    t0 = time.perf_counter()
    paths = paths if isinstance(paths, dict) else list(paths)    # a dict name -> array, or paths
    kw = {"dataset": "kodak", "progress": False, **options}
    out = {"curve": evaluate_codec(model_codec, paths, importance=None, **kw),
           "encoded": evaluate_codec(model_codec, paths, target_bpps=sorted(set(table_bpps) | set(roi_bpps)),
                                     importance="gradcam", **kw),
           "roi": evaluate_codec(roi_codec, paths, target_bpps=list(roi_bpps), importance="gradcam", **kw)}
    out["source"] = (f"measured now on {len(paths)} Kodak image(s) in {time.perf_counter() - t0:.0f} s "
                     f"({model_codec.name}; ROI: {roi_codec.name})")
    return out


def encoded_row(label: str, results: dict, bpp: float, note: str, claim: Claim | None = None) -> dict:
    """A table row for a variant measured here only encoded at ``bpp`` (e.g. the learned
    codec with ROI coding), in the columns of :func:`comparison_row`."""
    p, m, reached = (at_target(results, bpp, k) for k in ("psnr-rgb", "ms-ssim-rgb", "bpp"))
    n = results.get("meta", {}).get("num_images", "?")
    cell = "not encoded at this rate" if p is None else f"{pair(p, m)} at {reached:.3f} bpp ({n} images)"
    if claim is not None and p is not None:
        note += f"; claim − measured here: {claim.psnr - p:+.2f} dB"
    return {"method": label, "paper (claim)": "—", "published anchor": "—", "measured here: curve": "—",
            "measured here: encoded at bpp": cell, "what differs": note, "enc_psnr": p, "enc_ms_ssim": m, "bpp": bpp}


# ---------------------------------------------------------------------------------------
# ROI coding against uniform γ at equal rate (the semantic allocation, docs/METHOD.md §2)

ROI_METRICS = (("psnr-roi20", "top-20 % PSNR (dB)", 2), ("si-ssim", "SI-SSIM", 4),
               ("ms-ssim-rgb", "MS-SSIM", 4), ("psnr-rgb", "whole-image PSNR (dB)", 2))


def _target_index(results: dict, bpp: float) -> int | None:
    for j, t in enumerate(results.get("results", {}).get("target_bpp", [])):
        if abs(float(t) - bpp) < 1e-9:
            return j
    return None


def roi_vs_uniform(uniform: dict, roi: dict, metrics=ROI_METRICS) -> list[dict]:
    """ROI coding against uniform γ, both rate-controlled to the same target bpp: one row per
    target the two results share, with ``target``, the mean ``bpp_uniform`` / ``bpp_roi``
    reached, and per metric key ``k``: ``k`` → (uniform, roi, roi − uniform) means and
    ``k + ' wins'`` → (images where ROI is higher, images compared), over the images both hold."""
    common = [n for n in roi.get("per_image", {}) if n in uniform.get("per_image", {})]
    rows = []
    for t in roi.get("results", {}).get("target_bpp", []):
        ju, jr = _target_index(uniform, float(t)), _target_index(roi, float(t))
        if ju is None or jr is None:
            continue
        row = {"target": float(t), "bpp_uniform": uniform["results"]["bpp"][ju], "bpp_roi": roi["results"]["bpp"][jr],
               "images": len(common)}
        for key, _, _ in metrics:
            u, r = uniform["results"].get(key, [None] * (ju + 1))[ju], roi["results"].get(key, [None] * (jr + 1))[jr]
            row[key] = (u, r, None if None in (u, r) else r - u)
            pairs = [(uniform["per_image"][n][key][ju], roi["per_image"][n][key][jr]) for n in common
                     if key in uniform["per_image"][n] and key in roi["per_image"][n]]
            pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
            row[key + " wins"] = (sum(b > a for a, b in pairs), len(pairs))
        rows.append(row)
    return rows


def roi_markdown(rows: list[dict], metrics=ROI_METRICS) -> str:
    """The rows of :func:`roi_vs_uniform` as a Markdown table: uniform → ROI (difference)."""
    table = []
    for r in rows:
        d = {"target bpp": f"{r['target']:g}", "bpp reached: uniform / ROI": f"{r['bpp_uniform']:.3f} / {r['bpp_roi']:.3f}"}
        for key, label, digits in metrics:
            u, v, diff = r[key]
            wins, n = r[key + " wins"]
            d[label + ": uniform → ROI (Δ; ROI higher on)"] = (
                "n/a" if diff is None else f"{u:.{digits}f} → {v:.{digits}f} ({diff:+.{digits}f}; {wins}/{n})")
        table.append(d)
    return markdown(table, list(table[0]) if table else ["target bpp"])


def roi_summary(rows: list[dict], metrics=ROI_METRICS) -> str:
    """Plain sentences saying where ROI coding gains over uniform γ at equal rate and where
    it does not, with the numbers of :func:`roi_vs_uniform`."""
    if not rows:
        return "No target bpp is shared by the ROI and uniform results: no equal-rate comparison."
    rates = ", ".join(f"{r['target']:g}" for r in rows)
    gap = max(abs(r["bpp_roi"] - r["bpp_uniform"]) for r in rows)

    def span(key, digits):
        ds = [r[key][2] for r in rows]
        lo, hi = min(ds), max(ds)
        return f"{lo:+.{digits}f}" if abs(hi - lo) < 0.5 * 10 ** -digits else f"{lo:+.{digits}f} to {hi:+.{digits}f}"

    def wins(key):
        w = [r[key + " wins"] for r in rows]
        lo, hi = min(a for a, _ in w), max(a for a, _ in w)
        return f"higher on {lo if lo == hi else f'{lo}–{hi}'} of {w[0][1]} images"

    gains, losses, mixed = [], [], []
    for key, label, digits in metrics:
        ds = [r[key][2] for r in rows]
        if any(d is None for d in ds):
            continue
        text = f"{label.replace(' (dB)', '')} {span(key, digits)}{' dB' if '(dB)' in label else ''} ({wins(key)})"
        (gains if all(d > 0 for d in ds) else losses if all(d < 0 for d in ds) else mixed).append(text)
    out = [f"At equal rate (both rate-controlled to {rates} bpp; the mean rates reached differ by at most "
           f"{gap:.3f} bpp), ROI coding"]
    out.append(f"gains {'; '.join(gains)}" if gains else "gains on none of these measures")
    if losses:
        out.append(f"and loses {'; '.join(losses)}")
    text = " ".join(out) + "."
    if mixed:
        text += f" Mixed across rates: {'; '.join(mixed)}."
    text += (" The bits it spends on the important blocks are taken from the rest of the image. The top-20 % "
             "PSNR and SI-SSIM are weighted by the same Grad-CAM map that sets the block γs, so they show the "
             "allocation doing what it is asked to do; MS-SSIM and whole-image PSNR do not look at the map.")
    return text


# ---------------------------------------------------------------------------------------
# Notes and summaries of notebook 06, from the tables above


def refinement_bd(refined: dict, plain: dict, others: dict[str, dict], metric: str = "psnr-rgb") -> list[dict]:
    """BD-rate (%) on the images the refined learned results ``refined`` hold (a subset of the
    data set, since refinement is slow): of the refined curve against the plain one, and of both
    against each measured codec of ``others`` ({label: results with per-image values}), every
    curve re-averaged over those same images (:func:`semlib.evaluate.subset_results`). Rows
    {"anchor", "plain", "refined"} (None where the curves do not overlap), the first the plain
    learned codec itself."""
    from semlib.evaluate import bd_table, subset_results

    names = list(refined["per_image"])
    base = subset_results(plain, names)

    def bd(a, b):
        return bd_table([a], b, metric=metric)[0]["bd_rate"]

    rows = [{"anchor": "semlib, no refinement", "plain": 0.0, "refined": bd(refined, base)}]
    for label, res in others.items():
        sub = subset_results(res, names)
        rows.append({"anchor": label, "plain": bd(base, sub), "refined": bd(refined, sub)})
    return rows


def refinement_markdown(rows: list[dict], steps: int, images: int) -> str:
    """The rows of :func:`refinement_bd` as a Markdown table."""
    def cell(v):
        return "–" if v is None else f"{v:+.1f} %"

    lines = [f"| against | plain encoder | `--refine {steps}` |", "|---|---:|---:|"]
    lines += [f"| {r['anchor']} | {cell(r['plain'])} | {cell(r['refined'])} |" for r in rows]
    return "\n".join(lines) + f"\n\nBD-rate on PSNR over the same {images} Kodak images (negative: fewer bits)."


def classical_notes(table1: list[dict], bpp: float, n_images: int, methods=("JPEG", "JPEG2000", "BPG")) -> str:
    """One Markdown bullet per classical codec of Table 1: claim, published and measured
    values, and the differences."""
    t1 = {r["method"].split()[0]: r for r in table1 if r.get("citation")}
    lines = []
    for m in methods:
        r = t1[m]
        lines.append(f"- **{m}**: the paper claims {r['claim_psnr']:g} dB / {r['claim_ms_ssim']:.3f}; the published curve "
                     f"gives {r['anchor_psnr']:.2f} dB / {r['anchor_ms_ssim']:.4f}, and {r['enc_psnr']:.2f} dB / "
                     f"{r['enc_ms_ssim']:.4f} were measured here (encoded at {bpp} bpp, {n_images} images). "
                     f"PSNR: claim − published {r['claim_psnr'] - r['anchor_psnr']:+.2f} dB; MS-SSIM: claim − published "
                     f"{r['claim_ms_ssim'] - r['anchor_ms_ssim']:+.4f}, claim − measured {r['claim_ms_ssim'] - r['enc_ms_ssim']:+.4f}.")
    return "\n".join(lines)


def centre_crop(a: np.ndarray, n: int | None) -> np.ndarray:
    """The ``n`` x ``n`` centre of image ``a`` (None, or an image smaller than ``n``: ``a`` itself)."""
    if n is None or min(a.shape[:2]) <= n:
        return a
    top, left = (a.shape[0] - n) // 2, (a.shape[1] - n) // 2
    return np.ascontiguousarray(a[top:top + n, left:left + n])


def sweep_sets(sets: dict[str, dict], sweeps: dict, codecs: dict | None = None, labels: dict | None = None) -> dict:
    """:func:`sweep` of every codec of ``sweeps`` (name -> operating points) over every image
    set of ``sets`` (dataset -> {image name: array}); ``codecs``: codec objects by name for the
    names that are not classical codecs; ``labels``: dataset label written in the results."""
    codecs, labels = codecs or {}, labels or {}
    return {ds: {name: sweep(codecs.get(name, name), images, points, dataset=labels.get(ds, ds))
                 for name, points in sweeps.items()} for ds, images in sets.items()}


T4_SUFFIX = {"kodak": "", "tecnick": "-tecnick", "clic2022": "-clic_sample"}   # results/ablation/<model><suffix>.json
T4_LABELS = {"kodak": "Kodak ({n} images)", "tecnick": "Tecnick ({n} of the 100 images)",
             "clic2022": "CLIC sample ({n} photos, not the CLIC 2022 test set)"}


def table4_measured(ablation: dict[str, dict], reference: dict | None = None, suffixes=T4_SUFFIX,
                    labels=T4_LABELS) -> tuple[list[dict], dict]:
    """Table 4 measured here from the ablation results (``results/ablation``): rows for the
    baseline (β = 0) and baseline + semantic fixed-rate models at γ = 128 and their
    difference on each dataset, and the differences by dataset (:func:`ablation_difference`,
    with ``reference``, the γ-conditioned model of the same budget, on Kodak only)."""
    rows, diffs = [], {}
    for ds, sfx in suffixes.items():
        base, sem = ablation.get(f"baseline_beta0_gamma128{sfx}"), ablation.get(f"fixed_gamma128{sfx}")
        if base is None or sem is None:
            continue
        cl = {c.column: c for c in claims(4) if c.dataset == ds}
        cb, cs = cl["Baseline"], cl["Baseline+semantic"]
        d = diffs[ds] = ablation_difference(base, sem, reference if ds == "kodak" else None)
        where = labels[ds].format(n=base["meta"]["num_images"])
        for label, res, c in (("Baseline (β = 0)", base, cb), ("Baseline + semantic (β = 0.01)", sem, cs)):
            r = res["results"]
            rows.append({"images": where, "model (fixed rate, γ = 128)": label,
                         "paper (claim)": f"{c.psnr:g} dB / {c.ms_ssim:.3f} at {c.bpp} bpp",
                         "bpp here": f"{r['bpp'][0]:.3f}", "PSNR here (dB)": f"{r['psnr-rgb'][0]:.2f}",
                         "MS-SSIM here": f"{r['ms-ssim-rgb'][0]:.4f}", "SI-SSIM here": f"{r['si-ssim'][0]:.4f}"})
        equal = "" if d["psnr_at_equal_rate"] is None else f"; {d['psnr_at_equal_rate']:+.2f} at equal rate (estimate)"
        rows.append({"images": where, "model (fixed rate, γ = 128)": "**semantic − baseline**",
                     "paper (claim)": f"{cs.psnr - cb.psnr:+.2f} dB / {cs.ms_ssim - cb.ms_ssim:+.3f} (claim)",
                     "bpp here": f"{d['bpp']:+.3f}", "PSNR here (dB)": f"{d['psnr']:+.2f}{equal}",
                     "MS-SSIM here": f"{d['ms_ssim']:+.4f}", "SI-SSIM here": f"{d['si_ssim']:+.4f}"})
    return rows, diffs


def fig15_markdown(rows15: list[dict]) -> str:
    """The rows of :func:`fixed_vs_variable` as a Markdown table, then a sentence on the gaps."""
    fmt = lambda v, spec, unit="": "n/a" if v is None else format(v, spec) + unit
    table = markdown([{"γ": f"{x['gamma']:g}", "fixed-rate model": f"{x['fixed_bpp']:.3f} bpp, {x['fixed']:.2f} dB",
                       "γ-conditioned model, same γ": f"{fmt(x['variable_bpp_same_gamma'], '.3f')} bpp, "
                                                      f"{fmt(x['variable_same_gamma'], '.2f')} dB",
                       "γ-conditioned at the fixed model's bpp": fmt(x["variable_at_fixed_bpp"], ".2f", " dB"),
                       "γ-conditioned − fixed (dB)": fmt(x["gap"], "+.2f")} for x in rows15],
                     ["γ", "fixed-rate model", "γ-conditioned model, same γ", "γ-conditioned at the fixed model's bpp",
                      "γ-conditioned − fixed (dB)"])
    gaps = [x["gap"] for x in rows15 if x["gap"] is not None]
    if gaps:
        said = (f"At equal bpp the one γ-conditioned model is {min(gaps):+.2f} to {max(gaps):+.2f} dB from the fixed-rate "
                f"models whose rates it covers ({len(gaps)} of {len(rows15)}; n/a: outside its curve, not extrapolated).")
    else:
        said = "No fixed-rate model lies inside the γ-conditioned model's rate range."
    return table + "\n\n" + said


def discrepancy_notes(anchors: dict, curves: dict, gaps: list[dict], table1: list[dict], bpp1: float) -> str:
    """Markdown bullets on where the paper's numbers and the published or measured ones
    disagree: its 0.75 bpp claim against every published Kodak curve, the rise of its own
    numbers between 0.75 and 1.12 bpp against published and measured curves, and the
    MS-SSIM of classical codecs. ``anchors`` / ``curves``: Kodak published / measured curves;
    ``gaps``: :func:`claim_gaps` of the own-method claims; ``table1``: Table 1's rows."""
    song = {c.table: c for t in (1, 2, 3) for c in claims(t) if c.method == OWN_METHOD}
    g075 = next(g for g in gaps if g["table"] == 2)
    t4 = {c.column: c for c in claims(4) if c.dataset == "kodak"}
    cover = [c for c in anchors.values() if value_at(c, song[2].bpp) is not None]
    need = {n: rate_at(anchors[n], song[2].psnr) for n in ("qarv", "vtm18.0", "elic2022") if n in anchors}
    need_txt = ", ".join(f"{anchors[n]['label']} " + ("never reaches it on its published points" if b is None
                         else f"needs {b:.2f} bpp ({b / song[2].bpp:.1f}× the rate)") for n, b in need.items())
    rise = {n: value_at(c, song[1].bpp) - value_at(c, song[2].bpp)
            for n, c in (("QARV", anchors["qarv"]), ("VTM 18.0", anchors["vtm18.0"]), ("HEVC measured here", curves["hevc"]))}
    t1 = {r["method"].split()[0]: r for r in table1 if r.get("citation")}
    mss = [(m, t1[m]["claim_ms_ssim"], t1[m]["anchor_ms_ssim"], t1[m]["enc_ms_ssim"]) for m in ("JPEG", "JPEG2000", "BPG")]
    jpeg = anchors["jpeg"]["results"]
    jpeg_rate = float(np.interp(mss[0][1], jpeg["ms-ssim-rgb"], jpeg["bpp"]))
    best = f"{anchors[g075['best_published']]['label']}: {g075['best_value']:.2f} dB"
    return "\n".join([
        f"- **{song[2].bpp} bpp (Table 2)**: the paper claims {g075['claimed']:g} dB; the best published Kodak result at "
        f"that rate is {best}, so the claim is **{g075['gap']:+.2f} dB** above all {len(cover)} published Kodak curves "
        f"that cover {song[2].bpp} bpp (classical and learned). To reach the claimed {song[2].psnr:g} dB, {need_txt}.",
        f"- **The paper's own numbers**: its method scores {song[2].psnr:g} dB at {song[2].bpp} bpp (Table 2) and "
        f"{song[1].psnr:g} dB at {song[1].bpp} bpp (Table 1), a rise of {song[1].psnr - song[2].psnr:+.2f} dB, while "
        f"between the same two rates " + ", ".join(f"{n} rises {v:+.2f} dB" for n, v in rise.items()) + ". Table 4 gives "
        f"{t4['Baseline+semantic'].psnr:g} dB (\"baseline + semantic\") and {t4['Baseline'].psnr:g} dB (baseline) at "
        f"{t4['Baseline'].bpp} bpp, both above the full method's {song[1].psnr:g} dB of Table 1 at {song[1].bpp} bpp.",
        f"- **MS-SSIM of classical codecs at {bpp1} bpp** (claim / CompressAI published / measured here): "
        + "; ".join(f"{m} {c:.3f} / {a:.4f} / {e:.4f}" for m, c, a, e in mss)
        + f". The claims are {min(a - c for _, c, a, _ in mss):.3f} to {max(a - c for _, c, a, _ in mss):.3f} below the "
        f"published values; on CompressAI's JPEG curve an MS-SSIM of {mss[0][1]:.3f} is reached near {jpeg_rate:.2f} bpp, "
        f"not {bpp1}.",
    ])


def visual_panels(original: np.ndarray, bpp: float, classical=(("jpeg", "JPEG"), ("jpeg2000", "JPEG 2000"),
                  ("hevc", "HEVC intra (BPG's coder)")), checkpoint=None, roi: bool = True) -> list[tuple]:
    """``(label, decoded image, bpp reached)`` of ``original`` encoded at ``bpp`` (rate
    control, :func:`semlib.baselines.encode_at_bpp` / :func:`semlib.codec.encode_image`): the
    original first (bpp None), then the ``classical`` codecs, the learned codec with uniform γ
    and, with ``roi``, with block γs from the Grad-CAM map."""
    import warnings

    from semlib import codec
    from semlib.baselines import encode_at_bpp, get_codec

    extra = {} if checkpoint is None else {"checkpoint": str(checkpoint)}
    panels = [("original", original, None)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # a target missed is visible: the bpp reached is returned
        for name, label in classical:
            data, _, reached = encode_at_bpp(name, original, bpp)
            panels.append((label, get_codec(name).decode(data), reached))
        for label, importance in (("semlib, uniform γ", None), ("semlib, ROI (Grad-CAM)", "auto"))[:2 if roi else 1]:
            enc = codec.encode_image(original, target_bpp=bpp, importance=importance, **extra)
            panels.append((label, codec.decode(enc.data, **extra), enc.bpp))
    return panels


def window_psnr(original: np.ndarray, panels, top: int, left: int, size: int) -> list[dict]:
    """PSNR of each decoded panel (:func:`visual_panels`, the original left out) in the
    ``size`` x ``size`` window at (``top``, ``left``) and over the whole image."""
    from semlib import metrics

    w = (slice(top, top + size), slice(left, left + size))
    return [{"label": label, "bpp": b, "window": float(metrics.psnr(original[w], img[w])),
             "whole": float(metrics.psnr(original, img))} for label, img, b in panels if b is not None]


def summary_markdown(table1: list[dict], table2: list[dict], table3: list[dict], gaps: list[dict],
                     diff4: dict | None = None, roi_rows: list[dict] | None = None, anchors: dict | None = None) -> str:
    """The closing table of notebook 06: the paper's own-method and classical claims beside
    the best published value and what was measured here, Table 4's difference and, from
    :func:`roi_vs_uniform`, ROI against uniform γ at Table 2's rate. ``anchors``: the Kodak
    published curves, for their labels."""
    song = {c.table: c for t in (1, 2, 3) for c in claims(t) if c.method == OWN_METHOD}
    best = {g["table"]: g for g in gaps if g["claim"].startswith(OWN_METHOD)}
    own = lambda rows: next(r for r in rows if r["method"].startswith(OWN_METHOD))["measured here: encoded at bpp"]
    label = lambda n: (anchors or {}).get(n, {}).get("label", n)
    bp = lambda g: "—" if g["best_value"] is None else f"{label(g['best_published'])}: {g['best_value']:.2f} dB"
    lines = ["| | paper (claim) | best published at that bpp | measured here |", "| --- | --- | --- | --- |"]
    for t, rows in ((1, table1), (2, table2), (3, table3)):
        c = song[t]
        lines.append(f"| Song method, Kodak {c.bpp} bpp | {c.psnr:g} dB / {c.ms_ssim:.3f} | {bp(best[t])} | {own(rows)} |")
    t1 = {r["method"].split()[0]: r for r in table1 if r.get("citation")}
    for m, name, note in (("JPEG", "JPEG", ""), ("JPEG2000", "JPEG 2000", ""), ("BPG", "BPG", " (HEVC intra)")):
        r = t1[m]
        lines.append(f"| {name}, Kodak {r['bpp']} bpp | {r['claim_psnr']:g} dB / {r['claim_ms_ssim']:.3f} | "
                     f"{pair(r['anchor_psnr'], r['anchor_ms_ssim'])} (CompressAI) | {pair(r['enc_psnr'], r['enc_ms_ssim'])}{note} |")
    ck4 = {c.column: c for c in claims(4) if c.dataset == "kodak"}
    d4 = (diff4 or {}).get("kodak")
    here = "not measured" if d4 is None else (
        f"{d4['psnr']:+.2f} dB / {d4['ms_ssim']:+.4f} at {d4['bpp']:+.3f} bpp"
        + ("" if d4["psnr_at_equal_rate"] is None else f" ({d4['psnr_at_equal_rate']:+.2f} dB at equal rate, estimate)")
        + "; fixed-rate models at a scaled-down budget")
    lines.append(f"| Table 4, Kodak: semantic − baseline | {ck4['Baseline+semantic'].psnr - ck4['Baseline'].psnr:+.2f} dB / "
                 f"{ck4['Baseline+semantic'].ms_ssim - ck4['Baseline'].ms_ssim:+.3f} | — | {here} |")
    r = next((x for x in roi_rows or [] if abs(x["target"] - song[2].bpp) < 1e-9), None)
    if r is not None:
        lines.append(f"| ROI − uniform γ, Kodak {song[2].bpp} bpp (top-20 % PSNR; whole-image PSNR) | not reported | — | "
                     f"{r['psnr-roi20'][2]:+.2f} dB; {r['psnr-rgb'][2]:+.2f} dB ({r['images']} images) |")
    return "\n".join(lines)
