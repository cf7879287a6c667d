"""Classical codecs: every available codec round-trips, its knob turns the right way, and
rate control by bisection lands on the target or says how close it got."""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semlib import baselines
from semlib.baselines import CODECS, Codec, available_codecs, encode_at_bpp, get_codec
from semlib.data import sample_image
from semlib.errors import ImageError, SemlibError
from semlib.metrics import psnr

AVAILABLE = available_codecs()


@pytest.fixture(scope="module")
def photo():
    """A small natural photo, 96 x 128 (odd sizes are tested separately)."""
    return np.ascontiguousarray(sample_image("astronaut")[40:136, 160:288])


@pytest.fixture(scope="module")
def crop():
    """A 128 x 192 crop of scikit-image's coffee photo (cup, spoon, wood grain)."""
    return np.ascontiguousarray(sample_image("coffee")[120:248, 200:392])


def _low_and_high(codec):
    """Two knob values from the codec's sweep (ordered from low to high rate)."""
    return codec.sweep[1], codec.sweep[-2]


def test_the_usual_codecs_are_registered():
    assert {"jpeg", "jpeg444", "jpeg2000", "webp", "avif", "hevc", "jpegxl"} <= set(CODECS)
    assert "jpeg" in AVAILABLE  # Pillow always has JPEG


@pytest.mark.parametrize("name", AVAILABLE)
def test_round_trip_shape_dtype_and_the_knob_direction(name, photo):
    codec = CODECS[name]
    lo, hi = _low_and_high(codec)
    small, big = codec.encode(photo, lo), codec.encode(photo, hi)
    rec_small, rec_big = codec.decode(small), codec.decode(big)
    for rec in (rec_small, rec_big):
        assert rec.dtype == np.uint8 and rec.shape == photo.shape
    assert len(big) > len(small)
    assert psnr(photo, rec_big) > psnr(photo, rec_small) + 1.0
    assert psnr(photo, rec_small) > 18.0  # a reconstruction of the photo, not noise


@pytest.mark.parametrize("name", AVAILABLE)
def test_odd_sizes_round_trip(name, photo):
    a = np.ascontiguousarray(photo[:37, :51])
    rec = CODECS[name].decode(CODECS[name].encode(a, CODECS[name].sweep[-1]))
    assert rec.shape == (37, 51, 3)


@pytest.mark.parametrize("name", AVAILABLE)
def test_version_names_the_library_and_a_version(name):
    v = CODECS[name].version()
    assert any(ch.isdigit() for ch in v) and len(v) > 8


@pytest.mark.parametrize("name", AVAILABLE)
def test_quality_outside_the_range_is_refused(name, photo):
    codec = CODECS[name]
    lo, hi = codec.quality_range
    with pytest.raises(ValueError, match=rf"{name}: .* must be in \["):
        codec.encode(photo, hi + 1000)
    with pytest.raises(ValueError, match="must be"):
        codec.encode(photo, "high")


def test_integer_knob_refuses_fractions(photo):
    with pytest.raises(ValueError, match="integer"):
        CODECS["jpeg"].encode(photo, 50.5)


def test_garbage_bytes_raise_image_error():
    with pytest.raises(ImageError, match="jpeg: cannot decode"):
        CODECS["jpeg"].decode(b"definitely not a JPEG file")
    with pytest.raises(ImageError, match="nothing to decode"):
        CODECS["jpeg"].decode(b"")


def test_unavailable_codec_is_reported_not_crashing(monkeypatch, photo):
    ghost = Codec(
        "ghost", "a codec whose library is missing", "quality", (0, 100), True, True, (10, 50),
        lambda a, q: b"", lambda b: np.zeros((1, 1, 3), np.uint8), lambda: "none",
        lambda: "libghost is not installed",
    )
    monkeypatch.setitem(CODECS, "ghost", ghost)
    assert "ghost" not in available_codecs()
    assert ghost.unavailable_reason() == "libghost is not installed"
    with pytest.raises(SemlibError, match="'ghost' is not available here: libghost is not installed"):
        get_codec("ghost")
    with pytest.raises(SemlibError, match="not available"):
        ghost.encode(photo, 10)


