"""Why does one gamma-conditioned model span so few rates? Short pilots that say (issue 12).

Every pilot starts from the same weights (by default the shipped model), trains the same number
of steps on the same data with the same schedule, one thread each, and differs from the control
in one or two options only. Each is then scored with its raw weights (the EMA lags in a short
run) on the same six 256x256 Kodak crops, at gammas from 8 to 8192:

* bpp (from the likelihoods of the rounded latents) and PSNR per gamma;
* the span: bpp at gamma 32 and 2048 (the users' range), and d log bpp / d log gamma over it;
* BD-rate on PSNR against the starting model on the same crops, over the users' range.

    python scripts/pilot_span.py control balance --steps 1500 --parallel 2

Results go to results/pilots/<name>.json, each with the options and the command line; existing
results are kept unless --force. The ranking is a hint for the campaign, not a proof of where
each recipe would end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import multiprocessing as mp
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

# the campaign's recipe from step 65,800 on (results/training/small_runs.json), in float32
CAMPAIGN = {"quantization": "mixed", "balance_gammas": True, "stratify_gammas": True,
            "gamma_range": [4.0, 8192.0], "amp": False}
# name -> (what it tests, options of semlib.train.training_args on top of the common ones)
PILOTS = {
    "control": ("the shipped recipe, continued", {}),
    "balance": ("per-gamma loss balancing (--balance-gammas)", {"balance_gammas": True}),
    "stratified": ("stratified log-gamma sampling", {"stratify_gammas": True}),
    "wide": ("training range 8..8192, wider than the users' 32..2048", {"gamma_range": [8.0, 8192.0]}),
    "balance_wide": ("balancing + stratified sampling + range 8..8192",
                     {"balance_gammas": True, "stratify_gammas": True, "gamma_range": [8.0, 8192.0]}),
    "balance_stratified": ("balancing + stratified sampling", {"balance_gammas": True, "stratify_gammas": True}),
    "gain_law": ("gains fixed to the law g ~ sqrt(gamma) with a residual within +-0.5 nats (reset to the law)",
                 {"gain_residual": 0.5}),
    "gain_law_balance": ("the gain law (+-0.5 nats) + balancing + stratified sampling + range 8..8192",
                         {"gain_residual": 0.5, "balance_gammas": True, "stratify_gammas": True,
                          "gamma_range": [8.0, 8192.0]}),
    "mixed": ("mixed quantisation (rounded latents for the decoder, noise for the rate) + balancing + stratified "
              "sampling + range 8..8192",
              {"quantization": "mixed", "balance_gammas": True, "stratify_gammas": True, "gamma_range": [8.0, 8192.0]}),
    "wide_latents": ("more latent channels (z_dims 16 16 64 24, was 16 16 48 8; the new ones start unused) "
                     "+ balancing + stratified sampling + range 8..8192",
                     {"z_dims": [16, 16, 64, 24], "balance_gammas": True, "stratify_gammas": True,
                      "gamma_range": [8.0, 8192.0]}),
    # From the step-80,800 model on (results/pilots/step80800/), in float32: this machine's CPU has
    # no bfloat16 units, and emulated bf16 took 1.05 s a step against 0.75 s in float32.
    "campaign": ("the campaign's recipe since step 65,800: mixed quantisation + balancing + stratified sampling "
                 "+ range 4..8192, float32", CAMPAIGN),
    "wide8": ("the campaign's recipe + three times the latent channels at /8 (z_dims 16 16 48 24, was "
              "16 16 48 8), the new ones starting with random decoder input weights",
              {**CAMPAIGN, "z_dims": [16, 16, 48, 24]}),
    "crop256": ("mixed, but 256 x 256 crops in batches of 2 (the same pixels per step): the coarsest latents "
                "see 4 x 4 positions instead of 2 x 2",
                {"quantization": "mixed", "balance_gammas": True, "stratify_gammas": True,
                 "gamma_range": [8.0, 8192.0], "crop": 256, "batch": 2}),
}
COMMON = dict(crop=128, batch=8, lr=2e-4, warmup=100, val_every=0, progress=False, num_threads=1, log_every=50,
              ckpt_every=250)
GAMMAS = (8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0)
USER_RANGE = (32.0, 2048.0)


def run_one(name, steps, workdir, data, init):
    torch.set_num_threads(1)
    from semlib.train import train, training_args
    out = Path(workdir) / f"{name}.pt"
    resume = out.exists()
    args = training_args(data, steps, out, init=None if resume else init, resume=resume,
                         **{**COMMON, **PILOTS[name][1]})
    t0 = time.time()
    summary = train(args)
    return str(out), summary["step"], time.time() - t0


def kodak_crops():
    from semlib import data as sdata
    files = sdata.list_images(sdata.find_dataset("kodak"))[:6]
    return [sdata.to_tensor(sdata.load_image(f)[128:384, 256:512]) for f in files]


@torch.no_grad()
def score(model, images, gammas=GAMMAS) -> dict:
    """{gamma: {"bpp", "psnr"}} of ``model`` (eval mode) on ``images``."""
    from semlib import metrics
    model.eval()
    rows = {}
    for g in gammas:
        bpps, psnrs = [], []
        for x in images:
            out = model(x, g)
            bits = sum(-torch.log2(l).sum() for l in out["likelihoods"].values())
            bpps.append(float(bits) / (x.shape[2] * x.shape[3]))
            psnrs.append(float(metrics.psnr(x, out["x_hat"].clamp(0, 1))))
        rows[g] = {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}
    return rows


def summarise(rows: dict, reference: dict) -> dict:
    from semlib import metrics
    lo, hi = USER_RANGE
    users = [g for g in rows if lo <= g <= hi]
    slope = math.log(rows[hi]["bpp"] / rows[lo]["bpp"]) / math.log(hi / lo)
    rate = [rows[g]["bpp"] for g in users]
    psnr = [rows[g]["psnr"] for g in users]
    ref_rate = [reference[g]["bpp"] for g in users]
    ref_psnr = [reference[g]["psnr"] for g in users]
    try:
        bd = metrics.bd_rate(rate, psnr, ref_rate, ref_psnr)
    except ValueError:
        bd = None                                     # curves that do not overlap
    return {"bpp_at_32": rows[lo]["bpp"], "bpp_at_2048": rows[hi]["bpp"], "psnr_at_32": rows[lo]["psnr"],
            "psnr_at_2048": rows[hi]["psnr"], "slope_log_bpp_per_log_gamma": slope,
            "bpp_at_8": rows[8.0]["bpp"], "psnr_at_8": rows[8.0]["psnr"], "bd_rate_vs_start_pct": bd}


@torch.no_grad()
def ceiling(model, images, gammas=(256.0, 8192.0)) -> dict:
    """{gamma: PSNR} when the decoder gets the encoder's posterior means unrounded: what the
    transforms alone can reconstruct, with no quantisation at all. When the rounded model's PSNR
    is close to this, more bits cannot help: the latent representation is the limit."""
    from semlib import metrics
    model.eval()
    with unrounded(model):
        return {g: float(np.mean([float(metrics.psnr(x, model(x, g)["x_hat"].clamp(0, 1))) for x in images]))
                for g in gammas}


@contextlib.contextmanager
def unrounded(model):
    """Within this block ``model`` feeds its decoder the posterior means as they are, not
    rounded (the likelihoods stay those of the rounded latents)."""
    rounding = model._quantize
    model._quantize = lambda mu, scale, mean, mode: (mu.float(), rounding(mu, scale, mean, mode)[1])
    try:
        yield model
    finally:
        model._quantize = rounding


def add_ceilings(out_dir: Path, workdir: Path, init: str) -> None:
    """Add ``psnr_unrounded`` (see :func:`ceiling`) to start.json and to each pilot whose
    checkpoint is still in ``workdir``."""
    from semlib.models import load_model
    images = kodak_crops()
    for f in sorted(out_dir.glob("*.json")):
        d = json.loads(f.read_text())
        if "per_gamma" not in d:
            continue
        ckpt = workdir / f"{f.stem}.pt"
        if f.stem == "start":
            model = load_model(init)
        elif ckpt.exists():
            model = load_raw(ckpt)
        else:
            continue
        d["psnr_unrounded"] = ceiling(model, images)
        f.write_text(json.dumps(d, indent=1))
        print(f.stem, {g: round(v, 2) for g, v in d["psnr_unrounded"].items()}, flush=True)


def resummarise(out_dir: Path) -> None:
    floats = lambda rows: {float(g): v for g, v in rows.items()}  # noqa: E731
    reference = floats(json.loads((out_dir / "start.json").read_text())["per_gamma"])
    for f in sorted(out_dir.glob("*.json")):
        d = json.loads(f.read_text())
        if "per_gamma" not in d:
            continue
        d = {k: v for k, v in d.items() if k != "min_bpp_any_gamma"}
        d.update(summarise(floats(d["per_gamma"]), reference))
        f.write_text(json.dumps(d, indent=1))


def load_raw(path):
    """The raw (not EMA) weights of a training checkpoint, as a model in eval mode."""
    from semlib.models import load_model
    from semlib.train import load_checkpoint
    model = load_model(path)
    model.load_state_dict(load_checkpoint(path)["model"], strict=False)
    return model.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="+", choices=sorted(PILOTS))
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--init", default="semlib/checkpoints/small.pt")
    p.add_argument("--data", default=None, help="training images (default ../shared/data/train via the lookup)")
    p.add_argument("--workdir", default="/work/runs/pilots")
    p.add_argument("--out-dir", default="results/pilots")
    p.add_argument("--parallel", type=int, default=2, help="pilots at once (one thread each)")
    p.add_argument("--force", action="store_true", help="score again even if a result exists")
    p.add_argument("--ceilings", action="store_true",
                   help="only add the PSNR with unrounded latents to the existing results (see ceiling())")
    p.add_argument("--resummarise", action="store_true",
                   help="only recompute the summaries of the existing results from their per-gamma rows")
    a = p.parse_args()
    if a.resummarise:
        return resummarise(Path(a.out_dir))
    if a.ceilings:
        torch.set_num_threads(1)
        return add_ceilings(Path(a.out_dir), Path(a.workdir), a.init)
    from semlib import data as sdata
    from semlib.models import load_model
    train_dir = a.data or str(Path(sdata.find_dataset("kodak")).parent / "train")
    os.makedirs(a.workdir, exist_ok=True)
    out_dir = Path(a.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = [n for n in a.names if a.force or not (out_dir / f"{n}.json").exists()]
    ctx = mp.get_context("spawn")
    with ctx.Pool(a.parallel) as pool:
        jobs = {n: pool.apply_async(run_one, (n, a.steps, a.workdir, train_dir, a.init)) for n in names}
        done = {n: j.get() for n, j in jobs.items()}
    torch.set_num_threads(max(1, a.parallel))
    images = kodak_crops()
    ref_path = out_dir / "start.json"
    if ref_path.exists():
        reference = {float(g): v for g, v in json.loads(ref_path.read_text())["per_gamma"].items()}
    else:
        reference = score(load_model(a.init), images)
        ref_path.write_text(json.dumps({"model": a.init, "per_gamma": reference,
                                        **summarise(reference, reference)}, indent=1))
    for n, (path, steps, seconds) in done.items():
        rows = score(load_raw(path), images)
        result = {"name": n, "what": PILOTS[n][0], "options": {**COMMON, **PILOTS[n][1]}, "init": a.init,
                  "steps": steps, "train_seconds": seconds, "crops": "6 Kodak images [128:384, 256:512], raw weights",
                  "command": "python " + " ".join(shlex.quote(s) for s in sys.argv),
                  **summarise(rows, reference), "per_gamma": rows}
        (out_dir / f"{n}.json").write_text(json.dumps(result, indent=1))
        print(f"{n:20s} {steps} steps {seconds / 60:.1f} min: bpp {result['bpp_at_32']:.3f} (g32) .. "
              f"{result['bpp_at_2048']:.3f} (g2048), slope {result['slope_log_bpp_per_log_gamma']:.3f}, "
              f"BD-rate vs start {result['bd_rate_vs_start_pct']}", flush=True)


if __name__ == "__main__":
    main()
