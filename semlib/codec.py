"""The ``.semc`` file: encode an image into bytes and decode it back (docs/METHOD.md §4, §9).

The layout, the level map, packing and parsing are in :mod:`semlib.semc` (no torch there);
this module codes images with a model: :func:`encode_image` (at a gamma, or at a target
bpp through :mod:`semlib.rate_control`), :func:`encode`, :func:`decode`, :func:`info`.

Version 3 holds an image of more than 4 Mpx in overlapping tiles, each coded as above (its
layout and the blending: :mod:`semlib.tiling`); smaller images are still written as version 2.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from semlib import data as sdata
from semlib import semc, tiling
from semlib.errors import FormatError, SemlibError
from semlib.allocation import BLOCK, GAMMA_RANGE
from semlib.entropy import CODING_THREADS
from semlib.models import MAX_STRIDE, HierarchicalVAE, fingerprint, load_model
from semlib import rate_control
from semlib.refine import DEFAULT_LR, refine_latents
from semlib.semc import (FLAG_MAP, MAGIC, MAX_LATENTS, MAX_SIDE, VERSION, VERSIONS, Header,  # noqa: F401 (re-exported)
                         LevelMap, _pack, _parse_sides, _Reader, info, parse)

MAX_PIXELS = sdata.MAX_PIXELS
MAX_REFINE = 10_000                     # refinement steps: more is a typo, not a wish
REFINE_SEARCH = 3                       # refined files at most, for a target bpp (rate_control.secant_from)
DEFAULT_KAPPA = 1.0                     # ROI strength of encode_image: gamma_i = gamma * (T_i / M) ** kappa


@dataclass
class Encoded:
    """What :func:`encode_image` produced: the file and how it was made."""

    data: bytes
    gamma: float                 # the base gamma written in the file
    bpp: float                   # 8 * len(data) / (H * W)
    x_hat: np.ndarray | None     # the reconstruction the decoder will produce (uint8 H x W x 3; None without reconstruct)
    gamma_map: np.ndarray | None  # per-block gamma (ceil(H/8) x ceil(W/8)) if ROI, else None
    target_bpp: float | None = None
    met_target: bool | None = None
    refinement: dict | None = None  # with refine=N: semlib.refine.refine_latents' report


# --------------------------------------------------------------------------- model cache


@functools.lru_cache(maxsize=4)
def _cached_model(path: str | None) -> tuple[HierarchicalVAE, bytes]:
    model = load_model(path)
    return model, fingerprint(model)


def trained_range(model: HierarchicalVAE) -> tuple[float, float]:
    """The gamma range ``model`` was trained on (its checkpoint's ``gamma_lo``, ``gamma_hi``), or
    the paper's GAMMA_RANGE for a model that does not say. Block gammas are clipped to it, and
    rate control searches it."""
    meta = getattr(model, "meta", None) or {}
    try:
        lo, hi = float(meta["gamma_lo"]), float(meta["gamma_hi"])
    except (KeyError, TypeError, ValueError):
        return GAMMA_RANGE
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo <= hi):
        return GAMMA_RANGE
    return lo, hi


def _fingerprint_of(model) -> bytes:
    """:func:`semlib.models.fingerprint` of ``model``, kept on it with the version counters of
    its tensors (every in-place change, an optimiser step or ``load_state_dict``, bumps them):
    a model trained further in the same process gets its new fingerprint, not the old one."""
    key = tuple((t.data_ptr(), t._version) for t in model.state_dict().values())
    cached = getattr(model, "_semlib_fingerprint", None)
    if cached is None or cached[0] != key:
        cached = (key, fingerprint(model))
        model._semlib_fingerprint = cached
    return cached[1]


def get_model(model=None, checkpoint=None) -> tuple[HierarchicalVAE, bytes]:
    """(model, fingerprint) from an explicit model, a checkpoint path, or the shipped one."""
    if model is not None:
        model.eval()
        return model, _fingerprint_of(model)
    return _cached_model(None if checkpoint is None else str(checkpoint))


# --------------------------------------------------------------------------- gamma description


def check_gamma(gamma, trained: tuple[float, float] | None = None) -> float:
    """A scalar gamma must be a finite number > 0, and, given the ``trained`` range of a model
    (:func:`trained_range`), inside it: a model is only trained, and only behaves, in its range
    (measured on the shipped model: gamma 0.001 gave 7.2 dB, gamma 1e9 9.27 bpp). The ends are
    allowed with the slack of a float32 rounding."""
    if isinstance(gamma, bool):
        raise SemlibError(f"gamma must be a number, got {gamma!r}")
    try:
        g = float(gamma)
    except (TypeError, ValueError, OverflowError):
        raise SemlibError(f"gamma must be a number, got {str(gamma)[:40]!r}") from None
    if not math.isfinite(g) or g <= 0:
        raise SemlibError(f"gamma must be finite and > 0, got {gamma!r}")
    if trained is not None:
        lo, hi = trained
        if not lo * (1 - 1e-6) <= g <= hi * (1 + 1e-6):
            raise SemlibError(f"gamma {g:g} is outside the range the model was trained on, "
                              f"{lo:g} .. {hi:g}")
    return g


def _check_gamma_range(gamma_range, trained: tuple[float, float]) -> tuple[float, float]:
    """A rate-control search range: two gammas lo <= hi, both inside the ``trained`` range."""
    try:
        lo, hi = gamma_range
    except (TypeError, ValueError):
        raise SemlibError(f"gamma_range must be two numbers (lo, hi), got {str(gamma_range)[:40]}") from None
    lo, hi = check_gamma(lo, trained), check_gamma(hi, trained)
    if lo > hi:
        raise SemlibError(f"gamma_range must have lo <= hi, got {lo:g} .. {hi:g}")
    return lo, hi


def check_kappa(kappa) -> float:
    """kappa (the strength of the ROI, gamma_i = gamma * r_i ** kappa) must be a finite number
    >= 0, with or without an ROI: a negative kappa would code the important blocks worst."""
    if isinstance(kappa, bool):
        raise SemlibError(f"kappa must be a number, got {kappa!r}")
    try:
        k = float(kappa)
    except (TypeError, ValueError, OverflowError):
        raise SemlibError(f"kappa must be a number, got {str(kappa)[:40]!r}") from None
    if not math.isfinite(k) or k < 0:
        raise SemlibError(f"kappa must be finite and >= 0, got {kappa!r}")
    return k


def roi_levels(image: np.ndarray, importance, kappa: float, **alloc) -> LevelMap | None:
    """The block level map for ``importance`` (None, 'auto', or a mask / map array / path), with
    the allocation options ``alloc`` as given (:func:`encode_image` adds those of ``--roi auto``)."""
    if importance is None or (isinstance(importance, str) and importance == "none"):
        return None
    from semlib import allocation
    from semlib import importance as imp

    auto = isinstance(importance, str) and importance == "auto"
    g = imp.importance_map(image) if auto else imp.importance_map(image, mask=importance)
    try:
        result = allocation.allocate(g, 1.0, kappa=1.0, **alloc)
    except ValueError as e:
        raise SemlibError(f"ROI allocation: {e}") from None
    return LevelMap.from_ratios(np.asarray(result.T, np.float64) / float(result.mean_level), kappa)



# --------------------------------------------------------------------------- encode / decode


def _pad(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % MAX_STRIDE, (-w) % MAX_STRIDE
    if ph == 0 and pw == 0:
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _model_gamma(gamma: float, levels: LevelMap | None, padded_hw, gamma_range=GAMMA_RANGE) -> torch.Tensor | float:
    """The gamma the model sees: a scalar, or the block map edge-padded to the padded image."""
    if levels is None:
        return gamma
    gm = torch.from_numpy(levels.model_gamma_map(gamma, gamma_range))
    rows, cols = padded_hw[0] // BLOCK, padded_hw[1] // BLOCK
    gm = F.pad(gm[None, None], (0, cols - gm.shape[1], 0, rows - gm.shape[0]), mode="replicate")
    return gm[0]


def _encode_at(model, fp, x_padded, height, width, gamma, levels, reconstruct=True,
               refine: int = 0, refine_lr: float | None = None) -> tuple[bytes, torch.Tensor, dict | None]:
    gm = _model_gamma(gamma, levels, x_padded.shape[-2:], trained_range(model))
    if isinstance(gm, torch.Tensor) and not (torch.isfinite(gm).all() and (gm > 0).all()):
        raise SemlibError(f"gamma {gamma} with kappa {levels.kappa} gives block gammas that overflow float32")
    try:
        latents, report = (refine_latents(model, x_padded, gm, height, width, refine, lr=refine_lr or DEFAULT_LR)
                           if refine else (None, None))
        out = model.compress(x_padded, gm, reconstruct=reconstruct, latents=latents)
    except ValueError as e:
        raise SemlibError(f"the model cannot code this image: {e}") from None
    strings = [s[0] for s in out["strings"]]
    sides = [s[0] for s in out["sides"]]
    data = _pack(height, width, model.config.name, fp, gamma, levels, strings, sides, out["crc"][0])
    return data, None if out["x_hat"] is None else out["x_hat"][..., :height, :width], report


# Long: the checks of every argument (each a one-line error), then one encoding or the search of rate_control.
def encode_image(image, gamma=None, target_bpp=None, importance=None, kappa: float = DEFAULT_KAPPA,
                 model=None, checkpoint=None, tolerance: float = 0.01,
                 gamma_range=None, max_iter: int = 20, reconstruct: bool = True, refine: int = 0,
                 refine_lr: float | None = None, tile=None, tile_overlap=None,
                 **alloc) -> Encoded:
    """Compress ``image`` at a given ``gamma`` or at a ``target_bpp`` (rate control).

    ``importance``: None (uniform gamma), ``'auto'`` (Grad-CAM map of the image, docs/METHOD.md §1),
    or a mask/map (array or path) painted by the user; it sets the block levels T_i / M
    (docs/METHOD.md §2), and each block codes at ``gamma * (T_i / M) ** kappa``. ``**alloc``:
    options of :func:`semlib.allocation.allocate` (``top``, ``boost``, ``steps``, ``smooth``,
    ``level_range``); with ``'auto'`` the missing ones come from
    :func:`semlib.allocation.auto_allocation` (``top=None`` for the paper's map), whose boost grows
    with ``target_bpp`` (3 at 0.75 bpp, 4 from about 1.33 bpp on). The file holds
    the block levels, so the decoder needs none of them.

    Rate control (:func:`semlib.rate_control.search_log_gamma`), with the level map held: it
    encodes at the two ends of ``gamma_range`` (default: the model's trained range,
    :func:`trained_range`) first, then searches log gamma by false position (log bpp is close
    to linear in it) until the file is within ``tolerance`` (relative) of ``target_bpp``. When that is not
    possible inside ``gamma_range`` the closest file is returned with ``met_target=False``;
    a target beyond either end thus costs two encodings.

    ``reconstruct=False`` leaves ``x_hat`` None and skips the decoder layers after the last
    latent (about a fifth of the encoding time); :func:`encode` uses it.

    ``refine``: steps of encoder-side refinement of the latents for R + gamma * D with this
    image's own gamma (or block map) (:mod:`semlib.refine`); the decoder and the format do not
    change. With a target bpp, the search runs without it; refinement lowers the rate by a few
    per cent, so the file at the gamma found is refined, then at most
    :data:`REFINE_SEARCH` - 1 more by secant steps on the refined files' bpp
    (:func:`semlib.rate_control.secant_from`); ``met_target`` tells the kept file's.
    ``refine_lr``: its Adam step size (default :data:`semlib.refine.DEFAULT_LR`); the report of
    the refinement is in the result's ``refinement``.

    ``tile``: images of more than :data:`semlib.tiling.THRESHOLD` pixels are coded in tiles of
    :data:`semlib.tiling.TILE` pixels overlapping by ``tile_overlap`` (default
    :data:`semlib.tiling.OVERLAP`), in bounded memory, into a version-3 file (:mod:`semlib.tiling`);
    ``tile=N`` tiles any image that does not fit in one N-pixel tile, ``tile=0`` never tiles.
    Rate control and ROI act on the whole image: one gamma, one block map.
    """
    if (gamma is None) == (target_bpp is None):
        raise SemlibError("give exactly one of gamma= or target_bpp=")
    if isinstance(refine, bool) or not isinstance(refine, int) or not 0 <= refine <= MAX_REFINE:
        raise SemlibError(f"refine must be a whole number of steps in [0, {MAX_REFINE}], got {refine!r}")
    if refine_lr is not None and not (isinstance(refine_lr, (int, float)) and math.isfinite(refine_lr) and refine_lr > 0):
        raise SemlibError(f"refine_lr must be a finite number > 0, got {refine_lr!r}")
    kappa = check_kappa(kappa)
    img = sdata.as_array(image)
    height, width = img.shape[:2]
    if height * width > MAX_PIXELS:
        raise SemlibError(f"image of {height} x {width} (height x width) is larger than the limit of "
                          f"{MAX_PIXELS} pixels")
    if max(height, width) >= MAX_SIDE:
        raise SemlibError(f"image of {height} x {width} (height x width): a .semc file holds sides of at most "
                          f"{MAX_SIDE - 1} pixels")
    if gamma is not None:
        gamma = check_gamma(gamma)
    model, fp = get_model(model, checkpoint)
    from semlib.errors import CheckpointError          # (imported here: keeps the module's imports as they were)
    from semlib.models import check_config_name

    try:
        check_config_name(model.config.name)
    except SemlibError as e:
        raise CheckpointError(f"this model cannot write .semc files: {e}") from None
    trained = trained_range(model)
    if gamma is not None:
        check_gamma(gamma, trained)
    if gamma_range is None:
        gamma_range = trained
    else:
        gamma_range = _check_gamma_range(gamma_range, trained)
    if isinstance(importance, str) and importance == "auto":    # --roi auto: its boost follows the target rate
        from semlib.allocation import auto_allocation

        alloc = {**auto_allocation(target_bpp), **alloc}
    grid = tiling.plan(height, width, tile, tile_overlap)
    if grid is not None and height * width > tiling.THRESHOLD:
        levels = tiling.roi_levels(img, importance, kappa, **alloc)   # bounded memory
    else:
        levels = roi_levels(img, importance, kappa, **alloc)
    x = _pad(sdata.to_tensor(img).to(next(model.parameters()).device)) if grid is None else None

    report = None

    def run(g, recon=False, steps=0):
        nonlocal report
        g32 = float(np.float32(g))
        if grid is not None:
            data, x_hat, report = tiling.encode_tiles(model, fp, img, grid, g32, levels, reconstruct=recon,
                                                      refine=steps, refine_lr=refine_lr)
            return g32, data, x_hat
        data, x_hat, report = _encode_at(model, fp, x, height, width, g32, levels, reconstruct=recon,
                                         refine=steps, refine_lr=refine_lr)
        return g32, data, x_hat

    if gamma is not None:
        g, data, x_hat = run(check_gamma(gamma), reconstruct, refine)
        res = _result(g, data, x_hat, levels, height, width, trained_range(model))
        res.refinement = report
        return res

    target = float(target_bpp)
    if not math.isfinite(target) or target <= 0:
        raise SemlibError(f"target bpp must be finite and > 0, got {target_bpp!r}")

    def measure(g):
        g, data, x_hat = run(g)
        return g, 8 * len(data) / (height * width), (data, x_hat)

    best, tried = rate_control.search_log_gamma(measure, gamma_range, target, tolerance, max_iter)
    g, bpp, (data, x_hat) = best
    if refine:                            # refinement lowers the rate: a few refined files, by secant
        def measure_refined(g):
            g, data, x_hat = run(g, reconstruct, refine)
            return g, 8 * len(data) / (height * width), (data, x_hat, report)

        g, bpp, (data, x_hat, report) = rate_control.secant_from(measure_refined, best, tried, gamma_range, target,
                                                                 tolerance, REFINE_SEARCH)
    elif reconstruct:                     # the search ran without the image-building layers
        g, data, x_hat = run(g, reconstruct)
        bpp = 8 * len(data) / (height * width)
    res = _result(g, data, x_hat, levels, height, width, trained_range(model))
    res.target_bpp, res.met_target = target, abs(bpp - target) <= tolerance * target
    res.refinement = report
    return res


def _result(g, data, x_hat, levels, height, width, gamma_range) -> Encoded:
    return Encoded(data=data, gamma=g, bpp=8 * len(data) / (height * width),
                   x_hat=x_hat if x_hat is None or isinstance(x_hat, np.ndarray) else sdata.to_uint8(x_hat),
                   gamma_map=None if levels is None else levels.model_gamma_map(g, gamma_range))


def encode(image, gamma=None, target_bpp=None, importance=None, kappa: float = DEFAULT_KAPPA, **kwargs) -> bytes:
    """``image`` -> the bytes of a ``.semc`` file. See :func:`encode_image` for the options."""
    kwargs.setdefault("reconstruct", False)
    return encode_image(image, gamma=gamma, target_bpp=target_bpp, importance=importance,
                        kappa=kappa, **kwargs).data


def decode(data: bytes, model=None, checkpoint=None) -> np.ndarray:
    """The bytes of a ``.semc`` file -> RGB ``uint8`` H x W x 3.

    Raises :class:`semlib.FormatError` for a truncated, corrupted or foreign file, or one
    made with another checkpoint; nothing reaches the rANS decoder unchecked. A tiled file
    (version 3) is decoded tile by tile (:func:`semlib.tiling.decode`)."""
    if tiling.is_tiled(data):
        return tiling.decode(data, model, checkpoint)
    header = parse(data)
    model, fp = get_model(model, checkpoint)
    semc.check_model(header, model, fp)
    if len(header.strings) != model.num_latents:
        raise FormatError(f"file holds {len(header.strings)} latent strings, the model needs {model.num_latents}")
    padded = (header.height + (-header.height) % MAX_STRIDE, header.width + (-header.width) % MAX_STRIDE)
    shape = (padded[0] // MAX_STRIDE, padded[1] // MAX_STRIDE)
    gamma = _model_gamma(header.gamma, header.levels, padded, trained_range(model))
    if isinstance(gamma, torch.Tensor) and not (torch.isfinite(gamma).all() and (gamma > 0).all()):
        raise FormatError("the block gammas of the level map overflow float32 (invalid gamma or kappa)")
    v1 = header.version == 1
    try:
        out = model.decompress([[s] for s in header.strings], shape, gamma,
                               sides=None if v1 else [[s] for s in header.sides],
                               threads=CODING_THREADS if v1 else None)
    except (RuntimeError, ValueError) as e:
        why = "" if v1 else " although the file's checksum matches: forged, or decoded with different arithmetic"
        raise FormatError(f"latent strings cannot be decoded ({str(e)[:120]}){why}") from None
    if not v1 and out["crc"][0] != header.symbols_crc:
        raise FormatError("decoded with different arithmetic than the encoder's (or forged): the decoded "
                          "symbols' checksum differs from the file's, whose own checksum is intact")
    return sdata.to_uint8(out["x_hat"][..., :header.height, :header.width])



def encode_many(paths, out_dir=None, **options):
    """Compress many images (files, or folders searched recursively) in worker processes,
    yielding a result per file as it finishes: :func:`semlib.batch.encode_many`."""
    from semlib import batch

    return batch.encode_many(paths, out_dir, **options)


def decode_many(paths, out_dir=None, **options):
    """Decode many ``.semc`` files into lossless images in worker processes, yielding a result
    per file as it finishes: :func:`semlib.batch.decode_many`."""
    from semlib import batch

    return batch.decode_many(paths, out_dir, **options)