def test_a_broken_library_check_does_not_break_the_registry():
    def boom():
        raise RuntimeError("segfault avoided")

    c = Codec("broken", "d", "q", (0, 1), False, True, (0.5,), None, None, lambda: "", boom)
    assert not c.available and "segfault avoided" in c.unavailable_reason()


def test_unknown_codec_name_lists_the_known_ones():
    with pytest.raises(SemlibError, match=r"unknown codec 'mp3'.*jpeg"):
        get_codec("mp3")


# ---------------------------------------------------------------------------------------
# encode_at_bpp


@pytest.mark.parametrize("name", [n for n in ("jpeg2000", "jpegxl", "webp") if n in AVAILABLE])
def test_encode_at_bpp_hits_one_bpp_on_a_photo_crop(name, crop):
    h, w = crop.shape[:2]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data, q, bpp = encode_at_bpp(name, crop, 1.0, tol=0.02)
    assert bpp == pytest.approx(8 * len(data) / (h * w))
    assert CODECS[name].decode(data).shape == crop.shape
    lo, hi = CODECS[name].quality_range
    assert lo <= q <= hi
    if abs(bpp - 1.0) <= 0.02:
        assert not [c for c in caught if "not met" in str(c.message)]
    else:  # integer knobs may step over the target: then it must say so
        assert [c for c in caught if "not met" in str(c.message)]


def test_continuous_knob_meets_the_papers_rates(crop):
    """The paper's tables are at 0.75, 1.12 and 1.25 bpp."""
    for target in (0.75, 1.12, 1.25):
        _, _, bpp = encode_at_bpp("jpeg2000", crop, target, tol=0.01)
        assert abs(bpp - target) <= 0.01


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.floats(0.3, 3.0))
def test_rate_control_lands_close_or_says_so(crop, target):
    # OpenJPEG truncates at coding-pass boundaries: on a small crop the reachable rates
    # come in steps of up to ~0.1 bpp, so a target can fall between two of them.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, _, bpp = encode_at_bpp("jpeg2000", crop, target, tol=0.01)
    warned = any("not met" in str(c.message) for c in caught)
    assert abs(bpp - target) <= 0.12
    assert warned == (abs(bpp - target) > 0.01)


def test_integer_knob_returns_the_closest_of_its_neighbours(crop):
    h, w = crop.shape[:2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, q, bpp = encode_at_bpp("jpeg", crop, 1.0, tol=1e-6)
    codec = CODECS["jpeg"]
    neighbours = [8 * len(codec.encode(crop, k)) / (h * w) for k in (q - 1, q + 1) if 1 <= k <= 100]
    assert all(abs(bpp - 1.0) <= abs(b - 1.0) for b in neighbours)


def test_unreachable_targets_return_the_extremes_and_warn(crop):
    codec = CODECS["jpeg"]
    with pytest.warns(UserWarning, match=r"not met.*closest reached"):
        data, q, bpp = encode_at_bpp(codec, crop, 0.001)
    assert q == codec.quality_range[0] and bpp > 0.001
    with pytest.warns(UserWarning, match="not met"):
        data, q, bpp = encode_at_bpp(codec, crop, 60.0)
    assert q == codec.quality_range[1] and bpp < 60.0


def test_bad_target_is_refused(crop):
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="target_bpp"):
            encode_at_bpp("jpeg", crop, bad)


def test_descending_knob_is_bisected_the_right_way(crop):
    if "jpegxl" not in AVAILABLE:
        pytest.skip("JPEG XL not available")
    assert CODECS["jpegxl"].rate_increases is False
    _, q_low, b_low = encode_at_bpp("jpegxl", crop, 0.5, tol=0.02)
    _, q_high, b_high = encode_at_bpp("jpegxl", crop, 2.0, tol=0.02)
    assert b_low < b_high and q_low > q_high  # larger distance, fewer bits


def test_module_names_its_codecs_settings():
    doc = baselines.__doc__
    for word in ("4:4:4", "mct=1", "tune=psnr", "distance"):
        assert word in doc
