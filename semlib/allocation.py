"""Block bit allocation: from an importance map to one compression level per 8x8 block.

docs/METHOD.md §2 (paper §2.3), one function per equation:

    pad_to_blocks      pad the last row/column by edge replication to multiples of 8
    block_importance   V_i = Σ_{(x,y) ∈ block i} g(x,y)
    semantic_levels    L_i = V_i / Σ_j V_j                    (Σ_i L_i = 1)
    computed_levels    T_i = N · M̄ · L_i = M̄ · V_i / V̄       (Σ_i T_i = N · M̄)
    water_fill         clip T_i to [M_min, M_max], keeping the mean M̄
    target_levels      computed_levels followed by water_fill
    gamma_map          γ_i = γ · (T_i / M̄)^κ                   (the project's choice)
    allocate           all of the above in one call

Two options of :func:`allocate` beyond the paper (issue 12's ROI pilot, results/pilots/README.md):

    smooth_importance  blur g by a Gaussian of ``smooth`` pixels before V_i
    top_levels         ``top=p``: the most important fraction p of the blocks at ``boost`` times
                       the level of the others, mean M̄ kept (a two-level map)
    quantise_levels    ``steps=n``: the levels rounded to n log-spaced values, so that the block
                       level map written in the file (zlib, 8 bits a block) costs fewer bytes
                       (measured on Kodak: 256 distinct levels cost ~0.09 bpp, 8 levels ~0.012)

Block maps are numpy arrays of shape ceil(H/8) x ceil(W/8); :func:`upsample_blocks`
shows one at pixel size. Computations run in float64; maps handed back are float32
(``V``, ``L`` and ``T`` stay float64 so that their sums are exact to the last digit
one prints).

The default level range is ``(0.25, 4.0)`` around the default mean level 1: a block
gets at most four times, and at least a quarter of, the average level. With κ = 1 that
is a factor of 16 between the least and the most important block, which keeps
γ_i inside the trained range [32, 2048] (docs/METHOD.md §5) for every γ in [128, 512].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from semlib.errors import SemlibError

BLOCK = 8                       # one level, and one gamma, per BLOCK x BLOCK pixels (the whole package's)
GAMMA_RANGE = (32.0, 2048.0)    # the training range of the paper (and QARV's upper end)
DEFAULT_LEVEL_RANGE = (0.25, 4.0)
# What ``importance="auto"`` (Grad-CAM; ``--roi auto``) uses unless told otherwise: the two-level
# map of :func:`top_levels`. At equal bpp it beat the paper's map on Kodak (results/pilots/README.md,
# "ROI allocation"); ``top=None`` gives the paper's map back.
AUTO_ALLOCATION = {"top": 0.2, "boost": 3.0}
# With a target rate, ``--roi auto``'s boost grows with it: boost · (bpp / 0.75) ** 0.5, at least
# AUTO_ALLOCATION's and at most 4 (:func:`auto_allocation`). The model's PSNR rises less per doubling
# of γ at high rates, so a constant γ ratio buys less there (results/pilots/README.md, "The boost by
# rate"). The law is tuned to the shipped model: step 203,364 needed power 2 and up to 8; step 226,649,
# whose PSNR rises further with γ, paid 0.43 dB of whole-image PSNR for that at 1.12 bpp.
AUTO_BOOST_RATE = {"bpp": 0.75, "power": 0.5, "most": 4.0}


def auto_allocation(target_bpp: float | None = None) -> dict:
    """The allocation of ``--roi auto``: :data:`AUTO_ALLOCATION`, and with a ``target_bpp`` the
    boost of :data:`AUTO_BOOST_RATE` for that rate (rounded to 0.1): 3 up to 0.75 bpp, 3.7 at
    1.12, 3.9 at 1.25, 4 from 1.33 bpp on. Without a target (a given γ) the boost stays AUTO_ALLOCATION's."""
    out = dict(AUTO_ALLOCATION)
    if target_bpp is not None and out.get("top") is not None:
        b, law = float(out["boost"]), AUTO_BOOST_RATE
        grown = b * (float(target_bpp) / law["bpp"]) ** law["power"]
        out["boost"] = round(min(law["most"], max(b, grown)), 1)
    return out


