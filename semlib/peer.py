"""A fixed-rate peer for the side-by-side comparison: CompressAI's MeanScaleHyperprior trained
on the same data, crops and machine as our gamma-conditioned codec (docs/METHOD.md §9, issue 5).

Read top to bottom; each part is one idea:

1. **The model and its loss**: ``MeanScaleHyperprior(N=128, M=192)`` (Minnen et al., NeurIPS
   2018, as implemented by CompressAI) at one rate, trained with CompressAI's convention
   ``L = lambda * 255^2 * MSE + bpp`` (MSE of images in [0, 1], bpp from the likelihoods),
   plus the auxiliary loss that places the entropy bottleneck's quantiles, with its own Adam.
2. **The loop**: the machinery of :mod:`semlib.train`, reused as is: the same crops in the
   same order (:func:`semlib.train.make_batch`, only the images are used), the same warmup +
   cosine learning rate, EMA of the weights, bf16 autocast + channels-last on the CPU,
   atomic checkpoints, Ctrl-C/SIGTERM and ``--time-limit`` stops, exact ``--resume``, a
   JSON-lines log. The seconds spent in training steps are kept in the checkpoint
   (``meta["wall_s"]``, counted as ours counts them), so the two can be compared at equal
   wall-clock budget.
3. **The codec**: real bitstreams (CompressAI's range coder after ``model.update()``), in a
   12-byte container, behind :class:`semlib.baselines.Codec` so :func:`semlib.evaluate.evaluate_codec`
   measures it like every other codec: bpp from the bytes of the whole file.
4. **The command line**: ``python -m semlib.peer train ...`` and ``python -m semlib.peer eval ...``.

What differs from CompressAI's own ``examples/train.py``: the crops, their order and the
schedule are ours (warmup + cosine instead of a plateau schedule), the weights evaluated are
the EMA (as for our model), and bf16 autocast is on by default on the CPU.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from semlib import data, metrics
from semlib.errors import CheckpointError, FormatError, SemlibError
from semlib.models import read_checkpoint
from semlib.train import (TrainingSet, atomic_save, autocast_for, backward_and_step, check_output, fit, log_path_for,
                          make_batch, mix_seed, plain_values, setup_distributed, torch_threads, update_ema,
                          validation_images)

PEER_FORMAT = "semlib-peer-train"
ARCHITECTURE = "MeanScaleHyperprior"
DEFAULT_LMBDA = 0.0483        # CompressAI's quality 6 of its MSE models: about 0.75 bpp on Kodak when converged
DEFAULT_STEPS = 15000         # ~ what 50 CPU-minutes gave here (14,956 steps of 8 x 128^2 crops, bf16)
STRIDE = 64                   # y is x / 16, z is x / 64: image sides are padded to a multiple of 64
MAGIC = b"PEER"
HEADER = struct.Struct("<4sHHI")   # magic, height, width, length of the y string; then y, then z
LATENT_LIMIT = 1.0e4          # latents are clamped to +-this before range coding (see _compress)


# =========================================================================== 1. the model and its loss


def build_peer(N: int = 128, M: int = 192):
    """CompressAI's MeanScaleHyperprior with N channels in the transforms and M in the latent y."""
    from compressai.models import MeanScaleHyperprior

    if N < 1 or M < 1:
        raise SemlibError(f"N and M must be >= 1, got N={N}, M={M}")
    return MeanScaleHyperprior(N=int(N), M=int(M))


def parameter_groups(model) -> tuple[list, list]:
    """(main parameters, the entropy bottleneck's quantiles): the second group is trained only
    by the auxiliary loss, with its own optimizer (CompressAI's convention)."""
    main, aux = [], []
    for name, p in model.named_parameters():
        (aux if name.endswith(".quantiles") else main).append(p)
    return main, aux


def peer_loss(out: dict, x: torch.Tensor, lmbda: float) -> dict:
    """CompressAI's rate-distortion loss ``lambda * 255^2 * MSE + bpp``, in float32.

    ``bpp`` = sum over the latents y and z of -log2(likelihood) / (N * H * W); ``mse`` over
    all pixels of images in [0, 1]. Returns ``loss`` (differentiable) and detached ``bpp``,
    ``mse`` and ``psnr`` (dB, mean over images, x_hat clipped to [0, 1]).
    """
    n, _, height, width = x.shape
    x_hat = out["x_hat"].float()
    bits = sum(-torch.log2(lik.float()).sum() for lik in out["likelihoods"].values())
    bpp = bits / (n * height * width)
    mse = F.mse_loss(x_hat, x)
    loss = lmbda * 255.0 ** 2 * mse + bpp
    with torch.no_grad():
        mse_each = (x_hat.clamp(0, 1) - x).pow(2).mean(dim=(1, 2, 3))
        psnr = (-10 * torch.log10(mse_each.clamp_min(1e-10))).mean()
    return {"loss": loss, "bpp": bpp.detach(), "mse": mse.detach(), "psnr": psnr}


