"""Which part of the model caps the PSNR at high rates (issue 12).

Above gamma ~1024 the shipped model's PSNR stops rising while its rate keeps growing, and the
decoder fed the encoder's *unrounded* posterior means does no better (results/pilots/README.md,
"where the high rates stop"): the transforms, not the quantiser, are the limit. This script
finds which part of the transforms, on the six Kodak crops every span pilot is scored on
(``scripts/pilot_span.py``), at one gamma:

- ``rounded``: the model as it codes (test-time rounding);
- ``unrounded``: the encoder's posterior means as they are, no quantisation;
- ``free_latents``: the latents themselves optimised for MSE (Adam, unrounded, decoder fixed),
  starting from the encoder's: the best image this decoder makes from latents of these sizes,
  whatever the encoder;
- ``free_state_8`` / ``free_state_16``: the decoder's state at the input of the upsampling from
  /8 (or /16) optimised freely: the best image the layers after that point can make.

If ``free_latents`` is close to ``unrounded`` but ``free_state_8`` is far above it, the latents
are too few to steer the state the last layers need: more latent channels, not more layers.
Each optimisation keeps the best PSNR it reaches (Adam, step ``lr`` x the tensor's spread,
cosine decay). Also written: the bits per latent element of each latent block.

    python scripts/diagnose_ceiling.py --out results/pilots/ceiling/shipped.json
    python scripts/diagnose_ceiling.py --checkpoint runs/x/small.pt --raw --out ...
    python scripts/diagnose_ceiling.py --z-dims 16 16 48 24 --out ...

``--z-dims`` widens the model first, as ``semlib train --init ... --z-dims`` does (the new
channels start unused, their decoder input weights small and random): ``free_latents`` is then
a lower bound on what wider latents could give this decoder, before any training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pilot_span import kodak_crops, load_raw, unrounded  # noqa: E402


def psnr(x, x_hat) -> float:
    from semlib import metrics
    return float(metrics.psnr(x, x_hat.clamp(0, 1)))


def optimise(params, render, x, steps: int, lr: float) -> float:
    """Best PSNR of ``render()`` against ``x`` over ``steps`` Adam steps on ``params`` (MSE)."""
    groups = [{"params": [p], "lr": lr * float(p.detach().std()), "base": lr * float(p.detach().std())}
              for p in params]
    opt = torch.optim.Adam(groups)
    best = -math.inf
    for i in range(steps + 1):
        x_hat = render()
        loss = (x_hat - x).pow(2).mean()
        best = max(best, psnr(x, x_hat.detach()))
        if i == steps:
            break
        opt.zero_grad()
        loss.backward()
        for g in opt.param_groups:
            g["lr"] = g["base"] * 0.5 * (1 + math.cos(math.pi * i / steps))
        opt.step()
    return best


def diagnose(model, x, gamma: float, steps: int, lr: float) -> dict:
    model.eval().requires_grad_(False)
    n, _, h, w = x.shape
    shape = (n, h // 64, w // 64)
    row = {}
    with torch.no_grad():
        out = model(x, gamma)
        row["rounded"] = psnr(x, out["x_hat"])
        row["bits_per_element"] = [float(-torch.log2(lik).sum() / lik.numel()) for lik in out["likelihoods"].values()]
        row["bpp"] = float(sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values()) / (h * w))
    with unrounded(model):
        embs = model.embeddings(model.log_gamma_map(gamma, x))
        with torch.no_grad():
            feats = model.encode_features(x, embs)
            record = []
            row["unrounded"] = psnr(x, model.top_down(embs, shape, feats, "round", record=record)[0])
        latents = [mu.clone().requires_grad_(True) for mu in record]
        row["free_latents"] = optimise(latents, lambda: model.top_down(embs, shape, None, "round", latents=latents)[0],
                                       x, steps, lr)
        for name, module in (("free_state_8", model.dec_up[3]), ("free_state_16", model.dec_up[2])):
            seen = {}
            hook = module.register_forward_pre_hook(lambda m, args: seen.update(state=args[0].detach().clone()))
            with torch.no_grad():
                model.top_down(embs, shape, feats, "round")
            hook.remove()
            state = seen["state"].requires_grad_(True)
            hook = module.register_forward_pre_hook(lambda m, args: (state,))
            try:
                row[name] = optimise([state], lambda: model.top_down(embs, shape, feats, "round")[0], x, steps, lr)
            finally:
                hook.remove()
    return row


def widened(model, z_dims):
    """``model`` with more latent channels, the new ones unused (semlib.train._widen_latents)."""
    from semlib.models import build_model
    from semlib.train import _widen_latents
    wide = build_model(dataclasses.replace(model.config, z_dims=tuple(z_dims)))
    missing, unexpected = wide.load_state_dict(_widen_latents(model.state_dict(), wide), strict=False)
    assert not unexpected and all(k.startswith("entropy.") for k in missing), (missing, unexpected)
    return wide.eval()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="semlib/checkpoints/small.pt")
    p.add_argument("--raw", action="store_true", help="a training checkpoint's raw weights, not its EMA")
    p.add_argument("--gamma", type=float, default=8192.0)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--lr", type=float, default=0.05, help="Adam step, times each tensor's spread")
    p.add_argument("--z-dims", type=int, nargs=4, default=None, help="widen the latents first (see above)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from semlib.models import load_model
    model = load_raw(a.checkpoint) if a.raw else load_model(a.checkpoint)
    if a.z_dims:
        model = widened(model, a.z_dims)
    t0 = time.time()
    rows = []
    for i, x in enumerate(kodak_crops()):
        rows.append(diagnose(model, x, a.gamma, a.steps, a.lr))
        print(i, {k: (round(v, 2) if isinstance(v, float) else [round(b, 2) for b in v]) for k, v in rows[-1].items()},
              flush=True)
    keys = [k for k in rows[0] if k != "bits_per_element"]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    mean["bits_per_element"] = np.mean([r["bits_per_element"] for r in rows], axis=0).tolist()
    result = {"command": "python " + shlex.join(sys.argv), "checkpoint": a.checkpoint, "raw": a.raw,
              "gamma": a.gamma, "steps": a.steps, "lr": a.lr,
              "z_dims": list(model.config.z_dims), "latent_blocks": list(model.config.latents),
              "crops": "kodim01-06[128:384, 256:512]", "mean": mean, "per_crop": rows,
              "seconds": round(time.time() - t0, 1)}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(result, indent=1))
    print("mean", {k: (round(v, 2) if isinstance(v, float) else [round(b, 2) for b in v]) for k, v in mean.items()})


if __name__ == "__main__":
    main()
