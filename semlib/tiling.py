"""Large images in bounded memory: tiled ``.semc`` files (format version 3).

An image of more than :data:`THRESHOLD` pixels (or any image given ``tile=`` that does not
fit in one tile) is cut into tiles of ``tile`` x ``tile`` pixels that overlap their
neighbours by ``overlap`` pixels. Each tile is coded on its own, exactly as a version-2 file
codes a whole image (the same latent strings, fragile-symbol lists and symbol checksum, see
:mod:`semlib.codec`), with its slice of the one block map of the whole image (docs/METHOD.md
§2: the levels are allocated over the whole image, then each tile codes its own blocks). The
decoder decodes the tiles one tile row at a time and blends the overlaps with linear ramps
that add up to one, so it holds one tile's network state and one row of tiles, never the
whole image's feature maps. The encoder's reconstruction (``Encoded.x_hat``) is built by
the same code in the same order, so decoding reproduces it.

Tile grid, along each axis of length L (tile T, overlap O, step S = T - O): one tile when
L <= T, else n = ceil((L - O) / S) tiles starting at 0, S, 2S, ...; every tile is T long but
the last, which ends at L and is longer than O. Tile starts are multiples of 8 (the block
grid) and T a multiple of 64 (the model's stride), so a tile's blocks are whole blocks of the
image's map and only tiles at the right and bottom edges are padded.

Images of at most :data:`THRESHOLD` pixels are written as version-2 files, byte for byte as
before tiling existed.

File format, version 3 (all integers little-endian)::

    offset  size  field
    0       4     magic b"SEMC"
    4       1     format version (3)
    5       1     flags: bit 0 set = gamma is a block map (ROI)
    6       4     image height H
    10      4     image width W
    14      1     n = length of the configuration name
    15      n     configuration name, ASCII
    .       8     checkpoint fingerprint
    .       4     gamma, float32
    -- only if flags bit 0: the level map of the WHOLE image, as in version 2 --
    .       16+m  kappa, log lo, log hi (float32), m (uint32), m bytes of zlib'd uint8 levels
    -- always --
    .       2     tile size T (uint16, a multiple of 64)
    .       2     overlap O (uint16, a multiple of 8, 2 O <= T)
    .       4     t = number of tiles (must match the grid of H, W, T, O)
    .       4t    length of each tile's section, uint32 (tiles row-major, top-left first)
    .       ...   the sections, each: k (1 byte), k string lengths (uint32), s (uint32), s bytes of
                  fragile-symbol lists, CRC32 of the tile's decoded symbols (uint32), the k strings
    end-4   4     CRC32 of every byte before it
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from semlib import data as sdata
from semlib.errors import FormatError, SemlibError
from semlib.allocation import BLOCK
from semlib.semc import MAX_STRIDE, pack_latents

VERSION = 3
THRESHOLD = 4 * 1024 * 1024          # pixels: larger images are tiled by default (16 MP untiled: ~3 GB RSS)
TILE = 2048                          # default tile side, pixels (a 4 Mpx tile: ~1.5 GB RSS untiled)
OVERLAP = 16                         # default overlap, pixels
MAX_TILES = 1 << 20


# --------------------------------------------------------------------------- the grid


def axis_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """(start, stop) of the tiles along one axis of ``length`` pixels (module docstring)."""
    if length <= tile:
        return [(0, length)]
    step = tile - overlap
    n = -(-(length - overlap) // step)
    return [(i * step, min(i * step + tile, length)) for i in range(n)]


def ramp(span: tuple[int, int], first: bool, last: bool, overlap: int) -> np.ndarray:
    """Blending weights of one tile along one axis: 1, with linear ramps over the ``overlap``
    pixels it shares with the tile before it (rising) and after it (falling); the two ramps
    of a shared strip add up to one."""
    w = np.ones(span[1] - span[0], np.float64)
    if overlap:
        up = (np.arange(overlap) + 0.5) / overlap
        if not first:
            w[:overlap] = up
        if not last:
            w[-overlap:] = 1.0 - up
    return w.astype(np.float32)


@dataclass
class Grid:
    height: int
    width: int
    tile: int
    overlap: int
    rows: list = field(init=False)
    cols: list = field(init=False)

    def __post_init__(self):
        self.rows = axis_spans(self.height, self.tile, self.overlap)
        self.cols = axis_spans(self.width, self.tile, self.overlap)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)

    def tiles(self):
        """(y0, y1, x0, x1) of every tile, row-major: the order of the file's sections."""
        for y0, y1 in self.rows:
            for x0, x1 in self.cols:
                yield y0, y1, x0, x1

    def weights(self, r: int, c: int) -> np.ndarray:
        """The blending weight of tile (r, c), h x w float32."""
        wy = ramp(self.rows[r], r == 0, r == len(self.rows) - 1, self.overlap)
        wx = ramp(self.cols[c], c == 0, c == len(self.cols) - 1, self.overlap)
        return wy[:, None] * wx[None, :]


