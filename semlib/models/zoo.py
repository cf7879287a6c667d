"""The model zoo: the configurations (sizes of each model), building a model, reading and
writing checkpoints, and the fingerprint that ties a ``.semc`` file to its weights."""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

from semlib.errors import CheckpointError
from semlib.models.layers import ResBlock
from semlib.models.vae import HierarchicalVAE

# --------------------------------------------------------------------------- configurations


@dataclass(frozen=True)
class Config:
    """Sizes of one model, per scale. Encoder lists run fine to coarse (/4 ... /64),
    decoder lists coarse to fine (/64 ... /4); latent lists cover /64 ... /8."""

    name: str
    enc_widths: tuple[int, int, int, int, int]
    enc_blocks: tuple[int, int, int, int, int]
    dec_widths: tuple[int, int, int, int, int]
    dec_blocks: tuple[int, int, int, int, int]   # plain residual blocks after the latents
    latents: tuple[int, int, int, int]           # latent blocks at /64, /32, /16, /8
    z_dims: tuple[int, int, int, int]
    kernels: tuple[int, int, int, int, int]      # depthwise kernel at /4, /8, /16, /32, /64
    mlp_ratio: float = 2.0
    emb_dim: int = 64
    # 0: each latent block's log gain is learned freely from the gamma embedding (it starts at
    # the law below). > 0: log g = (1/2) log(gamma / sqrt(lo * hi)), the high-rate law, fixed,
    # plus a learned residual bounded to +-gain_residual nats (see LatentBlock.log_gain).
    gain_residual: float = 0.0


CONFIGS = {
    # For tests and quick notebooks: ~0.3 M parameters.
    "tiny": Config(
        "tiny",
        enc_widths=(24, 32, 48, 48, 48), enc_blocks=(1, 1, 1, 1, 1),
        dec_widths=(48, 48, 48, 32, 24), dec_blocks=(0, 0, 0, 0, 1),
        latents=(1, 1, 1, 1), z_dims=(8, 8, 16, 4),
        kernels=(5, 5, 3, 3, 1), mlp_ratio=2.0, emb_dim=32,
    ),
    # The model trained on a 2-core CPU and shipped with the project. Its depthwise kernels
    # are 3x3: on 2 CPU cores the backward pass of a 7x7 depthwise convolution at /4 took
    # 46 ms a call, over half of a training step; with 3x3 everywhere a step on 8x256x256
    # (bf16, channels-last) went from 0.73 s to 0.48 s. Depth still gives a wide field.
    # The latents at /8 are 2 x 24 channels (2 x 8 until step 203,364): those few channels capped
    # the high rates (results/pilots/README.md, "Which part caps the high rates"); they were widened
    # in training (semlib train --z-dims, campaign run 25).
    "small": Config(
        "small",
        enc_widths=(64, 96, 128, 160, 160), enc_blocks=(2, 2, 2, 2, 1),
        dec_widths=(160, 160, 128, 96, 64), dec_blocks=(0, 1, 1, 1, 2),
        latents=(1, 2, 2, 2), z_dims=(16, 16, 48, 24),
        kernels=(3, 3, 3, 3, 1), mlp_ratio=2.0, emb_dim=96,
    ),
    # QARV-base size (Duan et al. 2023), for a GPU.
    "paper": Config(
        "paper",
        enc_widths=(192, 384, 512, 512, 512), enc_blocks=(6, 6, 6, 4, 4),
        dec_widths=(512, 512, 384, 256, 128), dec_blocks=(1, 2, 2, 2, 8),
        latents=(1, 2, 3, 3), z_dims=(32, 32, 96, 8),
        kernels=(7, 7, 5, 3, 1), mlp_ratio=3.0, emb_dim=256,
    ),
}


