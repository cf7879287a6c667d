"""The first-run demo: real files, numbers that agree with them, and the `semlib demo` command."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from semlib import codec, data, demo, metrics, models
from semlib.allocation import AUTO_ALLOCATION
from semlib.cli import main
from semlib.errors import SemlibError

# --------------------------------------------------------------------------- top_importance_psnr


def test_top_psnr_keeps_exactly_the_most_important_pixels():
    # 5 x 4 image: 20 pixels, so the top 20 % are 4 pixels; the 4 most important get an
    # error of 10 grey levels, the other 16 an error of 100 levels.
    x = np.full((5, 4, 3), 100, np.uint8)
    y = np.full((5, 4, 3), 200, np.uint8)
    importance = np.zeros((5, 4), np.float32)
    top = [(0, 1), (2, 2), (3, 0), (4, 3)]
    for r, c in top:
        importance[r, c] = 0.5 + 0.1 * r
        y[r, c] = 110
    expected = 10 * math.log10(255.0**2 / 10.0**2)  # 28.13 dB: only the 10-level errors count
    assert metrics.roi_psnr(x, y, importance) == pytest.approx(expected, abs=1e-9)
    everything = 10 * math.log10(255.0**2 / ((4 * 10.0**2 + 16 * 100.0**2) / 20))
    assert metrics.roi_psnr(x, y, importance, fraction=1.0) == pytest.approx(everything, abs=1e-9)


def test_top_psnr_rounds_the_pixel_count_up_and_breaks_ties_in_raster_order():
    x = np.zeros((2, 5, 3), np.uint8)
    y = x.copy()
    y[0, 0] = 51        # the first pixel in raster order: error 0.2
    y[0, 1:] = 255      # the next four: error 1.0
    flat = np.ones((2, 5))
    # 10 pixels, fraction 0.15 -> ceil(1.5) = 2 pixels: (0, 0) and (0, 1)
    mse = (0.2**2 + 1.0**2) / 2
    assert metrics.roi_psnr(x, y, flat, fraction=0.15) == pytest.approx(10 * math.log10(1 / mse))
    assert metrics.roi_psnr(x, y, flat, fraction=0.1) == pytest.approx(10 * math.log10(1 / 0.04))


def test_top_psnr_is_infinite_where_the_top_pixels_are_exact():
    x = np.zeros((4, 5, 3), np.uint8)
    y = x.copy()
    y[3, :] = 255  # errors only in the least important row
    importance = np.linspace(1, 0, 4)[:, None].repeat(5, axis=1)
    assert metrics.roi_psnr(x, y, importance, fraction=0.5) == math.inf


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_top_psnr_over_all_pixels_is_the_psnr(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    y = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    g = rng.random((9, 7))
    # metrics.psnr scales to [0, 1] in float32, hence the tolerance
    assert metrics.roi_psnr(x, y, g, fraction=1.0) == pytest.approx(metrics.psnr(x, y), rel=1e-6)
    # float images in [0, 1] give the same number as their uint8 versions
    assert metrics.roi_psnr(x / 255.0, y / 255.0, g) == pytest.approx(metrics.roi_psnr(x, y, g))


@pytest.mark.parametrize("kwargs, words", [
    ({"fraction": 0.0}, "fraction"),
    ({"fraction": 1.5}, "fraction"),
    ({"importance": np.ones((3, 3))}, "does not fit"),
    ({"importance": np.full((4, 5), np.nan)}, "NaN"),
])
def test_top_psnr_refuses_bad_arguments(kwargs, words):
    x = np.zeros((4, 5, 3), np.uint8)
    args = {"importance": np.ones((4, 5)), **kwargs}
    with pytest.raises(ValueError, match=words):
        metrics.roi_psnr(x, x, **args)


# --------------------------------------------------------------------------- run_demo


@pytest.fixture(scope="module")
def result(tmp_path_factory, photo, tiny_ckpt):
    """The demo on a 96 x 128 photo, tiny random model, a precomputed map (no Grad-CAM)."""
    yy, xx = np.mgrid[0:96, 0:128]
    importance = np.exp(-((yy - 40) ** 2 + (xx - 70) ** 2) / (2 * 20.0**2)).astype(np.float32)
    out = tmp_path_factory.mktemp("demo") / "fig.png"
    return demo.run_demo(photo, bpp=0.3, kappa=1.0, checkpoint=tiny_ckpt, out=out, progress=False,
                         importance=importance)


def test_bpp_is_the_size_of_the_real_files(result):
    for r in result.rows:
        assert r.path.is_file()
        assert r.num_bytes == r.path.stat().st_size
        assert r.bpp == pytest.approx(8 * r.num_bytes / (96 * 128))
        assert abs(r.bpp - 0.3) < 0.05, r  # rate control got near the target
    assert result.roi.path.suffix == ".semc" and result.jpeg.path.suffix == ".jpg"
    assert codec.info(result.roi.path.read_bytes())["roi"]
    assert not codec.info(result.uniform.path.read_bytes())["roi"]


def test_the_files_decode_to_the_images_that_were_scored(result, tiny_ckpt):
    for r in (result.roi, result.uniform):
        assert r.matches_encoder
        again = codec.decode(r.path.read_bytes(), checkpoint=tiny_ckpt)
        assert np.array_equal(again, r.image)
        # and that image is the encoder's own reconstruction at the gamma in the file
        header = codec.parse(r.path.read_bytes())
        importance = result.importance if header.levels is not None else None
        enc = codec.encode_image(result.image, gamma=header.gamma, importance=importance,
                                 kappa=result.kappa, checkpoint=tiny_ckpt,
                                 **(result.allocation if importance is not None else {}))
        assert enc.data == r.path.read_bytes()
        assert np.array_equal(enc.x_hat, r.image)
    assert np.array_equal(np.asarray(Image.open(result.jpeg.path).convert("RGB")), result.jpeg.image)


def test_the_scores_are_the_metrics_of_the_decoded_images(result):
    for r in result.rows:
        assert r.psnr == pytest.approx(metrics.psnr(result.image, r.image))
        assert r.si_ssim == pytest.approx(float(metrics.si_ssim(result.image, r.image, result.importance)))
        assert r.psnr_top == pytest.approx(metrics.roi_psnr(result.image, r.image, result.importance))
    # the ROI file spends more where the map is high: its block gamma follows the map
    gm = result.gamma_map
    assert gm.shape == (12, 16)
    assert gm[40 // 8, 70 // 8] > gm[0, 0]


def test_the_roi_file_uses_the_default_two_level_map_and_the_gain_is_stated(result):
    from semlib.allocation import AUTO_ALLOCATION, auto_allocation

    assert result.allocation == auto_allocation(result.target_bpp)   # the boost of --roi auto at that rate
    ratios = np.unique(np.round(result.gamma_map / result.gamma_map.min(), 2))
    if AUTO_ALLOCATION.get("top") is not None:
        assert len(ratios) == 2
    assert result.top_gain == pytest.approx(result.roi.psnr_top - result.uniform.psnr_top)
    assert result.whole_cost == pytest.approx(result.uniform.psnr - result.roi.psnr)
    line = result.verdict()
    assert f"{result.top_gain:+.2f} dB" in line and f"{-result.whole_cost:+.2f} dB" in line
    assert line in result.figure._suptitle.get_text()


def test_the_paper_map_can_be_asked_for(photo, tiny_ckpt):
    g = np.linspace(0, 1, 96 * 128, dtype=np.float32).reshape(96, 128)
    r = demo.run_demo(photo, bpp=0.3, checkpoint=tiny_ckpt, out=None, progress=False, importance=g,
                      allocation={"top": None})
    assert r.allocation["top"] is None
    assert np.unique(r.gamma_map).size > 2          # the paper's map follows every block's level


def test_refinement_codes_both_learned_files_and_says_so(photo, tiny_ckpt):
    g = np.linspace(0, 1, 96 * 128, dtype=np.float32).reshape(96, 128)
    r = demo.run_demo(photo, bpp=0.3, checkpoint=tiny_ckpt, out=None, progress=False, importance=g, refine=2)
    assert "refine 2" in r.roi.setting and "refine 2" in r.uniform.setting
    assert r.roi.matches_encoder and r.uniform.matches_encoder  # refined files decode to what was scored


def test_the_figure_and_the_table(result):
    assert result.figure_path.is_file() and result.figure_path.stat().st_size > 10_000
    with Image.open(result.figure_path) as im:
        assert im.format == "PNG"
    table = result.table()
    for r in result.rows:
        assert r.name in table and str(r.num_bytes) in table


@pytest.mark.parametrize("bpp, kappa", [(0, 1), (-1, 1), (math.nan, 1), (math.inf, 1), (0.5, -1), (0.5, math.nan)])
def test_bad_settings_are_refused_before_any_work(bpp, kappa):
    with pytest.raises(SemlibError, match="bpp|kappa"):
        demo.run_demo("no/such/file.png", bpp=bpp, kappa=kappa, out=None, progress=False)


def test_skimage_photos_need_no_download():
    a = demo.load_demo_image("skimage:astronaut")
    assert a.shape == (512, 512, 3) and a.dtype == np.uint8
    assert np.array_equal(a, data.sample_image("astronaut"))


# --------------------------------------------------------------------------- semlib demo


def test_cli_writes_the_figure_and_the_files(tmp_path, photo_png, tiny_ckpt, capsys):
    fig = tmp_path / "out" / "d.png"
    fig.parent.mkdir()
    assert main(["demo", str(photo_png), "--bpp", "0.3", "--checkpoint", str(tiny_ckpt), "-o", str(fig)]) == 0
    out = capsys.readouterr().out
    assert "Grad-CAM" in out and "JPEG" in out and "SI-SSIM" in out
    for name in ("d.png", "d_roi.semc", "d_uniform.semc", "d_jpeg.jpg"):
        assert (fig.parent / name).is_file(), name
    roi = (fig.parent / "d_roi.semc").read_bytes()
    assert f"{len(roi):7d}" in out  # the table reports the real size


@pytest.mark.parametrize("argv, words", [
    (["{tmp}/missing.png"], "no such file"),
    (["{img}", "--bpp", "0"], "bpp"),
    (["{img}", "--bpp", "-0.5"], "bpp"),
    (["{img}", "--bpp", "nan"], "bpp"),
    (["{img}", "--kappa", "-1"], "kappa"),
    (["{img}", "--refine", "-3"], "refine"),
    (["skimage:no_such_photo"], "no photo named"),
    (["{img}", "-o", "{tmp}/nodir/d.png"], "does not exist"),
    (["{img}", "-o", "{tmp}/d.jpg"], "PNG"),
    (["{img}", "-o", "{img}"], "overwrite the input"),
    (["{img}", "--checkpoint", "{tmp}/none.pt"], "checkpoint not found"),
])
def test_cli_bad_input_gives_one_line_and_exit_2(tmp_path, photo_png, tiny_ckpt, argv, words, capsys):
    args = [a.format(tmp=tmp_path, img=photo_png) for a in argv]
    if "--checkpoint" not in args:
        args += ["--checkpoint", str(tiny_ckpt)]
    assert main(["demo", *args, *([] if "-o" in args else ["-o", str(tmp_path / "d.png")])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("semlib demo: error:") and words in err[0], err
    assert not (tmp_path / "d.png").exists()


def test_cli_without_a_shipped_checkpoint_says_so(tmp_path, photo_png, monkeypatch, capsys):
    monkeypatch.setattr(models.zoo, "SHIPPED_CHECKPOINT", tmp_path / "small.pt")
    codec._cached_model.cache_clear()
    try:
        assert main(["demo", str(photo_png), "-o", str(tmp_path / "d.png")]) == 2
    finally:
        codec._cached_model.cache_clear()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint not found" in err[0] and "--checkpoint" in err[0], err


def test_an_unreachable_target_is_said_not_hidden(photo, tiny_ckpt):
    small = photo[:48, :64].copy()
    with pytest.warns(UserWarning) as record:
        r = demo.run_demo(small, bpp=6.0, checkpoint=tiny_ckpt, out=None, progress=False,
                          importance=np.ones((48, 64), np.float32))
    messages = [str(w.message) for w in record]
    assert sum("not reachable" in m for m in messages) == 2, messages  # semlib roi and uniform
    assert any(m.startswith("jpeg: target") for m in messages), messages
    assert not r.roi.met_target and not r.uniform.met_target and not r.jpeg.met_target
    assert r.uniform.bpp < 6.0 and "target not met" in r.table()


# --------------------------------------------------------------------------- reading the result


def _row(name, bpp, psnr, si, top):
    return demo.Reconstruction(name=name, path=None, num_bytes=0, bpp=bpp, psnr=psnr, si_ssim=si, psnr_top=top,
                               image=None, setting="")


def test_the_verdict_says_the_gain_and_the_cost_with_their_signs():
    text = demo.roi_verdict(_row("semlib ROI", 0.75, 32.74, 0.9115, 34.06), _row("semlib uniform", 0.749, 33.70, 0.9093, 33.06))
    assert "gains +1.00 dB" in text and "-0.96 dB of whole-image PSNR" in text
    assert "SI-SSIM rises by 0.0022" in text and "0.750 bpp" in text
    text = demo.roi_verdict(_row("semlib ROI", 1.0, 34.0, 0.9400, 32.8), _row("semlib uniform", 1.0, 34.4, 0.9403, 32.9))
    assert "does not gain" in text and "-0.10 dB" in text and "about the same" in text
    text = demo.roi_verdict(_row("semlib ROI", 1.0, 34.5, 0.9300, 33.0), _row("semlib uniform", 1.0, 34.4, 0.9403, 32.9))
    assert "does not fall" in text and "SI-SSIM falls by 0.0103" in text


def test_equal_bpp_rows_pair_the_shared_targets():
    roi = {"results": {"target_bpp": [0.75, 1.12], "bpp": [0.752, 1.12], "psnr-rgb": [32.7, 34.7], "psnr-roi20": [34.1, 35.3]}}
    uni = {"results": {"target_bpp": [0.4, 0.75, 2.0], "bpp": [0.41, 0.749, 2.0], "psnr-rgb": [31.0, 33.7, 36.7],
                       "psnr-roi20": [30.5, 33.1, 36.0]}}
    rows = demo.equal_bpp_rows(roi, uni)
    assert [r["target_bpp"] for r in rows] == [0.75]
    assert rows[0]["bpp"] == (0.752, 0.749)
    assert rows[0]["psnr-roi20"] == pytest.approx((34.1, 33.1, 1.0))
    assert rows[0]["psnr-rgb"][2] == pytest.approx(-1.0) and "si-ssim" not in rows[0]
    with pytest.raises(SemlibError):
        demo.equal_bpp_rows({"results": {"bpp": [1.0]}}, uni)


def test_the_reachable_range_is_reachable(photo, tiny_model):
    importance = np.linspace(0, 1, photo.shape[0] * photo.shape[1], dtype=np.float32).reshape(photo.shape[:2])
    lo, hi = demo.reachable_bpp(photo, importance=importance, model=tiny_model)
    assert 0 < lo < hi
    for target in (lo * 1.05, (lo + hi) / 2, hi * 0.95):
        for roi in (None, importance):
            alloc = {} if roi is None else AUTO_ALLOCATION          # what reachable_bpp's ROI files use
            assert codec.encode_image(photo, target_bpp=target, importance=roi, model=tiny_model, **alloc).met_target
    outside = codec.encode_image(photo, target_bpp=lo * 0.5, model=tiny_model)
    assert not outside.met_target


@pytest.mark.parametrize("equal", ["bpp", "gamma"])
def test_roi_against_uniform_shares_what_it_says(photo, tiny_model, equal):
    yy, xx = np.mgrid[0:96, 0:128]
    importance = np.exp(-((yy - 40) ** 2 + (xx - 70) ** 2) / (2 * 20.0**2)).astype(np.float32)
    pair = demo.roi_against_uniform(photo, importance, gamma=256.0, equal=equal, model=tiny_model)
    assert pair.roi.name == "semlib ROI" and pair.uniform.name == "semlib uniform" and pair.equal == equal
    assert pair.roi.matches_encoder and pair.uniform.matches_encoder
    if equal == "bpp":
        assert pair.uniform.bpp == pytest.approx(pair.roi.bpp, rel=0.011)
    else:
        assert pair.uniform_gamma == pytest.approx(256.0, rel=1e-6)
    assert pair.gamma_map.shape == (12, 16) and pair.gamma_map[5, 8] > pair.gamma_map[0, 0]
    assert pair.roi.psnr == pytest.approx(metrics.psnr(photo, pair.roi.image))
    with pytest.raises(SemlibError):
        demo.roi_against_uniform(photo, importance, gamma=256.0, equal="size", model=tiny_model)


def test_format_equal_bpp_rows_prints_the_differences_and_marks_what_is_missing():
    roi = {"results": {"target_bpp": [0.75], "bpp": [0.752], "psnr-rgb": [32.7], "psnr-roi20": [34.1]}}
    uni = {"results": {"target_bpp": [0.75], "bpp": [0.749], "psnr-rgb": [33.7], "psnr-roi20": [33.1]}}
    lines = demo.format_equal_bpp_rows(demo.equal_bpp_rows(roi, uni)).splitlines()
    assert len(lines) == 2 and "top-20% PSNR" in lines[0] and "SI-SSIM" in lines[0]
    assert lines[1].split() == ["0.75", "0.752/0.749", "+1.00", "dB", "-", "-", "-1.00", "dB"]
