"""Metrics (docs/METHOD.md §3, §9): PSNR, SSIM, SI-SSIM, MS-SSIM, bpp and the Bjøntegaard deltas."""

import math

import numpy as np
import pytest
import pytorch_msssim
import torch
from skimage.metrics import structural_similarity
from skimage.transform import resize

from semlib.allocation import block_importance, semantic_levels
from semlib.data import sample_image, to_tensor
from semlib.metrics import (
    bd_psnr,
    bd_rate,
    block_ssim,
    bpp,
    ms_ssim,
    psnr,
    si_ssim,
    ssim,
    ssim_map,
)


@pytest.fixture(scope="module")
def photo():
    """A small real photo (astronaut, 96 x 128), uint8 H x W x 3."""
    a = resize(sample_image("astronaut"), (96, 128), anti_aliasing=True)
    return np.round(a * 255).astype(np.uint8)


def noisy(x: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


# --- PSNR ----------------------------------------------------------------------------


def test_psnr_of_a_known_mse():
    x = torch.zeros(1, 3, 16, 16)
    y = torch.full((1, 3, 16, 16), 0.1)  # MSE = 0.01
    assert psnr(x, y) == pytest.approx(20.0)
    assert psnr(x, y, data_range=2.0) == pytest.approx(20.0 + 20 * math.log10(2))


def test_psnr_of_uint8_arrays_and_batches():
    a = np.zeros((8, 8, 3), np.uint8)
    b = np.full((8, 8, 3), 51, np.uint8)  # 51/255 = 0.2, MSE = 0.04
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.04))
    x = torch.zeros(2, 3, 8, 8)
    y = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.01)])
    np.testing.assert_allclose(psnr(x, y), [20.0, 40.0])
    assert psnr(x, x)[0] == math.inf


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match="shape"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


# --- SSIM ----------------------------------------------------------------------------


def test_ssim_of_an_image_with_itself_is_one(photo):
    x = to_tensor(photo)
    m = ssim_map(x, x)
    assert m.shape == (1, 96, 128)
    torch.testing.assert_close(m, torch.ones_like(m), atol=1e-5, rtol=0)


def test_ssim_map_matches_scikit_image(photo):
    x = to_tensor(photo)
    y = noisy(x, 0.08)
    ref = y[0].permute(1, 2, 0).double().numpy()
    mean, full = structural_similarity(
        photo / 255.0, ref, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        data_range=1.0, channel_axis=2, full=True,
    )
    m = ssim_map(x, y)[0].double().numpy()
    # scikit-image's mean leaves out 5 pixels at each border: the interior.
    assert m[5:-5, 5:-5].mean() == pytest.approx(mean, abs=1e-5)
    # Its full map uses the same symmetric padding, so the whole map agrees.
    np.testing.assert_allclose(m, full.mean(axis=2), atol=2e-4)


def test_ssim_interior_matches_pytorch_msssim(photo):
    x = to_tensor(photo)
    y = noisy(x, 0.05, seed=3)
    ref = pytorch_msssim.ssim(x, y, data_range=1.0).item()  # 'valid' convolution: the interior
    assert ssim_map(x, y)[0, 5:-5, 5:-5].mean().item() == pytest.approx(ref, abs=1e-5)


def test_more_noise_lowers_ssim(photo):
    x = to_tensor(photo)
    assert ssim(x, noisy(x, 0.02)).item() > ssim(x, noisy(x, 0.1)).item() > 0


def test_block_ssim_is_the_block_mean_of_the_map(photo):
    x = to_tensor(photo)
    y = noisy(x, 0.05)
    b = block_ssim(x, y)
    m = ssim_map(x, y)
    assert b.shape == (1, 12, 16)
    assert b[0, 2, 3].item() == pytest.approx(m[0, 16:24, 24:32].mean().item(), abs=1e-6)


def test_block_ssim_pads_odd_sizes_by_edge_replication(photo):
    x = to_tensor(photo)[..., :21, :30]
    y = noisy(x, 0.05)
    m = ssim_map(x, y)[0]
    b = block_ssim(x, y)[0]
    assert b.shape == (3, 4)
    corner = torch.cat([m[16:21, 24:30], m[20:21, 24:30].expand(3, 6)], dim=0)  # rows replicated
    corner = torch.cat([corner, corner[:, -1:].expand(8, 2)], dim=1)  # columns replicated
    assert b[2, 3].item() == pytest.approx(corner.mean().item(), abs=1e-6)


