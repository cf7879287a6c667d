"""The ``.semc`` file format: its layout, the block level map, packing and parsing. No
model and no torch are needed here, so ``semlib info`` reads a file without loading either;
:mod:`semlib.codec` encodes images into these files and decodes them.

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

import math
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from semlib import allocation
from semlib.allocation import BLOCK, GAMMA_RANGE
from semlib.data import MAX_PIXELS as _DATA_MAX_PIXELS
from semlib.errors import FormatError, SemlibError

MAGIC = b"SEMC"
VERSION = 2
VERSIONS = (1, 2, 3)                    # the versions this semlib reads (3: tiled, semlib.tiling)
FLAG_MAP = 1
MAX_SIDE = 1 << 16                      # refuse forged sizes before allocating anything
MAX_PIXELS = _DATA_MAX_PIXELS
MAX_LATENTS = 64
MAX_STRIDE = 64                         # images are padded to a multiple of this (the models' total stride)


# --------------------------------------------------------------------------- the fragile-symbol lists


def pack_sides(positions: np.ndarray, bits: np.ndarray) -> bytes:
    """Varints: the count, then (gap to the previous position) * 2 + bit for each."""
    gaps = np.diff(np.concatenate([[-1], positions])) - 1
    return b"".join(_varint(int(v)) for v in [len(positions), *(2 * gaps + bits)])


def unpack_sides(data: bytes, offset: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """Inverse of :func:`pack_sides`: (positions, bits, offset after them). ValueError if
    the bytes end early or a value is implausibly large."""
    count, offset = _read_varint(data, offset)
    if count > len(data):
        raise ValueError(f"{count} fragile symbols cannot fit in {len(data)} bytes")
    positions, bits = np.empty(count, np.int64), np.empty(count, np.uint8)
    p = -1
    for i in range(count):
        v, offset = _read_varint(data, offset)
        p += (v >> 1) + 1
        positions[i], bits[i] = p, v & 1
    return positions, bits, offset


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    v, shift = 0, 0
    while True:
        if offset >= len(data):
            raise ValueError("the fragile-symbol list ends early")
        byte = data[offset]
        offset += 1
        v |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return v, offset
        shift += 7
        if shift > 35:
            raise ValueError("a fragile-symbol gap is longer than 5 bytes")


# --------------------------------------------------------------------------- the level map


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
        return allocation.block_gammas(gamma, self.ratios(), self.kappa)

    def model_gamma_map(self, gamma: float, gamma_range=GAMMA_RANGE) -> np.ndarray:
        """:meth:`gamma_map` clipped to the model's trained range (:func:`semlib.codec.trained_range`; by
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



# --------------------------------------------------------------------------- the file


def write_image_header(version: int, height, width, config_name, fp, gamma, levels: LevelMap | None) -> bytearray:
    """Magic, version and the fields every version's header has (:func:`read_image_header`
    reads them back). Shared by :func:`_pack` and :func:`semlib.tiling.pack`."""
    name = config_name.encode("ascii")
    out = bytearray(MAGIC)
    out += struct.pack("<BBII", version, FLAG_MAP if levels is not None else 0, height, width)
    out += struct.pack("<B", len(name)) + name + fp + struct.pack("<f", gamma)
    if levels is not None:
        packed = zlib.compress(levels.q.tobytes(), 9)
        out += struct.pack("<fffI", levels.kappa, levels.log_lo, levels.log_hi, len(packed)) + packed
    return out


def check_model(header, model, fp: bytes) -> None:
    """FormatError unless the file's configuration and fingerprint are the decoder's."""
    if header.config != model.config.name:
        raise FormatError(f"file was made with the {header.config!r} configuration, "
                          f"the decoder has {model.config.name!r}")
    if header.fingerprint != fp:
        raise FormatError("file was made with a different checkpoint "
                          f"(fingerprint {header.fingerprint.hex()}, decoder {fp.hex()})")


def pack_latents(strings, sides, symbols_crc) -> bytes:
    """The latent section of a file, as a version-2 file holds it after its header and each tile
    of a version-3 file holds it: the number of strings, their lengths, the fragile-symbol lists,
    the symbol checksum, then the strings."""
    side = b"".join(pack_sides(pos, bits) for pos, bits in sides)
    out = bytearray(struct.pack("<B", len(strings)))
    out += struct.pack(f"<{len(strings)}I", *(len(s) for s in strings))
    out += struct.pack("<I", len(side)) + side + struct.pack("<I", symbols_crc)
    for s in strings:
        out += s
    return bytes(out)


def _pack(height, width, config_name, fp, gamma, levels: LevelMap | None, strings, sides, symbols_crc) -> bytes:
    out = write_image_header(VERSION, height, width, config_name, fp, gamma, levels)
    out += pack_latents(strings, sides, symbols_crc)
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


def read_image_header(r: _Reader) -> tuple:
    """The fields every version's header has after the magic and version bytes, read and
    checked: (height, width, configuration name, fingerprint, gamma, level map or None).
    Shared by :func:`parse` and :func:`semlib.tiling.parse`."""
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
    return height, width, config, fp, gamma, levels


# Long: one pass over the file, field by field in the order of the layout above, each checked where it is read.
def parse(data: bytes) -> Header:
    """Read and check a ``.semc`` file's structure (no model needed). Raises
    :class:`semlib.FormatError` naming the first problem found."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FormatError(f"expected the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if _is_tiled(data):                                  # version 3: a large image in tiles
        from semlib import tiling                        # (torch: only for a tiled file)

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
    height, width, config, fp, gamma, levels = read_image_header(r)
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
            pos, bits, offset = unpack_sides(raw, offset)
            sides.append((pos, bits))
    except ValueError as e:
        raise FormatError(f"fragile-symbol lists are damaged: {e}") from None
    if offset != len(raw):
        raise FormatError(f"fragile-symbol lists leave {len(raw) - offset} bytes over")
    return sides



def _is_tiled(data) -> bool:
    """Whether ``data`` claims to be a tiled (version-3) file (:func:`semlib.tiling.is_tiled`)."""
    return isinstance(data, (bytes, bytearray, memoryview)) and len(data) > 4 and bytes(data[:4]) == MAGIC \
        and data[4] == 3


def info(data: bytes) -> dict:
    """What a file holds, without decoding it: size, gamma description, bpp, bytes per latent
    (summed over the tiles of a tiled file, which also gives its tiling)."""
    if _is_tiled(data):
        from semlib import tiling

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

