"""Does a file encoded with one CPU thread count decode, bit-exactly, with another?

    nice -n 10 .venv/bin/python scripts/determinism.py --label after

For each direction (encode with 2 threads, decode with 1; and encode with 1, decode
with 2) an encoder process codes every Kodak image at a few settings (scalar gamma, and
a gamma map from an ROI mask) and saves the file and its reconstruction; a separate
decoder process decodes each file with the other thread count and compares. A case is

    exact          the decoded image equals the encoder's reconstruction (uint8)
    pixels_differ  it decodes, but some sub-pixels differ (counted, with the largest difference)
    format_error   semlib.FormatError (a latent string cannot be decoded: the decoder's
                   priors picked another coding table than the encoder's)

``--crop HxW`` codes the centre crop of each image. (The ``--unpinned`` option of the
"before" row of ROBUSTNESS.md §3 is gone: it unpinned the coding threads, which only
files of format version 1 use; version 2 files carry the side information of
:mod:`semlib.entropy` instead and are coded on each process's own thread count.)

The model is a `small` one with RANDOM weights (seed 0), or ``--checkpoint`` (e.g. the
shipped semlib/checkpoints/small.pt, whose latents have a trained model's statistics). Results (counts, per-file details, platform) go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

SETTINGS = {
    "gamma64": {"gamma": 64.0},
    "gamma1024": {"gamma": 1024.0},
    "roi256": {"gamma": 256.0, "roi": True},
}


def roi_mask(height: int, width: int) -> np.ndarray:
    """An ellipse in the middle of the image (importance 1 inside, 0.1 outside)."""
    yy, xx = np.mgrid[:height, :width]
    inside = ((yy - height / 2) / (height / 3)) ** 2 + ((xx - width / 2) / (width / 3)) ** 2 <= 1
    return np.where(inside, 1.0, 0.1).astype(np.float32)


def _setup(args):
    import torch

    import semlib.models

    torch.set_num_threads(args.threads)
    return semlib.models.load_model(args.ckpt)


def _crop(img, crop):
    if not crop:
        return img
    h, w = (int(v) for v in crop.split("x"))
    y, x = max(0, (img.shape[0] - h) // 2), max(0, (img.shape[1] - w) // 2)
    return img[y:y + h, x:x + w]


def worker_encode(args):
    import torch

    from semlib import codec, data

    model = _setup(args)
    out = Path(args.dir)
    images = data.list_images(data.find_dataset("kodak"))[: args.images]
    times = []
    for path in images:
        img = _crop(data.load_image(path), args.crop)
        for name in args.settings.split(","):
            s = SETTINGS[name]
            t0 = time.perf_counter()
            imp = roi_mask(*img.shape[:2]) if s.get("roi") else None
            enc = codec.encode_image(img, gamma=s["gamma"], importance=imp, model=model)
            times.append(time.perf_counter() - t0)
            (out / f"{path.stem}_{name}.semc").write_bytes(enc.data)
            np.save(out / f"{path.stem}_{name}.npy", enc.x_hat)
    print(json.dumps({"threads": torch.get_num_threads(), "encode_s": times}))


def worker_decode(args):
    import torch

    from semlib import FormatError, codec

    model = _setup(args)
    results = {}
    for f in sorted(Path(args.dir).glob("*.semc")):
        ref = np.load(f.with_suffix(".npy"))
        t0 = time.perf_counter()
        try:
            out = codec.decode(f.read_bytes(), model=model)
        except FormatError as e:
            results[f.stem] = {"outcome": "format_error", "detail": str(e)[:200]}
            continue
        secs = time.perf_counter() - t0
        diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
        n = int((diff > 0).sum())
        results[f.stem] = {"outcome": "exact" if n == 0 else "pixels_differ", "subpixels": n,
                           "max_diff": int(diff.max()), "decode_s": round(secs, 3), "bytes": f.stat().st_size}
    print(json.dumps({"threads": torch.get_num_threads(), "results": results}))


def run_worker(mode: str, threads: int, ckpt: str, folder: str, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", mode, "--threads", str(threads), "--ckpt", ckpt,
           "--dir", folder, "--images", str(args.images), "--settings", args.settings, "--crop", args.crop]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"{mode} worker failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--directions", default="2:1,1:2", help="encoder:decoder thread counts")
    ap.add_argument("--label", default="", help="a name for this run (e.g. before / after a fix)")
    ap.add_argument("--crop", default="", help="HxW: code the centre crop of each image")
    ap.add_argument("--checkpoint", default=None, help="a trained checkpoint (default: a random 'small' model)")
    ap.add_argument("--out", default="results/robustness/determinism.json")
    ap.add_argument("--worker", choices=("encode", "decode"), help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker == "encode":
        worker_encode(args)
        return 0
    if args.worker == "decode":
        worker_decode(args)
        return 0

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from experiments.fuzzing import platform_info
    from semlib.models import random_model, save_model

    tmp = tempfile.TemporaryDirectory()
    if args.checkpoint:
        ckpt, model_note = args.checkpoint, f"trained checkpoint {args.checkpoint}"
    else:
        ckpt = os.path.join(tmp.name, "small_random.pt")
        save_model(random_model("small", 0), ckpt, note="random weights, determinism check only")
        model_note = "small, RANDOM weights (seed 0, modulations N(0, 0.3))"
    report = {"what": "decode(encode(x)) across CPU thread counts (scripts/determinism.py)",
              "label": args.label,
              "model": model_note,
              "images": f"first {args.images} of Kodak (768x512 / 512x768)" + (f", centre crop {args.crop}" if args.crop else ""),
              "coding_threads": "each process's own (format version 2: side information, semlib.entropy)",
              "settings": {k: SETTINGS[k] for k in args.settings.split(",")},
              "roi": "ellipse mask, importance 1 inside / 0.1 outside, kappa 1", "platform": platform_info(),
              "directions": {}}
    t_start = time.time()
    for direction in args.directions.split(","):
        te, td = (int(v) for v in direction.split(":"))
        folder = tempfile.mkdtemp(dir=tmp.name)
        t0 = time.time()
        enc = run_worker("encode", te, ckpt, folder, args)
        dec = run_worker("decode", td, ckpt, folder, args)
        counts = Counter(r["outcome"] for r in dec["results"].values())
        key = f"encode {te} thread{'s' * (te > 1)} -> decode {td} thread{'s' * (td > 1)}"
        report["directions"][key] = {
            "counts": {o: counts.get(o, 0) for o in ("exact", "pixels_differ", "format_error")},
            "files": len(dec["results"]), "wall_s": round(time.time() - t0, 1),
            "mean_encode_s": round(float(np.mean(enc["encode_s"])), 3), "results": dec["results"]}
        print(f"{key}: {report['directions'][key]['counts']} ({time.time() - t0:.0f} s)", flush=True)
        for name, r in dec["results"].items():
            if r["outcome"] != "exact":
                print(f"   {name}: {r}")
    report["wall_s"] = round(time.time() - t_start, 1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
