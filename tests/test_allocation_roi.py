"""The allocation options beyond the paper (issue 12's ROI pilot): a blurred importance map and
the two-level "top fraction" map; and that a file made with them decodes without them."""

import math
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from semlib import codec
from semlib.allocation import allocate, block_importance, smooth_importance, top_levels

sizes = st.tuples(st.integers(1, 30), st.integers(1, 30))
block_maps = sizes.flatmap(lambda hw: arrays(np.float64, hw, elements=st.floats(0.0, 1.0, width=32)))


@settings(max_examples=150, deadline=None)
@given(block_maps, st.floats(0.01, 1.0), st.floats(1.0, 20.0), st.floats(0.25, 4.0))
def test_top_levels_are_two_levels_boost_apart_with_the_mean_kept(V, p, f, m):
    T = top_levels(V, p, f, m)
    assert T.shape == V.shape
    assert T.mean() == pytest.approx(m, rel=1e-12)
    k = math.ceil(p * V.size - 1e-9)
    values = np.unique(T)
    if k == V.size or f == 1.0:
        assert np.allclose(T, m)
    else:
        assert len(values) == 2 and values[1] / values[0] == pytest.approx(f, rel=1e-12)
        top = T == values[1]
        assert top.sum() == k
        # the boosted blocks are the most important ones
        assert V[top].min() >= V[~top].max()


def test_top_levels_break_ties_by_raster_order():
    T = top_levels(np.ones((2, 5)), 0.3, 4.0)
    assert (T.ravel()[:3] > T.ravel()[3:].max()).all()


def test_allocate_top_clips_to_the_level_range_and_keeps_the_mean():
    g = np.random.default_rng(0).random((64, 80))
    a = allocate(g, 100.0, top=0.1, boost=100.0, level_range=(0.25, 4.0))
    assert a.T.max() <= 4.0 + 1e-12 and a.T.min() >= 0.25 - 1e-12
    assert a.T.mean() == pytest.approx(1.0, rel=1e-12)
    assert (a.top, a.boost) == (0.1, 100.0)
    ratios = np.unique(np.round(a.gamma_map / 100.0, 5))
    assert len(ratios) == 2 and ratios[1] == pytest.approx(4.0, rel=1e-5)  # clipped at the top of the range


def test_top_follows_the_importance_map_and_kappa_scales_the_ratio():
    g = np.zeros((40, 40))
    g[:16, :16] = 1.0        # 4 of 25 blocks (16 %) are important
    a = allocate(g, 50.0, top=0.16, boost=4.0, kappa=0.5)
    assert np.allclose(a.gamma_map[:2, :2] / a.gamma_map[2:, 2:].max(), 2.0, rtol=1e-5)   # 4 ** 0.5
    assert np.unique(a.gamma_map).size == 2


def test_without_the_new_options_allocate_is_the_papers():
    g = np.random.default_rng(3).random((33, 47))
    a = allocate(g, 80.0, kappa=1.0)
    b = allocate(g, 80.0, kappa=1.0, smooth=0.0, top=None)
    np.testing.assert_array_equal(a.T, b.T)
    np.testing.assert_array_equal(a.gamma_map, b.gamma_map)
    assert a.smooth == 0.0 and a.top is None and a.boost is None


def test_smoothing_zero_is_identity_and_a_constant_stays_constant():
    g = np.random.default_rng(1).random((20, 30))
    np.testing.assert_array_equal(smooth_importance(g, 0.0), g)
    np.testing.assert_allclose(smooth_importance(np.full((20, 30), 0.3), 5.0), 0.3, rtol=1e-12)


def test_smoothing_narrows_the_levels_of_a_spiky_map():
    g = np.zeros((64, 64))
    g[30:34, 30:34] = 1.0
    sharp = allocate(g, 100.0, level_range=(0.01, 100.0))
    soft = allocate(g, 100.0, level_range=(0.01, 100.0), smooth=8.0)
    assert soft.T.max() < sharp.T.max()
    assert soft.T.mean() == pytest.approx(1.0) and sharp.T.mean() == pytest.approx(1.0)
    # the peak stays where it was
    assert np.unravel_index(np.argmax(soft.V), soft.V.shape) in {(3, 3), (3, 4), (4, 3), (4, 4)}
    assert soft.V.sum() == pytest.approx(block_importance(smooth_importance(g, 8.0)).sum())


@pytest.mark.parametrize(
    "kwargs, words",
    [({"top": 0.0}, "top fraction"), ({"top": 1.5}, "top fraction"), ({"top": float("nan")}, "top fraction"),
     ({"top": 0.2, "boost": 0.5}, "boost"), ({"top": 0.2, "boost": float("inf")}, "boost"),
     ({"smooth": -1.0}, "smooth"), ({"smooth": float("nan")}, "smooth")],
)
def test_bad_options_raise(kwargs, words):
    with pytest.raises(ValueError, match=words):
        allocate(np.ones((16, 16)), 100.0, **kwargs)