def _as_map(g, name: str = "importance") -> np.ndarray:
    """A finite, non-negative 2-D float64 array, or ValueError naming the problem."""
    try:
        a = np.asarray(g, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 2-D array of numbers") from None
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D map H x W, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape})")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    if (a < 0).any():
        raise ValueError(f"{name} holds negative values (min {a.min():g}); it must be >= 0")
    return a


def _check_block(block: int) -> int:
    if not isinstance(block, (int, np.integer)) or block < 1:
        raise ValueError(f"block size must be a positive integer, got {block!r}")
    return int(block)


def num_blocks(height: int, width: int, block: int = BLOCK) -> tuple[int, int]:
    """Blocks along each axis: (ceil(H/block), ceil(W/block)) (docs/METHOD.md §2, N = their product)."""
    block = _check_block(block)
    return -(-int(height) // block), -(-int(width) // block)


def pad_to_blocks(g, block: int = BLOCK) -> np.ndarray:
    """Pad a map H x W to multiples of ``block`` by edge replication (docs/METHOD.md §2).

    The last row and column are repeated, so a partial block at the border is
    filled with the values of its nearest pixels. A map whose sides are already
    multiples of ``block`` comes back unchanged (as float64).
    """
    a = _as_map(g)
    block = _check_block(block)
    hb, wb = num_blocks(a.shape[0], a.shape[1], block)
    pad_h, pad_w = hb * block - a.shape[0], wb * block - a.shape[1]
    if pad_h == 0 and pad_w == 0:
        return a
    return np.pad(a, ((0, pad_h), (0, pad_w)), mode="edge")


def block_importance(g, block: int = BLOCK) -> np.ndarray:
    """V_i = Σ_{(x,y) ∈ block i} g(x,y): semantic importance of each block (docs/METHOD.md §2).

    ``g`` is the importance map (grey levels >= 0, H x W). The map is padded by
    :func:`pad_to_blocks` first, so ``V`` has ceil(H/8) x ceil(W/8) entries.
    """
    p = pad_to_blocks(g, block)
    hb, wb = p.shape[0] // block, p.shape[1] // block
    return p.reshape(hb, block, wb, block).sum(axis=(1, 3))


def semantic_levels(V) -> np.ndarray:
    """L_i = V_i / Σ_j V_j: the semantic level of each block, Σ_i L_i = 1 (docs/METHOD.md §2).

    If every V_i is zero (no block is important) the levels are uniform, 1/N each,
    never NaN.
    """
    V = _as_map(V, "block importance V")
    total = V.sum()
    if total <= 0:
        return np.full(V.shape, 1.0 / V.size)
    return V / total


def _check_levels_setting(mean_level, level_range) -> tuple[float, float, float]:
    try:
        m = float(mean_level)
        lo, hi = (float(v) for v in level_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"mean_level must be a number and level_range a pair (lo, hi), "
            f"got {mean_level!r}, {level_range!r}"
        ) from None
    if not (math.isfinite(m) and m > 0):
        raise ValueError(f"mean_level must be finite and > 0, got {mean_level!r}")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"level_range must be finite, got ({lo!r}, {hi!r})")
    if not lo > 0:
        raise ValueError(f"level_range's lower bound must be > 0, got {lo!r}")
    if not lo <= m <= hi:
        raise ValueError(f"mean_level {m:g} lies outside level_range [{lo:g}, {hi:g}]")
    return m, lo, hi


def computed_levels(L, mean_level: float = 1.0) -> np.ndarray:
    """T_i = N · M̄ · L_i = M̄ · V_i / V̄: computed level of each block, before clipping (docs/METHOD.md §2).

    Accepts the levels ``L`` or the block importances ``V`` (they are normalised
    first, which leaves ``L`` as it is). The mean of T is M̄: the budget is kept.
    """
    m = float(mean_level)
    if not (math.isfinite(m) and m > 0):
        raise ValueError(f"mean_level must be finite and > 0, got {mean_level!r}")
    L = semantic_levels(L)
    return L.size * m * L


