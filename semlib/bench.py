"""``semlib bench``: sizes and training-step times of the configurations, and the codec's
encode / decode / Grad-CAM times on a Kodak image, printed (and written as JSON with
--json). The benchmark harness of BENCHMARKS.md (every item in a fresh process, peak
memory, profiles, the Markdown writer) is experiments/benchmarks.py, run by
scripts/benchmarks.py; it times with :func:`timed` too.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time

import torch

from semlib import data
from semlib.models import CONFIGS, build_model, count_parameters

# (batch, crop, precision) of the step benchmark per configuration
STEP_SETTINGS = {"tiny": (4, 64, "fp32"), "small": (8, 256, "bf16"), "paper": (2, 128, "bf16")}


def add_bench_arguments(p) -> None:
    p.add_argument("--configs", default="tiny,small,paper", help="configurations to time (comma-separated)")
    p.add_argument("--steps", type=int, default=3, help="timed training steps per configuration (after 2 warm-up steps)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-codec", action="store_true", help="skip the encode/decode/Grad-CAM timings")
    p.add_argument("--checkpoint", help="checkpoint for the codec timings (default: shipped, else random 'small' weights)")
    p.add_argument("--json", help="also write the figures to this JSON file")


def time_training_step(config: str, batch: int, crop: int, precision: str, steps: int = 3) -> float:
    """Median seconds of one optimisation step (forward, R + gamma*MSE, backward, Adam)."""
    torch.manual_seed(0)
    model = build_model(config).train()
    x = torch.rand(batch, 3, crop, crop)
    bf16 = precision == "bf16"
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        gamma = torch.exp(torch.empty(batch).uniform_(3.47, 7.62))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(x, gamma)
        rate = sum((-lik.log()).sum() for lik in out["likelihoods"].values()) / (batch * 3 * crop * crop)
        mse = ((out["x_hat"].float() - x) ** 2).mean(dim=(1, 2, 3)) * 4
        loss = rate + (gamma * mse).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def timed(fn, repeats: int) -> tuple[list[float], object]:
    """The seconds of each of ``repeats`` calls of ``fn``, and what the last returned: the one
    stopwatch of ``semlib bench`` and of the benchmark harness (experiments/benchmarks.py)."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def time_codec(checkpoint=None, repeats: int = 3) -> dict:
    """Encode / decode seconds (median) of kodim01 (768x512) and one Grad-CAM."""
    from semlib import codec
    from semlib.models import SHIPPED_CHECKPOINT

    img = data.load_image(data.find_dataset("kodak") / "kodim01.png")
    if checkpoint is None and not SHIPPED_CHECKPOINT.is_file():
        model, weights = build_model("small").eval(), "random 'small' weights (no checkpoint shipped yet)"
    else:
        model, weights = codec.get_model(checkpoint=checkpoint)[0], str(checkpoint or SHIPPED_CHECKPOINT)
    res = {"image": "kodim01 768x512", "weights": weights}
    codec.encode_image(img, gamma=256.0, model=model)  # warm-up
    enc_t, encoded = timed(lambda: codec.encode_image(img, gamma=256.0, model=model), repeats)
    dec_t, _ = timed(lambda: codec.decode(encoded.data, model=model), repeats)
    res.update(encode_s=statistics.median(enc_t), decode_s=statistics.median(dec_t), bpp=encoded.bpp)
    try:
        from semlib import importance

        importance.importance_map(img)
        res["gradcam_s"] = statistics.median(timed(lambda: importance.importance_map(img), repeats)[0])
    except ImportError:  # pragma: no cover
        pass
    return res