def build_model(config: str | Config = "small") -> HierarchicalVAE:
    """A fresh model of a named configuration ('tiny', 'small', 'paper') or a :class:`Config`."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise ValueError(f"unknown configuration {config!r}; choose one of {sorted(CONFIGS)}")
        config = CONFIGS[config]
    return HierarchicalVAE(config)


def random_model(config: str | Config = "tiny", seed: int = 0, modulation_std: float = 0.3) -> HierarchicalVAE:
    """A model with random weights whose gamma conditioning is switched on, in eval mode: the
    modulations are zero at initialisation, which would make gamma a no-op, so they are drawn
    from N(0, ``modulation_std``). For tests, fuzzing and determinism checks, not for coding."""
    torch.manual_seed(seed)
    model = build_model(config)
    for m in model.modules():
        if isinstance(m, ResBlock):
            torch.nn.init.normal_(m.modulation.weight, std=modulation_std)
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- configurations read from files

MAX_PARAMETERS = 400_000_000   # a configuration read from a file may not ask for more (about 4x 'paper')
MAX_NAME = 64                   # configuration names: printable ASCII, at most this many characters
_CONFIG_TUPLES = {"enc_widths": 5, "enc_blocks": 5, "dec_widths": 5, "dec_blocks": 5,
                  "latents": 4, "z_dims": 4, "kernels": 5}
# (smallest, largest) of each size; the largest are far above the 'paper' configuration
_CONFIG_BOUNDS = {"enc_widths": (1, 2048), "enc_blocks": (0, 64), "dec_widths": (1, 2048), "dec_blocks": (0, 64),
                  "latents": (1, 16), "z_dims": (1, 1024), "kernels": (1, 31), "emb_dim": (2, 2048)}


def _resblock_parameters(dim: int, emb: int, k: int, ratio: float) -> int:
    hidden = int(dim * ratio)
    return (dim * k * k + dim) + (emb * 2 * dim + 2 * dim) + (dim * hidden + hidden) + (hidden * dim + dim) + dim


def estimate_parameters(c: Config) -> int:
    """The parameter count of ``HierarchicalVAE(c)``, computed from the sizes alone (nothing is
    built): equal to :func:`count_parameters` of the built model."""
    e, ratio = c.emb_dim, c.mlp_ratio
    n = (33 * e + e) + (e * (e - 1) + (e - 1))                           # gamma embedding
    n += 3 * c.enc_widths[0] * 16 + c.enc_widths[0]                       # 4x4 stem
    for s in range(5):
        if s > 0:
            n += c.enc_widths[s - 1] * c.enc_widths[s] * 4 + c.enc_widths[s]
        n += c.enc_blocks[s] * _resblock_parameters(c.enc_widths[s], e, c.kernels[s], ratio)
    n += c.dec_widths[0]                                                  # learned constant
    for t in range(5):
        s, w = 4 - t, c.dec_widths[t]
        if t < 4:
            z, ew = c.z_dims[t], c.enc_widths[s]
            latent = (4 * _resblock_parameters(w, e, c.kernels[s], ratio) + (w * 2 * z + 2 * z)
                      + ((w + ew) * w + w) + (w * z + z) + (z * w + w) + (e * z + z))
            n += c.latents[t] * latent
            n += c.dec_widths[t] * c.dec_widths[t + 1] * 4 + c.dec_widths[t + 1] * 4    # 2x pixel-shuffle up
        n += c.dec_blocks[t] * _resblock_parameters(w, e, c.kernels[s], ratio)
    n += c.dec_widths[4] * 3 * 16 + 3 * 16                                # 4x pixel-shuffle head
    return n


def check_config_name(name) -> str:
    """A configuration name goes into every file (codec format: one length byte, ASCII):
    printable ASCII, 1 to MAX_NAME characters. Raises CheckpointError otherwise."""
    if not isinstance(name, str):
        raise CheckpointError(f"configuration field 'name' must be a string, got {type(name).__name__}")
    if not name or len(name) > MAX_NAME or not all(" " <= ch <= "~" for ch in name):
        shown = name[:40] + ("..." if len(name) > 40 else "")
        raise CheckpointError(f"configuration field 'name' must be 1 to {MAX_NAME} printable ASCII characters, "
                              f"got {shown!r} ({len(name)} characters)")
    return name


def config_from_dict(raw) -> Config:
    """The :class:`Config` stored in a checkpoint, checked field by field before anything is
    built: types, lengths, bounds (:data:`_CONFIG_BOUNDS`) and the parameter count it implies
    (:data:`MAX_PARAMETERS`). Raises CheckpointError naming the first bad field."""
    if not isinstance(raw, dict):
        raise CheckpointError(f"the configuration is a {type(raw).__name__}, not a table of fields")
    fields = set(Config.__dataclass_fields__)
    unknown = [k for k in raw if k not in fields]
    if unknown:
        raise CheckpointError(f"unknown configuration field {str(unknown[0])[:40]!r}")
    required = ["name", *_CONFIG_TUPLES]
    for k in required:
        if k not in raw:
            raise CheckpointError(f"the configuration lacks the field {k!r}")
    values = {"name": check_config_name(raw["name"])}

    def whole(k, v, i=None):
        where = k if i is None else f"{k}[{i}]"
        if isinstance(v, bool) or not isinstance(v, int):
            raise CheckpointError(f"configuration field {where!r} must be a whole number, got {str(v)[:40]!r}")
        lo, hi = _CONFIG_BOUNDS[k]
        if not lo <= v <= hi:
            raise CheckpointError(f"configuration field {where!r} is {v}, outside {lo} .. {hi}")
        return v

    for k, n in _CONFIG_TUPLES.items():
        v = raw[k]
        if not isinstance(v, (list, tuple)) or len(v) != n:
            raise CheckpointError(f"configuration field {k!r} must be a list of {n} whole numbers, got {str(v)[:60]}")
        values[k] = tuple(whole(k, x, i) for i, x in enumerate(v))
    if any(k % 2 == 0 for k in values["kernels"]):
        raise CheckpointError(f"configuration field 'kernels' must hold odd sizes, got {list(values['kernels'])}")
    if sum(values["latents"]) > 64:
        raise CheckpointError(f"configuration field 'latents' asks for {sum(values['latents'])} latent blocks "
                              "(at most 64)")
    if "emb_dim" in raw:
        values["emb_dim"] = whole("emb_dim", raw["emb_dim"])
    for k, hi in (("mlp_ratio", 16.0), ("gain_residual", 8.0)):
        if k in raw:
            v = raw[k]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise CheckpointError(f"configuration field {k!r} must be a number, got {str(v)[:40]!r}")
            if not (0 < v <= hi if k == "mlp_ratio" else 0 <= v <= hi):
                raise CheckpointError(f"configuration field {k!r} is {v:g}, outside {'(0' if k == 'mlp_ratio' else '[0'}, {hi:g}]")
            values[k] = float(v)
    for k in fields - set(values) - {"emb_dim", "mlp_ratio", "gain_residual"}:
        if k in raw:       # a field of Config that has no check here yet: taken as stored
            values[k] = tuple(raw[k]) if isinstance(raw[k], list) else raw[k]
    try:
        config = Config(**values)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the configuration does not fit ({_one_line(e)})") from None
    n = estimate_parameters(config)
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"the configuration asks for {n / 1e6:,.0f} M parameters, more than the limit of "
                              f"{MAX_PARAMETERS / 1e6:,.0f} M ('paper' has {estimate_parameters(CONFIGS['paper']) / 1e6:.0f} M)")
    return config


# --------------------------------------------------------------------------- checkpoints

CHECKPOINT_FORMAT = "semlib-model"
# where each checkpoint format keeps the weights to code with: a model file (save_model) its
# "model", a training checkpoint (semlib.train) its EMA weights
WEIGHTS_KEY = {CHECKPOINT_FORMAT: "model", "semlib-train": "ema"}
SHIPPED_CHECKPOINT = Path(__file__).resolve().parent.parent / "checkpoints" / "small.pt"
# notebook 04's fixed-rate `tiny` models, trained longer than a CI notebook can
# (scripts/train_tiny_references.py; their runs.json says how): one file per gamma
TINY_REFERENCES = SHIPPED_CHECKPOINT.parent / "tiny"


def tiny_references() -> dict[float, Path]:
    """gamma -> path of each shipped fixed-rate `tiny` reference model (TINY_REFERENCES), sorted
    by gamma; empty if none ships."""
    found = {}
    for path in TINY_REFERENCES.glob("tiny_gamma*.pt"):
        try:
            found[float(path.stem.removeprefix("tiny_gamma"))] = path
        except ValueError:
            continue
    return dict(sorted(found.items()))


def read_checkpoint(path, error: str, device="cpu"):
    """``torch.load(path, weights_only=True)``: no pickled code is run. Any failure to read
    or unpickle raises CheckpointError("``error`` (the first line of the reason)")."""
    import warnings

    try:
        with warnings.catch_warnings():
            # torch warns about the pickle protocol of files it then refuses: the error says it all
            warnings.filterwarnings("ignore", message=r"Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means "not a checkpoint"
        text = str(e)
        if "Weights only load failed" in text:     # torch's advice to load it unsafely is not passed on
            body = text.split("Check the documentation", 1)[0]
            marker = "WeightsUnpickler error:" if "WeightsUnpickler error:" in body else "trusted source."
            reason = body.split(marker, 1)[-1].strip() or "objects other than tensors"
            raise CheckpointError(f"{error} (it holds more than weights, and is refused unrun: "
                                  f"{_one_line(reason, 120)})") from None
        raise CheckpointError(f"{error} ({_one_line(e)})") from None


def _one_line(e: BaseException, limit: int = 200) -> str:
    """An exception's message on one line (whitespace runs, newlines included, become one
    space), at most ``limit`` characters; its type's name when it says nothing."""
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def save_model(model: HierarchicalVAE, path, **meta) -> None:
    """Write the weights and configuration of ``model`` atomically (temp file + rename).
    ``meta`` (numbers and strings: steps, data, wall time ...) is stored beside them."""
    path = Path(path)
    check_config_name(model.config.name)          # it must fit the files the model will write
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("entropy.")}
    blob = {"format": CHECKPOINT_FORMAT, "version": 1, "config": asdict(model.config),
            "model": state, "meta": meta}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)