def water_fill(T, mean_level: float = 1.0, level_range=DEFAULT_LEVEL_RANGE) -> np.ndarray:
    """Clip levels to [M_min, M_max] and redistribute the excess so that the mean is M̄ again (docs/METHOD.md §2).

    Water-filling: the result is T'_i = clip(s · T_i, lo, hi), with the one scale s
    for which mean(T') = M̄. Blocks inside the range keep levels proportional to
    their importance; what clipped blocks gave up (or took) is shared by the others
    in proportion to their levels. s is found by bisection, then set exactly from the
    blocks left unclipped, so the mean is M̄ to rounding error.

    Zero-importance blocks are always at ``lo``. If even with every other block at
    ``hi`` the mean stays below M̄ (a tiny region of interest and a large M̄), the
    zero-importance blocks are raised together to the one level that restores the mean.
    """
    m, lo, hi = _check_levels_setting(mean_level, level_range)
    T = _as_map(T, "levels T")
    n = T.size
    budget = n * m
    if T.sum() <= 0:
        return np.full(T.shape, m)
    s0 = budget / T.sum()
    if lo <= s0 * T.min() and s0 * T.max() <= hi:  # nothing to clip
        return s0 * T
    positive = T > 0

    def filled(s: float) -> np.ndarray:
        return np.clip(s * T, lo, hi)

    s_full = hi / T[positive].min()  # from here on, every positive block is at hi
    if (~positive).any() and filled(s_full).sum() < budget:  # the degenerate case described above
        out = np.where(positive, hi, 0.0)
        out[~positive] = (budget - hi * positive.sum()) / (~positive).sum()
        return out
    s_low, s_high = 0.0, s_full
    for _ in range(200):  # f(s) = Σ clip(s·T_i) is monotone: bisection converges
        s_mid = 0.5 * (s_low + s_high)
        if filled(s_mid).sum() < budget:
            s_low = s_mid
        else:
            s_high = s_mid
        if s_high - s_low <= 1e-15 * s_high:
            break
    out = filled(s_high)
    free = positive & (s_high * T > lo) & (s_high * T < hi)
    if free.any():  # exact scale from the unclipped blocks: the mean is M̄ again
        s = (budget - out[~free].sum()) / T[free].sum()
        out[free] = np.clip(s * T[free], lo, hi)
    return out


def target_levels(L, mean_level: float = 1.0, level_range=DEFAULT_LEVEL_RANGE) -> np.ndarray:
    """T_i = N · M̄ · L_i, clipped to ``level_range`` with the mean M̄ kept (docs/METHOD.md §2).

    ``L`` may be the levels or the block importances ``V``. Raises ValueError if
    M̄ is not finite and positive, if the range is not finite with lo > 0, or if
    M̄ lies outside [lo, hi].
    """
    _check_levels_setting(mean_level, level_range)
    return water_fill(computed_levels(L, mean_level), mean_level, level_range)


def smooth_importance(g, sigma: float) -> np.ndarray:
    """g blurred by a Gaussian of standard deviation ``sigma`` pixels (edges replicated); 0: g itself."""
    a = _as_map(g)
    s = float(sigma)
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"smooth must be a finite number of pixels >= 0, got {sigma!r}")
    if s == 0:
        return a
    from scipy import ndimage

    return ndimage.gaussian_filter(a, s, mode="nearest")


def top_levels(V, fraction: float, boost: float, mean_level: float = 1.0) -> np.ndarray:
    """A two-level map: the ``ceil(fraction * N)`` blocks of highest ``V`` (ties by raster
    order) at ``boost`` times the level c of the others, c chosen so that the mean is M̄.

    For the pair (PSNR of the region, PSNR of the whole image) this is the allocation a
    weighted MSE w_i · D_i with two weights prescribes (one λ inside the region, one outside);
    a map that also varies inside either part spends bits on neither measure.
    """
    V = _as_map(V, "block importance V")
    p, f, m = float(fraction), float(boost), float(mean_level)
    if not (math.isfinite(p) and 0 < p <= 1):
        raise ValueError(f"top fraction must be in (0, 1], got {fraction!r}")
    if not (math.isfinite(f) and f >= 1):
        raise ValueError(f"boost must be a finite number >= 1, got {boost!r}")
    if not (math.isfinite(m) and m > 0):
        raise ValueError(f"mean_level must be finite and > 0, got {mean_level!r}")
    k = math.ceil(p * V.size - 1e-9)
    top = np.zeros(V.size, bool)
    top[np.argsort(-V.ravel(), kind="stable")[:k]] = True
    c = m * V.size / (k * f + (V.size - k))
    return np.where(top, f * c, c).reshape(V.shape)