def run_bench(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    report = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
                         f"torch {torch.__version__}, {torch.get_num_threads()} threads", "configs": {}}
    print(report["machine"])
    print(f"{'config':8s} {'params':>10s} {'batch x crop':>14s} {'precision':>10s} {'s/step':>8s}")
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if name not in CONFIGS:
            raise ValueError(f"unknown configuration {name!r}; choose from {sorted(CONFIGS)}")
        batch, crop, precision = STEP_SETTINGS[name]
        params = count_parameters(build_model(name))
        sec = time_training_step(name, batch, crop, precision, steps=args.steps)
        report["configs"][name] = {"params": params, "batch": batch, "crop": crop, "precision": precision, "s_per_step": sec}
        print(f"{name:8s} {params / 1e6:9.2f}M {f'{batch}x{crop}x{crop}':>14s} {precision:>10s} {sec:8.3f}", flush=True)
    if not args.no_codec:
        c = time_codec(args.checkpoint)
        report["codec"] = c
        print(f"codec on {c['image']} with {c['weights']}: encode {c['encode_s']:.3f} s, "
              f"decode {c['decode_s']:.3f} s ({c['bpp']:.3f} bpp)"
              + (f", Grad-CAM {c['gradcam_s']:.3f} s" if "gradcam_s" in c else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


def __getattr__(name):
    """The names of the benchmark harness, which lived here before it moved to
    experiments/benchmarks.py (in the repository, not the installed package)."""
    try:
        from experiments import benchmarks
    except ImportError:
        raise AttributeError(f"module 'semlib.bench' has no attribute {name!r} (the benchmark harness is "
                             "experiments/benchmarks.py of the repository)") from None
    try:
        return getattr(benchmarks, name)
    except AttributeError:
        raise AttributeError(f"module 'semlib.bench' has no attribute {name!r}") from None


# --------------------------------------------------------------------------- GPU time estimates

# Measured: the `small` model trained at 2.8e5 training pixels per second on one core of the
# project's AMD EPYC VM (bf16 autocast, channels-last, 8 x 128^2 crops; BENCHMARKS.md,
# "Training speed of the campaign", median of 8,783 steps of campaign run 7).
CPU_TRAIN_PIXELS_PER_S = 2.8e5
# Published dense tensor-core peaks, FLOP/s (NVIDIA datasheets): T4 65 TFLOPS FP16 (mixed
# precision), A100 312 TFLOPS BF16/FP16. Claims of the vendor, not measurements of semlib.
GPU_PEAK_FLOPS = {"T4": 65e12, "A100": 312e12}


def training_flops_per_pixel(config: str = "small", crop: int = 128) -> float:
    """FLOPs of one training step (forward, loss, backward) per training pixel of
    ``config``, counted by :class:`torch.utils.flop_counter.FlopCounterMode` on one crop
    (convolutions and matrix products; element-wise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    from semlib.train import rate_distortion_loss

    model = build_model(config).train()
    x = torch.rand(1, 3, crop, crop, generator=torch.Generator().manual_seed(0))
    gamma = torch.tensor([256.0])
    with FlopCounterMode(display=False) as counter:
        rate_distortion_loss(model(x, gamma), x, gamma)["loss"].backward()
    return counter.get_total_flops() / (crop * crop)


def format_hours(lo: float, hi: float | None = None) -> str:
    """A duration, or a range of durations, given in hours, in the unit that suits the larger one:
    "8.6 h", "4 - 23 min", "0.4 - 1.9 min", "40 s". Ten units and more print without decimals, so
    that a short range never reads "0 - 2 min"."""
    hi = lo if hi is None else hi
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
        raise ValueError(f"durations must be finite, with 0 <= lo <= hi, got {lo!r} .. {hi!r}")
    scale, unit = (1, "h") if hi >= 1 else (60, "min") if hi * 60 >= 1 else (3600, "s")

    def num(v):
        v *= scale
        return f"{v:.0f}" if v >= 10 else f"{v:.1f}" if v >= 0.1 else f"{v:.2f}"

    return f"{num(lo)} {unit}" if num(lo) == num(hi) else f"{num(lo)} - {num(hi)} {unit}"


def gpu_training_estimates(steps: int, batch: int, crop: int, config: str = "small",
                           utilisation=(0.05, 0.3), cpu_pixels_per_s: float = CPU_TRAIN_PIXELS_PER_S) -> list[dict]:
    """Estimated hours of a training run of ``steps`` x ``batch`` crops of ``crop``^2 pixels:
    on the measured CPU (``cpu_pixels_per_s``, for ``small``), and on each GPU of
    :data:`GPU_PEAK_FLOPS` at the given fractions of its datasheet peak (an assumption, stated
    as such: small convolutional networks with depthwise layers seldom reach a third of it;
    this one reaches about 48 GFLOP/s on one CPU core). The GPU figures count
    arithmetic only, not data loading or kernel launches, so they are lower bounds on time;
    measure the real s/step with a short run. Rows: {"device", "hours": (lo, hi), "basis"}."""
    flops = training_flops_per_pixel(config, min(crop, 128))
    pixels = float(steps) * batch * crop * crop
    cpu_flops = flops * cpu_pixels_per_s
    rows = []
    if config == "small":                   # the measured rate is of this configuration
        rows.append({"device": "CPU, one core (measured rate)", "hours": (pixels / cpu_pixels_per_s / 3600,) * 2,
                     "basis": f"{cpu_pixels_per_s:.1e} px/s measured (BENCHMARKS.md), i.e. {cpu_flops / 1e9:.0f} "
                              f"GFLOP/s at {flops / 1e3:.0f} kFLOP per training pixel"})
    for name, peak in GPU_PEAK_FLOPS.items():
        hi_u, lo_u = max(utilisation), min(utilisation)
        rows.append({"device": name, "hours": (pixels * flops / (peak * hi_u) / 3600, pixels * flops / (peak * lo_u) / 3600),
                     "basis": f"{peak / 1e12:.0f} TFLOP/s datasheet peak x {lo_u:.0%}-{hi_u:.0%} utilisation (assumed)"})
    return rows
