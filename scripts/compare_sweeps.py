"""Where along the curve does one γ sweep beat another? BD-rate by quality band, per metric.

A single BD-rate averages over the whole quality range two curves share; when a new model
gains at its top end and loses a little in the middle, the one number hides both. This script
cuts the shared range of each metric into ``--bands`` equal bands and gives the BD-rate of A
against B in each, with monotone (PCHIP) fits of log-rate against quality: over a narrow band
the cubic polynomial of the classic Bjøntegaard fit (``semlib.metrics.bd_rate``), fitted to
the whole curve, can swing by several per cent. Qualities in dB: PSNR as it is, the SSIM
family as -10·log10(1 - score).

    python scripts/compare_sweeps.py results/campaign/run27_kodak.json OLD_SEMLIB.json --out cmp.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
from scipy.interpolate import PchipInterpolator

from semlib.evaluate import _curve

METRICS = ("psnr-rgb", "ms-ssim-rgb", "ssim", "si-ssim")


def quality_db(results: dict, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, quality in dB) of a results dict, sorted by bpp: PSNR as it is, SSIM-like scores as
    -10 log10(1 - s)."""
    bpp, v = _curve(results, "ms-ssim-db" if metric == "ms-ssim-rgb" else metric)
    return bpp, (v if metric.startswith("psnr") or metric == "ms-ssim-rgb" else -10.0 * np.log10(1.0 - v))


def band_bd_rates(a: dict, b: dict, metric: str, bands: int) -> list[dict]:
    """BD-rate (%) of sweep ``a`` against ``b`` in ``bands`` equal quality bands of their shared range."""
    out = []
    fits = []
    for r in (a, b):
        bpp, q = quality_db(r, metric)
        rate = np.log(bpp)
        order = np.argsort(q)
        if np.any(np.diff(q[order]) <= 0):
            raise SystemExit(f"{r.get('name')}: {metric} is not strictly increasing along the sweep")
        fits.append((PchipInterpolator(q[order], rate[order]), q.min(), q.max()))
    lo, hi = max(fits[0][1], fits[1][1]), min(fits[0][2], fits[1][2])
    if not hi > lo:
        raise SystemExit(f"the two sweeps share no {metric} range")
    edges = np.linspace(lo, hi, bands + 1)
    for q0, q1 in [(lo, hi)] + list(zip(edges[:-1], edges[1:])):
        gap = (fits[0][0].integrate(q0, q1) - fits[1][0].integrate(q0, q1)) / (q1 - q0)
        out.append({"metric": metric, "from_db": round(float(q0), 3), "to_db": round(float(q1), 3),
                    "bd_rate_percent": round((math.exp(gap) - 1.0) * 100.0, 2)})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("a", help="results JSON of `semlib eval` (the new sweep)")
    p.add_argument("b", help="results JSON of `semlib eval` (the reference sweep)")
    p.add_argument("--bands", type=int, default=4)
    p.add_argument("--out", help="write the rows as JSON here")
    args = p.parse_args()
    if not 1 <= args.bands <= 20:
        raise SystemExit(f"--bands must be in 1..20, got {args.bands}")
    a, b = (json.loads(Path(f).read_text()) for f in (args.a, args.b))
    rows = []
    for m in METRICS:
        if m in a["results"] and m in b["results"]:
            rows += band_bd_rates(a, b, m, args.bands)
    for r in rows:
        print(f"{r['metric']:12s} {r['from_db']:7.2f} .. {r['to_db']:7.2f} dB   {r['bd_rate_percent']:+7.2f} %")
    if args.out:
        Path(args.out).write_text(json.dumps({"a": args.a, "b": args.b, "fit": "pchip", "bands": args.bands,
                                              "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
