"""The ``.semc`` file: encode an image into bytes and decode it back (docs/METHOD.md §4, §9).

File format, version 2 (all integers little-endian)::

    offset  size  field
    0       4     magic b"SEMC"
    4       1     format version (2; version 1 files still decode, see below)
    5       1     flags: bit 0 set = gamma is a block map (ROI), else a scalar
    6       4     image height H (pixels, before padding)
    10      4     image width W
    14      1     n = length of the configuration name
    15      n     configuration name, ASCII ("tiny", "small", "paper")
    .       8     checkpoint fingerprint (semlib.models.fingerprint)
    .       4     gamma, float32 (the base Lagrange multiplier, QARV units)
    -- only if flags bit 0 --
    .       4     kappa, float32
    .       4     log of the smallest level ratio, float32
    .       4     log of the largest level ratio, float32
    .       4     m = length of the packed level map
    .       m     zlib-compressed uint8 block levels, ceil(H/8) x ceil(W/8), row-major;
                  q in 0..255 stands for the level ratio r = T_i / M (docs/METHOD.md §2),
                  log r = lo + q / 255 * (hi - lo), and the block's gamma is gamma * r^kappa
    -- always --
    .       1     k = number of latent strings
    .       4k    their lengths, uint32
    -- version 2 only --
    .       4     s = length of the fragile-symbol lists
    .       s     per latent block: a varint count, then one varint per fragile symbol,
                  (gap to the previous one's position) * 2 + (1 if its table index is
                  above the nearest boundary) (semlib.entropy)
    .       4     CRC32 of all decoded symbols (int32, latent blocks in order)
    -- always --
    .       ...   the k strings (rANS, one per latent block of the model, coarse to fine)
    end-4   4     CRC32 of every byte before it

Version 3 holds an image of more than 4 Mpx in overlapping tiles, each coded as above (its
layout and the blending: :mod:`semlib.tiling`); smaller images are still written as version 2.

Everything the decoder needs is in the file, and every byte of it counts in bpp.
**Portability.** The decoder recomputes the priors in float32, and on another x86-64
instruction set, another thread count or another build of the math libraries they come out
in other last bits. The table index of a symbol, which must match the encoder's exactly,
changes only for the few symbols whose scale lies within 2**-16 (in log) of a table
boundary; version 2 files list them with the encoder's choice (about 0.2 % of a file), so
every index agrees while the arithmetic differs by less than that (measured: at most
2.7e-6, ROBUSTNESS.md). The image then equals the encoder's reconstruction up to rare
one-level differences. The CRC of the symbols tells a decoder whose arithmetic strays
further ("decoded with different arithmetic than the encoder's") apart from a damaged file.
Version 1 files (no lists) decode on one thread, bit-exactly on the machine type that wrote
them. A damaged or forged file raises :class:`semlib.FormatError`, never anything worse
(ROBUSTNESS.md: 10,000 fuzzed files, no crash, hang or blow-up).
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from semlib import data as sdata
from semlib import entropy, tiling
from semlib.errors import FormatError, SemlibError
from semlib.models import BLOCK, CODING_THREADS, GAMMA_RANGE, MAX_STRIDE, HierarchicalVAE, fingerprint, load_model
from semlib.refine import DEFAULT_LR, refine_latents

MAGIC = b"SEMC"
VERSION = 2
VERSIONS = (1, 2, 3)                    # the versions this semlib reads (3: tiled, semlib.tiling)
FLAG_MAP = 1
MAX_SIDE = 1 << 16                      # refuse forged sizes before allocating anything
MAX_PIXELS = sdata.MAX_PIXELS
MAX_LATENTS = 64
MAX_REFINE = 10_000                     # refinement steps: more is a typo, not a wish
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


def get_model(model=None, checkpoint=None) -> tuple[HierarchicalVAE, bytes]:
    """(model, fingerprint) from an explicit model, a checkpoint path, or the shipped one."""
    if model is not None:
        model.eval()
        fp = getattr(model, "_semlib_fingerprint", None)
        if fp is None:
            fp = fingerprint(model)
            model._semlib_fingerprint = fp
        return model, fp
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


@dataclass
class LevelMap:
    """Quantised block levels r_i = T_i / M (ceil(H/8) x ceil(W/8)) and kappa."""

    q: np.ndarray        # uint8
    log_lo: float
    log_hi: float
    kappa: float

    @classmethod
    def from_ratios(cls, ratios: np.ndarray, kappa: float) -> "LevelMap":
        r = np.asarray(ratios, dtype=np.float64)
        if r.ndim != 2 or r.size == 0 or not np.isfinite(r).all() or (r <= 0).any():
            raise SemlibError("block levels must be a non-empty 2-D map of finite values > 0")
        if not (math.isfinite(kappa) and kappa >= 0):
            raise SemlibError(f"kappa must be finite and >= 0, got {kappa!r}")
        logr = np.log(r)
        lo, hi = float(np.float32(logr.min())), float(np.float32(logr.max()))
        span = hi - lo
        q = np.zeros(r.shape, np.uint8) if span <= 0 else np.round((logr - lo) / span * 255).clip(0, 255).astype(np.uint8)
        return cls(q, lo, hi, float(np.float32(kappa)))

    def ratios(self) -> np.ndarray:
        span = self.log_hi - self.log_lo
        return np.exp(self.log_lo + self.q.astype(np.float64) / 255.0 * span)

    def gamma_map(self, gamma: float) -> np.ndarray:
        """gamma_i = gamma * r_i ** kappa (docs/METHOD.md §2), float32 (inf or 0 where it over- or
        underflows: :func:`decode` refuses such a map)."""
        with np.errstate(over="ignore", under="ignore"):
            return (gamma * self.ratios() ** self.kappa).astype(np.float32)

    def model_gamma_map(self, gamma: float, gamma_range=GAMMA_RANGE) -> np.ndarray:
        """:meth:`gamma_map` clipped to the model's trained range (:func:`trained_range`; by
        default the paper's GAMMA_RANGE): what the model is given.
        A block gamma outside the range the model was trained on gives it inputs it has never
        seen (measured: with base gamma 32 and kappa 1 the background blocks fell to gamma ~8
        and came out badly damaged). The clip keeps the mean level only inside the range, so at
        the ends of the range ROI can move fewer bits. Non-finite values are left for the
        callers to refuse."""
        gm = self.gamma_map(gamma)
        if not (np.isfinite(gm).all() and (gm > 0).all()):
            return gm
        return np.clip(gm, np.float32(gamma_range[0]), np.float32(gamma_range[1]))


def roi_levels(image: np.ndarray, importance, kappa: float, **alloc) -> LevelMap | None:
    """The block level map for ``importance`` (None, 'auto', or a mask / map array / path)."""
    if importance is None or (isinstance(importance, str) and importance == "none"):
        return None
    from semlib import allocation

    if isinstance(importance, str) and importance == "auto":
        from semlib import importance as imp

        g = imp.importance_map(image)
        alloc = {**allocation.AUTO_ALLOCATION, **alloc}   # the default allocation of --roi auto
    else:
        from semlib import importance as imp

        g = imp.importance_map(image, mask=importance)
    try:
        result = allocation.allocate(g, 1.0, kappa=1.0, **alloc)
    except ValueError as e:
        raise SemlibError(f"ROI allocation: {e}") from None
    return LevelMap.from_ratios(np.asarray(result.T, np.float64) / float(result.mean_level), kappa)


# --------------------------------------------------------------------------- the file


def _pack(height, width, config_name, fp, gamma, levels: LevelMap | None, strings, sides, symbols_crc) -> bytes:
    name = config_name.encode("ascii")
    out = bytearray(MAGIC)
    out += struct.pack("<BBII", VERSION, FLAG_MAP if levels is not None else 0, height, width)
    out += struct.pack("<B", len(name)) + name + fp + struct.pack("<f", gamma)
    if levels is not None:
        packed = zlib.compress(levels.q.tobytes(), 9)
        out += struct.pack("<fffI", levels.kappa, levels.log_lo, levels.log_hi, len(packed)) + packed
    out += struct.pack("<B", len(strings))
    out += struct.pack(f"<{len(strings)}I", *(len(s) for s in strings))
    side = b"".join(entropy.pack_sides(pos, bits) for pos, bits in sides)
    out += struct.pack("<I", len(side)) + side + struct.pack("<I", symbols_crc)
    for s in strings:
        out += s
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


@dataclass
class Header:
    height: int
    width: int
    config: str
    fingerprint: bytes
    gamma: float
    levels: LevelMap | None
    strings: list[bytes]
    size: int
    version: int = VERSION
    sides: list | None = None        # per latent: (positions, bits) of the fragile symbols (version 2)
    symbols_crc: int | None = None   # CRC32 of the decoded symbols (version 2)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(f"file truncated: {what} needs {n} bytes at offset {self.pos}, "
                              f"only {len(self.data) - self.pos} left")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str, what: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))


def parse(data: bytes) -> Header:
    """Read and check a ``.semc`` file's structure (no model needed). Raises
    :class:`semlib.FormatError` naming the first problem found."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"expected the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if tiling.is_tiled(data):                            # version 3: a large image in tiles
        return tiling.parse(data)
    if len(data) < len(MAGIC) or data[:4] != MAGIC:
        raise FormatError("not a .semc file (wrong magic bytes)")
    if len(data) < 4 + 2 + 8 + 1 + 8 + 4 + 1 + 4:
        raise FormatError(f"file truncated: {len(data)} bytes is shorter than any .semc header")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    version = data[4]
    if version not in VERSIONS:
        raise FormatError(f"unsupported format version {version} (this semlib reads versions "
                          f"{', '.join(map(str, VERSIONS))}; a newer semlib may read it)")
    if zlib.crc32(body) != crc:
        raise FormatError("checksum mismatch: the file is corrupted or truncated")
    r = _Reader(body)
    r.take(5, "magic and version")
    flags, height, width = r.unpack("<BII", "flags and image size")
    if flags & ~FLAG_MAP:
        raise FormatError(f"unknown flags {flags:#x}")
    if not (0 < height < MAX_SIDE and 0 < width < MAX_SIDE) or height * width > MAX_PIXELS:
        raise FormatError(f"implausible image size {height}x{width} (limit {MAX_PIXELS} pixels)")
    (n,) = r.unpack("<B", "configuration name length")
    try:
        config = r.take(n, "configuration name").decode("ascii")
    except UnicodeDecodeError:
        raise FormatError("configuration name is not ASCII") from None
    fp = r.take(8, "checkpoint fingerprint")
    (gamma,) = r.unpack("<f", "gamma")
    if not math.isfinite(gamma) or gamma <= 0:
        raise FormatError(f"gamma in the file is {gamma}, not a finite number > 0")
    levels = None
    if flags & FLAG_MAP:
        kappa, lo, hi, m = r.unpack("<fffI", "level map header")
        if not all(math.isfinite(v) for v in (kappa, lo, hi)) or kappa < 0 or hi < lo or hi - lo > 50:
            raise FormatError("level map header holds invalid values")
        packed = r.take(m, "level map")
        rows, cols = -(-height // BLOCK), -(-width // BLOCK)
        try:
            d = zlib.decompressobj()
            raw = d.decompress(packed, rows * cols + 1)
        except zlib.error as e:
            raise FormatError(f"level map cannot be unpacked ({e})") from None
        if len(raw) != rows * cols or not d.eof:
            raise FormatError(f"level map holds {len(raw)} bytes, expected {rows * cols} ({rows}x{cols} blocks)")
        levels = LevelMap(np.frombuffer(raw, np.uint8).reshape(rows, cols).copy(), lo, hi, kappa)
    (k,) = r.unpack("<B", "number of latent strings")
    if not 0 < k <= MAX_LATENTS:
        raise FormatError(f"implausible number of latent strings: {k}")
    lengths = r.unpack(f"<{k}I", "latent string lengths")
    sides = symbols_crc = None
    if version >= 2:
        (m,) = r.unpack("<I", "length of the fragile-symbol lists")
        sides = _parse_sides(r.take(m, "fragile-symbol lists"), k)
        (symbols_crc,) = r.unpack("<I", "symbol checksum")
    if sum(lengths) != len(body) - r.pos:
        raise FormatError(f"latent string lengths add up to {sum(lengths)} bytes, "
                          f"but {len(body) - r.pos} bytes follow")
    strings = [r.take(n_, f"latent string {i}") for i, n_ in enumerate(lengths)]
    return Header(height, width, config, fp, gamma, levels, strings, len(data), version, sides, symbols_crc)


def _parse_sides(raw: bytes, k: int) -> list:
    sides, offset = [], 0
    try:
        for _ in range(k):
            pos, bits, offset = entropy.unpack_sides(raw, offset)
            sides.append((pos, bits))
    except ValueError as e:
        raise FormatError(f"fragile-symbol lists are damaged: {e}") from None
    if offset != len(raw):
        raise FormatError(f"fragile-symbol lists leave {len(raw) - offset} bytes over")
    return sides


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
               refine: int = 0, refine_lr: float | None = None,
               refine_first: int = 0) -> tuple[bytes, torch.Tensor, dict | None]:
    gm = _model_gamma(gamma, levels, x_padded.shape[-2:], trained_range(model))
    if isinstance(gm, torch.Tensor) and not (torch.isfinite(gm).all() and (gm > 0).all()):
        raise SemlibError(f"gamma {gamma} with kappa {levels.kappa} gives block gammas that overflow float32")
    try:
        latents, report = (refine_latents(model, x_padded, gm, height, width, refine, lr=refine_lr or DEFAULT_LR,
                                          first=refine_first) if refine else (None, None))
        out = model.compress(x_padded, gm, reconstruct=reconstruct, latents=latents)
    except ValueError as e:
        raise SemlibError(f"the model cannot code this image: {e}") from None
    strings = [s[0] for s in out["strings"]]
    sides = [s[0] for s in out["sides"]]
    data = _pack(height, width, model.config.name, fp, gamma, levels, strings, sides, out["crc"][0])
    return data, None if out["x_hat"] is None else out["x_hat"][..., :height, :width], report


