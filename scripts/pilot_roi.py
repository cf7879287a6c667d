"""Which block-gamma allocation buys the most ROI quality at equal bpp? (issue 12)

For Kodak images and one target rate, every variant of the allocation (semlib.allocation:
kappa, the level range, a blurred importance map, a two-level "top fraction" map) is coded
into a real .semc file by the codec's own rate control, to the same target as the uniform-gamma
file of the same image. Scored against the uniform file of the same image: PSNR of the 20 %
most important pixels (the metric of `semlib eval`, same Grad-CAM map), PSNR of the whole
image, MS-SSIM and SI-SSIM. One thread; the Grad-CAM maps are cached (results/cache/importance,
the cache `semlib eval` uses).

    python scripts/pilot_roi.py --images 8 --bpp 0.75 --out results/pilots/roi_8img_0.75.json
    python scripts/pilot_roi.py --images 24 --bpp 0.75 --variants k1 top20_b4 --out ...

The JSON holds the options, the command, every image's numbers and the mean deltas per variant.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
KODAK = ROOT.parent / "shared" / "data" / "kodak"

# name -> (kappa, allocation options). Level ratio range of the default level_range (0.25, 4): 16.
VARIANTS = {
    "k0.25": (0.25, {}),
    "k0.5": (0.5, {}),
    "k0.75": (0.75, {}),
    "k1": (1.0, {}),
    "k1.5": (1.5, {}),
    "k1_cap4": (1.0, {"level_range": (0.5, 2.0)}),                 # gamma ratio max/min <= 4
    "k1_cap8": (1.0, {"level_range": (2 ** -1.5, 2 ** 1.5)}),      # <= 8
    "k1_smooth16": (1.0, {"smooth": 16.0}),
    "k1_smooth32": (1.0, {"smooth": 32.0}),
    "top20_b2": (1.0, {"top": 0.2, "boost": 2.0}),
    "top20_b3": (1.0, {"top": 0.2, "boost": 3.0}),
    "top20_b4": (1.0, {"top": 0.2, "boost": 4.0}),
    "top20_b5": (1.0, {"top": 0.2, "boost": 5.0}),
    "top20_b7": (1.0, {"top": 0.2, "boost": 7.0}),
    "top20_b8": (1.0, {"top": 0.2, "boost": 8.0}),
    "top30_b4": (1.0, {"top": 0.3, "boost": 4.0}),
    "top20_b4_smooth16": (1.0, {"top": 0.2, "boost": 4.0, "smooth": 16.0}),
    "top20_b8_smooth16": (1.0, {"top": 0.2, "boost": 8.0, "smooth": 16.0}),
    "top20_b16": (1.0, {"top": 0.2, "boost": 16.0}),
    # the level map rounded to a few values: the file's map (zlib, 8 bits a block) gets much smaller
    "k0.5_s8": (0.5, {"steps": 8}),
    "k1_s4": (1.0, {"steps": 4}),
    "k1_s8": (1.0, {"steps": 8}),
    "k1_s16": (1.0, {"steps": 16}),
    "k1.5_s8": (1.5, {"steps": 8}),
    "k2_s8": (2.0, {"steps": 8}),
    "k1_cap4_s8": (1.0, {"level_range": (0.5, 2.0), "steps": 8}),
    "k1_smooth16_s8": (1.0, {"smooth": 16.0, "steps": 8}),
    "top20_b6": (1.0, {"top": 0.2, "boost": 6.0}),
    "top15_b6": (1.0, {"top": 0.15, "boost": 6.0}),
    "top25_b6": (1.0, {"top": 0.25, "boost": 6.0}),
}
SPREAD8 = ["kodim01.png", "kodim04.png", "kodim07.png", "kodim10.png",
           "kodim13.png", "kodim16.png", "kodim19.png", "kodim22.png"]


def score(a, rec, imp):
    from semlib import metrics

    return {"psnr": float(metrics.psnr(a, rec)), "top20": float(metrics.roi_psnr(a, rec, imp, 0.2)),
            "ms_ssim": float(metrics.ms_ssim(a, rec)), "si_ssim": float(metrics.si_ssim(a, rec, importance=imp))}


def summarise(per_image, names):
    out = {}
    for v in names:
        rows = [(im["uniform"], im[v]) for im in per_image if v in im]
        if not rows:
            continue
        d = {k: float(np.mean([r[k] - u[k] for u, r in rows])) for k in ("top20", "psnr", "ms_ssim", "si_ssim", "bpp")}
        side = [r["level_map_bpp"] for _, r in rows if "level_map_bpp" in r]
        cost = -d["psnr"]
        out[v] = {"images": len(rows), "d_top20_db": d["top20"], "d_psnr_db": d["psnr"],
                  "d_ms_ssim": d["ms_ssim"], "d_si_ssim": d["si_ssim"], "d_bpp": d["bpp"],
                  "bpp": float(np.mean([r["bpp"] for _, r in rows])),
                  "level_map_bpp": float(np.mean(side)) if side else None,
                  "top20_gain_per_db_cost": d["top20"] / cost if cost > 1e-9 else None,
                  "meets_target": d["top20"] >= 1.0 and cost <= 0.3}
    # Pareto front in (top-20 % gain, whole-image delta): kept unless another is at least as good in both, better in one
    for v, s in out.items():
        s["pareto"] = not any(o["d_top20_db"] >= s["d_top20_db"] and o["d_psnr_db"] >= s["d_psnr_db"]
                              and (o["d_top20_db"] > s["d_top20_db"] or o["d_psnr_db"] > s["d_psnr_db"])
                              for w, o in out.items() if w != v)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="8", help="8 (a spread of Kodak), 24 (all), or names kodim01.png,...")
    p.add_argument("--bpp", type=float, default=0.75)
    p.add_argument("--tolerance", type=float, default=0.005, help="relative bpp tolerance of the rate control")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--check-decode", action="store_true", help="decode every file of the first image and "
                   "compare with the encoder's reconstruction (the decoder reads only the file)")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(1)
    from semlib import codec, data
    from semlib.evaluate import cached_importance

    names = SPREAD8 if a.images == "8" else (sorted(q.name for q in KODAK.glob("kodim*.png")) if a.images == "24"
                                             else a.images.split(","))
    model, _ = codec.get_model()
    result = {"options": {**vars(a), "variants_spec": {v: {"kappa": VARIANTS[v][0], **VARIANTS[v][1]}
                                                      for v in a.variants}, "images": names},
              "command": "python " + " ".join(shlex.quote(x) for x in sys.argv), "per_image": []}
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    for i, name in enumerate(names):
        path = KODAK / name
        img = data.load_image(path)
        imp = cached_importance(img, path)
        row = {"image": name}
        for v in ["uniform", *a.variants]:
            t0 = time.time()
            kappa, alloc = (1.0, {}) if v == "uniform" else VARIANTS[v]
            enc = codec.encode_image(img, target_bpp=a.bpp, importance=None if v == "uniform" else imp,
                                     kappa=kappa, model=model, tolerance=a.tolerance, **alloc)
            r = {"bpp": enc.bpp, "gamma": enc.gamma, "met": bool(enc.met_target), **score(img, enc.x_hat, imp)}
            if enc.gamma_map is not None:
                gm = enc.gamma_map
                levels = codec.parse(enc.data).levels
                r.update(gamma_min=float(gm.min()), gamma_max=float(gm.max()), gamma_mean=float(gm.mean()),
                         level_map_bpp=8 * len(zlib.compress(levels.q.tobytes(), 9)) / (img.shape[0] * img.shape[1]))
            if a.check_decode and i == 0:
                r["decode_equals_encoder"] = bool(np.array_equal(codec.decode(enc.data, model=model), enc.x_hat))
            r["seconds"] = time.time() - t0
            row[v] = r
            print(f"{name} {v:18s} {r['bpp']:.4f} bpp  PSNR {r['psnr']:.2f}  top20 {r['top20']:.2f}  "
                  f"MS-SSIM {r['ms_ssim']:.4f}  SI-SSIM {r['si_ssim']:.4f}  gamma {r['gamma']:.1f}  "
                  f"{r['seconds']:.1f} s", flush=True)
        result["per_image"].append(row)
        result["summary"] = summarise(result["per_image"], a.variants)
        result["elapsed_seconds"] = time.time() - t_start
        out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"\n{'variant':18s} {'dTop20':>7s} {'dPSNR':>7s} {'gain/cost':>9s} {'dMS-SSIM':>9s} {'dSI-SSIM':>9s} "
          f"{'dbpp':>7s} {'map bpp':>7s} pareto")
    for v, s in result["summary"].items():
        gpc = "-" if s["top20_gain_per_db_cost"] is None else f"{s['top20_gain_per_db_cost']:.2f}"
        print(f"{v:18s} {s['d_top20_db']:+7.2f} {s['d_psnr_db']:+7.2f} {gpc:>9s} {s['d_ms_ssim']:+9.4f} "
              f"{s['d_si_ssim']:+9.4f} {s['d_bpp']:+7.4f} {s['level_map_bpp'] or 0:7.4f} {'*' if s['pareto'] else ''}")
    print(f"wrote {out} ({time.time() - t_start:.0f} s)")


if __name__ == "__main__":
    main()