def quantise_levels(T, steps: int | None, mean_level: float = 1.0) -> np.ndarray:
    """T with log T rounded to ``steps`` evenly spaced values between its smallest and largest
    value, then scaled so that the mean is M̄ again. None: T itself.

    The file stores log T_i / M̄ in 8 bits between the map's own min and max (semlib.codec), so a
    map of n values stays n values there, and zlib packs it into far fewer bytes than a map of
    256 values. A block's level moves by at most half a step (plus the common rescale).
    """
    T = _as_map(T, "levels T")
    if steps is None:
        return T
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 2 <= steps <= 256:
        raise ValueError(f"steps must be a whole number of levels in [2, 256] or None, got {steps!r}")
    if (T <= 0).any():
        raise ValueError("levels T must be > 0 to be quantised")
    logt = np.log(T)
    lo, hi = float(logt.min()), float(logt.max())
    if hi - lo <= 0:
        return T
    q = lo + np.round((logt - lo) / (hi - lo) * (steps - 1)) / (steps - 1) * (hi - lo)
    out = np.exp(q)
    return out * (float(mean_level) / out.mean())


def gamma_map(gamma: float, T, mean_level: float = 1.0, kappa: float = 1.0) -> np.ndarray:
    """γ_i = γ · (T_i / M̄)^κ: the Lagrange multiplier of each block (docs/METHOD.md §2, the project's choice).

    κ = 0 gives the constant map γ (uniform coding); larger κ follows the
    semantic levels more strongly. Returns a float32 block map. Raises ValueError
    for γ that is not finite and > 0, κ < 0 or not finite, or levels <= 0.
    """
    try:
        g, k, m = float(gamma), float(kappa), float(mean_level)
    except (TypeError, ValueError):
        raise ValueError(
            f"gamma, kappa and mean_level must be numbers, got {gamma!r}, {kappa!r}, {mean_level!r}"
        ) from None
    if not (math.isfinite(g) and g > 0):
        raise ValueError(f"gamma must be finite and > 0, got {gamma!r}")
    if not (math.isfinite(k) and k >= 0):
        raise ValueError(f"kappa must be finite and >= 0, got {kappa!r}")
    if not (math.isfinite(m) and m > 0):
        raise ValueError(f"mean_level must be finite and > 0, got {mean_level!r}")
    T = _as_map(T, "levels T")
    if (T <= 0).any():
        raise ValueError("levels T must be > 0 to give a gamma map (clip them with target_levels)")
    return block_gammas(g, T / m, k)


def block_gammas(gamma: float, ratios: np.ndarray, kappa: float) -> np.ndarray:
    """γ_i = γ · r_i^κ for level ratios r_i = T_i / M̄, float32: the one computation of the
    block map, behind :func:`gamma_map` (checked inputs) and the map a ``.semc`` file
    describes (:meth:`semlib.semc.LevelMap.gamma_map`, where an over- or underflow gives inf
    or 0 for the decoder to refuse)."""
    with np.errstate(over="ignore", under="ignore"):
        return (gamma * ratios ** kappa).astype(np.float32)


def upsample_blocks(block_map, height: int, width: int, block: int = BLOCK) -> np.ndarray:
    """Show a block map at pixel size: each entry repeated over its block, cropped to H x W."""
    b = np.asarray(block_map)
    block = _check_block(block)
    if b.ndim != 2:
        raise ValueError(f"block map must be 2-D, got shape {b.shape}")
    if b.shape != num_blocks(height, width, block):
        raise ValueError(
            f"block map of shape {b.shape} does not fit a {height}x{width} image "
            f"(expected {num_blocks(height, width, block)})"
        )
    return np.repeat(np.repeat(b, block, axis=0), block, axis=1)[:height, :width]


@dataclass
class Allocation:
    """The result of :func:`allocate`: every quantity of docs/METHOD.md §2 for one image."""

    V: np.ndarray  # block importance, float64
    L: np.ndarray  # semantic levels, Σ = 1, float64
    T: np.ndarray  # target levels after clipping, mean = mean_level, float64
    gamma_map: np.ndarray  # γ_i per block, float32
    gamma: float
    kappa: float
    mean_level: float
    level_range: tuple[float, float]
    block: int
    height: int
    width: int
    smooth: float = 0.0
    top: float | None = None
    boost: float | None = None
    steps: int | None = None

    def at_pixels(self, block_map) -> np.ndarray:
        """A block map (V, L, T, gamma_map, ...) at the image's pixel size."""
        return upsample_blocks(block_map, self.height, self.width, self.block)