def test_a_top_fraction_file_decodes_without_the_allocation_options(photo, tiny_model):
    """The file holds the block levels; the decoder is never told top, boost or smooth."""
    rng = np.random.default_rng(2)
    g = rng.random(photo.shape[:2]).astype(np.float32)
    enc = codec.encode_image(photo, gamma=200.0, importance=g, kappa=1.0, model=tiny_model,
                             top=0.2, boost=4.0, smooth=4.0)
    levels = np.unique(enc.gamma_map)
    assert len(levels) == 2 and levels[1] / levels[0] == pytest.approx(4.0, rel=0.03)  # 8-bit log levels
    info = codec.info(enc.data)
    assert info["roi"] and info["gamma_max"] / info["gamma_min"] == pytest.approx(4.0, rel=0.03)
    assert np.array_equal(codec.decode(enc.data, model=tiny_model), enc.x_hat)
    # the same importance with the paper's allocation gives another map (the options did act)
    paper = codec.encode_image(photo, gamma=200.0, importance=g, kappa=1.0, model=tiny_model)
    assert np.unique(paper.gamma_map).size > 2


@settings(max_examples=100, deadline=None)
@given(block_maps, st.integers(2, 32))
def test_quantised_levels_take_at_most_steps_values_and_keep_the_mean(V, n):
    a = allocate(V + 1e-3, 100.0, steps=n, block=1)
    assert np.unique(np.round(np.log(a.T), 9)).size <= n
    assert a.T.mean() == pytest.approx(1.0, rel=1e-9)
    exact = allocate(V + 1e-3, 100.0, block=1)
    # no block moves by more than half a step (in log), apart from the common rescale
    d = np.log(a.T) - np.log(exact.T)
    span = np.log(exact.T).max() - np.log(exact.T).min()
    assert d.max() - d.min() <= span / (n - 1) + 1e-9


def test_quantised_levels_stay_few_in_the_file_and_make_it_smaller(photo, tiny_model):
    g = np.random.default_rng(5).random(photo.shape[:2]).astype(np.float32)
    fine = codec.encode_image(photo, gamma=200.0, importance=g, model=tiny_model)
    few = codec.encode_image(photo, gamma=200.0, importance=g, model=tiny_model, steps=4)
    q = codec.parse(few.data).levels.q
    assert np.unique(q).size <= 4 and np.unique(codec.parse(fine.data).levels.q).size > 4
    assert len(zlib.compress(q.tobytes(), 9)) < len(zlib.compress(codec.parse(fine.data).levels.q.tobytes(), 9))
    assert np.array_equal(codec.decode(few.data, model=tiny_model), few.x_hat)


@pytest.mark.parametrize("bad", [1, 257, 2.5, True, "8"])
def test_bad_steps_raise(bad):
    with pytest.raises(ValueError, match="steps"):
        allocate(np.ones((16, 16)), 100.0, steps=bad)


def test_roi_auto_defaults_to_the_two_level_map_and_top_none_gives_the_papers(photo, tiny_model, monkeypatch):
    from semlib import importance as imp
    from semlib.allocation import AUTO_ALLOCATION

    g = np.linspace(0, 1, photo.shape[0] * photo.shape[1], dtype=np.float32).reshape(photo.shape[:2])
    monkeypatch.setattr(imp, "importance_map", lambda image, mask=None, **kw: g if mask is None else mask)
    auto = codec.encode_image(photo, gamma=200.0, importance="auto", model=tiny_model)
    same = codec.encode_image(photo, gamma=200.0, importance=g, model=tiny_model, **AUTO_ALLOCATION)
    assert auto.data == same.data
    paper = codec.encode_image(photo, gamma=200.0, importance="auto", model=tiny_model, top=None)
    assert paper.data == codec.encode_image(photo, gamma=200.0, importance=g, model=tiny_model).data
    if AUTO_ALLOCATION.get("top") is not None:
        assert np.unique(auto.gamma_map).size == 2 and np.unique(paper.gamma_map).size > 2


def test_bad_allocation_options_are_a_semlib_error(photo, tiny_model):
    from semlib import SemlibError

    with pytest.raises(SemlibError, match="ROI allocation: top fraction"):
        codec.encode_image(photo, gamma=200.0, importance=np.ones(photo.shape[:2]), model=tiny_model, top=2.0)


