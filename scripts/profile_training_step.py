"""Time the campaign's training step on this CPU, part by part: eager, or under ``--compile``.

The step is the one of ``semlib train`` (semlib.train.make_batch, the model's forward, the loss
R + gamma*D with --balance-gammas, backward with clipping and Adam, the EMA), with the
campaign's options (small, 8 x 128^2 crops, gamma 4 ... 8192, stratified, mixed quantisation),
warm-started from the shipped weights, on one thread. Prints the median of each part over the
steps after the first three (the compiled variant compiles on its first steps).

    OMP_NUM_THREADS=1 python scripts/profile_training_step.py --variant eager --steps 24
    OMP_NUM_THREADS=1 python scripts/profile_training_step.py --variant compile --steps 24

Numbers: BENCHMARKS.md, "Training step times". Measure the variants under the same load.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variant", choices=["eager", "eager-fused", "compile", "compile-foreach"], default="eager",
                   help="compile = what --compile does (torch.compile and fused Adam); compile-foreach: "
                        "torch.compile with the default Adam; eager-fused: fused Adam alone")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "train"))
    p.add_argument("--images", type=int, default=64, help="training images to load (default 64)")
    p.add_argument("--init", default=str(ROOT / "semlib" / "checkpoints" / "small.pt"))
    a = p.parse_args()

    import torch

    from semlib import train as T
    from semlib.models import build_model

    torch.set_num_threads(1)
    args = T.add_train_arguments(argparse.ArgumentParser()).parse_args(
        ["--config", "small", "--data", a.data, "--steps", "10000", "--crop", "128", "--batch", "8",
         "--balance-gammas", "--stratify-gammas", "--gamma-range", "4", "8192", "--quantization", "mixed",
         "--no-amp", "--out", "unused.pt"])
    fmt = torch.channels_last
    dataset = T.TrainingSet(args.data, args.crop, args.importance, args.cache_dir, a.images, progress=False)
    model = build_model(T.model_config(args)).to(memory_format=fmt)
    model.train_quantization = args.quantization
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    T._warm_start(model, ema, a.init, "small")
    optimizer = T.adam(model.parameters(), 1e-5, fused=a.variant in ("compile", "eager-fused"))
    net = T.compiled(model) if a.variant.startswith("compile") else model
    amp_context, scaler = T.autocast_for(torch.device("cpu"), args.amp)
    parts = {k: [] for k in ("batch", "forward", "loss", "backward+adam", "ema", "total")}
    for step in range(a.steps):
        t0 = time.perf_counter()
        x, imp, gamma = T.make_batch(dataset, 0, step, args.batch, args.map_prob, None, 0, 1, args.gamma_range,
                                     args.stratify_gammas)
        x = x.contiguous(memory_format=fmt)
        t1 = time.perf_counter()
        with amp_context:
            result = net(x, gamma)
        t2 = time.perf_counter()
        losses = T.rate_distortion_loss(result, x, gamma, args.beta, imp,
                                        T.balance_weights(gamma, x.shape[0], args.gamma_range))
        t3 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        T.backward_and_step(losses["loss"], optimizer, model.parameters(), args.clip, scaler)
        float(losses["loss"])
        t4 = time.perf_counter()
        T.update_ema(ema, model, 10_000, args.ema_decay)
        t5 = time.perf_counter()
        for k, v in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
            parts[k].append(v)
        if step < 3:
            print(f"step {step}: {t5 - t0:.2f} s", flush=True)
    print(json.dumps({"variant": a.variant, "torch": torch.__version__, "steps": a.steps,
                      "median_s": {k: round(statistics.median(v[3:]), 4) for k, v in parts.items()}}))


if __name__ == "__main__":
    main()
