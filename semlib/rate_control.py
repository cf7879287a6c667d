"""Rate control: the search for the knob value whose file lands at a target bpp, for every
codec of the project (docs/METHOD.md §9).

Both searches share one shape: encode at the two ends of the knob's range first (a target
beyond either end costs two encodings, and the closest file is returned), then, while the
target lies between the two and no file is close enough, narrow the bracket; the file
returned is always the closest one made. They differ in the step, because the knobs do:

* :func:`search_log_gamma`, the learned codec's gamma: log bpp is close to a straight line
  in log gamma, so false position (with the Illinois halving, and bisection when the
  interpolated point falls at an end) finds it in a few encodings; "close enough" is
  relative (``tolerance * target``).
* :func:`encode_at_bpp`, a quality knob (the classical codecs', and the learned codec's γ
  in the evaluation sweeps): often integers (JPEG's 1..100)
  and not always monotone in fine steps, so bisection (geometric for positive continuous
  knobs); "close enough" is absolute (``tol`` bpp).

:func:`secant_from` follows :func:`search_log_gamma` for an encoder whose curve lies a little
below the searched one (encoder-side refinement): a few secant steps from the gamma found.

(Each keeps the rule it had before the two moved here, so that every result file of the
project reproduces; ``semlib.codec.encode_image`` and ``semlib.baselines.encode_at_bpp``
call them.)
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable, NamedTuple


class Trial(NamedTuple):
    """One encoding made by a search: the knob value, the file's bpp, and what the caller
    returned beside it (the file, a reconstruction ...)."""

    knob: float
    bpp: float
    payload: Any


def closest(tried: list, target: float):
    """The trial whose bpp is nearest ``target`` (the first of equals)."""
    return min(tried, key=lambda t: abs(t.bpp - target))


def search_log_gamma(encode: Callable[[float], tuple[float, float, Any]], gamma_range, target: float,
                     tolerance: float = 0.01, max_iter: int = 20) -> tuple[Trial, list[Trial]]:
    """The gamma whose file is within ``tolerance`` (relative) of ``target`` bpp.

    ``encode(gamma)`` codes at ``gamma`` and returns (the gamma used, bpp, payload). Returns
    (the closest trial, every trial in order). False position on (log gamma, log(bpp /
    target)), zero at the target, from the ends of ``gamma_range``."""
    tried: list[Trial] = []

    def miss(log_g):
        g, bpp, payload = encode(math.exp(log_g))
        tried.append(Trial(g, bpp, payload))
        return math.log(bpp / target)

    def met():
        return abs(tried[-1].bpp - target) <= tolerance * target

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
    return closest(tried, target), tried


def secant_from(encode: Callable[[float], tuple[float, float, Any]], start: Trial, trials: list[Trial],
                gamma_range, target: float, tolerance: float = 0.01, max_iter: int = 3) -> Trial:
    """The same target for a second encoder whose bpp is close to, but not that of, the one
    :func:`search_log_gamma` searched with (``trials``, ``start`` its closest): encoder-side
    refinement lowers the rate by a few per cent. ``encode`` (the second encoder) codes at
    ``start.knob`` first; then, while its file misses the target by more than ``tolerance``
    (relative), at most ``max_iter - 1`` secant steps on (log gamma, log bpp), the first with the
    slope of the searched curve near ``start``, each kept inside ``gamma_range``. Returns its
    closest trial."""
    slope = _local_slope(trials, start)
    lo, hi = math.log(gamma_range[0]), math.log(gamma_range[1])
    mine: list[Trial] = []
    log_g = math.log(start.knob)
    for _ in range(max(1, max_iter)):
        g, bpp, payload = encode(math.exp(log_g))
        mine.append(Trial(g, bpp, payload))
        if abs(bpp - target) <= tolerance * target:
            break
        if len(mine) >= 2 and mine[-1].bpp != mine[-2].bpp and mine[-1].knob != mine[-2].knob:
            slope = (math.log(mine[-1].bpp / mine[-2].bpp)) / math.log(mine[-1].knob / mine[-2].knob)
        if not slope > 0:
            break
        nxt = min(hi, max(lo, math.log(g) + math.log(target / bpp) / slope))
        if abs(nxt - math.log(g)) < 1e-6:
            break
        log_g = nxt
    return closest(mine, target)


def _local_slope(trials: list[Trial], start: Trial, default: float = 0.25) -> float:
    """d log bpp / d log gamma of ``trials`` between ``start`` and the trial nearest it in log gamma."""
    others = [t for t in trials if t.knob != start.knob and t.bpp != start.bpp]
    if not others:
        return default
    near = min(others, key=lambda t: abs(math.log(t.knob / start.knob)))
    slope = math.log(near.bpp / start.bpp) / math.log(near.knob / start.knob)
    return slope if slope > 0 else default


class EncodeResult(NamedTuple):
    """What :func:`encode_at_bpp` returns: the file, the knob value used, the bpp reached."""

    data: bytes
    quality: float | int
    bpp: float


def encode_at_bpp(codec, img, target_bpp: float, tol: float = 0.01, max_steps: int = 40,
                  _stacklevel: int = 2) -> EncodeResult:
    """Encode ``img`` with ``codec`` (a :class:`semlib.baselines.Codec`; by name through
    :func:`semlib.baselines.encode_at_bpp`) as close as possible to ``target_bpp`` by
    bisection on the quality knob.

    Stops as soon as a file lands within ``tol`` bpp of the target. When the target
    cannot be met (the codec's range does not reach it, or its integer steps jump over
    it), returns the closest file found and warns with the bpp reached. ``bpp`` is
    8 · len(file) / (H · W) of the real file.
    """
    from semlib.data import as_array

    a = as_array(img)
    h, w = a.shape[:2]
    target = float(target_bpp)
    if not (target > 0 and math.isfinite(target)):
        raise ValueError(f"target_bpp must be a positive number, got {target_bpp!r}")
    lo, hi = codec.quality_range
    low_rate, high_rate = (lo, hi) if codec.rate_increases else (hi, lo)
    tried: dict[float, EncodeResult] = {}

    def at(q) -> EncodeResult:
        q = int(round(q)) if codec.integer_quality else float(q)
        if q not in tried:
            data = codec.encode(a, q)
            tried[q] = EncodeResult(data, q, 8.0 * len(data) / (h * w))
        return tried[q]

    def best() -> EncodeResult:
        return min(tried.values(), key=lambda r: (abs(r.bpp - target), r.bpp))

    a_end, b_end = at(low_rate), at(high_rate)
    if a_end.bpp < target < b_end.bpp:
        qa, qb = low_rate, high_rate  # invariant: bpp(qa) < target < bpp(qb)
        for _ in range(max_steps):
            if abs(best().bpp - target) <= tol:
                break
            if codec.integer_quality:
                if abs(qb - qa) <= 1:
                    break
                mid = (qa + qb) // 2
            elif qa > 0 and qb > 0:
                mid = math.sqrt(qa * qb)  # rate is roughly log-linear in these knobs
            else:
                mid = 0.5 * (qa + qb)
            r = at(mid)
            if r.bpp < target:
                qa = r.quality
            else:
                qb = r.quality
    result = best()
    if abs(result.bpp - target) > tol:
        warnings.warn(
            f"{codec.name}: target {target:g} bpp not met within {tol:g}; closest reached "
            f"{result.bpp:.4f} bpp at {codec.quality_name} {result.quality:g}",
            stacklevel=_stacklevel,
        )
    return result
