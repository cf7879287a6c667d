"""Encoder-side refinement: better latents for one image, same decoder, same file format.

The encoder network predicts each latent in one pass; it was trained to do well on average, not
on this image. Refinement (after Yang, Bamler & Mandt, "Improving Inference for Neural Image
Compression", NeurIPS 2020) starts from its prediction and optimises, for this one image, the
very objective the model was trained on,

    L = R + mean over pixels of gamma_pixel * (x_hat - x)^2 * 4      (the units of semlib.models)

with this image's own gamma: a number, or its block map (ROI), so that refinement spends bits
where the map asks for them. Only the encoder changes what it sends; the decoder computes
exactly what it computes for any other file.

What is optimised: the bottom-up features the top-down pass reads (one map per scale with
latents, /8 to /64). Each latent's posterior mean comes from its scale's feature through the
model's own posterior network, so the search moves the latents along directions the network
learned, and the bottom-up encoder runs once, for the starting point. Each step is one top-down
pass, forward and backward, with the training quantisation ("mixed": the decoder sees rounded
latents, straight through; the rate is that of noisy ones). Adam, its step a fraction ``lr`` of
each feature map's root mean square, decayed by a cosine. The true objective (rounded latents,
float32) is measured at the start and at :data:`CHECKS` points along the way, and the best of
these is kept, so refinement never makes a file worse by its own measure.

Measured (``scripts/pilot_refine.py``, ``results/pilots/refine.json``): see the README of
``results/pilots``. Optimising the posterior means themselves, by straight-through rounding or
by stochastic Gumbel annealing (this module's first version), did not beat the encoder: each
step moves every latent by about the step size, and values near a rounding boundary flip in
directions the relaxation cannot judge. Optimising the encoder's input image does as well as
the features, at about 1.4 times the cost per step.
"""

from __future__ import annotations

import math

import torch

from semlib.models import BLOCK, MAX_STRIDE, HierarchicalVAE

DEFAULT_LR = 0.01   # Adam step, as a fraction of each feature map's rms (scripts/pilot_refine.py)
CHECKS = 4          # true-objective measurements along the way (and one at the start)
SEED = 0            # of the training noise refinement descends with


def pixel_gamma(gamma, height: int, width: int) -> torch.Tensor:
    """The model's gamma (a number or a block map rows x cols) as 1 x 1 x h x w per pixel
    (h = w = 1 for a number), cut to the image's ``height`` x ``width``."""
    g = torch.as_tensor(gamma, dtype=torch.float32)
    if g.dim() == 0:
        return g.reshape(1, 1, 1, 1)
    g = g.reshape(1, 1, *g.shape[-2:])
    g = g.repeat_interleave(BLOCK, dim=2).repeat_interleave(BLOCK, dim=3)
    return g[..., :height, :width]


def objective(model: HierarchicalVAE, embs, x: torch.Tensor, g_pix: torch.Tensor, latents, height: int,
              width: int, mode="round", feats=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, R, D) of the posterior means ``latents`` (or, with ``latents=None``, of the bottom-up
    features ``feats``) for the padded image ``x`` (1 x 3 x H x W), measured on its top-left
    ``height`` x ``width`` pixels: R in nats per sub-pixel of the image, D = mean gamma-weighted
    squared error on [-1, 1]. ``mode``: 'round' (what the file holds) or 'mixed' (training)."""
    shape = (1, x.shape[2] // MAX_STRIDE, x.shape[3] // MAX_STRIDE)
    x_hat, likelihoods, _ = model.top_down(embs, shape, feats, mode=mode, latents=latents)
    nats = sum(-torch.log(lik).sum() for lik in likelihoods)
    rate = nats / (3 * height * width)
    err = (x_hat.float()[..., :height, :width] - x[..., :height, :width]).pow(2) * 4.0
    dist = (g_pix * err).mean()
    return rate + dist, rate, dist


def _posterior_means(model, embs, x, feats) -> list[torch.Tensor]:
    """The posterior means the top-down pass computes from ``feats``, in coding order."""
    record = []
    shape = (1, x.shape[2] // MAX_STRIDE, x.shape[3] // MAX_STRIDE)
    model.top_down(embs, shape, feats, "round", reconstruct=False, record=record)
    return record


def refine_latents(model: HierarchicalVAE, x: torch.Tensor, gamma, height: int, width: int, steps: int,
                   lr: float = DEFAULT_LR, progress: bool = False) -> tuple[list[torch.Tensor], dict]:
    """Refine the latents of one padded image ``x`` (1 x 3 x H x W in [0, 1], H and W multiples
    of 64) at the model's ``gamma`` (a number or a block map) for ``steps`` Adam steps.

    Returns (latents, report): the posterior means to pass to ``model.compress(x, gamma,
    latents=...)``, and {"steps", "loss_start", "loss_end", "rate_start", "rate_end",
    "dist_start", "dist_end", "kept", "kept_step"} ("kept": "refined" or "start"; "kept_step":
    the step after which the kept latents were measured, 0 for the encoder's own; the "_end"
    values are those of the kept latents)."""
    if steps < 0:
        raise ValueError(f"refinement steps must be >= 0, got {steps}")
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"refinement takes one image 1 x 3 x H x W, got {tuple(x.shape)}")
    g_pix = pixel_gamma(gamma, height, width).to(x.device)
    was_training = model.training
    needs_grad = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    for p in needs_grad:
        p.requires_grad_(False)
    try:
        with torch.no_grad():
            embs = model.embeddings(model.log_gamma_map(gamma, x))
            feats = [f.float() for f in model.encode_features(x, embs)]
            best = _posterior_means(model, embs, x, feats)
            best_l = [float(v) for v in objective(model, embs, x, g_pix, best, height, width)]
        start_l, best_step = best_l, 0
        read = {s for s, latent_blocks, _, _ in model.decoder_scales() if latent_blocks}
        feats = [f.clone().requires_grad_(s in read) for s, f in enumerate(feats)]
        groups = [{"params": [f], "base": lr * float(f.detach().pow(2).mean().sqrt().clamp_min(1e-6))}
                  for f in feats if f.requires_grad]
        optimizer = torch.optim.Adam(groups, lr=lr)
        checks = {round(steps * (c + 1) / CHECKS) for c in range(CHECKS)} if steps else set()
        from tqdm.auto import tqdm
        # the training noise, seeded (and the caller's generator left alone): one image, one file
        with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
            torch.manual_seed(SEED)
            for i in tqdm(range(steps), desc="refine", disable=not progress, leave=False):
                for group in optimizer.param_groups:
                    group["lr"] = group["base"] * 0.5 * (1 + math.cos(math.pi * i / steps))
                loss, _, _ = objective(model, embs, x, g_pix, None, height, width, "mixed", feats=feats)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if i + 1 in checks:
                    with torch.no_grad():
                        latents = _posterior_means(model, embs, x, feats)
                        l = [float(v) for v in objective(model, embs, x, g_pix, latents, height, width)]
                    if l[0] < best_l[0]:
                        best, best_l, best_step = latents, l, i + 1
    finally:
        for p in needs_grad:
            p.requires_grad_(True)
        model.train(was_training)
    report = {"steps": steps, "loss_start": start_l[0], "loss_end": best_l[0], "rate_start": start_l[1],
              "rate_end": best_l[1], "dist_start": start_l[2], "dist_end": best_l[2],
              "kept": "refined" if best_step else "start", "kept_step": best_step}
    return best, report
