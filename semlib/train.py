"""Training the gamma-conditioned hierarchical VAE: the loss R + gamma*D and its loop (docs/METHOD.md §5-6).

Read top to bottom; each part is one idea:

1. **The loss** (docs/METHOD.md §6): ``L = R + gamma * D``, ``D = MSE + beta * (1 - SI-SSIM)``, in the
   units of :mod:`semlib.models` (R in nats per sub-pixel, MSE of images scaled to [-1, 1]).
2. **The data**: every training image decoded once into RAM (uint8), its Grad-CAM importance
   map computed once and cached on disk; batch ``step`` is a pure function of ``(seed, step)``.
   Cutting a batch of 8 crops of 256 takes ~30 ms against seconds per training step on a CPU,
   so there are no DataLoader workers.
3. **Gamma sampling** (docs/METHOD.md §5): log-uniform in [32, 2048] per image; on some steps a block
   map per image (importance-derived, docs/METHOD.md §2, or random smooth blobs) so the model learns
   ROI control; ``--fixed-gamma`` trains the paper's fixed-rate models instead.
4. **Checkpoints**: written atomically, every ``--ckpt-every`` steps and on Ctrl-C/SIGTERM;
   ``--resume`` continues bit for bit (on the CPU) as if the run had never stopped.
5. **The loop**: Adam, warmup + cosine learning rate, gradient-norm clipping, an EMA of the
   weights (the EMA is what is evaluated and shipped), bf16 autocast + channels-last on the
   CPU, AMP on CUDA, DistributedDataParallel under ``torchrun``.
6. **Validation and export**: bpp and PSNR on a few Kodak crops at a few gammas; the EMA
   weights as a standalone model checkpoint (:func:`semlib.models.save_model`).
7. **The command line**: ``semlib train --config tiny|small|paper --data DIR --steps N --out CKPT``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import hashlib
import json
import math
import os
import signal
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from semlib import allocation, data, metrics
from semlib.errors import CheckpointError, ImageError, SemlibError
from semlib.models import (BLOCK, CONFIGS, Config, GAMMA_RANGE, MAX_STRIDE, _channels_last, build_model, load_model,
                           read_checkpoint, save_model)

TRAIN_FORMAT = "semlib-train"
# beta of D = MSE + beta * (1 - SI-SSIM). On Kodak (JPEG, 24 to 41 dB) the MSE on [-1, 1] is
# 0.01 to 0.05 times 1 - SI-SSIM, median about 0.02, so beta = 0.01 makes the structural term
# about half the pixel term: MSE still leads (PSNR is the reported metric), SI-SSIM steers the
# bits toward important structure. Notebook 05 measures the ratio.
DEFAULT_BETA = 0.01
VAL_GAMMAS = (64.0, 256.0, 1024.0)
LR_FLOOR = 0.1            # the cosine schedule ends at LR_FLOOR * lr


# =========================================================================== 1. the loss


def gamma_per_pixel(gamma, n: int, height: int, width: int) -> torch.Tensor:
    """Any gamma (number, N values, or block map N x H/8 x W/8) -> N x 1 x h x w, h, w in {1, H}."""
    g = torch.as_tensor(gamma, dtype=torch.float32)
    if g.dim() == 0:
        return g.reshape(1, 1, 1, 1).expand(n, 1, 1, 1)
    if g.dim() == 1:
        return g.reshape(-1, 1, 1, 1).expand(n, 1, 1, 1)
    if g.dim() == 2:
        g = g.unsqueeze(0)
    if tuple(g.shape[-2:]) != (height // BLOCK, width // BLOCK):
        raise ValueError(f"gamma map {tuple(g.shape)} does not fit {height}x{width} images")
    g = g.reshape(-1, 1, height // BLOCK, width // BLOCK).expand(n, 1, -1, -1)
    return g.repeat_interleave(BLOCK, dim=2).repeat_interleave(BLOCK, dim=3)


def rate_distortion_loss(out: dict, x: torch.Tensor, gamma, beta: float = DEFAULT_BETA,
                         importance=None, weights=None) -> dict:
    """L = R + gamma * D, D = MSE + beta * (1 - SI-SSIM) (docs/METHOD.md §4-6), in the units of gamma,
    per image, then averaged over the batch:

    * R_n = sum over latents of -ln(likelihood) / (3 * H * W): nats per sub-pixel;
    * the pixel term is the mean over pixels of gamma_pixel * (x - x_hat)^2 * 4, the MSE of
      images scaled to [-1, 1] weighted by the gamma of each pixel's 8x8 block (a scalar
      gamma is the constant map);
    * the structural term is beta * mean(gamma_n) * (1 - SI-SSIM(x_n, x_hat_n; importance_n)).

    ``out`` is the model's ``forward`` output, ``x`` the batch in [0, 1], ``importance`` the
    importance maps of ``x`` (N x H x W; None = uniform), ``weights`` optional per-image
    weights of the batch mean (see :func:`balance_weights`). Returns a dict of tensors:
    ``loss`` (differentiable), and detached ``rate``, ``mse`` (on [0, 1]), ``si_ssim``,
    ``bpp`` (bits / (N * H * W)) and ``psnr`` (dB, mean over images, x_hat clipped to [0, 1]).
    """
    n, _, height, width = x.shape
    x_hat = out["x_hat"].float()
    nats = sum(-torch.log(lik).flatten(1).sum(dim=1) for lik in out["likelihoods"].values())   # per image
    rate = nats / (3 * height * width)
    g = gamma_per_pixel(gamma, n, height, width).to(x.device)
    sq_err = (x_hat - x).pow(2)
    per_image = rate + (g * sq_err * 4.0).mean(dim=(1, 2, 3))
    si = torch.full((n,), float("nan"), device=x.device)
    if beta > 0:
        si = metrics.si_ssim(x, x_hat, importance, reduction="none")
        per_image = per_image + beta * g.mean(dim=(1, 2, 3)) * (1.0 - si)
    loss = per_image.mean() if weights is None else (weights.to(x.device) * per_image).mean()
    with torch.no_grad():
        mse_each = (x_hat.clamp(0, 1) - x).pow(2).mean(dim=(1, 2, 3))
        return {"loss": loss, "rate": rate.detach().mean(), "mse": sq_err.mean().detach(),
                "si_ssim": si.detach().mean(), "bpp": nats.detach().mean() / math.log(2) / (height * width),
                "psnr": (-10 * torch.log10(mse_each.clamp_min(1e-10))).mean()}


def balance_weights(gamma, n: int, gamma_range=GAMMA_RANGE) -> torch.Tensor:
    """Per-image weights sqrt(lo * hi) / mean(gamma_n), so that images of every gamma pull
    about equally on the shared weights (without them the largest gamma of a batch dominates
    its gradient: gamma spans a factor of 64). Each image's own optimum, the trade-off at its
    gamma, is unchanged: a conditioned model solves one problem per gamma, and scaling one
    problem's loss does not move its minimum."""
    g = torch.as_tensor(gamma, dtype=torch.float32)
    mean_gamma = g.reshape(-1).expand(n) if g.dim() <= 1 else g.reshape(n, -1).mean(dim=1)
    return math.sqrt(gamma_range[0] * gamma_range[1]) / mean_gamma