def encode_image(image, gamma=None, target_bpp=None, importance=None, kappa: float = DEFAULT_KAPPA,
                 model=None, checkpoint=None, tolerance: float = 0.01,
                 gamma_range=None, max_iter: int = 20, reconstruct: bool = True, refine: int = 0,
                 refine_lr: float | None = None, refine_first: int = 0, tile=None, tile_overlap=None,
                 **alloc) -> Encoded:
    """Compress ``image`` at a given ``gamma`` or at a ``target_bpp`` (rate control).

    ``importance``: None (uniform gamma), ``'auto'`` (Grad-CAM map of the image, docs/METHOD.md §1),
    or a mask/map (array or path) painted by the user; it sets the block levels T_i / M
    (docs/METHOD.md §2), and each block codes at ``gamma * (T_i / M) ** kappa``. ``**alloc``:
    options of :func:`semlib.allocation.allocate` (``top``, ``boost``, ``steps``, ``smooth``,
    ``level_range``); with ``'auto'`` the missing ones come from
    :data:`semlib.allocation.AUTO_ALLOCATION` (``top=None`` for the paper's map). The file holds
    the block levels, so the decoder needs none of them.

    Rate control, with the level map held: it encodes at the two ends of ``gamma_range``
    (default: the model's trained range, :func:`trained_range`) first, then searches log gamma by false position (log bpp is close to linear in it)
    until the file is within ``tolerance`` (relative) of ``target_bpp``. When that is not
    possible inside ``gamma_range`` the closest file is returned with ``met_target=False``;
    a target beyond either end thus costs two encodings.

    ``reconstruct=False`` leaves ``x_hat`` None and skips the decoder layers after the last
    latent (about a fifth of the encoding time); :func:`encode` uses it.

    ``refine``: steps of encoder-side refinement of the latents for R + gamma * D with this
    image's own gamma (or block map) (:mod:`semlib.refine`); the decoder and the format do not
    change. With a target bpp, the search runs without it and the file at the gamma found is
    refined; refinement moves the rate a little, and ``met_target`` tells the refined file's.
    ``refine_lr``: its Adam step size (default :data:`semlib.refine.DEFAULT_LR`);
    ``refine_first``: the first latent block it changes (0 = all); the report of the refinement
    is in the result's ``refinement``.

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
    if isinstance(refine_first, bool) or not isinstance(refine_first, int) or not 0 <= refine_first < MAX_LATENTS:
        raise SemlibError(f"refine_first must be the index of a latent block, got {refine_first!r}")
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
                                                      refine=steps, refine_lr=refine_lr, refine_first=refine_first)
            return g32, data, x_hat
        data, x_hat, report = _encode_at(model, fp, x, height, width, g32, levels, reconstruct=recon,
                                         refine=steps, refine_lr=refine_lr, refine_first=refine_first)
        return g32, data, x_hat

    if gamma is not None:
        g, data, x_hat = run(check_gamma(gamma), reconstruct, refine)
        res = _result(g, data, x_hat, levels, height, width, trained_range(model))
        res.refinement = report
        return res

    target = float(target_bpp)
    if not math.isfinite(target) or target <= 0:
        raise SemlibError(f"target bpp must be finite and > 0, got {target_bpp!r}")
    tried = []                            # (gamma, data, x_hat, bpp) of every encoding

    def miss(log_g):
        """log(bpp / target) of the file at gamma = exp(log_g): zero at the target."""
        g, data, x_hat = run(math.exp(log_g))
        bpp = 8 * len(data) / (height * width)
        tried.append((g, data, x_hat, bpp))
        return math.log(bpp / target)

    def met():
        return abs(tried[-1][3] - target) <= tolerance * target

    # The ends first: a target beyond the range costs two encodings, not a whole search.
    lo, hi = math.log(gamma_range[0]), math.log(gamma_range[1])
    f_lo = miss(lo)
    if not met():
        f_hi = miss(hi)
        if not met() and f_lo * f_hi < 0:
            # Inside: false position on (log gamma, log bpp), close to a straight line, with the
            # Illinois halving so that one end cannot stall, and bisection when the interpolated
            # point falls at an end of the bracket [a, b].
            a, fa, b, fb, side = lo, f_lo, hi, f_hi, 0
            for _ in range(max_iter):
                t = b - fb * (b - a) / (fb - fa)
                margin = 1e-3 * abs(b - a)
                if not min(a, b) + margin < t < max(a, b) - margin:
                    t = 0.5 * (a + b)
                f = miss(t)
                if met() or abs(b - a) < 1e-4:
                    break
                if f * fb > 0:
                    b, fb = t, f
                    if side == -1:
                        fa /= 2
                    side = -1
                else:
                    a, fa = t, f
                    if side == 1:
                        fb /= 2
                    side = 1
    best = min(tried, key=lambda t: abs(t[3] - target))
    g, data, x_hat, bpp = best
    if reconstruct or refine:             # the search ran without the image-building layers
        g, data, x_hat = run(g, reconstruct, refine)
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
    if header.config != model.config.name:
        raise FormatError(f"file was made with the {header.config!r} configuration, "
                          f"the decoder has {model.config.name!r}")
    if header.fingerprint != fp:
        raise FormatError("file was made with a different checkpoint "
                          f"(fingerprint {header.fingerprint.hex()}, decoder {fp.hex()})")
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


def info(data: bytes) -> dict:
    """What a file holds, without decoding it: size, gamma description, bpp, bytes per latent
    (summed over the tiles of a tiled file, which also gives its tiling)."""
    if tiling.is_tiled(data):
        return tiling.info(data)
    h = parse(data)
    d = {"height": h.height, "width": h.width, "config": h.config, "fingerprint": h.fingerprint.hex(),
         "bytes": h.size, "bpp": 8 * h.size / (h.height * h.width), "gamma": h.gamma,
         "roi": h.levels is not None, "latent_bytes": [len(s) for s in h.strings], "version": h.version,
         "fragile_symbols": None if h.sides is None else [len(p) for p, _ in h.sides]}
    if h.levels is not None:
        gm = h.levels.model_gamma_map(h.gamma)
        d.update(kappa=h.levels.kappa, blocks=list(gm.shape),
                 gamma_min=float(gm.min()), gamma_max=float(gm.max()))
    return d


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