def load_model(path=None, device="cpu") -> HierarchicalVAE:
    """Load a checkpoint written by :func:`save_model` (or a training checkpoint of
    :mod:`semlib.train`, whose EMA weights are used), in eval mode.

    Without ``path``, the checkpoint shipped with the project. Raises
    :class:`semlib.CheckpointError` for a missing file, a file that is not a checkpoint
    (``torch.load`` runs with ``weights_only=True``, so pickled code is refused), or weights
    that do not fit the stored configuration.
    """
    path = Path(path) if path is not None else SHIPPED_CHECKPOINT
    if not path.is_file():
        hint = " (no trained checkpoint ships with this version: pass one with --checkpoint)" \
            if path == SHIPPED_CHECKPOINT else ""
        raise CheckpointError(f"{path}: checkpoint not found{hint}")
    blob = read_checkpoint(path, f"{path}: not a readable semlib checkpoint", device)
    if not isinstance(blob, dict) or blob.get("format") not in WEIGHTS_KEY:
        raise CheckpointError(f"{path}: not a semlib checkpoint")
    if "config" not in blob:
        raise CheckpointError(f"{path}: the checkpoint holds no configuration")
    try:
        config = config_from_dict(blob["config"])      # checked before anything is built
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    state = blob.get(WEIGHTS_KEY[blob["format"]])
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise CheckpointError(f"{path}: the checkpoint holds no table of weights")
    try:
        model = HierarchicalVAE(config)
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: the weights do not fit their configuration ({_one_line(e)})") from None
    missing = [k for k in missing if not k.startswith("entropy.")]
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{path}: the weights hold NaN or infinite values ({bad[:3]})")
    if missing or unexpected:
        raise CheckpointError(f"{path}: the weights do not fit their configuration "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.meta = dict(blob.get("meta", {}))
    return model.to(device).eval()


def fingerprint(model: nn.Module) -> bytes:
    """8 bytes identifying the weights (sha256 over the float32 parameters and buffers in
    name order). Written into every file, so a file is never decoded with other weights."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith("entropy."):
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().float().contiguous().numpy().tobytes())
    return h.digest()[:8]
