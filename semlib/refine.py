"""Encoder-side refinement: better latents for one image, same decoder, same file format.

The encoder network predicts each latent in one pass; it was trained to do well on average, not
on this image. Refinement (Yang, Bamler & Mandt, "Improving Inference for Neural Image
Compression", NeurIPS 2020) starts from its prediction and optimises the latents of this one
image for the very objective the model was trained on,

    L = R + mean over pixels of gamma_pixel * (x_hat - x)^2 * 4      (the units of semlib.models)

with this image's own gamma: a number, or its block map (ROI), so that refinement spends bits
where the map asks for them. Only the encoder changes what it sends; the decoder computes
exactly what it computes for any other file.

What is optimised: the posterior means mu_k of every latent block, the integers
round(mu_k - mu_p,k) being what the file holds (mu_p,k, the prior mean, follows the latents before
it). The top-down pass is run with stochastic Gumbel annealing (:func:`semlib.models.sga_round`)
in place of rounding, its temperature falling over the steps, so R and D are those of softly
rounded latents and become those of the rounded ones; the bottom-up encoder runs once, for the
starting point. Adam, with the step size decayed by a cosine. The true objective (rounded
latents, float32) of the start and of the end is compared and the better of the two is kept, so
refinement never makes a file worse by its own measure.

Measured (``scripts/pilot_refine.py``, ``results/pilots/refine.json``): with 30 steps it did
not beat the encoder on the step-30,000 model (0 of 24 crop files at gamma 64 and 1024, two step
sizes; about 4 s per 256 x 256 crop), so it is off by default. The relaxed objectives it descends (SGA, uniform
noise, straight-through rounding) are 5-20 % above the rounded one at the start, and each step
moves every latent by about the step size, so values near a rounding boundary flip in
directions the relaxation cannot judge.
"""

from __future__ import annotations

import math

import torch

from semlib.models import BLOCK, MAX_STRIDE, HierarchicalVAE

DEFAULT_LR = 0.003                              # Adam step, in quantisation steps (scripts/pilot_refine.py)
TAU_MAX, TAU_MIN, TAU_DECAY = 0.5, 0.05, 3.0    # SGA temperature: 0.5 * exp(-3 t), t = 0 .. 1


def pixel_gamma(gamma, height: int, width: int) -> torch.Tensor:
    """The model's gamma (a number or a block map rows x cols) as 1 x 1 x h x w per pixel
    (h = w = 1 for a number), cut to the image's ``height`` x ``width``."""
    g = torch.as_tensor(gamma, dtype=torch.float32)
    if g.dim() == 0:
        return g.reshape(1, 1, 1, 1)
    g = g.reshape(1, 1, *g.shape[-2:])
    g = g.repeat_interleave(BLOCK, dim=2).repeat_interleave(BLOCK, dim=3)
    return g[..., :height, :width]


def objective(model: HierarchicalVAE, embs, x: torch.Tensor, g_pix: torch.Tensor, offsets, height: int,
              width: int, mode="round") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L, R, D) of ``offsets`` for the padded image ``x`` (1 x 3 x H x W), measured on its top-left
    ``height`` x ``width`` pixels: R in nats per sub-pixel of the image, D = mean gamma-weighted
    squared error on [-1, 1]."""
    shape = (1, x.shape[2] // MAX_STRIDE, x.shape[3] // MAX_STRIDE)
    x_hat, likelihoods, _ = model.top_down(embs, shape, mode=mode, latents=offsets)
    nats = sum(-torch.log(lik).sum() for lik in likelihoods)
    rate = nats / (3 * height * width)
    err = (x_hat.float()[..., :height, :width] - x[..., :height, :width]).pow(2) * 4.0
    dist = (g_pix * err).mean()
    return rate + dist, rate, dist


def refine_latents(model: HierarchicalVAE, x: torch.Tensor, gamma, height: int, width: int, steps: int,
                   lr: float = DEFAULT_LR, first: int = 0, progress: bool = False) -> tuple[list[torch.Tensor], dict]:
    """Refine the latent offsets of one padded image ``x`` (1 x 3 x H x W in [0, 1], H and W
    multiples of 64) at the model's ``gamma`` (a number or a block map) for ``steps`` Adam steps.
    ``first``: the latent blocks before this one (coarse to fine) keep the encoder's values.

    Returns (offsets, report): the offsets to pass to ``model.compress(x, gamma, latents=...)``,
    and {"steps", "loss_start", "loss_end", "rate_start", "rate_end", "dist_start", "dist_end",
    "kept"} ("kept": "refined" or "start", whichever has the lower true objective)."""
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
            feats = model.encode_features(x, embs)
            start = []
            shape = (1, x.shape[2] // MAX_STRIDE, x.shape[3] // MAX_STRIDE)
            model.top_down(embs, shape, feats, "round", reconstruct=False, record=start)
            loss0, rate0, dist0 = objective(model, embs, x, g_pix, start, height, width, "round")
        offsets = [r.clone().requires_grad_(k >= first) for k, r in enumerate(start)]
        optimizer = torch.optim.Adam([r for r in offsets if r.requires_grad], lr=lr)
        from tqdm.auto import tqdm
        for i in tqdm(range(steps), desc="refine", disable=not progress, leave=False):
            for group in optimizer.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * i / max(1, steps)))
            tau = max(TAU_MIN, TAU_MAX * math.exp(-TAU_DECAY * i / max(1, steps)))
            loss, _, _ = objective(model, embs, x, g_pix, offsets, height, width, tau)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        refined = [r.detach() for r in offsets]
        with torch.no_grad():
            loss1, rate1, dist1 = objective(model, embs, x, g_pix, refined, height, width, "round")
    finally:
        for p in needs_grad:
            p.requires_grad_(True)
        model.train(was_training)
    kept = "refined" if float(loss1) < float(loss0) else "start"
    report = {"steps": steps, "loss_start": float(loss0), "loss_end": float(loss1), "rate_start": float(rate0),
              "rate_end": float(rate1), "dist_start": float(dist0), "dist_end": float(dist1), "kept": kept}
    return (refined if kept == "refined" else start), report