def test_cli_roi_options(tmp_path, photo_png, tiny_ckpt, capsys):
    from PIL import Image

    from semlib.cli import main

    mask = np.zeros((96, 128), np.float32)
    mask[20:60, 30:90] = 1.0
    mask += np.linspace(0, 0.5, 128, dtype=np.float32)[None]
    Image.fromarray((mask / mask.max() * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    semc = tmp_path / "roi.semc"
    assert main(["compress", str(photo_png), str(semc), "--gamma", "200", "--roi", str(tmp_path / "mask.png"),
                 "--roi-top", "0.25", "--roi-boost", "3", "--checkpoint", str(tiny_ckpt)]) == 0
    info = codec.info(semc.read_bytes())
    assert info["gamma_max"] / info["gamma_min"] == pytest.approx(3.0, rel=0.03)
    assert np.unique(codec.parse(semc.read_bytes()).levels.q).size == 2
    capsys.readouterr()
    for bad, words in ((["--roi-top", "2"], "--roi-top"), (["--roi-boost", "0.5"], "--roi-boost"),
                       (["--roi-steps", "1"], "--roi-steps")):
        assert main(["compress", str(photo_png), str(tmp_path / "x.semc"), "--gamma", "200", "--roi",
                     str(tmp_path / "mask.png"), *bad, "--checkpoint", str(tiny_ckpt)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err


def test_eval_names_the_roi_allocation(tiny_ckpt):
    from semlib.evaluate import learned_codec

    auto = learned_codec(tiny_ckpt, roi="auto")
    paper = learned_codec(tiny_ckpt, roi="auto", allocation={"top": None})
    assert paper.name.endswith("-roi-k1") and "top" not in paper.description and "paper's map" in paper.description
    from semlib.allocation import AUTO_ALLOCATION

    if AUTO_ALLOCATION.get("top") is not None:     # the boost follows the target rate: "bauto"
        assert auto.name == f"{paper.name}-top{AUTO_ALLOCATION['top']:g}-bauto"
        assert f"top={AUTO_ALLOCATION['top']:g}" in auto.description and "auto_allocation" in auto.description
        fixed = learned_codec(tiny_ckpt, roi="auto", allocation={"boost": 4.0})
        assert fixed.name == f"{paper.name}-top{AUTO_ALLOCATION['top']:g}-b4" and "auto_allocation" not in fixed.description
        # at a target rate the boost-by-rate codec searches with its own rate control, the others bisect
        assert callable(getattr(auto, "encode_at_target", None))
        assert getattr(fixed, "encode_at_target", None) is None and getattr(paper, "encode_at_target", None) is None


def test_the_boost_of_roi_auto_grows_with_the_target_rate_within_its_bounds():
    from semlib.allocation import AUTO_ALLOCATION, AUTO_BOOST_RATE, auto_allocation

    assert auto_allocation() == AUTO_ALLOCATION and auto_allocation(None) is not AUTO_ALLOCATION
    law = AUTO_BOOST_RATE
    boosts = [auto_allocation(b)["boost"] for b in (0.1, 0.4, law["bpp"], 1.0, 1.12, 1.25, 2.0, 8.0)]
    assert boosts == sorted(boosts)
    assert boosts[0] == boosts[2] == AUTO_ALLOCATION["boost"] and boosts[-1] == law["most"]
    assert auto_allocation(1.12)["boost"] == pytest.approx(3.0 * (1.12 / 0.75) ** law["power"], abs=0.05)
    assert boosts[4] > boosts[2]                 # it does grow between the two ends
    assert AUTO_ALLOCATION["boost"] == 3.0       # auto_allocation hands out copies: the default is unchanged


def test_roi_auto_at_a_target_bpp_uses_the_boost_of_that_rate(photo, tiny_model, monkeypatch):
    from semlib import importance as imp
    from semlib.allocation import auto_allocation

    g = np.linspace(0, 1, photo.shape[0] * photo.shape[1], dtype=np.float32).reshape(photo.shape[:2])
    monkeypatch.setattr(imp, "importance_map", lambda image, mask=None, **kw: g if mask is None else mask)
    for target in (0.5, 1.2):
        enc = codec.encode_image(photo, target_bpp=target, importance="auto", model=tiny_model, max_iter=3)
        r = codec.parse(enc.data).levels.ratios()     # the file's levels (its block gammas may be clipped)
        assert float(r.max() / r.min()) == pytest.approx(auto_allocation(target)["boost"], rel=0.03), target
    given = codec.encode_image(photo, target_bpp=1.2, importance="auto", model=tiny_model, max_iter=3, boost=2.0)
    r = codec.parse(given.data).levels.ratios()
    assert float(r.max() / r.min()) == pytest.approx(2.0, rel=0.03)