# =========================================================================== 2. the loop


def save_peer_checkpoint(path, model, ema, optimizer, aux_optimizer, step: int, args, meta: dict, scaler=None) -> None:
    """Format "semlib-peer-train": architecture, model, ema, both optimizers, step, args, meta
    (state dicts and plain values only: loadable with ``torch.load(weights_only=True)``)."""
    blob = {"format": PEER_FORMAT, "version": 1,
            "architecture": {"name": ARCHITECTURE, "N": int(args.N), "M": int(args.M)},
            "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "ema": {k: v.detach().clone() for k, v in ema.state_dict().items()},
            "optimizer": optimizer.state_dict(), "aux_optimizer": aux_optimizer.state_dict(),
            "step": int(step), "args": plain_values(vars(args)), "meta": plain_values(meta)}
    if scaler is not None:
        blob["scaler"] = scaler.state_dict()
    atomic_save(blob, path)


def load_peer_checkpoint(path) -> dict:
    """A peer training checkpoint (weights_only: no pickled code is run); CheckpointError if
    ``path`` is missing, unreadable or something else."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    blob = read_checkpoint(path, f"{path}: not a readable peer checkpoint")
    if not isinstance(blob, dict) or blob.get("format") != PEER_FORMAT:
        raise CheckpointError(f"{path}: not a semlib peer checkpoint (format {PEER_FORMAT!r})")
    arch = blob.get("architecture", {})
    if arch.get("name") != ARCHITECTURE:
        raise CheckpointError(f"{path}: holds a {arch.get('name')!r} model, not {ARCHITECTURE}")
    return blob


def _load_state(model, state: dict, what: str) -> None:
    try:
        model.load_state_dict(state)          # CompressAI's: resizes the entropy coder's tables
    except (RuntimeError, KeyError) as e:
        raise CheckpointError(f"{what}: weights do not fit the model ({str(e)[:200]})") from None


def train_step(model, optimizer, aux_optimizer, main_params, x, args, amp_context, scaler=None) -> dict:
    """One step: forward under autocast, the loss in float32, backward, gradient-norm clipping
    of the main parameters, Adam (skipped on a non-finite gradient); then the auxiliary loss
    (float32) and its own Adam step. Returns the step's values (floats)."""
    with amp_context:
        out = model(x)
    losses = peer_loss(out, x, args.lmbda)
    optimizer.zero_grad(set_to_none=True)
    aux_optimizer.zero_grad(set_to_none=True)
    grad_norm = backward_and_step(losses["loss"], optimizer, main_params, args.clip, scaler)
    aux = model.aux_loss()
    aux.backward()
    aux_optimizer.step()
    values = {k: float(v.detach()) for k, v in losses.items()}
    values.update(aux=float(aux.detach()), grad_norm=float(grad_norm))
    return values


