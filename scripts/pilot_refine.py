"""What to optimise in encoder-side refinement, and with which step? (issue 12)

For the same six 256x256 Kodak crops as scripts/pilot_span.py, at a few gammas, refine each
crop's latents for R + gamma * D by one of three parametrisations, and record the true objective
(rounded latents) of the encoder's start and of the best of the checks along the way, with its
rate and PSNR (the model's own likelihoods: real files are within about 1 % of them) and the CPU
seconds per crop. One thread. The BD-rate over the gammas compares the refined curve with the
encoder's own.

- ``features``: the bottom-up features the top-down pass reads (semlib.refine, the default);
- ``input``: the image the encoder sees (every step runs the encoder too);
- ``latents``: the posterior means themselves, straight-through rounding.

All three descend the training surrogate ("mixed" quantisation) with Adam and a cosine step;
the step is a fraction of each feature map's rms (features), in [0, 1] pixel units (input) or in
quantisation steps (latents).

    python scripts/pilot_refine.py --method features --steps 50 --lrs 0.01 --out results/pilots/refine.json
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pilot_span import kodak_crops  # noqa: E402

from semlib import codec, metrics, refine  # noqa: E402


def refine_other(model, x, gamma, steps, lr, method):
    """refine.refine_latents' loop for the 'input' and 'latents' parametrisations."""
    h, w = x.shape[-2:]
    g_pix = refine.pixel_gamma(gamma, h, w)
    with torch.no_grad():
        embs = model.embeddings(model.log_gamma_map(gamma, x))
        start = refine._posterior_means(model, embs, x, model.encode_features(x, embs))
        best = [float(v) for v in refine.objective(model, embs, x, g_pix, start, h, w)]
    first = best
    var = x.clone() if method == "input" else [m.clone() for m in start]
    leaves = [var] if method == "input" else var
    for leaf in leaves:
        leaf.requires_grad_(True)
    opt = torch.optim.Adam(leaves, lr=lr)
    checks = {round(steps * (c + 1) / refine.CHECKS) for c in range(refine.CHECKS)}
    for i in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / steps))
        if method == "input":
            loss, _, _ = refine.objective(model, embs, x, g_pix, None, h, w, "mixed", feats=model.encode_features(var, embs))
        else:
            loss, _, _ = refine.objective(model, embs, x, g_pix, var, h, w, "mixed")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i + 1 in checks:
            with torch.no_grad():
                lat = (refine._posterior_means(model, embs, x, model.encode_features(var, embs)) if method == "input"
                       else [m.detach() for m in var])
                now = [float(v) for v in refine.objective(model, embs, x, g_pix, lat, h, w)]
            best = min(best, now)
    return first, best


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    p.add_argument("--method", choices=["features", "input", "latents"], default="features")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--lrs", type=float, nargs="+", default=[refine.DEFAULT_LR])
    p.add_argument("--gammas", type=float, nargs="+", default=[16.0, 64.0, 256.0, 1024.0])
    p.add_argument("--out", default="results/pilots/refine.json")
    a = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model, fp = codec.get_model(checkpoint=a.checkpoint)
    model.eval()
    crops = kodak_crops()
    rows, summary = [], []
    for lr in a.lrs:
        for g in a.gammas:
            for c, x in enumerate(crops):
                t0 = time.process_time()
                if a.method == "features":
                    _, r = refine.refine_latents(model, x, g, x.shape[2], x.shape[3], a.steps, lr=lr)
                    first = [r["loss_start"], r["rate_start"], r["dist_start"]]
                    best = [r["loss_end"], r["rate_end"], r["dist_end"]]
                else:
                    first, best = refine_other(model, x, g, a.steps, lr, a.method)
                row = {"lr": lr, "gamma": g, "crop": c, "cpu_s": time.process_time() - t0}
                for name, (loss, rate, dist) in (("start", first), ("refined", best)):
                    row[name] = {"objective": loss, "bpp": rate * 3 / math.log(2),
                                 "psnr": 10 * math.log10(4 * g / dist)}      # D = gamma * 4 * mse for one gamma
                rows.append(row)
                print(json.dumps(row), flush=True)
        mine = [r for r in rows if r["lr"] == lr]

        def curve(which):
            return ([np.mean([r[which]["bpp"] for r in mine if r["gamma"] == g]) for g in a.gammas],
                    [np.mean([r[which]["psnr"] for r in mine if r["gamma"] == g]) for g in a.gammas])

        summary.append({"lr": lr, "bd_rate_percent": metrics.bd_rate(*curve("refined"), *curve("start")),
                        "objective_change_percent": {str(g): 100 * float(np.mean([r["refined"]["objective"] / r["start"]["objective"] - 1
                                                                                   for r in mine if r["gamma"] == g])) for g in a.gammas},
                        "cpu_s_per_crop": float(np.mean([r["cpu_s"] for r in mine]))})
        print(json.dumps(summary[-1]), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"command": "python " + " ".join(shlex.quote(s) for s in sys.argv),
                                       "model_fingerprint": fp.hex(), "model_steps": model.meta.get("steps"),
                                       "method": a.method, "steps": a.steps, "crops": "6 Kodak images [128:384, 256:512]",
                                       "threads": 1, "summary": summary, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
