"""Image quality and rate metrics: PSNR, SSIM, SI-SSIM, MS-SSIM, bpp, BD-rate.

Two kinds of functions live here:

- differentiable torch metrics for training and analysis, :func:`ssim_map`,
  :func:`block_ssim`, :func:`ssim` and :func:`si_ssim` (docs/METHOD.md §3): they take
  float tensors N x 3 x H x W in [0, 1], return tensors, and compute in float32
  even under bf16 autocast;
- evaluation metrics that report numbers, :func:`psnr` and :func:`ms_ssim`: a
  Python float for one image, a numpy array of N values for a batch of N > 1.

Every image argument may also be a numpy array H x W x 3 (or N x H x W x 3),
uint8 (divided by 255) or float in [0, 1]: numpy arrays are channels-last, tensors
channels-first, as everywhere in semlib.

Borders of the SSIM map: the 11 x 11 Gaussian window is applied to the image
extended by symmetric reflection (the edge pixel is repeated: ``c b a | a b c``),
scipy's ``mode="reflect"``, which is what scikit-image's ``structural_similarity``
filters with. So the map is full size (H x W), identical to scikit-image's full
map everywhere, and its interior (5 pixels away from the border) is what every
library agrees on.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from semlib.allocation import BLOCK

# docs/METHOD.md §3: SSIM's window and constants.
SSIM_WIN = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
MS_SSIM_MIN_SIDE = (SSIM_WIN - 1) * 2**4 + 1  # 161: pytorch_msssim's limit for 5 scales


# ---------------------------------------------------------------------------------------
# Inputs


def _to_batch(image, name: str = "image") -> torch.Tensor:
    """Any accepted image form -> float tensor N x C x H x W (keeps autograd for float tensors)."""
    if isinstance(image, torch.Tensor):
        t = image
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        elif not t.dtype.is_floating_point:
            raise ValueError(f"{name}: unsupported tensor dtype {t.dtype}")
        if t.dim() == 3:
            t = t.unsqueeze(0)
        if t.dim() != 4:
            raise ValueError(f"{name}: expected a tensor N x C x H x W or C x H x W, got {tuple(t.shape)}")
        return t
    a = np.asarray(image)
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    elif a.dtype == np.uint16:
        a = a.astype(np.float32) / 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    else:
        raise ValueError(f"{name}: unsupported array dtype {a.dtype}")
    if a.ndim == 2:
        a = a[None, :, :, None]
    elif a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"{name}: expected an array H x W x C or N x H x W x C, got {a.shape}")
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)


def _pair(x, y) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _to_batch(x, "x"), _to_batch(y, "y")
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if x.shape[-2] == 0 or x.shape[-1] == 0:
        raise ValueError(f"the images have no pixels (shape {tuple(x.shape)})")
    if y.device != x.device:
        x = x.to(y.device)
    return x, y


def _report(values: torch.Tensor):
    """Per-image values -> a float for one image, a numpy float64 array for several."""
    v = values.detach().double().cpu().numpy()
    return float(v[0]) if v.shape[0] == 1 else v


# ---------------------------------------------------------------------------------------
# PSNR


def psnr(x, y, data_range: float = 1.0):
    """Peak signal-to-noise ratio, 10 · log10(data_range² / MSE), in dB, per image.

    ``x``, ``y``: tensors N x 3 x H x W in [0, 1] or uint8 arrays H x W x 3 (divided
    by 255, so ``data_range=1`` is right for both). The MSE is taken over all
    channels and pixels of each image, in float64. Identical images give ``inf``.
    """
    x, y = _pair(x, y)
    d = x.detach().double() - y.detach().double().to(x.device)
    mse = d.pow(2).mean(dim=(1, 2, 3))
    out = 10.0 * torch.log10(float(data_range) ** 2 / mse)  # inf where mse == 0
    return _report(out)


def roi_psnr(x, y, importance, fraction: float = 0.2) -> float:
    """PSNR (dB) over the ``fraction`` of pixels with the highest importance: how well the
    region the classifier cares about is kept (the ROI measure of the model card).

    ``x``, ``y``: RGB H x W x 3, ``uint8`` (0..255) or float in [0, 1]; ``importance``:
    H x W. The ``ceil(fraction * H * W)`` most important pixels are kept (ties broken
    by raster order, so the choice is deterministic) and the MSE is taken over their
    three channels: ``10 log10(1 / MSE)`` with both images scaled to [0, 1].
    Identical pixels there give ``inf``.
    """
    a, b = _unit(x, "x"), _unit(y, "y")
    g = np.asarray(importance, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the images differ in shape: {a.shape} vs {b.shape}")
    if g.shape != a.shape[:2]:
        raise ValueError(f"importance of shape {g.shape} does not fit images of {a.shape[0]}x{a.shape[1]}")
    if not np.isfinite(g).all():
        raise ValueError("importance holds NaN or infinite values")
    if not (0 < fraction <= 1):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    k = math.ceil(fraction * g.size - 1e-9)
    top = np.argsort(-g.ravel(), kind="stable")[:k]
    d = a.reshape(-1, a.shape[2])[top] - b.reshape(-1, b.shape[2])[top]
    mse = float(np.mean(d * d))
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _unit(image, name: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"{name} must be an H x W x 3 image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float64)
    raise ValueError(f"{name}: unsupported dtype {a.dtype} (use uint8 or float in [0, 1])")


# ---------------------------------------------------------------------------------------
# SSIM and SI-SSIM (docs/METHOD.md §3)


def gaussian_window(size: int = SSIM_WIN, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian of SSIM (11 taps, σ = 1.5), float32."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return (g / g.sum()).float()


def _symmetric_index(n: int, pad: int, device) -> torch.Tensor:
    """Indices of a length-n axis extended by ``pad`` on each side by symmetric reflection."""
    i = torch.arange(-pad, n + pad, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def _pad_symmetric(t: torch.Tensor, pad: int = SSIM_WIN // 2) -> torch.Tensor:
    """Extend the last two axes by ``pad`` pixels of symmetric reflection (scipy's mode="reflect")."""
    t = t.index_select(2, _symmetric_index(t.shape[2], pad, t.device))
    return t.index_select(3, _symmetric_index(t.shape[3], pad, t.device))


def _gaussian_filter(t: torch.Tensor) -> torch.Tensor:
    """Separable 11 x 11 Gaussian filter of every channel, 'valid' (the input is padded already)."""
    c = t.shape[1]
    g = gaussian_window().to(t.device)
    t = F.conv2d(t, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return F.conv2d(t, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)


def ssim_map(x, y, data_range: float = 1.0) -> torch.Tensor:
    """The SSIM map, N x H x W, full size (docs/METHOD.md §3).

    Local means, variances and covariance under an 11 x 11 Gaussian window
    (σ = 1.5), K1 = 0.01, K2 = 0.03, data range 1; the SSIM of each colour
    channel, averaged over channels. Population (not sample) covariances, as in
    Wang et al. 2004. Borders: symmetric reflection (see the module docstring).
    Differentiable; computed in float32 whatever the autocast setting.
    """
    x, y = _pair(x, y)
    with torch.autocast(device_type=y.device.type, enabled=False):
        # Centred on half the range: the variances E[x²] - μ² lose less to float32 rounding.
        x, y = x.float() - 0.5 * data_range, y.float() - 0.5 * data_range
        c = x.shape[1]
        x, y = _pad_symmetric(torch.cat([x, y], dim=1)).split(c, dim=1)
        stats = _gaussian_filter(torch.cat([x, y, x * x, y * y, x * y], dim=1))
        mx, my, mxx, myy, mxy = stats.split(c, dim=1)
        vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
        mx, my = mx + 0.5 * data_range, my + 0.5 * data_range
        c1 = (SSIM_K1 * data_range) ** 2
        c2 = (SSIM_K2 * data_range) ** 2
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        return s.mean(dim=1)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def ssim(x, y, data_range: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    """Mean SSIM: the mean of :func:`ssim_map` over the whole image (borders included).

    ``reduction="none"`` gives one value per image, ``"mean"`` their mean.
    """
    return _reduce(ssim_map(x, y, data_range).mean(dim=(-2, -1)), reduction)


def _block_sums(m: torch.Tensor, block: int) -> torch.Tensor:
    """N x H x W -> N x ceil(H/b) x ceil(W/b) block means, edge-replicated padding (like allocation)."""
    if not isinstance(block, int) or block < 1:
        raise ValueError(f"block size must be a positive integer, got {block!r}")
    h, w = m.shape[-2], m.shape[-1]
    pad_h, pad_w = (-h) % block, (-w) % block
    m = m.unsqueeze(1)
    if pad_h or pad_w:
        m = F.pad(m, (0, pad_w, 0, pad_h), mode="replicate")
    return F.avg_pool2d(m, block).squeeze(1)


def block_ssim(x, y, block: int = BLOCK, data_range: float = 1.0) -> torch.Tensor:
    """SSIM_i: the mean of the SSIM map over each 8 x 8 block, N x ceil(H/8) x ceil(W/8) (docs/METHOD.md §3).

    The map is padded to whole blocks by edge replication, exactly as the
    importance map is in :func:`semlib.allocation.pad_to_blocks`.
    """
    return _block_sums(ssim_map(x, y, data_range), block)


def _levels_from(importance, levels, n: int, h: int, w: int, block: int, device) -> torch.Tensor:
    """The semantic levels L (N' x Hb x Wb, N' in {1, n}, each summing to 1) for si_ssim."""
    hb, wb = -(-h // block), -(-w // block)
    if importance is not None and levels is not None:
        raise ValueError("give either importance or levels, not both")
    if importance is None and levels is None:
        return torch.full((1, hb, wb), 1.0 / (hb * wb), device=device)
    given = importance if importance is not None else levels
    what = "importance" if importance is not None else "levels"
    t = torch.as_tensor(given, device=device).float()
    if t.dim() == 2:
        t = t.unsqueeze(0)
    want = (h, w) if importance is not None else (hb, wb)
    if t.dim() != 3 or tuple(t.shape[-2:]) != want or t.shape[0] not in (1, n):
        raise ValueError(
            f"{what} of shape {tuple(torch.as_tensor(given).shape)} does not fit {n} image(s) of "
            f"{h}x{w}: expected {want[0]}x{want[1]} or N x {want[0]}x{want[1]}"
        )
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"{what} must be finite and >= 0")
    V = _block_sums(t, block) if importance is not None else t  # block means ∝ V_i
    total = V.sum(dim=(-2, -1), keepdim=True)
    return torch.where(total > 0, V / total.clamp_min(1e-30), torch.full_like(V, 1.0 / (hb * wb)))


def si_ssim(
    x,
    y,
    importance=None,
    *,
    levels=None,
    block: int = BLOCK,
    data_range: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """SI-SSIM = Σ_i L_i · SSIM_i, the SSIM weighted by semantic importance (docs/METHOD.md §3).

    ``importance``: the importance map of the reference ``x`` (H x W for all
    images, or N x H x W), from which L_i = V_i / Σ V_j is computed as in
    :mod:`semlib.allocation`; or ``levels``: precomputed block levels L
    (Hb x Wb or N x Hb x Wb; they are normalised to sum 1). With neither, the
    levels are uniform and SI-SSIM is exactly the mean of the block SSIMs, which
    is the mean SSIM of the image when H and W are multiples of 8 (otherwise the
    edge-replicated border pixels count a little more).

    Conv-based (no loop over blocks), differentiable with respect to ``x`` and
    ``y``, computed in float32 under autocast. ``reduction="none"`` gives one
    value per image, ``"mean"`` their mean.
    """
    m = ssim_map(x, y, data_range)  # N x H x W, float32
    n, h, w = m.shape
    s = _block_sums(m, block)  # SSIM_i, N x Hb x Wb
    L = _levels_from(importance, levels, n, h, w, block, s.device)
    return _reduce((L * s).sum(dim=(-2, -1)), reduction)


# ---------------------------------------------------------------------------------------
# MS-SSIM


def ms_ssim(x, y):
    """MS-SSIM with CompressAI's convention for published results (docs/METHOD.md §9).

    RGB images are quantised to 8 bits (``round(clamp(x·255, 0, 255))``) and scored
    by ``pytorch_msssim.ms_ssim(..., data_range=255)`` with its defaults (5 scales,
    11 x 11 Gaussian window, σ = 1.5), as ``compressai.utils.eval_model`` does.
    Not differentiable (the rounding); use :func:`ssim` or :func:`si_ssim` as a loss.

    Five scales need the shorter side to be at least 161 pixels; smaller images
    raise ValueError (no fallback: a number on fewer scales would not be MS-SSIM).
    Returns a float for one image, a numpy array for a batch.
    """
    from pytorch_msssim import ms_ssim as _ms_ssim

    x, y = _pair(x, y)
    side = min(x.shape[-2:])
    if side < MS_SSIM_MIN_SIDE:
        raise ValueError(
            f"MS-SSIM needs images at least {MS_SSIM_MIN_SIDE} pixels on the shorter side "
            f"(5 scales, 11x11 window); got {x.shape[-2]}x{x.shape[-1]}"
        )
    with torch.no_grad(), torch.autocast(device_type=y.device.type, enabled=False):
        a = (x.float() * 255.0).clamp(0, 255).round()
        b = (y.float() * 255.0).clamp(0, 255).round()
        out = _ms_ssim(a, b, data_range=255.0, size_average=False)
    return _report(out)


# ---------------------------------------------------------------------------------------
# Rate


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel: 8 · bytes / (H · W), the bits of the whole file over the pixel count."""
    if num_bytes < 0:
        raise ValueError(f"num_bytes must be >= 0, got {num_bytes}")
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be > 0, got {height}x{width}")
    return 8.0 * num_bytes / (height * width)


def _rd_curve(rate, quality, name: str, quality_name: str) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.size != q.size:
        raise ValueError(f"{name}: {r.size} rates but {q.size} {quality_name} values")
    if r.size < 4:
        raise ValueError(f"{name}: a cubic fit needs at least 4 rate points, got {r.size}")
    if not (np.isfinite(r).all() and np.isfinite(q).all()):
        raise ValueError(f"{name}: rates and {quality_name} values must be finite")
    if (r <= 0).any():
        raise ValueError(f"{name}: rates must be > 0 (they are fitted on a log scale)")
    if np.unique(q).size < 4 or np.unique(r).size < 4:
        raise ValueError(f"{name}: a cubic fit needs at least 4 distinct points")
    return r, q


def _bd_average_gap(xa, ya, xb, yb, what: str, within=None) -> float:
    """Mean of (fit_a(x) - fit_b(x)) over the common x interval, cut to ``within`` = (lo, hi)
    if given; fits are cubic polynomials y(x) over all points of each curve."""
    lo, hi = max(xa.min(), xb.min()), min(xa.max(), xb.max())
    if not hi > lo:
        raise ValueError(
            f"the two curves do not overlap in {what}: A covers [{xa.min():g}, {xa.max():g}], "
            f"B covers [{xb.min():g}, {xb.max():g}]"
        )
    if within is not None:
        try:
            w_lo, w_hi = (float(v) for v in within)
        except (TypeError, ValueError):
            raise ValueError(f"the {what} range must be two numbers (low, high); got {within!r}") from None
        if not (math.isfinite(w_lo) and math.isfinite(w_hi) and w_hi > w_lo):
            raise ValueError(f"the {what} range must be two finite numbers, low < high; got {tuple(within)}")
        if not (min(hi, w_hi) > max(lo, w_lo)):
            raise ValueError(f"the curves' common {what} interval [{lo:g}, {hi:g}] misses the range "
                             f"[{w_lo:g}, {w_hi:g}]")
        lo, hi = max(lo, w_lo), min(hi, w_hi)
    pa, pb = np.polyint(np.polyfit(xa, ya, 3)), np.polyint(np.polyfit(xb, yb, 3))
    area = (np.polyval(pa, hi) - np.polyval(pa, lo)) - (np.polyval(pb, hi) - np.polyval(pb, lo))
    return float(area / (hi - lo))


def bd_rate(rate_a, psnr_a, rate_b, psnr_b, psnr_range=None) -> float:
    """Bjøntegaard delta rate: the average rate change of A against B, in percent.

    Negative: A needs fewer bits than B for the same PSNR. Each curve's log-rate
    is fitted as a cubic polynomial of PSNR, both fits are integrated over the
    PSNR interval the two curves share, and the mean log-rate gap d gives
    (exp(d) - 1) · 100 (G. Bjøntegaard, VCEG-M33, 2001). Each curve needs at least
    4 points; rates must be > 0 and the PSNR ranges must overlap (ValueError).

    ``psnr_range`` = (lo, hi) cuts the interval to that range (the fits still use every
    point): a model whose curve grows a new high-rate end then keeps a comparable number
    over the qualities it covered before. ValueError if the range misses the common interval.
    """
    ra, qa = _rd_curve(rate_a, psnr_a, "curve A", "PSNR")
    rb, qb = _rd_curve(rate_b, psnr_b, "curve B", "PSNR")
    gap = _bd_average_gap(qa, np.log(ra), qb, np.log(rb), "PSNR", within=psnr_range)
    return (math.exp(gap) - 1.0) * 100.0


def bd_psnr(rate_a, psnr_a, rate_b, psnr_b) -> float:
    """Bjøntegaard delta PSNR: the average PSNR gain of A over B, in dB (positive: A is better).

    Each curve's PSNR is fitted as a cubic polynomial of log-rate and both fits are
    integrated over the log-rate interval the two curves share. Inputs are
    validated as in :func:`bd_rate`.
    """
    ra, qa = _rd_curve(rate_a, psnr_a, "curve A", "PSNR")
    rb, qb = _rd_curve(rate_b, psnr_b, "curve B", "PSNR")
    return _bd_average_gap(np.log(ra), qa, np.log(rb), qb, "log-rate")


# ---------------------------------------------------------------------------------------
# Where the bits go


def block_bits(likelihoods, height: int, width: int, block: int = BLOCK) -> np.ndarray:
    """Bits per ``block`` x ``block`` pixel block, from a model's latent likelihoods.

    ``likelihoods``: a dict or list of tensors 1 x C x h x w (what ``model(x, gamma)`` returns
    under ``"likelihoods"``) for an input of ``height`` x ``width`` pixels, each latent at a
    stride ``height / h`` that is a multiple of ``block``. Each latent value costs
    ``-log2(likelihood)`` bits; its bits are summed over channels and shared evenly among the
    blocks its cell covers (a latent at 1/16 of the side covers 2 x 2 blocks of 8). The map,
    ``height // block`` x ``width // block`` float64, sums to the total estimated bits. The even
    share is a bookkeeping choice: a latent's code is not tied to those pixels alone.
    """
    liks = list(likelihoods.values()) if isinstance(likelihoods, dict) else list(likelihoods)
    if height % block or width % block:
        raise ValueError(f"{height}x{width} is not a whole number of {block}x{block} blocks")
    rows, cols = height // block, width // block
    out = np.zeros((rows, cols), np.float64)
    for lik in liks:
        if lik.dim() != 4 or lik.shape[0] != 1:
            raise ValueError(f"expected likelihoods of shape 1 x C x h x w, got {tuple(lik.shape)}")
        h, w = lik.shape[-2:]
        if rows % h or cols % w or height // h != width // w:
            raise ValueError(f"a latent of {h}x{w} does not tile {rows}x{cols} blocks at one stride")
        k = rows // h
        bits = (-torch.log2(lik.detach().double())).sum(dim=1)[0].cpu().numpy()   # h x w
        out += np.kron(bits, np.ones((k, k))) / (k * k)
    return out