@torch.no_grad()
def validate_peer(model, images: list[torch.Tensor]) -> dict:
    """Mean bpp (from the likelihoods of the rounded latents) and PSNR of ``images`` (sides
    multiples of 64), in eval mode and float32: {"bpp": ..., "psnr": ...}."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    bpps, psnrs = [], []
    for x in images:
        x = x.to(device)
        out = model(x)
        bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
        bpps.append(float(bits) / (x.shape[2] * x.shape[3]))
        psnrs.append(float(metrics.psnr(x, out["x_hat"].clamp(0, 1))))
    model.train(was_training)
    return {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}


def _check_args(args) -> None:
    if args.crop % STRIDE or args.crop <= 0:
        raise SemlibError(f"--crop must be a positive multiple of {STRIDE}, got {args.crop}")
    if not (math.isfinite(args.lmbda) and args.lmbda > 0):
        raise SemlibError(f"--lmbda must be finite and > 0, got {args.lmbda}")
    if args.steps < 1 or args.batch < 1:
        raise SemlibError(f"--steps and --batch must be >= 1, got {args.steps} and {args.batch}")
    if args.time_limit is not None and not args.time_limit > 0:
        raise SemlibError(f"--time-limit must be > 0 seconds, got {args.time_limit}")
    if args.stop_at is not None and args.stop_at < 1:
        raise SemlibError(f"--stop-at must be a step >= 1, got {args.stop_at}")


def train_peer(args: argparse.Namespace) -> dict:
    """Train (or with ``args.resume`` continue) the peer as described by ``args``
    (:func:`add_peer_train_arguments`; from Python, :func:`peer_args`).

    Returns a summary: ``step`` reached, ``checkpoint`` and ``log`` paths, ``interrupted``
    (a signal, ``--stop-after`` or ``--time-limit`` ended it before ``--steps``), ``signal``,
    ``wall_s`` (seconds of training steps in total) and the last logged training values.
    """
    out = check_output(args.out, args.resume)
    _check_args(args)
    with torch_threads(args.num_threads):
        return _train_peer(args, out)


# Long: the set-up of the peer's run (as train._train's); the loop is train.fit.
def _train_peer(args, out: Path) -> dict:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SemlibError("the peer trains in one process (no torchrun)")
    _, _, device = setup_distributed(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format

    # --- data (the images only: no importance maps), model, EMA, optimizers, checkpoint
    dataset = TrainingSet(args.data, args.crop, "uniform", None, args.max_images, progress=args.progress)
    torch.manual_seed(mix_seed(args.seed, "peer", "init"))
    model = build_peer(args.N, args.M).to(device, memory_format=fmt).train()
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    main_params, aux_params = parameter_groups(model)
    optimizer = torch.optim.Adam(main_params, lr=args.lr)
    aux_optimizer = torch.optim.Adam(aux_params, lr=args.aux_lr)
    amp_context, scaler = autocast_for(device, args.amp)
    step, meta = 0, {"wall_s": 0.0}
    if args.resume:
        blob = load_peer_checkpoint(out)
        arch = blob["architecture"]
        if (arch["N"], arch["M"]) != (args.N, args.M):
            raise SemlibError(f"{out} holds N={arch['N']}, M={arch['M']}, not N={args.N}, M={args.M}")
        if blob["args"].get("lmbda") != args.lmbda:
            raise SemlibError(f"{out} was trained at lambda {blob['args'].get('lmbda')}, not {args.lmbda}")
        _load_state(model, blob["model"], str(out))
        _load_state(ema, blob["ema"], str(out))
        optimizer.load_state_dict(blob["optimizer"])
        aux_optimizer.load_state_dict(blob["aux_optimizer"])
        if scaler is not None and "scaler" in blob:
            scaler.load_state_dict(blob["scaler"])
        step, meta = int(blob["step"]), dict(blob["meta"])
        if blob["args"].get("steps") != args.steps:
            warnings.warn(f"--steps changed from {blob['args'].get('steps')} to {args.steps}: "
                          "the learning-rate schedule is stretched accordingly", stacklevel=3)
    import compressai

    meta.update(data=str(args.data), images=len(dataset), device=device.type, torch=torch.__version__,
                compressai=compressai.__version__, architecture=f"{ARCHITECTURE}(N={args.N}, M={args.M})")
    val_images = validation_images(args.val_data, args.val_images, args.crop) if args.val_every > 0 else []
    log_path = log_path_for(out) if args.log is None else Path(args.log)
    log = open(log_path, "a")

    def write(record):
        log.write(json.dumps(record) + "\n")
        log.flush()

    saved_at = step if args.resume else -1

    def checkpoint(step):
        nonlocal saved_at
        if saved_at != step:
            save_peer_checkpoint(out, model, ema, optimizer, aux_optimizer, step, args, meta, scaler)
            saved_at = step

    # --- the loop: semlib.train.fit
    def one_step(step):
        x, _, _ = make_batch(dataset, args.seed, step, args.batch, map_prob=0.0, fixed_gamma=1.0)
        x = x.to(device).contiguous(memory_format=fmt)
        torch.manual_seed(mix_seed(args.seed, "noise", step, 0))     # the latents' uniform noise
        values = train_step(model, optimizer, aux_optimizer, main_params, x, args, amp_context, scaler)
        update_ema(ema, model, step, args.ema_decay)
        return values

    def validation(step):
        return [{"kind": "val", "step": step, "lmbda": args.lmbda, **validate_peer(ema, val_images)}]

    try:
        step, last, signum = fit(args, step, meta, optimizer, one_step, write, checkpoint,
                                 validate=validation if val_images else None,
                                 desc=f"train peer lambda={args.lmbda:g}", progress=args.progress)
    finally:
        log.close()
    return {"step": step, "checkpoint": str(out), "log": str(log_path), "interrupted": step < args.steps,
            "signal": signum, "wall_s": float(meta["wall_s"]), "last": last, "images": len(dataset)}


# =========================================================================== 3. the codec


def load_peer(path, weights: str = "ema"):
    """The trained peer of a checkpoint, in eval mode, float32, with its entropy coder's
    tables built (``model.update(force=True)``), and the checkpoint's dict.

    ``weights``: "ema" (the moving average, what is evaluated, as for our model) or "model".
    """
    if weights not in ("ema", "model"):
        raise SemlibError(f"weights must be 'ema' or 'model', got {weights!r}")
    blob = load_peer_checkpoint(path)
    model = build_peer(blob["architecture"]["N"], blob["architecture"]["M"])
    _load_state(model, blob[weights], f"{path} ({weights})")
    model = model.float().eval()
    model.update(force=True)
    return model, blob


def _pad(x: torch.Tensor) -> torch.Tensor:
    """Replicate the last row / column up to a multiple of 64 (cropped away after decoding)."""
    h, w = x.shape[-2:]
    return F.pad(x, (0, -w % STRIDE, 0, -h % STRIDE), mode="replicate")


@torch.no_grad()
def _compress(model, x: torch.Tensor) -> tuple[bytes, bytes]:
    """MeanScaleHyperprior.compress for one image, with a guard: CompressAI's range coder can
    loop for a very long time on NaN or huge symbols, so non-finite latents raise and the
    others are clamped to +-LATENT_LIMIT (values far beyond any trained model's)."""
    y = model.g_a(x)
    z = model.h_a(y)
    if not (torch.isfinite(y).all() and torch.isfinite(z).all()):
        raise SemlibError("the peer produced non-finite latents (a diverged checkpoint?)")
    y, z = y.clamp(-LATENT_LIMIT, LATENT_LIMIT), z.clamp(-LATENT_LIMIT, LATENT_LIMIT)
    z_strings = model.entropy_bottleneck.compress(z)
    z_hat = model.entropy_bottleneck.decompress(z_strings, z.shape[-2:])
    scales_hat, means_hat = model.h_s(z_hat).chunk(2, 1)
    indexes = model.gaussian_conditional.build_indexes(scales_hat)
    y_strings = model.gaussian_conditional.compress(y, indexes, means=means_hat)
    return y_strings[0], z_strings[0]


def peer_encode(model, image) -> bytes:
    """Compress an RGB image (anything :func:`semlib.data.as_array` takes) into a file:
    ``HEADER`` (magic b"PEER", height, width as uint16, length of the y string as uint32,
    little-endian) then the y string, then the z string. Every byte counts in bpp."""
    a = data.as_array(image)
    h, w = a.shape[:2]
    if max(h, w) > 0xFFFF:
        raise SemlibError(f"image {h}x{w} is too large for the peer's file (sides up to 65535)")
    y_string, z_string = _compress(model, _pad(data.to_tensor(a)))
    return HEADER.pack(MAGIC, h, w, len(y_string)) + y_string + z_string


@torch.no_grad()
def peer_decode(model, blob: bytes) -> np.ndarray:
    """The reconstruction (uint8 H x W x 3) of a file written by :func:`peer_encode` with the
    same model; FormatError if the file is not one."""
    blob = bytes(blob)
    if len(blob) < HEADER.size:
        raise FormatError(f"peer file too short ({len(blob)} bytes)")
    magic, h, w, n_y = HEADER.unpack_from(blob)
    if magic != MAGIC or h == 0 or w == 0 or n_y > len(blob) - HEADER.size:
        raise FormatError("not a peer file (bad magic, size or string length)")
    y_string, z_string = blob[HEADER.size:HEADER.size + n_y], blob[HEADER.size + n_y:]
    shape = (-(-h // STRIDE), -(-w // STRIDE))
    x_hat = model.decompress([[y_string], [z_string]], shape)["x_hat"]
    return data.to_uint8(x_hat[..., :h, :w])


def peer_name(lmbda: float) -> str:
    """The results name of a peer: ``peer-msh-<lambda>``."""
    return f"peer-msh-{lmbda:g}"


def peer_codec(checkpoint, weights: str = "ema"):
    """The trained peer as a :class:`semlib.baselines.Codec` for :mod:`semlib.evaluate`.

    Its knob is lambda, with one value, the one it was trained at (a fixed-rate model): the
    sweep is that single operating point.
    """
    from semlib.baselines import Codec

    model, blob = load_peer(checkpoint, weights)
    lmbda = float(blob["args"]["lmbda"])
    arch = blob["architecture"]
    steps, wall = int(blob["step"]), float(blob["meta"].get("wall_s", 0.0))

    def version() -> str:
        import compressai

        return f"compressai {compressai.__version__}, torch {torch.__version__}"

    return Codec(
        peer_name(lmbda),
        f"peer: CompressAI MeanScaleHyperprior(N={arch['N']}, M={arch['M']}), fixed rate, lambda={lmbda:g}, "
        f"trained {steps} steps / {wall / 60:.1f} min of training steps ({weights} weights of "
        f"{Path(str(checkpoint)).name})",
        "lambda", (lmbda, lmbda), False, True, (lmbda,),
        lambda a, q: peer_encode(model, a), lambda b: peer_decode(model, b), version,
    )


def evaluate_peer(checkpoint, images, weights: str = "ema", importance="gradcam", **options) -> dict:
    """:func:`semlib.evaluate.evaluate_codec` of :func:`peer_codec` over ``images``, with the
    training run described under ``meta["training"]`` (steps, wall seconds, lambda, ...)."""
    from semlib.evaluate import evaluate_codec

    codec = peer_codec(checkpoint, weights)
    blob = load_peer_checkpoint(checkpoint)
    res = evaluate_codec(codec, images, importance=importance, **options)
    a = blob["args"]
    res["meta"]["training"] = {
        "checkpoint": str(checkpoint), "weights": weights, "steps": int(blob["step"]),
        "planned_steps": a.get("steps"), "wall_s": float(blob["meta"].get("wall_s", 0.0)),
        "lmbda": a.get("lmbda"), "N": blob["architecture"]["N"], "M": blob["architecture"]["M"],
        "crop": a.get("crop"), "batch": a.get("batch"), "lr": a.get("lr"), "amp": a.get("amp"),
        "seed": a.get("seed"), "data": a.get("data"), "device": blob["meta"].get("device"),
    }
    return res


# =========================================================================== 4. the command line


def add_peer_train_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``python -m semlib.peer train`` (defaults: the comparison of issue 5)."""
    a = parser.add_argument
    a("--data", required=True, help="folder of training images, searched recursively")
    a("--out", required=True, help="training checkpoint to write (its log goes beside it as .jsonl)")
    a("--resume", action="store_true", help="continue the run saved in --out exactly where it stopped")
    a("--steps", type=int, default=DEFAULT_STEPS,
      help=f"total steps; also sets the learning-rate schedule (default {DEFAULT_STEPS})")
    a("--time-limit", type=float, default=None, help="stop (with a checkpoint) after this many seconds")
    a("--stop-after", type=int, default=None, help="stop (with a checkpoint) after this many steps of this run")
    a("--stop-at", type=int, default=None, metavar="STEP",
      help="stop (with a checkpoint) at this step of the whole run, resumed or not (as semlib train --stop-at)")
    a("--lmbda", type=float, default=DEFAULT_LMBDA,
      help=f"rate-distortion trade-off, CompressAI units: lambda*255^2*MSE + bpp (default {DEFAULT_LMBDA})")
    a("--N", type=int, default=128, help="channels of the transforms (default 128)")
    a("--M", type=int, default=192, help="channels of the latent y (default 192)")
    a("--crop", type=int, default=128, help="training crop side, a multiple of 64 (default 128)")
    a("--batch", type=int, default=8, help="images per step (default 8)")
    a("--lr", type=float, default=2e-4, help="peak learning rate of Adam (default 2e-4)")
    a("--aux-lr", type=float, default=1e-3, help="learning rate of the auxiliary Adam (default 1e-3)")
    a("--warmup", type=int, default=500, help="linear warmup steps, at most steps/10 (default 500)")
    a("--clip", type=float, default=1.0, help="gradient-norm clipping threshold (default 1, CompressAI's)")
    a("--ema-decay", type=float, default=0.999, help="decay of the weights' moving average (default 0.999)")
    a("--seed", type=int, default=0, help="seed of the data order, crops and noise (default 0, as ours)")
    a("--max-images", type=int, default=None, help="use an evenly spaced subset of this many images")
    a("--log-every", type=int, default=50, help="steps per line of the JSON-lines log (default 50)")
    a("--ckpt-every", type=int, default=500, help="steps between checkpoints (default 500)")
    a("--val-every", type=int, default=1000, help="steps between validations, 0 = never (default 1000)")
    a("--val-data", default=None, help="validation images (default: Kodak, if found)")
    a("--val-images", type=int, default=3, help="how many validation images (center crops; default 3)")
    a("--num-threads", type=int, default=0, help="CPU threads for torch, 0 = torch's default")
    a("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    a("--amp", action=argparse.BooleanOptionalAction, default=None,
      help="bf16 autocast (fp16 on a GPU without bf16); default: on a GPU, and on a CPU with bf16 "
      "instructions (semlib.train.use_amp)")
    a("--channels-last", action=argparse.BooleanOptionalAction, default=True,
      help="channels-last memory format (default on)")
    a("--log", default=None, help="JSON-lines log (default: --out with suffix .jsonl)")
    a("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")
    return parser


def add_peer_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``python -m semlib.peer eval``."""
    a = parser.add_argument
    a("--checkpoint", required=True, help="a peer training checkpoint")
    a("--data", default="kodak", help="a folder of images, or a dataset name found by semlib.data (default kodak)")
    a("--images", type=int, default=None, help="use only the first N images")
    a("--out", default=None, help="results JSON (default results/<dataset>/peer-msh-<lambda>.json)")
    a("--weights", default="ema", choices=["ema", "model"], help="which weights to evaluate (default ema)")
    a("--importance", default="gradcam", choices=["gradcam", "uniform"],
      help="map weighting SI-SSIM (default gradcam, cached under results/cache/importance)")
    a("--threads", type=int, default=1, help="torch threads during the evaluation (default 1)")
    a("--progress", action=argparse.BooleanOptionalAction, default=True, help="show a progress bar")
    return parser


def peer_args(data_dir, out, **options) -> argparse.Namespace:
    """The arguments of :func:`train_peer` from Python: the command-line defaults with
    ``options`` (same names as the options, with underscores) set."""
    args = add_peer_train_arguments(argparse.ArgumentParser()).parse_args(["--data", str(data_dir), "--out", str(out)])
    for k, v in options.items():
        if not hasattr(args, k):
            raise TypeError(f"unknown peer training option {k!r}")
        setattr(args, k, v)
    return args


def run_peer_train(args) -> int:
    s = train_peer(args)
    msg = f"step {s['step']}/{args.steps}, {s['wall_s']:.0f} s of training steps"
    if s["last"]:
        msg += f": loss {s['last']['loss']:.4f}, {s['last']['bpp']:.3f} bpp, {s['last']['psnr']:.2f} dB"
    print(f"{msg}; checkpoint {s['checkpoint']}, log {s['log']}")
    if s["signal"] is not None:
        print("interrupted: continue with --resume")
        return 128 + int(s["signal"])
    return 0


def run_peer_eval(args) -> int:
    from semlib.evaluate import results_path, save_results

    folder = Path(args.data)
    if not folder.is_dir():
        try:
            folder = data.find_dataset(args.data)
        except FileNotFoundError as e:
            raise SemlibError(str(e).splitlines()[0]) from None
    images = data.list_images(folder)
    if args.images is not None:
        if args.images < 1:
            raise SemlibError("--images must be >= 1")
        images = images[:args.images]
    if not images:
        raise SemlibError(f"{folder}: no images in it")
    res = evaluate_peer(args.checkpoint, images, args.weights, args.importance, dataset=folder.name,
                        progress=args.progress, threads=args.threads)
    res["meta"]["dataset_path"] = str(folder)
    out = Path(args.out) if args.out else results_path(folder.name, res["name"])
    save_results(res, out)
    r = res["results"]
    print(f"{res['name']}: {len(images)} images, {r['bpp'][0]:.4f} bpp, {r['psnr-rgb'][0]:.2f} dB PSNR, "
          f"MS-SSIM {r['ms-ssim-rgb'][0] if r['ms-ssim-rgb'][0] is not None else float('nan'):.4f} -> {out}")
    return 0


def main(argv=None) -> int:
    """``python -m semlib.peer train|eval ...``; exit status 2 with one line on bad input."""
    parser = argparse.ArgumentParser(prog="python -m semlib.peer", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    add_peer_train_arguments(sub.add_parser("train", help="train the fixed-rate peer"))
    add_peer_eval_arguments(sub.add_parser("eval", help="evaluate a peer checkpoint with real bitstreams"))
    args = parser.parse_args(argv)
    try:
        return run_peer_train(args) if args.command == "train" else run_peer_eval(args)
    except SemlibError as e:
        print(f"semlib.peer {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