def check_tiling(tile, overlap) -> tuple[int, int]:
    """A tile side (a multiple of 64, 64 .. 65472) and an overlap (a multiple of 8, 2 O <= T)."""
    for name, v in (("tile", tile), ("tile overlap", overlap)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise SemlibError(f"{name} must be a whole number of pixels, got {v!r}")
    tile, overlap = int(tile), int(overlap)
    if not (MAX_STRIDE <= tile < 1 << 16) or tile % MAX_STRIDE:
        raise SemlibError(f"tile must be a multiple of {MAX_STRIDE} pixels from {MAX_STRIDE} to 65472, got {tile}")
    if overlap < 0 or overlap % BLOCK or 2 * overlap > tile:
        raise SemlibError(f"tile overlap must be a multiple of {BLOCK} pixels from 0 to half the tile ({tile // 2}), "
                          f"got {overlap}")
    return tile, overlap


def plan(height: int, width: int, tile=None, overlap=None) -> Grid | None:
    """The tile grid of an image, or None to code it whole (a version-2 file).

    ``tile``: None = tile images of more than :data:`THRESHOLD` pixels into :data:`TILE`
    pixel tiles; 0 = never tile; a number = tiles of that side. ``overlap``: None =
    :data:`OVERLAP`. An image that fits in one tile is coded whole."""
    if tile is None:
        if height * width <= THRESHOLD:
            return None
        tile = TILE
    if isinstance(tile, (int, np.integer)) and not isinstance(tile, bool) and tile == 0:
        return None
    tile, overlap = check_tiling(tile, OVERLAP if overlap is None else overlap)
    if height <= tile and width <= tile:
        return None
    return Grid(height, width, tile, overlap)


def tile_levels(levels, y0: int, y1: int, x0: int, x1: int):
    """The blocks of the image's level map that tile (y0:y1, x0:x1) covers (None without ROI)."""
    if levels is None:
        return None
    from semlib.codec import LevelMap

    q = levels.q[y0 // BLOCK:-(-y1 // BLOCK), x0 // BLOCK:-(-x1 // BLOCK)]
    return LevelMap(np.ascontiguousarray(q), levels.log_lo, levels.log_hi, levels.kappa)


# --------------------------------------------------------------------------- blending


def assemble(grid: Grid, reconstructions) -> np.ndarray:
    """Blend the tiles' reconstructions (an iterable, in :meth:`Grid.tiles` order, each a
    float32 h x w x 3 array in [0, 1]) into the RGB ``uint8`` image, one tile row at a time:
    only the rows still shared with the next tile row are kept in float."""
    out = np.empty((grid.height, grid.width, 3), np.uint8)
    it = iter(reconstructions)
    carry = None
    for r, (y0, y1) in enumerate(grid.rows):
        band = np.zeros((y1 - y0, grid.width, 3), np.float32)
        if carry is not None:
            band[:carry.shape[0]] += carry
        for c, (x0, x1) in enumerate(grid.cols):
            x = next(it)
            if x.shape != (y1 - y0, x1 - x0, 3):
                raise ValueError(f"tile ({r}, {c}) is {x.shape}, expected {(y1 - y0, x1 - x0, 3)}")
            band[:, x0:x1] += x * grid.weights(r, c)[:, :, None]
        done = (grid.rows[r + 1][0] if r + 1 < len(grid.rows) else y1) - y0
        out[y0:y0 + done] = np.round(np.clip(band[:done], 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
        carry = band[done:].copy()
    return out


def _hwc(x_hat, h: int, w: int) -> np.ndarray:
    return x_hat[0, :, :h, :w].detach().cpu().float().permute(1, 2, 0).numpy()


# --------------------------------------------------------------------------- the file


def pack(height, width, config_name, fp, gamma, levels, grid: Grid, sections) -> bytes:
    from semlib.semc import write_image_header

    out = write_image_header(VERSION, height, width, config_name, fp, gamma, levels)
    out += struct.pack("<HHI", grid.tile, grid.overlap, len(sections))
    out += struct.pack(f"<{len(sections)}I", *(len(s) for s in sections))
    for s in sections:
        out += s
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


@dataclass
class Tile:
    strings: list
    sides: list
    symbols_crc: int


@dataclass
class TiledHeader:
    """What :func:`parse` read from a version-3 file (the fields of :class:`semlib.codec.Header`
    that describe the image, and the tiles)."""

    height: int
    width: int
    config: str
    fingerprint: bytes
    gamma: float
    levels: object
    size: int
    grid: Grid
    tiles: list
    version: int = VERSION

    @property
    def strings(self) -> list:
        """Every latent string of every tile, in file order."""
        return [s for t in self.tiles for s in t.strings]


def is_tiled(data) -> bool:
    """Whether ``data`` claims to be a tiled (version-3) ``.semc`` file."""
    from semlib.semc import MAGIC

    return isinstance(data, (bytes, bytearray, memoryview)) and len(data) > 4 and bytes(data[:4]) == MAGIC \
        and data[4] == VERSION


def parse(data: bytes) -> TiledHeader:
    """Read and check a version-3 file's structure (no model needed); raises
    :class:`semlib.FormatError` naming the first problem found."""
    from semlib.semc import MAX_LATENTS, _parse_sides, _Reader, read_image_header

    data = bytes(data)
    if len(data) < 4 + 2 + 8 + 1 + 8 + 4 + 8 + 4:
        raise FormatError(f"file truncated: {len(data)} bytes is shorter than any tiled .semc header")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise FormatError("checksum mismatch: the file is corrupted or truncated")
    r = _Reader(body)
    r.take(5, "magic and version")
    height, width, config, fp, gamma, levels = read_image_header(r)
    tile, overlap, t = r.unpack("<HHI", "tile size, overlap and number of tiles")
    try:
        tile, overlap = check_tiling(tile, overlap)
    except SemlibError as e:
        raise FormatError(f"invalid tiling in the file: {e}") from None
    grid = Grid(height, width, tile, overlap)
    if t != len(grid) or t > MAX_TILES:
        raise FormatError(f"file holds {t} tiles, but its size and tiling make {len(grid)}")
    lengths = r.unpack(f"<{t}I", "tile section lengths")
    if sum(lengths) != len(body) - r.pos:
        raise FormatError(f"tile sections add up to {sum(lengths)} bytes, but {len(body) - r.pos} bytes follow")
    tiles = []
    for i, length in enumerate(lengths):
        s = _Reader(r.take(length, f"tile {i}"))
        what = f"tile {i}: "
        try:
            (k,) = s.unpack("<B", "number of latent strings")
            if not 0 < k <= MAX_LATENTS:
                raise FormatError(f"implausible number of latent strings: {k}")
            sl = s.unpack(f"<{k}I", "latent string lengths")
            (m,) = s.unpack("<I", "length of the fragile-symbol lists")
            sides = _parse_sides(s.take(m, "fragile-symbol lists"), k)
            (symbols_crc,) = s.unpack("<I", "symbol checksum")
            if sum(sl) != len(s.data) - s.pos:
                raise FormatError(f"latent string lengths add up to {sum(sl)} bytes, "
                                  f"but {len(s.data) - s.pos} bytes follow")
            strings = [s.take(n_, f"latent string {j}") for j, n_ in enumerate(sl)]
        except FormatError as e:
            raise FormatError(what + str(e)) from None
        tiles.append(Tile(strings, sides, symbols_crc))
    return TiledHeader(height, width, config, fp, gamma, levels, len(data), grid, tiles)


# --------------------------------------------------------------------------- encode / decode


def encode_tiles(model, fp, img: np.ndarray, grid: Grid, gamma: float, levels, reconstruct: bool = True,
                 refine: int = 0, refine_lr=None) -> tuple[bytes, np.ndarray | None, dict | None]:
    """Code ``img`` (uint8 H x W x 3) tile by tile at ``gamma`` (float32-exact) with the image's
    level map ``levels``: (the version-3 file, the blended reconstruction the decoder will
    produce (uint8; None without ``reconstruct``), the refinement reports per tile)."""
    from semlib import codec

    device = next(model.parameters()).device
    sections, reports = [], []

    def coded():
        for y0, y1, x0, x1 in grid.tiles():
            x = codec._pad(sdata.to_tensor(np.ascontiguousarray(img[y0:y1, x0:x1])).to(device))
            data, x_hat, report = codec._encode_at(model, fp, x, y1 - y0, x1 - x0, gamma,
                                                   tile_levels(levels, y0, y1, x0, x1), reconstruct=reconstruct,
                                                   refine=refine, refine_lr=refine_lr)
            h = codec.parse(data)
            sections.append(pack_latents(h.strings, h.sides, h.symbols_crc))
            reports.append(report)
            del x, data
            if reconstruct:
                yield _hwc(x_hat, y1 - y0, x1 - x0)

    if reconstruct:
        x_hat = assemble(grid, coded())
    else:
        x_hat = None
        for _ in coded():
            pass
    data = pack(grid.height, grid.width, model.config.name, fp, gamma, levels, grid, sections)
    return data, x_hat, ({"tiles": reports} if refine else None)


def decode(data: bytes, model=None, checkpoint=None) -> np.ndarray:
    """A version-3 file -> RGB ``uint8`` H x W x 3, decoded one tile at a time (the checks of
    :func:`semlib.codec.decode`, per tile)."""
    from semlib import codec, semc

    header = parse(data)
    model, fp = codec.get_model(model, checkpoint)
    semc.check_model(header, model, fp)
    for i, t in enumerate(header.tiles):
        if len(t.strings) != model.num_latents:
            raise FormatError(f"tile {i} holds {len(t.strings)} latent strings, the model needs {model.num_latents}")
    trained = codec.trained_range(model)
    if header.levels is not None:
        gm = header.levels.model_gamma_map(header.gamma, trained)
        if not (np.isfinite(gm).all() and (gm > 0).all()):
            raise FormatError("the block gammas of the level map overflow float32 (invalid gamma or kappa)")

    def decoded():
        for i, ((y0, y1, x0, x1), t) in enumerate(zip(header.grid.tiles(), header.tiles)):
            h, w = y1 - y0, x1 - x0
            padded = (h + (-h) % MAX_STRIDE, w + (-w) % MAX_STRIDE)
            gamma = codec._model_gamma(header.gamma, tile_levels(header.levels, y0, y1, x0, x1), padded, trained)
            try:
                out = model.decompress([[s] for s in t.strings], (padded[0] // MAX_STRIDE, padded[1] // MAX_STRIDE),
                                       gamma, sides=[[s] for s in t.sides])
            except (RuntimeError, ValueError) as e:
                raise FormatError(f"tile {i}: latent strings cannot be decoded ({str(e)[:120]}) although the file's "
                                  "checksum matches: forged, or decoded with different arithmetic") from None
            if out["crc"][0] != t.symbols_crc:
                raise FormatError(f"tile {i}: decoded with different arithmetic than the encoder's (or forged): the "
                                  "decoded symbols' checksum differs from the file's, whose own checksum is intact")
            yield _hwc(out["x_hat"], h, w)

    return assemble(header.grid, decoded())


def info(data: bytes) -> dict:
    """:func:`semlib.codec.info` of a version-3 file, with its tiling."""
    h = parse(data)
    n = len(h.tiles[0].strings)
    d = {"height": h.height, "width": h.width, "config": h.config, "fingerprint": h.fingerprint.hex(),
         "bytes": h.size, "bpp": 8 * h.size / (h.height * h.width), "gamma": h.gamma,
         "roi": h.levels is not None,
         "latent_bytes": [sum(len(t.strings[j]) for t in h.tiles if j < len(t.strings)) for j in range(n)],
         "version": h.version,
         "fragile_symbols": [sum(len(t.sides[j][0]) for t in h.tiles if j < len(t.sides)) for j in range(n)],
         "tile": h.grid.tile, "overlap": h.grid.overlap, "tiles": [len(h.grid.rows), len(h.grid.cols)]}
    if h.levels is not None:
        gm = h.levels.model_gamma_map(h.gamma)
        d.update(kappa=h.levels.kappa, blocks=list(gm.shape), gamma_min=float(gm.min()), gamma_max=float(gm.max()))
    return d


# --------------------------------------------------------------------------- ROI of a large image


ROI_SIDE = 1024        # the importance of a large image is computed on a copy whose short side is this


def roi_levels(image: np.ndarray, importance, kappa: float, **alloc):
    """:func:`semlib.codec.roi_levels` for a large image, in bounded memory: the importance is
    computed at the resolution of the block grid (ceil(H/8) x ceil(W/8)) instead of per pixel,
    Grad-CAM on a copy shrunk to a short side of :data:`ROI_SIDE` pixels (the classifier sees
    a 224-pixel short side either way), a mask resized straight to the block grid (with
    antialiasing: each block gets about its mean). Then the levels are allocated over the
    whole image at once (docs/METHOD.md §2, blocks of one cell)."""
    if importance is None or (isinstance(importance, str) and importance == "none"):
        return None
    from PIL import Image

    from semlib import allocation
    from semlib import importance as imp
    from semlib.codec import LevelMap

    height, width = image.shape[:2]
    blocks = (-(-height // BLOCK), -(-width // BLOCK))
    if isinstance(importance, str) and importance == "auto":
        scale = ROI_SIDE / min(height, width)
        small = image
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            small = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR, reducing_gap=2.0))
        g = imp.mask_map(imp.importance_map(small), blocks)
    else:
        g = imp.mask_map(importance, blocks)
    alloc = dict(alloc)
    alloc["block"] = 1
    result = allocation.allocate(g, 1.0, kappa=1.0, **alloc)
    return LevelMap.from_ratios(np.asarray(result.T, np.float64) / float(result.mean_level), kappa)