# =========================================================================== 2. the data


def mix_seed(*parts) -> int:
    """A 63-bit seed from any tuple of numbers and strings (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little") >> 1


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "semlib" / "importance"


def cached_importance(image: np.ndarray, key: str, cache_dir: Path, method: str = "gradcam") -> np.ndarray:
    """The importance map of ``image`` as uint8 H x W, read from / written to ``cache_dir``.

    ``key`` identifies the image (the sha256 of its file); the PNG is written atomically, and
    a cached file that cannot be read or has the wrong size is recomputed.
    """
    if method == "uniform":
        return np.full(image.shape[:2], 255, np.uint8)
    from semlib.importance import cached_map

    def compute():
        from semlib.importance import importance_map  # loads a classifier: only when needed

        return np.round(importance_map(image) * 255).astype(np.uint8)

    return cached_map(compute, cache_dir, f"{key}_{method}.png", image.shape[:2])


class TrainingSet:
    """Every image under ``folder`` (recursive, case-insensitive extensions) decoded once into
    RAM as uint8, with its importance map (uint8, cached on disk by file content).

    Images whose short side is below ``crop`` are upscaled (bicubic, the map bilinear) so
    that the short side equals ``crop``: a crop then never sees padding, only a slightly
    blurred photo. ``max_images`` keeps an evenly spaced subset (for quick runs).
    """

    def __init__(self, folder, crop: int = 256, importance: str = "gradcam", cache_dir=None,
                 max_images: int | None = None, progress: bool = True):
        folder = Path(folder)
        if not folder.is_dir():
            raise SemlibError(f"{folder}: training data folder not found")
        paths = data.list_images(folder, recursive=True)
        if max_images is not None and 0 < max_images < len(paths):
            paths = [paths[i] for i in np.linspace(0, len(paths) - 1, max_images).round().astype(int)]
        if not paths:
            raise SemlibError(f"{folder}: no images found (looked recursively for {', '.join(data.IMAGE_EXTENSIONS)})")
        if importance not in ("gradcam", "uniform"):
            raise SemlibError(f"importance must be 'gradcam' or 'uniform', got {importance!r}")
        cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.crop, self.images, self.maps, self.names = crop, [], [], []
        refused = test_set_sums()
        for path in tqdm(paths, desc="images + importance maps", disable=not progress, leave=False):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")      # grey/CMYK photos are converted to RGB
                    image = data.load_image(path)
            except ImageError as e:
                warnings.warn(f"skipping {e}", stacklevel=2)
                continue
            digest = data.sha256_file(path)
            if digest in refused:
                raise SemlibError(f"{path} is a Kodak test image (its SHA-256 is pinned in semlib/sums/kodak.txt): "
                                  f"semlib does not train on its test set; train on other photos "
                                  f"(semlib data download train)")
            m = cached_importance(image, digest[:32], cache_dir, importance)
            image, m = _at_least(image, m, crop)
            self.images.append(image)
            self.maps.append(m)
            self.names.append(str(path.relative_to(folder)))
        if not self.images:
            raise SemlibError(f"{folder}: none of the {len(paths)} image files could be read")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.images) + sum(m.nbytes for m in self.maps)

    def indices(self, seed: int, step: int, batch: int, rank: int = 0, world: int = 1) -> list[int]:
        """The images of batch ``step`` on ``rank``: epochs are seeded permutations, and the
        global batch (``batch * world`` images) is the next slice of their concatenation."""
        n, total = len(self), batch * world
        out = []
        for p in range(step * total + rank * batch, step * total + (rank + 1) * batch):
            epoch, i = divmod(p, n)
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(mix_seed(seed, "epoch", epoch)))
            out.append(int(perm[i]))
        return out

    def crop_at(self, i: int, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A random crop (and horizontal flip) of image i and of its map, aligned."""
        image, m, c = self.images[i], self.maps[i], self.crop
        top = int(torch.randint(0, image.shape[0] - c + 1, (1,), generator=gen))
        left = int(torch.randint(0, image.shape[1] - c + 1, (1,), generator=gen))
        image, m = image[top:top + c, left:left + c], m[top:top + c, left:left + c]
        if float(torch.rand((), generator=gen)) < 0.5:
            image, m = image[:, ::-1], m[:, ::-1]
        return image, m


