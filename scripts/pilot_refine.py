"""Does encoder-side refinement of the latents pay, and at what cost? (issue 12)

For the same six 256x256 Kodak crops as scripts/pilot_span.py, at a few gammas, encode real
.semc files with and without ``refine=N`` (semlib.refine: stochastic Gumbel annealing on the
latent offsets, Adam) and record the true objective R + gamma*D of the start and of the end, the
files' bpp and PSNR, and the encode time. One thread.

    python scripts/pilot_refine.py --steps 30 --lrs 0.003 0.01 0.03 --out results/pilots/refine.json
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pilot_span import kodak_crops  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--lrs", type=float, nargs="+", default=[0.003, 0.01, 0.03])
    p.add_argument("--first", type=int, default=0, help="refine the latent blocks from this one on (0 = all)")
    p.add_argument("--gammas", type=float, nargs="+", default=[64.0, 256.0, 1024.0])
    p.add_argument("--out", default="results/pilots/refine.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    from semlib import codec, data, metrics
    model, _ = codec.get_model(checkpoint=a.checkpoint)
    images = [data.to_uint8(x) for x in kodak_crops()]
    rows = []
    for g in a.gammas:
        for lr in [0.0] + list(a.lrs):
            bpps, psnrs, secs, kept, gains = [], [], [], [], []
            for img in images:
                t0 = time.time()
                enc = codec.encode_image(img, gamma=g, model=model, refine=0 if lr == 0.0 else a.steps,
                                         refine_lr=lr or None, refine_first=a.first)
                if enc.refinement:
                    kept.append(enc.refinement["kept"])
                    gains.append(enc.refinement["loss_start"] - enc.refinement["loss_end"])
                secs.append(time.time() - t0)
                rec = codec.decode(enc.data, model=model)
                bpps.append(enc.bpp)
                psnrs.append(float(metrics.psnr(img, rec)))
            row = {"gamma": g, "lr": lr, "first_block": a.first, "steps": 0 if lr == 0.0 else a.steps, "bpp": float(np.mean(bpps)),
                   "psnr": float(np.mean(psnrs)), "encode_s": float(np.mean(secs)),
                   "kept_refined": kept.count("refined"), "mean_objective_gain": float(np.mean(gains)) if gains else 0.0}
            rows.append(row)
            print(json.dumps(row), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"command": "python " + " ".join(shlex.quote(s) for s in sys.argv),
                                       "crops": "6 Kodak images [128:384, 256:512]", "threads": 1,
                                       "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