# --- SI-SSIM -------------------------------------------------------------------------


def test_si_ssim_equals_mean_block_ssim_for_a_uniform_map(photo):
    x = to_tensor(photo)
    y = noisy(x, 0.05)
    mean_block = block_ssim(x, y).mean().item()
    assert si_ssim(x, y).item() == pytest.approx(mean_block, abs=1e-6)
    assert si_ssim(x, y, np.full((96, 128), 0.3)).item() == pytest.approx(mean_block, abs=1e-6)
    # 96 x 128 is whole blocks, so it is also the mean SSIM of the image.
    assert si_ssim(x, y).item() == pytest.approx(ssim(x, y).item(), abs=1e-6)


def test_si_ssim_is_the_level_weighted_sum_of_block_ssims(photo):
    x = to_tensor(photo)[..., :90, :125]  # odd size: padded blocks
    y = noisy(x, 0.05)
    g = np.random.default_rng(0).random((90, 125))
    L = semantic_levels(block_importance(g))
    expected = float((L * block_ssim(x, y)[0].double().numpy()).sum())
    assert si_ssim(x, y, g).item() == pytest.approx(expected, abs=1e-6)
    assert si_ssim(x, y, levels=L).item() == pytest.approx(expected, abs=1e-6)


def test_si_ssim_weights_important_blocks(photo):
    x = to_tensor(photo)
    importance = np.full((96, 128), 0.1, np.float32)
    importance[:, :64] = 1.0  # the left half matters
    noise = 0.08 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    left, right = torch.zeros_like(x), torch.zeros_like(x)
    left[..., :64], right[..., 64:] = noise[..., :64], noise[..., 64:]
    y_left, y_right = x + left, x + right  # no clamping: exactly the same noise energy
    assert psnr(x, y_left) == pytest.approx(psnr(x, y_right), abs=0.3)
    assert si_ssim(x, y_left, importance).item() < si_ssim(x, y_right, importance).item() - 0.05
    assert si_ssim(x, y_left, importance).item() < ssim(x, y_left).item()


def test_si_ssim_is_batched(photo):
    x = to_tensor(photo).repeat(2, 1, 1, 1)
    y = noisy(x, 0.05)
    maps = np.stack([np.ones((96, 128)), np.random.default_rng(0).random((96, 128))])
    per_image = si_ssim(x, y, maps, reduction="none")
    assert per_image.shape == (2,)
    assert per_image[1].item() == pytest.approx(si_ssim(x[1:], y[1:], maps[1]).item(), abs=1e-6)
    assert si_ssim(x, y, maps).item() == pytest.approx(per_image.mean().item(), abs=1e-6)


def test_gradient_flows_through_si_ssim(photo):
    x = to_tensor(photo)
    y = noisy(x, 0.05).requires_grad_(True)
    importance = torch.rand(96, 128, generator=torch.Generator().manual_seed(0))
    loss = 1 - si_ssim(x, y, importance)
    loss.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
    assert y.grad.abs().sum() > 0