def _at_least(image: np.ndarray, m: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Upscale an image (and its map) whose short side is below ``side`` to exactly ``side``."""
    h, w = image.shape[:2]
    if min(h, w) >= side:
        return image, m
    s = side / min(h, w)
    size = (max(side, round(w * s)), max(side, round(h * s)))
    image = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
    return image, np.asarray(Image.fromarray(m).resize(size, Image.BILINEAR))


# =========================================================================== 3. gamma sampling


def log_uniform(gen: torch.Generator, lo: float = GAMMA_RANGE[0], hi: float = GAMMA_RANGE[1]) -> float:
    return math.exp(math.log(lo) + float(torch.rand((), generator=gen)) * (math.log(hi) - math.log(lo)))


def stratified_log_uniform(gen: torch.Generator, n: int, lo: float, hi: float) -> list[float]:
    """n gammas, one log-uniform draw in each of n equal strata of [log lo, log hi], in random
    order: every batch covers the whole range (a plain draw of 8 often leaves a third of it out)."""
    order = torch.randperm(n, generator=gen).tolist()
    u = [(k + float(torch.rand((), generator=gen))) / n for k in order]
    return [math.exp(math.log(lo) + t * (math.log(hi) - math.log(lo))) for t in u]


def blob_map(gen: torch.Generator, base: float, rows: int, cols: int) -> np.ndarray:
    """Random smooth blobs: base * exp(s * z), z a coarse Gaussian field upsampled (mean 0, std 1)."""
    k = int(torch.randint(2, 6, (1,), generator=gen))
    z = F.interpolate(torch.randn(1, 1, k, k, generator=gen), size=(rows, cols), mode="bicubic", align_corners=False)
    z = (z - z.mean()) / z.std().clamp_min(1e-6)
    spread = 0.3 + 0.9 * float(torch.rand((), generator=gen))      # up to ~ x10 between blobs
    return (base * torch.exp(spread * z))[0, 0].numpy()


def sample_gammas(gen: torch.Generator, importance: list[np.ndarray], crop: int, map_prob: float,
                  fixed_gamma: float | None = None, gamma_range=GAMMA_RANGE, stratify: bool = False) -> torch.Tensor:
    """The gammas of one batch (docs/METHOD.md §5): N values, or N block maps (crop/8 x crop/8).

    With probability ``1 - map_prob`` the batch gets one gamma per image, log-uniform in
    ``gamma_range`` (the paper's [32, 2048]); else every image gets a block map: constant (1/4),
    importance-derived ``gamma * (T_i / M)^kappa`` with kappa ~ U[0, 2] (docs/METHOD.md §2, 1/2), or
    random blobs (1/4), clamped to ``gamma_range``. ``fixed_gamma``: always that value.
    ``stratify``: the N base gammas are drawn one per stratum (:func:`stratified_log_uniform`).
    """
    n = len(importance)
    if fixed_gamma is not None:
        return torch.full((n,), float(fixed_gamma))
    if stratify:
        bases = stratified_log_uniform(gen, n, *gamma_range)
    else:
        bases = [log_uniform(gen, *gamma_range) for _ in range(n)]
    if float(torch.rand((), generator=gen)) >= map_prob:
        return torch.tensor(bases, dtype=torch.float32)
    rows = cols = crop // BLOCK
    maps = []
    for base, imp in zip(bases, importance):
        u = float(torch.rand((), generator=gen))
        if u < 0.25:
            gm = np.full((rows, cols), base)
        elif u < 0.75:
            kappa = 2.0 * float(torch.rand((), generator=gen))
            gm = allocation.allocate(imp.astype(np.float32) / 255.0, base, kappa=kappa).gamma_map
        else:
            gm = blob_map(gen, base, rows, cols)
        maps.append(np.clip(gm, *gamma_range))
    return torch.from_numpy(np.stack(maps).astype(np.float32))


def make_batch(dataset: TrainingSet, seed: int, step: int, batch: int, map_prob: float,
               fixed_gamma: float | None = None, rank: int = 0, world: int = 1, gamma_range=GAMMA_RANGE,
               stratify: bool = False):
    """Batch ``step`` as a pure function of (seed, step, rank): images N x 3 x c x c in [0, 1],
    importance maps N x c x c in [0, 1], and gammas (N values or N x c/8 x c/8)."""
    gen = torch.Generator().manual_seed(mix_seed(seed, "batch", step, rank))
    crops = [dataset.crop_at(i, gen) for i in dataset.indices(seed, step, batch, rank, world)]
    x = torch.from_numpy(np.stack([c[0] for c in crops])).permute(0, 3, 1, 2).float().div(255.0)
    imp = torch.from_numpy(np.stack([c[1] for c in crops])).float().div(255.0)
    gamma = sample_gammas(gen, [c[1] for c in crops], dataset.crop, map_prob, fixed_gamma, gamma_range, stratify)
    return x, imp, gamma


# =========================================================================== 4. checkpoints


def atomic_save(blob: dict, path) -> None:
    """torch.save into a temporary file beside ``path``, fsync, then os.replace: a crash or an
    error while writing never leaves a half-written ``path`` (the previous one stays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(blob, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _weights(model) -> dict:
    """The state dict without the entropy coder's tables (they are rebuilt from SCALE_TABLE)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("entropy.")}


def plain_values(value):
    """argparse values -> what torch.load(weights_only=True) accepts (numbers, strings, lists, dicts)."""
    if isinstance(value, dict):
        return {str(k): plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_values(v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    for kind in (int, float, str):                  # also their subclasses (numpy floats, TorchVersion)
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def save_checkpoint(path, model, ema, optimizer, step: int, args, meta: dict, scaler=None) -> None:
    """Format "semlib-train": config, model, ema, optimizer, step, args, meta (and the AMP scaler)."""
    blob = {"format": TRAIN_FORMAT, "version": 1, "config": asdict(model.config),
            "model": _weights(model), "ema": _weights(ema), "optimizer": optimizer.state_dict(),
            "step": int(step), "args": plain_values(vars(args)), "meta": plain_values(meta)}
    if scaler is not None:
        blob["scaler"] = scaler.state_dict()
    atomic_save(blob, path)


def load_checkpoint(path) -> dict:
    """A training checkpoint (weights_only: no pickled code is run)."""
    path = Path(path)
    blob = read_checkpoint(path, f"{path}: not a readable training checkpoint")
    if not isinstance(blob, dict) or blob.get("format") != TRAIN_FORMAT:
        raise CheckpointError(f"{path}: not a semlib training checkpoint (format {TRAIN_FORMAT!r})")
    return blob


def _load_weights(module, state: dict, what: str) -> None:
    missing, unexpected = module.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("entropy.")]
    if missing or unexpected:
        raise CheckpointError(f"{what}: weights do not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]})")


def model_config(args) -> Config:
    """The configuration ``--config`` names, with ``--gain-residual`` and ``--z-dims`` (if given)
    in place of its own."""
    config = CONFIGS[args.config]
    if getattr(args, "gain_residual", None) is not None:
        config = dataclasses.replace(config, gain_residual=float(args.gain_residual))
    if getattr(args, "z_dims", None):
        config = dataclasses.replace(config, z_dims=tuple(int(z) for z in args.z_dims))
    return config


def _widen_latents(state: dict, model) -> dict:
    """Fit the weights of a model with fewer latent channels (``z_dims``) into ``model``: the old
    channels keep their weights, the new ones start unused -- their posterior equals their prior
    mean (0), so each new z is 0 and the reconstruction is the old model's, and their prior scale
    is small, so they cost almost no bits -- and training decides what they carry. Every other
    tensor must have the same shape.

    The decoder's input weights of the new channels (``z_in``) start small and random (a tenth
    of the old columns' spread, seeded), not zero: with zero input weights *and* a zero posterior
    the new channels are a saddle point -- no gradient reaches either, as the rounded z is 0 and
    the decoder ignores it -- and they stayed unused for good (results/pilots/wide_latents.json).
    With random input weights the straight-through gradient reaches the posterior at once."""
    own = model.state_dict()
    gen = torch.Generator().manual_seed(0)
    out = {}
    for k, v in state.items():
        target = own.get(k)
        if target is None or target.shape == v.shape:
            out[k] = v
            continue
        new = torch.zeros_like(target)
        z_old = v.shape[1] if k.endswith("z_in.weight") else v.shape[0] // (2 if ".prior_out." in k else 1)
        z_new = target.shape[1] if k.endswith("z_in.weight") else target.shape[0] // (2 if ".prior_out." in k else 1)
        if v.dim() != target.dim() or z_new < z_old or not any(p in k for p in (".z_in.", ".prior_out.", ".post_out.", ".gain.")):
            raise CheckpointError(f"--init: {k} has shape {tuple(v.shape)}, the model {tuple(target.shape)}")
        if k.endswith("z_in.weight"):
            new[:, :z_old] = v
            spread = 0.1 * float(v.float().std())
            new[:, z_old:] = (torch.randn(new[:, z_old:].shape, generator=gen) * spread).to(new.dtype)
        elif ".prior_out." in k:                      # [means, log scales]
            new[:z_old], new[z_new:z_new + z_old] = v[:z_old], v[z_old:]
            if k.endswith("bias"):
                new[z_new + z_old:] = -4.0               # log sigma_p: narrow, so ~0 bits for the unused channels
        elif ".gain." in k:
            new[:z_old] = v
            new[z_old:] = target[z_old:]                 # the new channels' gains start at the law
        else:                                            # post_out: mu_q = mu_p for the new channels
            new[:z_old] = v
        out[k] = new
    return out


def _warm_start(model, ema, path, config: str) -> None:
    """Load ``path`` (a training checkpoint: its model and EMA weights; or a model checkpoint,
    float16 or float32: into both) for ``--init``. The optimizer starts afresh.

    A model whose gains were learned freely (``gain_residual`` 0) that starts a model with the
    fixed gain law gets its gain layers zeroed there: the gains restart at the law."""
    path = Path(path)
    blob = read_checkpoint(path, f"--init {path}: not a readable checkpoint")
    if not isinstance(blob, dict) or "config" not in blob or ("model" not in blob and "ema" not in blob):
        raise CheckpointError(f"--init {path}: not a semlib checkpoint")
    if blob["config"].get("name") != config:
        raise SemlibError(f"--init {path} holds a {blob['config'].get('name')!r} model, not {config!r}")
    weights = blob.get("model", blob.get("ema"))
    ema_weights = blob.get("ema", weights)
    as_float = lambda state: {k: v.float() if v.is_floating_point() else v for k, v in state.items()}  # noqa: E731
    if not blob["config"].get("gain_residual") and model.config.gain_residual:
        reset = lambda state: {k: torch.zeros_like(v) if ".gain." in k else v for k, v in state.items()}  # noqa: E731
        weights, ema_weights = reset(weights), reset(ema_weights)
    if tuple(blob["config"].get("z_dims", model.config.z_dims)) != tuple(model.config.z_dims):
        weights, ema_weights = _widen_latents(weights, model), _widen_latents(ema_weights, model)
    _load_weights(model, as_float(weights), f"--init {path}")
    _load_weights(ema, as_float(ema_weights), f"--init {path}")


# =========================================================================== 5. the loop


def learning_rate(step: int, total: int, base: float, warmup: int) -> float:
    """Linear warmup over ``warmup`` steps, then a cosine from ``base`` down to LR_FLOOR * base
    at step ``total``. A pure function of the step, so a resumed run follows the same curve."""
    if step < warmup:
        return base * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (LR_FLOOR + (1 - LR_FLOOR) * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def update_ema(ema, model, step: int, decay: float) -> None:
    """ema <- d * ema + (1 - d) * model, with d = min(decay, (1 + step) / (10 + step)) so the
    average does not start from the random initialisation; buffers are copied."""
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - d)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


class GracefulStop:
    """Turns the first SIGINT/SIGTERM into a flag (the loop saves a checkpoint and returns);
    a second one acts as usual. Only in the main thread; elsewhere it does nothing."""

    def __init__(self):
        self.signum, self._old = None, {}

    def _handle(self, signum, frame):
        self.signum = signum
        signal.signal(signum, self._old.get(signum, signal.SIG_DFL))

    def __enter__(self):
        with contextlib.suppress(ValueError):            # not the main thread
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


def setup_distributed(device_arg: str):
    """(rank, world, device): DistributedDataParallel when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available() and device_arg in ("auto", "cuda")
    if device_arg == "cuda" and not torch.cuda.is_available():
        raise SemlibError("--device cuda: no CUDA device is available")
    if world <= 1:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), world, torch.device(f"cuda:{local}" if cuda else "cpu")


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes in bfloat16 natively (x86 AVX512-BF16 or AMX-BF16, from the flags
    of /proc/cpuinfo, or ``cpuinfo``'s text); False where that cannot be told. Without them
    oneDNN emulates bf16, and a training step of `small` took 1.05 s against 0.75 s in float32
    (8 x 128^2, one thread, an AVX-512 Xeon without bf16)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def use_amp(device: torch.device, amp: bool | None) -> bool:
    """``--amp``: True or False as given; None (the default) = on for CUDA, and on a CPU only if
    it has bf16 instructions (:func:`cpu_has_bf16`)."""
    if amp is not None:
        return bool(amp)
    return device.type == "cuda" or (device.type == "cpu" and cpu_has_bf16())


def autocast_for(device: torch.device, amp: bool | None):
    """bf16 autocast on the CPU and on CUDA GPUs that have it, fp16 (with a GradScaler) otherwise;
    ``amp`` None decides by :func:`use_amp`."""
    if not use_amp(device, amp):
        return contextlib.nullcontext(), None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.float16), torch.amp.GradScaler("cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16), None


COMPILE_BACKEND = "inductor"     # the tests swap in "aot_eager": the same tracing, no C++ build


def cxx_compiler() -> str | None:
    """The C++ compiler TorchInductor would use on the CPU ($CXX, else c++, g++ or clang++ on the
    PATH), or None."""
    import shutil

    found = (shutil.which(name) for name in (os.environ.get("CXX"), "c++", "g++", "clang++") if name)
    return next((path for path in found if path), None)


def adam(params, lr: float, fused: bool = False) -> torch.optim.Adam:
    """Adam; ``fused``: its fused kernel where this torch has one for the parameters' device (the
    CPU's since torch 2.4), else the default one. ``--compile`` uses it (BENCHMARKS.md, where the
    gain it adds is within the VM's timing noise); the state it saves is the same either way."""
    params = list(params)
    if fused:
        try:
            return torch.optim.Adam(params, lr=lr, fused=True)
        except (RuntimeError, TypeError):
            pass
    return torch.optim.Adam(params, lr=lr)


def compiled(net):
    """``net`` under ``torch.compile`` (TorchInductor) for ``--compile``: the training step's many
    small element-wise operations (GELU, channel norm, gamma modulation, the latents' noise and
    likelihoods) are fused. On the 2-core AVX2 EPYC of BENCHMARKS.md ("`--compile` on a CPU
    without AVX-512") a step of `small` (8 x 128^2, float32, one thread) took 0.55-0.58 s against
    0.68-0.70 s eager. The first step with a per-image gamma and the first with a gamma map each
    compile once (3-5 min each with an empty Inductor cache, under 30 s with a warm one); the
    weights, their names in the checkpoint and the EMA are those of the uncompiled model. On the
    CPU it needs a C++ compiler."""
    device = next(net.parameters()).device
    if COMPILE_BACKEND == "inductor" and device.type == "cpu" and cxx_compiler() is None:
        raise SemlibError("--compile on the CPU needs a C++ compiler (g++ or clang++ on the PATH, or $CXX)")
    return torch.compile(net, backend=COMPILE_BACKEND)


def log_path_for(out) -> Path:
    return Path(out).with_suffix(".jsonl")


def read_log(path) -> list[dict]:
    """The JSON-lines log of a run: one dict per line ("kind": "train" or "val")."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def train(args: argparse.Namespace) -> dict:
    """Train (or continue training) a model as described by ``args`` (see :func:`add_train_arguments`).

    Returns a summary: ``step`` reached, ``checkpoint`` and ``log`` paths, ``interrupted``
    (a signal, ``--stop-after``, ``--stop-at`` or ``--time-limit`` ended the run before ``--steps``), and the
    last logged training values.
    """
    out = check_output(args.out, args.resume)
    if args.config not in CONFIGS:
        raise SemlibError(f"unknown configuration {args.config!r}; choose one of {sorted(CONFIGS)}")
    if args.crop % MAX_STRIDE or args.crop <= 0:
        raise SemlibError(f"--crop must be a positive multiple of {MAX_STRIDE}, got {args.crop}")
    if args.stop_at is not None and args.stop_at < 1:
        raise SemlibError(f"--stop-at must be a step >= 1, got {args.stop_at}")
    if args.fixed_gamma is not None and not (math.isfinite(args.fixed_gamma) and args.fixed_gamma > 0):
        raise SemlibError(f"--fixed-gamma must be finite and > 0, got {args.fixed_gamma}")
    if args.gain_residual is not None and not (math.isfinite(args.gain_residual) and 0 <= args.gain_residual <= 4):
        raise SemlibError(f"--gain-residual must be a number of nats in [0, 4], got {args.gain_residual}")
    if args.z_dims is not None and not all(1 <= z <= 512 for z in args.z_dims):
        raise SemlibError(f"--z-dims must be 4 channel counts in [1, 512], got {args.z_dims}")
    lo, hi = args.gamma_range
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        raise SemlibError(f"--gamma-range must be two finite numbers 0 < LO <= HI, got {lo} {hi}")
    with torch_threads(args.num_threads):
        return _train(args, out)


def check_output(out, resume: bool) -> Path:
    """The checkpoint path of a run: it must exist to ``--resume``, and must not to start afresh."""
    out = Path(out)
    if resume and not out.is_file():
        raise SemlibError(f"--resume: {out} does not exist")
    if out.exists() and not resume:
        raise SemlibError(f"{out} exists: pass --resume to continue it, or choose another --out")
    return out


@contextlib.contextmanager
def torch_threads(n: int):
    """Run the enclosed code on ``n`` torch threads (0: leave the setting), then restore it."""
    old = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def backward_and_step(loss, optimizer, params, clip: float, scaler=None) -> torch.Tensor:
    """Backward (scaled with fp16 on a GPU without bf16), gradient-norm clipping of ``params``
    to ``clip``, and the optimiser's step, skipped on a non-finite gradient (the scaler
    skips it itself). Returns the gradient norm. (The peer's step uses it too.)"""
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    elif torch.isfinite(grad_norm):
        optimizer.step()
    return grad_norm


def train_step(net, model, optimizer, batch, args, amp_context, scaler=None) -> dict:
    """One optimisation step on ``batch`` = (x, importance, gamma): forward under autocast, the
    loss in float32, backward, gradient-norm clipping, Adam. Returns the step's values (floats)."""
    x, imp, gamma = batch
    with amp_context:
        result = net(x, gamma)
    weights = balance_weights(gamma, x.shape[0], args.gamma_range) if args.balance_gammas else None
    losses = rate_distortion_loss(result, x, gamma, args.beta, imp if args.beta > 0 else None, weights)
    optimizer.zero_grad(set_to_none=True)
    grad_norm = backward_and_step(losses["loss"], optimizer, model.parameters(), args.clip, scaler)
    values = {k: float(v.detach()) for k, v in losses.items()}
    values["grad_norm"] = float(grad_norm)
    return values


def _any_rank(flag: bool, world: int, device) -> bool:
    """True on every process if it is True on one (so that all stop at the same step)."""
    if world == 1:
        return flag
    t = torch.tensor([float(flag)], device=device)
    torch.distributed.all_reduce(t)
    return bool(t.item() > 0)


def fit(args, step: int, meta: dict, optimizer, one_step, write, checkpoint, validate=None, snapshot=None,
        any_rank=bool, desc: str = "train", progress: bool = True) -> tuple[int, dict, int | None]:
    """The training loop of :mod:`semlib.train` and :mod:`semlib.peer`: from ``step`` to
    ``args.steps`` (or ``--stop-after`` steps of this run, or the step ``--stop-at``), one
    call of ``one_step(step)`` a step (batch, forward, loss, backward, optimiser and EMA;
    it returns the step's values), with the learning rate of :func:`learning_rate` set on
    ``optimizer``'s groups first. Every ``--log-every`` steps a line of the values averaged
    since the last one is written (and, when a signal or ``--time-limit`` stops the run
    between two, the averages of the steps since); ``validate(step)`` gives the records of
    a validation every ``--val-every`` steps; ``checkpoint(step)`` saves every ``--ckpt-every``
    steps and at the end; ``snapshot(step)`` every ``--snapshot-every`` steps (where the
    caller has them). ``any_rank(flag)``: whether any process of a distributed run wants to
    stop. Returns (the step reached, the last logged values, the signal that stopped it)."""
    warmup = min(args.warmup, args.steps // 10)
    stop_at = args.steps if args.stop_after is None else min(args.steps, step + args.stop_after)
    if getattr(args, "stop_at", None) is not None:
        stop_at = min(stop_at, args.stop_at)
    bar = tqdm(total=args.steps, initial=step, desc=desc, disable=not progress)
    sums, t_start, last = [], time.time(), {}

    def log_averages(lr):
        nonlocal sums, last
        last = {k: float(np.mean([v[k] for v in sums])) for k in sums[0]}
        write({"kind": "train", "step": step, **last, "lr": lr, "wall_s": meta["wall_s"], "time": time.time()})
        sums = []

    try:
        with GracefulStop() as stop:
            while step < stop_at:
                t_step = time.time()
                lr = learning_rate(step, args.steps, args.lr, warmup)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                values = one_step(step)
                step += 1
                values["sec_per_step"] = time.time() - t_step
                meta["wall_s"] += values["sec_per_step"]
                sums.append(values)
                bar.update(1)
                bar.set_postfix(loss=f"{values['loss']:.3f}", bpp=f"{values['bpp']:.3f}",
                                psnr=f"{values['psnr']:.2f}", refresh=False)
                if step % args.log_every == 0 or step == stop_at:       # averages since the last line
                    log_averages(lr)
                if validate is not None and (step % args.val_every == 0 or step == args.steps):
                    for record in validate(step):
                        write(record)
                out_of_time = args.time_limit is not None and time.time() - t_start > args.time_limit
                if any_rank(stop.signum is not None or out_of_time):
                    break
                if step % args.ckpt_every == 0:
                    checkpoint(step)
                if snapshot is not None and getattr(args, "snapshot_every", 0) and step % args.snapshot_every == 0:
                    snapshot(step)
            if sums:                                  # stopped between two log lines
                log_averages(lr)
            checkpoint(step)
    finally:
        bar.close()
    return step, last, stop.signum


# Long: the set-up of a run (data, model, EMA, optimiser, resume or warm start, log), read top to bottom; the loop is fit().
def _train(args, out: Path) -> dict:
    rank, world, device = setup_distributed(args.device)
    main = rank == 0
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    # --- data, model, EMA, optimizer, and the checkpoint to continue from
    dataset = TrainingSet(args.data, args.crop, args.importance, args.cache_dir, args.max_images,
                          progress=main and args.progress)
    torch.manual_seed(mix_seed(args.seed, "init"))
    model = build_model(model_config(args)).to(device, memory_format=fmt)
    model.train_quantization = args.quantization
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    optimizer = adam(model.parameters(), args.lr, fused=args.compile)
    amp_context, scaler = autocast_for(device, args.amp)
    step, meta = 0, {"wall_s": 0.0}
    if args.resume:
        blob = load_checkpoint(out)
        if blob["config"]["name"] != args.config:
            raise SemlibError(f"{out} holds a {blob['config']['name']!r} model, not {args.config!r}")
        if tuple(blob["config"]["z_dims"]) != tuple(model.config.z_dims):
            raise SemlibError(f"{out} holds a model with z_dims {blob['config']['z_dims']}, not "
                              f"{list(model.config.z_dims)} (--z-dims)")
        if float(blob["config"].get("gain_residual", 0.0)) != model.config.gain_residual:
            raise SemlibError(f"{out} holds a model with gain_residual {blob['config'].get('gain_residual', 0.0)}, "
                              f"not {model.config.gain_residual} (--gain-residual)")
        _load_weights(model, blob["model"], str(out))
        _load_weights(ema, blob["ema"], str(out))
        optimizer.load_state_dict(blob["optimizer"])
        if scaler is not None and "scaler" in blob:
            scaler.load_state_dict(blob["scaler"])
        step, meta = int(blob["step"]), dict(blob["meta"])
        if blob["args"].get("steps") != args.steps and main:
            warnings.warn(f"--steps changed from {blob['args'].get('steps')} to {args.steps}: "
                          "the learning-rate schedule is stretched accordingly", stacklevel=3)
    elif args.init:
        _warm_start(model, ema, args.init, args.config)
        step = int(args.start_step)
    meta.update(data=str(args.data), images=len(dataset), world_size=world, device=device.type,
                torch=torch.__version__, config=args.config, amp=use_amp(device, args.amp))
    net = model if world == 1 else torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    if args.compile:
        net = compiled(net)
    val_images = validation_images(args.val_data, args.val_images, args.crop) if main and args.val_every > 0 else []
    log_path = log_path_for(out) if args.log is None else Path(args.log)
    log = open(log_path, "a") if main else None

    def write(record):
        if log:
            log.write(json.dumps(record) + "\n")
            log.flush()

    saved_at = step if args.resume else -1

    def checkpoint(step):
        nonlocal saved_at
        if main and saved_at != step:
            save_checkpoint(out, model, ema, optimizer, step, args, meta, scaler)
            saved_at = step

    # --- the loop (semlib.train.fit)
    def one_step(step):
        x, imp, gamma = make_batch(dataset, args.seed, step, args.batch, args.map_prob, args.fixed_gamma,
                                   rank, world, args.gamma_range, args.stratify_gammas)
        batch = (x.to(device).contiguous(memory_format=fmt), imp.to(device), gamma.to(device))
        torch.manual_seed(mix_seed(args.seed, "noise", step, rank))   # the latents' uniform noise
        values = train_step(net, model, optimizer, batch, args, amp_context, scaler)
        update_ema(ema, model, step, args.ema_decay)
        return values

    def validation(step):
        return [{"kind": "val", "step": step, "gamma": g, **v} for g, v in validate(ema, val_images, args.val_gammas).items()]

    def snapshot(step):
        if main:
            checkpoint(step)
            export_model(out, out.with_name(f"{out.stem}_step{step}.pt"), fp16=True)

    try:
        step, last, signum = fit(args, step, meta, optimizer, one_step, write, checkpoint,
                                 validate=validation if val_images else None, snapshot=snapshot,
                                 any_rank=lambda flag: _any_rank(flag, world, device),
                                 desc=f"train {args.config}", progress=main and args.progress)
    finally:
        if log:
            log.close()
    if args.export and main and (step >= args.steps or (args.stop_at is not None and step >= args.stop_at)):
        export_model(out, args.export, fp16=args.export_fp16)
    if world > 1:
        torch.distributed.destroy_process_group()
    return {"step": step, "checkpoint": str(out), "log": str(log_path), "interrupted": step < args.steps,
            "signal": signum, "last": last, "images": len(dataset), "rank": rank}


# =========================================================================== 6. validation and export


def validation_images(folder, count: int, crop: int) -> list[torch.Tensor]:
    """Center crops (``crop`` x ``crop``, at most the image, a multiple of 64) of the first
    ``count`` images of ``folder`` (default: Kodak, if it can be found; else none)."""
    if folder is None:
        try:
            folder = data.find_dataset("kodak")
        except FileNotFoundError:
            return []
    if not Path(folder).is_dir():
        raise SemlibError(f"{folder}: validation folder not found")
    out = []
    for path in data.list_images(folder)[:count]:
        image = data.load_image(path)
        h = min(crop, image.shape[0]) // MAX_STRIDE * MAX_STRIDE
        w = min(crop, image.shape[1]) // MAX_STRIDE * MAX_STRIDE
        if h and w:
            top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
            out.append(data.to_tensor(image[top:top + h, left:left + w]))
    return out


@torch.no_grad()
def validate(model, images: list[torch.Tensor], gammas=VAL_GAMMAS) -> dict:
    """Mean bpp (estimated from the likelihoods of the rounded latents) and PSNR of ``images``
    at each gamma, in eval mode and float32. Returns {gamma: {"bpp": ..., "psnr": ...}}."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    fmt = torch.channels_last if _channels_last(model.stem.weight) else torch.contiguous_format
    result = {}
    for g in gammas:
        bpps, psnrs = [], []
        for x in images:
            x = x.to(device).contiguous(memory_format=fmt)
            out = model(x, float(g))
            bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
            bpps.append(float(bits) / (x.shape[2] * x.shape[3]))
            psnrs.append(float(metrics.psnr(x, out["x_hat"].clamp(0, 1))))
        result[float(g)] = {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}
    model.train(was_training)
    return result


def export_model(checkpoint, out, fp16: bool = False) -> Path:
    """Write the EMA weights of a training checkpoint as a standalone model checkpoint
    (:func:`semlib.models.save_model`, format "semlib-model"), the one to ship and evaluate.

    ``fp16`` halves the file; :func:`semlib.models.load_model` casts the weights back to
    float32, so files encoded with the exported model must be encoded after loading it
    (the fingerprint is that of the float32 weights as loaded).
    """
    blob = load_checkpoint(checkpoint)
    model = load_model(checkpoint)                  # reads the "ema" weights of a training checkpoint
    meta = {k: v for k, v in blob.get("meta", {}).items() if isinstance(v, (int, float, str))}
    meta.update(steps=int(blob["step"]), beta=blob["args"].get("beta"), exported_from=str(checkpoint),
                fixed_gamma=blob["args"].get("fixed_gamma") or 0.0, dtype="float16" if fp16 else "float32")
    lo, hi = blob["args"].get("gamma_range") or GAMMA_RANGE
    meta.update(gamma_lo=float(lo), gamma_hi=float(hi))
    if fp16:
        model = model.half()
    save_model(model, out, **{k: v for k, v in meta.items() if v is not None})
    return Path(out)


# =========================================================================== 7. the command line


# Long: the table of training options, one a line.
def add_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``semlib train`` (docs/METHOD.md §9)."""
    a = parser.add_argument
    a("--config", default="small", choices=sorted(CONFIGS), help="model size (default: small)")
    a("--data", required=True, help="folder of training images, searched recursively")
    a("--steps", type=int, required=True, help="total training steps; also sets the learning-rate schedule")
    a("--out", required=True, help="training checkpoint to write (format semlib-train); "
      "its log goes beside it as .jsonl")
    a("--resume", action="store_true", help="continue the run saved in --out exactly where it stopped")
    a("--init", default=None, metavar="CKPT",
      help="start from these weights (a training or model checkpoint, e.g. the shipped one) with a fresh optimizer")
    a("--start-step", type=int, default=0,
      help="with --init: the step to start counting from (sets where the learning-rate schedule begins)")
    a("--beta", type=float, default=DEFAULT_BETA,
      help=f"weight of 1 - SI-SSIM in the distortion (default {DEFAULT_BETA}; 0 = plain MSE)")
    a("--fixed-gamma", type=float, default=None, metavar="G",
      help="train at this one gamma only (a fixed-rate model, as in the paper's ablation)")
    a("--crop", type=int, default=256, help="training crop side in pixels, a multiple of 64 (default 256)")
    a("--batch", type=int, default=8, help="images per step (per process under torchrun; default 8)")
    a("--lr", type=float, default=2e-4, help="peak learning rate of Adam (default 2e-4)")
    a("--warmup", type=int, default=500, help="linear warmup steps, at most steps/10 (default 500)")
    a("--clip", type=float, default=10.0, help="gradient-norm clipping threshold (default 10)")
    a("--ema-decay", type=float, default=0.999, help="decay of the weights' moving average (default 0.999)")
    a("--gamma-range", type=float, nargs=2, default=list(GAMMA_RANGE), metavar=("LO", "HI"),
      help=f"range of the log-uniform gamma sampling (default: the paper's {GAMMA_RANGE[0]:g} {GAMMA_RANGE[1]:g})")
    a("--balance-gammas", action=argparse.BooleanOptionalAction, default=False,
      help="weight each image's loss by sqrt(LO*HI)/gamma so every gamma pulls equally (default off: the paper's loss)")
    a("--gain-residual", type=float, default=None, metavar="NATS",
      help="fix each latent's gain to the law g ~ sqrt(gamma) and learn only a residual within +-NATS "
           "(default: the configuration's own, 0 = gains learned freely)")
    a("--z-dims", type=int, nargs=4, default=None, metavar=("Z64", "Z32", "Z16", "Z8"),
      help="latent channels per block at /64, /32, /16, /8 (default: the configuration's); with --init "
           "from a model with fewer, the new channels start unused")
    a("--quantization", default="noise", choices=["noise", "mixed"],
      help="how training quantises the latents: uniform noise (default), or mixed: rounding with a "
           "straight-through gradient for the decoder, noise for the rate (Minnen & Singh 2020)")
    a("--stratify-gammas", action=argparse.BooleanOptionalAction, default=False,
      help="draw a batch's gammas one per stratum of the log range, so every batch covers it (default off)")
    a("--map-prob", type=float, default=0.5,
      help="fraction of steps trained with block gamma maps instead of one gamma per image (default 0.5)")
    a("--seed", type=int, default=0, help="seed of the data order, crops, gammas and noise (default 0)")
    a("--log-every", type=int, default=50, help="steps per line of the JSON-lines log (default 50)")
    a("--ckpt-every", type=int, default=500, help="steps between checkpoints (default 500)")
    a("--val-every", type=int, default=1000, help="steps between validations, 0 = never (default 1000)")
    a("--val-data", default=None, help="validation images (default: Kodak, if found)")
    a("--val-images", type=int, default=3, help="how many validation images (center crops; default 3)")
    a("--val-gammas", type=float, nargs="+", default=list(VAL_GAMMAS), metavar="G",
      help="gammas of the validation (default 64 256 1024)")
    a("--importance", default="gradcam", choices=["gradcam", "uniform"],
      help="importance maps for SI-SSIM and ROI gamma maps (default gradcam; uniform = none)")
    a("--cache-dir", default=None, help="where importance maps are cached (default ~/.cache/semlib/importance)")
    a("--max-images", type=int, default=None, help="use an evenly spaced subset of this many images")
    a("--num-threads", type=int, default=0, help="CPU threads for torch, 0 = torch's default")
    a("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    a("--amp", action=argparse.BooleanOptionalAction, default=None,
      help="mixed precision: bf16 autocast (fp16 where a GPU lacks bf16). Default: on a GPU, and on a CPU "
      "with bf16 instructions (AVX512-BF16, AMX), where it pays for small and paper; elsewhere bf16 is "
      "emulated and slower than float32. tiny is faster in float32 (--no-amp)")
    a("--channels-last", action=argparse.BooleanOptionalAction, default=True,
      help="channels-last memory format (faster convolutions with autocast; default on)")
    a("--compile", action=argparse.BooleanOptionalAction, default=False,
      help="run the training step under torch.compile, with Adam's fused kernel: about 1.2x faster on a CPU "
      "after a one-off compile of minutes (BENCHMARKS.md); needs a C++ compiler on the CPU (default off)")
    a("--stop-after", type=int, default=None, help="stop (with a checkpoint) after this many steps of this run")
    a("--stop-at", type=int, default=None, metavar="STEP",
      help="stop (with a checkpoint) at this step of the whole run, whatever the runs before: trains a model to "
           "the budget of another run's snapshot under the same --steps schedule")
    a("--time-limit", type=float, default=None, help="stop (with a checkpoint) after this many seconds")
    a("--snapshot-every", type=int, default=0, metavar="STEPS",
      help="also export the EMA weights (float16) beside --out as <name>_step<N>.pt every STEPS steps "
      "(for learning curves and equal-budget comparisons; default 0 = never)")
    a("--log", default=None, help="JSON-lines log (default: --out with suffix .jsonl)")
    a("--export", default=None, help="at the end (--steps or --stop-at), also write the EMA weights as a model checkpoint here")
    a("--export-fp16", action="store_true", help="store the exported weights as float16 (loaded as float32)")
    a("--progress", action=argparse.BooleanOptionalAction, default=True, help="show progress bars")
    return parser


def training_args(data, steps: int, out, **options) -> argparse.Namespace:
    """The arguments of :func:`train` from Python: the defaults of ``semlib train`` with
    ``options`` (same names as the command-line options, with underscores) set."""
    parser = add_train_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["--data", str(data), "--steps", str(steps), "--out", str(out)])
    for k, v in options.items():
        if not hasattr(args, k):
            raise TypeError(f"unknown training option {k!r}")
        setattr(args, k, v)
    return args


def run_train(args: argparse.Namespace) -> int:
    """Run ``semlib train`` for parsed ``args``; returns the exit status (130/143 after a signal)."""
    summary = train(args)
    if summary["rank"] != 0:
        return 0
    last = summary["last"]
    msg = f"step {summary['step']}/{args.steps}"
    if last:
        msg += f": loss {last['loss']:.4f}, {last['bpp']:.3f} bpp, {last['psnr']:.2f} dB"
    print(f"{msg}; checkpoint {summary['checkpoint']}, log {summary['log']}")
    if summary["signal"] is not None:
        print("interrupted: continue with --resume")
        return 128 + int(summary["signal"])
    return 0


def main_train(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="semlib train", description=__doc__.split("\n\n")[0])
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_train(args)
    except SemlibError as e:
        parser.exit(2, f"semlib train: error: {e}\n")


if __name__ == "__main__":
    raise SystemExit(main_train())


# =========================================================================== the data of a training run


def test_set_sums(names=("kodak",)) -> frozenset:
    """The SHA-256 of every file of the test sets ``names`` (pinned in semlib/sums/NAME.txt):
    :class:`TrainingSet` refuses a folder holding any of them."""
    sums = set()
    for name in names:
        path = data.SUMS_DIR / f"{name}.txt"
        if path.is_file():
            sums.update(line.split()[0] for line in path.read_text().splitlines() if line.strip())
    return frozenset(sums)


def training_photos(name: str = "train/bsds500/train", fallback=None) -> tuple[Path, str]:
    """(folder, where it came from) of photos to train on, never a test set: the data set
    ``name`` (found or downloaded by :func:`semlib.data.find_dataset`), else, when that fails
    (offline, say) and ``fallback`` is a folder, a few photos shipped with scikit-image written
    there as PNG (none of them is a Kodak image). Without a fallback the failure is raised as a
    one-line :class:`SemlibError`."""
    try:
        return data.find_dataset(name), f"the data set {name}"
    except (FileNotFoundError, SemlibError) as e:
        if fallback is None:
            raise SemlibError(f"no training photos: {e}") from None
        reason = str(e).splitlines()[0]
    import skimage.data

    folder = Path(fallback)
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    for photo in ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina", "cat", "colorwheel"):
        try:
            image = getattr(skimage.data, photo)()
        except Exception:           # an image scikit-image would have to download: skip it
            continue
        if image.ndim == 3 and image.shape[2] == 3:
            Image.fromarray(image).save(folder / f"{photo}.png")
            written += 1
    if not written:
        raise SemlibError(f"no training photos: {reason}; and none of scikit-image's photos could be read")
    return folder, f"{written} photos of scikit-image (the data set {name} is unavailable: {reason})"


def beta_ratios(images, importances, qualities=(10, 30, 50, 75, 90), codec: str = "jpeg444") -> np.ndarray:
    """For each image and JPEG quality: (PSNR in dB, MSE[-1, 1] / (1 - SI-SSIM)), the ratio of
    the loss's pixel term to its structural term without their weights (notebook 05 chooses
    ``beta`` from it). ``importances``: the images' maps, for SI-SSIM. Returns an array N x 2."""
    from semlib.baselines import get_codec

    jpeg = get_codec(codec)
    rows = []
    for image, g in zip(images, importances, strict=True):
        x = data.to_tensor(image)
        for quality in qualities:
            y = data.to_tensor(jpeg.decode(jpeg.encode(image, quality)))
            mse_pm1 = float(((x - y) * 2).pow(2).mean())
            rows.append((metrics.psnr(x, y), mse_pm1 / max(1.0 - float(metrics.si_ssim(x, y, g)), 1e-12)))
    return np.array(rows, dtype=float).reshape(-1, 2)
