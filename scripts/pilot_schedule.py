"""Which crop size and learning rate learn fastest per CPU-minute? (issue 5)

Runs short trainings of the ``small`` model side by side, each on one thread for the same
wall-clock budget, then scores the raw weights (not the EMA, which lags in a short run) on
Kodak: mean over gamma in {64, 256, 1024} of the rate-distortion loss R + gamma*MSE
(R in nats per sub-pixel, MSE on [-1, 1], the training units). Lower is better.

    python scripts/pilot_schedule.py --minutes 6 --out results/pilot_schedule.json

The result only ranks the settings by early learning speed; it is a hint for the long
run, not a proof about where each would end.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
from pathlib import Path

import torch

SETTINGS = [  # (crop, lr)
    (128, 2e-4), (256, 2e-4), (128, 5e-4), (256, 5e-4),
]
GAMMAS = (64.0, 256.0, 1024.0)


def run_one(crop, lr, minutes, workdir, data):
    torch.set_num_threads(1)
    from semlib.train import training_args, train
    out = Path(workdir) / f"pilot_c{crop}_lr{lr:g}.pt"
    if out.exists():
        out.unlink()
    args = training_args(data, 200_000, out, crop=crop, lr=lr, warmup=200, time_limit=minutes * 60,
                         val_every=0, progress=False, num_threads=1, log_every=25)
    summary = train(args)
    return str(out), summary["step"]


@torch.no_grad()
def score(path, images):
    from semlib.models import HierarchicalVAE, Config
    from semlib import metrics
    blob = torch.load(path, map_location="cpu", weights_only=True)
    config = Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in blob["config"].items()})
    model = HierarchicalVAE(config)
    model.load_state_dict(blob["model"], strict=False)
    model.eval()
    rows = {}
    for g in GAMMAS:
        losses, bpps, psnrs = [], [], []
        for x in images:
            out = model(x, g)
            nats = sum(-torch.log(l).sum() for l in out["likelihoods"].values()) / x[0].numel()
            mse = float(((out["x_hat"].clamp(0, 1) - x) ** 2).mean()) * 4
            losses.append(float(nats) + g * mse)
            bpps.append(float(nats) * 3 / math.log(2))
            psnrs.append(float(metrics.psnr(x, out["x_hat"].clamp(0, 1))))
        rows[g] = {"loss": sum(losses) / len(losses), "bpp": sum(bpps) / len(bpps), "psnr": sum(psnrs) / len(psnrs)}
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=6)
    p.add_argument("--data", default=None, help="training images (default ../shared/data/train)")
    p.add_argument("--workdir", default="/tmp/semlib-pilot")
    p.add_argument("--out", default="results/pilot_schedule.json")
    p.add_argument("--parallel", type=int, default=2, help="runs at once (one thread each)")
    a = p.parse_args()
    from semlib import data as sdata
    train_dir = a.data or str(Path(sdata.find_dataset("kodak")).parent / "train")
    os.makedirs(a.workdir, exist_ok=True)
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.parallel) as pool:
        jobs = [pool.apply_async(run_one, (c, lr, a.minutes, a.workdir, train_dir)) for c, lr in SETTINGS]
        done = [j.get() for j in jobs]
    torch.set_num_threads(max(1, a.parallel))
    kodak = sdata.list_images(sdata.find_dataset("kodak"))[:6]
    images = [sdata.to_tensor(sdata.load_image(f)[128:384, 256:512]) for f in kodak]
    results = []
    for (crop, lr), (path, steps) in zip(SETTINGS, done):
        rows = score(path, images)
        mean = sum(r["loss"] for r in rows.values()) / len(rows)
        results.append({"crop": crop, "lr": lr, "steps": steps, "minutes": a.minutes, "mean_loss": mean,
                        "per_gamma": rows})
        print(f"crop {crop:3d}  lr {lr:.0e}: {steps:5d} steps in {a.minutes:g} min (1 thread), "
              f"mean loss {mean:.4f}  " + "  ".join(f"g{g:g}: {r['bpp']:.3f} bpp {r['psnr']:.2f} dB"
                                                     for g, r in rows.items()), flush=True)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"note": "short pilots; raw weights; 6 Kodak 256x256 crops", "runs": results},
                                      indent=1))


if __name__ == "__main__":
    main()