def test_si_ssim_is_float32_under_bf16_autocast(photo):
    x = to_tensor(photo)
    y = noisy(x, 0.05)
    ref = si_ssim(x, y).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = si_ssim(x, y.bfloat16().float())  # bf16-rounded input, float32 arithmetic
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(ref, abs=5e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        same = si_ssim(x, y)
    assert same.item() == pytest.approx(ref, abs=1e-6)


def test_si_ssim_rejects_maps_that_do_not_fit(photo):
    x = to_tensor(photo)
    with pytest.raises(ValueError, match="does not fit"):
        si_ssim(x, x, np.ones((96, 127)))
    with pytest.raises(ValueError, match="does not fit"):
        si_ssim(x, x, levels=np.ones((12, 15)))
    with pytest.raises(ValueError, match=">= 0"):
        si_ssim(x, x, -np.ones((96, 128)))


# --- MS-SSIM -------------------------------------------------------------------------


def test_ms_ssim_matches_pytorch_msssim_with_compressai_convention():
    a = resize(sample_image("astronaut"), (192, 224), anti_aliasing=True)
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float()
    y = noisy(x, 0.03)
    ref = pytorch_msssim.ms_ssim((x * 255).round(), (y * 255).round(), data_range=255).item()
    assert ms_ssim(x, y) == pytest.approx(ref, abs=1e-6)
    assert 0.5 < ms_ssim(x, y) < 1.0
    assert ms_ssim(x, x) == pytest.approx(1.0, abs=1e-6)


def test_ms_ssim_needs_161_pixels():
    x = torch.rand(1, 3, 160, 300)
    with pytest.raises(ValueError, match="161"):
        ms_ssim(x, x)


# --- Rate ----------------------------------------------------------------------------


def test_bpp():
    assert bpp(1000, 100, 80) == pytest.approx(1.0)
    assert bpp(768 * 512 // 8, 512, 768) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bpp(10, 0, 5)


RATES = np.array([0.1, 0.2, 0.4, 0.8, 1.6])
PSNRS = np.array([27.0, 30.0, 32.5, 35.0, 37.0])


def test_identical_curves_have_zero_deltas():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


def test_ten_percent_fewer_bits_is_minus_ten_percent():
    assert bd_rate(0.9 * RATES, PSNRS, RATES, PSNRS) == pytest.approx(-10.0, abs=1e-6)
    assert bd_rate(RATES, PSNRS, 0.9 * RATES, PSNRS) == pytest.approx(100 / 0.9 - 100, abs=1e-6)


def test_one_db_up_is_one_db_bd_psnr():
    log_linear = 30.0 + 4.0 * np.log2(RATES / 0.1)  # 4 dB per doubling of the rate
    assert bd_psnr(RATES, log_linear + 1.0, RATES, log_linear) == pytest.approx(1.0, abs=1e-9)
    # The same shift, seen as rate: 1 dB is a quarter doubling, 2^(-1/4) - 1 of the rate.
    assert bd_rate(RATES, log_linear + 1.0, RATES, log_linear) == pytest.approx(
        (2 ** (-1 / 4) - 1) * 100, abs=1e-6
    )


def test_bd_rate_psnr_range_averages_only_that_range():
    # A saves 20 % of the bits above 33 dB and nothing below (log-rate linear in PSNR, so the
    # cubic fits are exact when each curve is one straight line: two separate curves here).
    q = np.linspace(27.0, 39.0, 13)
    rate_b = 0.1 * 2 ** ((q - 27.0) / 4.0)
    same = bd_rate(rate_b, q, rate_b, q, psnr_range=(30.0, 36.0))
    assert same == pytest.approx(0.0, abs=1e-9)
    whole = bd_rate(0.8 * rate_b, q, rate_b, q)
    assert whole == pytest.approx(-20.0, abs=1e-6)
    # Cut to a range, the number is the gap in that range and does not depend on the rest.
    assert bd_rate(0.8 * rate_b, q, rate_b, q, psnr_range=(33.0, 34.0)) == pytest.approx(-20.0, abs=1e-6)
    # A range wider than the overlap is the overlap.
    assert bd_rate(0.8 * rate_b, q, rate_b, q, psnr_range=(0.0, 99.0)) == pytest.approx(whole, abs=1e-9)
    # A curve that only differs above 36 dB: the range below it sees nothing, the full interval does.
    bent = np.where(q > 36.0, rate_b * 2 ** (-(q - 36.0) / 3.0), rate_b)
    full = bd_rate(bent, q, rate_b, q)
    low = bd_rate(bent, q, rate_b, q, psnr_range=(27.0, 33.0))
    assert full < -3.0 and abs(low) < abs(full) / 3


@pytest.mark.parametrize("bad, words", [((36.0, 30.0), "low < high"), ((np.nan, 30.0), "finite"),
                                        ((45.0, 50.0), "misses the range"), ((30.0, 33.0, 36.0), "two numbers"),
                                        (("low", 36.0), "two numbers")])
def test_bd_rate_bad_psnr_range_raises(bad, words):
    with pytest.raises(ValueError, match=words):
        bd_rate(RATES, PSNRS, RATES, PSNRS, psnr_range=bad)


@pytest.mark.parametrize(
    "args, words",
    [
        ((RATES[:3], PSNRS[:3], RATES, PSNRS), "at least 4"),
        ((-RATES, PSNRS, RATES, PSNRS), "> 0"),
        ((RATES, PSNRS, RATES, PSNRS + 20), "overlap"),
        ((RATES, PSNRS[:4], RATES, PSNRS), "rates but"),
        ((RATES, PSNRS * np.nan, RATES, PSNRS), "finite"),
    ],
)
def test_bad_rd_curves_raise(args, words):
    with pytest.raises(ValueError, match=words):
        bd_rate(*args)

