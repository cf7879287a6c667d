"""BD-rate of encoder-side refinement (`--refine N`) against the plain encoder, on whole Kodak
images with real files (issue 12). For each image and gamma, one file without refinement and
one with N steps; the BD-rate compares the mean curves, and every file records whether
refinement kept its own latents or the encoder's (it keeps the better by its own objective).

    python scripts/refine_bd.py --images 6 --gammas 16 64 256 1024 --steps 30 --out results/pilots/refine_kodak.json
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from semlib import codec, metrics
from semlib.data import find_dataset, list_images, load_image


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=6, help="Kodak images, evenly spaced")
    p.add_argument("--gammas", type=float, nargs="+", default=[16.0, 64.0, 256.0, 1024.0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    paths = list_images(find_dataset("kodak"))
    paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.images).round().astype(int)]
    model, fp = codec.get_model()
    rows = []
    for path in paths:
        image = load_image(path)
        for gamma in args.gammas:
            for steps in (0, args.steps):
                cpu = time.process_time()
                enc = codec.encode_image(image, gamma=gamma, model=model, refine=steps)
                rows.append({"image": path.name, "gamma": gamma, "refine": steps, "bpp": enc.bpp,
                             "psnr": metrics.psnr(image, enc.x_hat), "cpu_s": time.process_time() - cpu,
                             "report": enc.refinement})
                print(f"{path.name} gamma {gamma:6g} refine {steps:3d}: {enc.bpp:.4f} bpp {rows[-1]['psnr']:.3f} dB "
                      f"{rows[-1]['cpu_s']:.1f} CPU s", flush=True)

    def curve(steps):
        return ([np.mean([r["bpp"] for r in rows if r["refine"] == steps and r["gamma"] == g]) for g in args.gammas],
                [np.mean([r["psnr"] for r in rows if r["refine"] == steps and r["gamma"] == g]) for g in args.gammas])

    bd = metrics.bd_rate(*curve(args.steps), *curve(0))
    refined = [r for r in rows if r["refine"]]
    changed = sum(1 for r, plain in zip(refined, [r for r in rows if not r["refine"]])
                  if (r["bpp"], r["psnr"]) != (plain["bpp"], plain["psnr"]))
    summary = {"bd_rate_percent": bd, "files": len(refined), "files_changed_by_refinement": changed,
               "cpu_s_per_image_plain": float(np.mean([r["cpu_s"] for r in rows if not r["refine"]])),
               "cpu_s_per_image_refined": float(np.mean([r["cpu_s"] for r in refined]))}
    out = {"command": "python scripts/refine_bd.py " + shlex.join(sys.argv[1:]), "model_fingerprint": fp.hex(),
           "model_steps": model.meta.get("steps"), "summary": summary, "rows": rows}
    args.out.write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