def allocate(
    importance,
    gamma: float,
    *,
    kappa: float = 1.0,
    mean_level: float = 1.0,
    level_range=DEFAULT_LEVEL_RANGE,
    block: int = BLOCK,
    smooth: float = 0.0,
    top: float | None = None,
    boost: float = 3.0,
    steps: int | None = None,
) -> Allocation:
    """Importance map H x W -> V, L, T and the γ map, in one call (docs/METHOD.md §2).

    ``importance`` is a grey-level map >= 0 (e.g. :func:`semlib.importance.importance_map`).
    See the module docstring for the default level range. ``smooth``: blur the map by a
    Gaussian of that many pixels first (:func:`smooth_importance`). ``top``: a fraction p in
    (0, 1]; the levels are then :func:`top_levels` (the top p of the blocks at ``boost`` times
    the others), clipped to ``level_range`` like the paper's. ``steps``: round the levels to
    that many log-spaced values (:func:`quantise_levels`), for a smaller file.
    """
    g = _as_map(importance)
    V = block_importance(smooth_importance(g, smooth), block)
    L = semantic_levels(V)
    if top is None:
        T = target_levels(L, mean_level, level_range)
    else:
        _check_levels_setting(mean_level, level_range)
        T = water_fill(top_levels(V, top, boost, mean_level), mean_level, level_range)
    T = quantise_levels(T, steps, mean_level)
    gm = gamma_map(gamma, T, mean_level, kappa)
    lo, hi = (float(v) for v in level_range)
    return Allocation(
        V=V, L=L, T=T, gamma_map=gm, gamma=float(gamma), kappa=float(kappa), mean_level=float(mean_level),
        level_range=(lo, hi), block=int(block), height=g.shape[0], width=g.shape[1],
        smooth=float(smooth), top=None if top is None else float(top), boost=None if top is None else float(boost),
        steps=None if steps is None else int(steps),
    )


# --------------------------------------------------------------------------- command-line options


def add_roi_arguments(p: argparse.ArgumentParser) -> None:
    """The ROI allocation options (semlib.allocation) of ``semlib compress``, ``eval`` and ``demo``."""
    p.add_argument("--roi-top", type=float, default=None, metavar="P",
                   help="ROI map of two levels: the fraction P of the 8x8 blocks with the highest importance is coded "
                        "at --roi-boost times the level of the others; 0 = the paper's map, where every block's level "
                        "follows its importance (default with --roi auto: "
                        f"{_auto('top')}; with a mask: 0)")
    p.add_argument("--roi-boost", type=float, default=None, metavar="F",
                   help=f"level ratio of the two-level map, >= 1 (default {_auto('boost')}, or with --bpp B "
                        f"{_auto('boost')} * (B / {AUTO_BOOST_RATE['bpp']:g}) ** {AUTO_BOOST_RATE['power']:g} "
                        f"between {_auto('boost')} and {AUTO_BOOST_RATE['most']:g}); the block gammas differ by F ** kappa")
    p.add_argument("--roi-steps", type=int, default=None, metavar="N",
                   help="the paper's map rounded to N log-spaced levels (2..256), so that the map stored in the file "
                        "costs fewer bytes (default: not rounded)")


def _auto(key: str) -> str:
    v = AUTO_ALLOCATION.get(key)
    return "0" if v is None else f"{v:g}"


def roi_allocation(args: argparse.Namespace) -> dict:
    """The allocation options the user gave (:func:`add_roi_arguments`), for semlib.codec.encode_image;
    the ones not given are left out, so that ``--roi auto`` fills them with its defaults."""
    out = {}
    top = getattr(args, "roi_top", None)
    if top is not None:
        if not (math.isfinite(top) and 0 <= top <= 1):
            raise SemlibError(f"--roi-top must be a fraction in [0, 1], got {top:g}")
        out["top"] = None if top == 0 else top
    boost = getattr(args, "roi_boost", None)
    if boost is not None:
        if not (math.isfinite(boost) and boost >= 1):
            raise SemlibError(f"--roi-boost must be a finite number >= 1, got {boost:g}")
        out["boost"] = boost
    steps = getattr(args, "roi_steps", None)
    if steps is not None:
        if not 2 <= steps <= 256:
            raise SemlibError(f"--roi-steps must be a number of levels in 2..256, got {steps}")
        out["steps"] = steps
    return out
