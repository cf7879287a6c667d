"""Train the fixed-rate `tiny` reference models of notebook 04: one model per gamma, with the
notebook's own recipe (beta 0: the loss R + gamma * D only, uniform importance, lr 1e-3,
128-pixel crops in batches of 8), only for more steps than a CI notebook has time for, and on
all the training photos in --data (the notebook takes the first 200).

    python scripts/train_tiny_references.py --steps 6000 --work /tmp/tiny --out semlib/checkpoints/tiny

Each model is exported in float16 (about 0.7 MB) as OUT/tiny_gamma{G}.pt, and OUT/runs.json
records the command, the steps, the photos and the CPU time of each, so that the notebook can
say how they were made.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

import torch

from semlib import train

GAMMAS = (4, 32, 256, 2048)      # those of notebook 04's full mode


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/train", help="training photos (never Kodak)")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--gammas", type=float, nargs="+", default=list(GAMMAS))
    p.add_argument("--work", type=Path, required=True, help="folder of the training checkpoints and logs")
    p.add_argument("--out", type=Path, required=True, help="folder of the exported models and runs.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    runs_path = args.out / "runs.json"
    runs = json.loads(runs_path.read_text()) if runs_path.exists() else []
    for gamma in args.gammas:
        name = f"tiny_gamma{gamma:g}"
        options = dict(config="tiny", fixed_gamma=float(gamma), beta=0.0, gamma_range=(float(gamma), float(gamma)),
                       importance="uniform", crop=128, batch=8, lr=1e-3, amp=False, warmup=args.steps // 10,
                       val_every=0, log_every=max(1, args.steps // 20), progress=False, num_threads=1)
        started, cpu = time.perf_counter(), time.process_time()
        summary = train.train(train.training_args(args.data, args.steps, args.work / f"{name}.pt", **options))
        if summary["interrupted"]:                  # a signal or the time limit: export nothing half-trained
            print(f"{name}: interrupted at step {summary['step']}; nothing exported", flush=True)
            return 1
        model = train.export_model(summary["checkpoint"], args.out / f"{name}.pt", fp16=True)
        runs = [r for r in runs if r["model"] != model.name] + [{
            "model": model.name, "gamma": gamma, "steps": summary["step"], "images": summary["images"],
            "wall_min": round((time.perf_counter() - started) / 60, 1),
            "cpu_min": round((time.process_time() - cpu) / 60, 1), "date": date.today().isoformat(),
            "command": "python scripts/train_tiny_references.py " + " ".join(sys.argv[1:]),
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "last": {k: round(v, 4) for k, v in summary["last"].items() if isinstance(v, float)}}]
        runs_path.write_text(json.dumps(runs, indent=1) + "\n")
        print(f"{name}: {summary['step']} steps, {runs[-1]['wall_min']} min, last {runs[-1]['last']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
