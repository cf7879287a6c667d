"""Odd images are either coded correctly (decode gives back an image of the input's size,
equal to the encoder's reconstruction) or refused with a clear semlib error, in Python
and on the command line (exit status 2, one line on stderr)."""

import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from semlib import ImageError, SemlibError, codec, data, semc
from semlib.cli import main


def _round_trip(source, model, **kw):
    """encode -> decode; the decoded image must be the encoder's own reconstruction."""
    enc = codec.encode_image(source, gamma=200.0, model=model, **kw)
    out = codec.decode(enc.data, model=model)
    assert out.dtype == np.uint8 and out.shape == enc.x_hat.shape
    assert np.array_equal(out, enc.x_hat)
    return out


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- image modes

MODES = {
    # name: (PIL image maker, file format, expected RGB array from the source, warning or None)
    "grayscale": (lambda a: Image.fromarray(a[..., 0]), "png",
                  lambda a: np.repeat(a[..., :1], 3, axis=2), "grayscale"),
    "bilevel": (lambda a: Image.fromarray(a[..., 0] > 127), "png",
                lambda a: np.repeat(np.where(a[..., :1] > 127, 255, 0).astype(np.uint8), 3, axis=2), "grayscale"),
    "rgba": (lambda a: Image.fromarray(np.dstack([a, a[..., :1]])), "png", lambda a: a, "alpha"),
    "gray+alpha": (lambda a: Image.fromarray(np.dstack([a[..., 0], a[..., 1]]), "LA"), "png",
                   lambda a: np.repeat(a[..., :1], 3, axis=2), "alpha"),
    "palette": (lambda a: Image.fromarray(a // 64 * 64).quantize(colors=64, method=Image.Quantize.FASTOCTREE), "png",
                None, None),
    "palette+transparency": (lambda a: _with_transparency(Image.fromarray(a // 64 * 64).quantize(colors=64, method=Image.Quantize.FASTOCTREE)),
                             "png", None, "alpha"),
    "16-bit gray": (lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257), "png",
                    lambda a: np.repeat(a[..., :1], 3, axis=2), "16 bits"),
    "cmyk": (lambda a: Image.fromarray(a).convert("CMYK"), "tiff",
             lambda a: np.asarray(Image.fromarray(a).convert("CMYK").convert("RGB")), "CMYK"),
    "cmyk jpeg": (lambda a: Image.fromarray(a).convert("CMYK"), "jpeg", None, "CMYK"),
    "ycbcr tiff": (lambda a: Image.fromarray(a).convert("YCbCr"), "tiff", None, "YCbCr"),
}


def _with_transparency(im):
    im.info["transparency"] = 0
    return im


@pytest.mark.parametrize("mode", list(MODES))
def test_image_modes_are_converted_to_rgb_and_round_trip(tmp_path, tiny_model, mode):
    make, fmt, expected, warning = MODES[mode]
    src = _rgb(24, 40, seed=3)
    path = tmp_path / f"img.{fmt}"
    make(src).save(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rgb = data.load_image(path)
    assert rgb.shape == (24, 40, 3) and rgb.dtype == np.uint8
    if expected is not None:
        assert np.array_equal(rgb, expected(src))
    notes = [str(w.message) for w in caught]
    if warning is None:
        assert notes == []
    else:
        assert any(warning in n for n in notes), notes
    out = _round_trip(path, tiny_model)
    assert out.shape == (24, 40, 3)


def test_48_bit_rgb_png_keeps_the_high_byte_with_a_note(tmp_path, tiny_model):
    """16 bits per channel RGB: Pillow reads the high byte (truncation); load_image says so."""
    import imagecodecs

    src = np.random.default_rng(1).integers(0, 65536, size=(9, 11, 3), dtype=np.uint16)
    path = tmp_path / "rgb48.png"
    path.write_bytes(imagecodecs.png_encode(src))
    with pytest.warns(UserWarning, match="from 16 to 8 bits per sample"):
        rgb = data.load_image(path)
    assert np.array_equal(rgb, (src >> 8).astype(np.uint8))
    _round_trip(path, tiny_model)


def test_floating_point_tiff_is_refused(tmp_path):
    path = tmp_path / "f.tiff"
    Image.fromarray(np.random.default_rng(0).random((8, 8)).astype(np.float32)).save(path)
    with pytest.raises(ImageError, match="floating-point"):
        data.load_image(path)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (8, 2000), (65, 1)])
def test_odd_sizes_round_trip_with_and_without_an_roi(tiny_model, shape):
    img = _rgb(*shape, seed=shape[1])
    assert _round_trip(img, tiny_model).shape == (*shape, 3)
    mask = np.zeros(shape, np.float32)
    mask[: max(1, shape[0] // 2)] = 1.0
    assert _round_trip(img, tiny_model, importance=mask).shape == (*shape, 3)


def test_an_image_over_the_pixel_limit_is_refused_before_any_work(tiny_model, monkeypatch):
    made_before = codec.encode(_rgb(50, 50), gamma=100.0, model=tiny_model)
    monkeypatch.setattr(codec, "MAX_PIXELS", 50 * 50)
    with pytest.raises(SemlibError, match="larger than the limit of 2500 pixels"):
        codec.encode(_rgb(50, 51), gamma=100.0, model=tiny_model)
    assert codec.encode(_rgb(50, 50), gamma=100.0, model=tiny_model) == made_before
    # ... and the decoder refuses a file that claims more pixels than its limit
    monkeypatch.setattr(semc, "MAX_PIXELS", 1000)       # the file's parser (semlib.semc)
    with pytest.raises(SemlibError, match="implausible image size 50x50"):
        codec.decode(made_before, model=tiny_model)


def _png_claiming(path, width, height):
    """A valid 8x8 PNG whose header (IHDR, CRC fixed) claims width x height."""
    Image.fromarray(_rgb(8, 8)).save(path)
    raw = bytearray(path.read_bytes())
    assert raw[12:16] == b"IHDR"
    struct.pack_into(">II", raw, 16, width, height)
    struct.pack_into(">I", raw, 29, zlib.crc32(bytes(raw[12:29])))
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("side, words", [((12000, 9000), "larger than the limit"),        # 108 Mpx > 100 Mpx
                                         ((40000, 40000), "cannot decode the image")])    # Pillow's bomb check
def test_a_huge_image_file_is_refused_without_decoding_its_pixels(tmp_path, monkeypatch, side, words):
    path = tmp_path / "huge.png"
    _png_claiming(path, *side)

    def no_pixels(self, *a, **k):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with pytest.raises(ImageError, match=words):
            data.load_image(path)


def test_pillows_bomb_warning_does_not_reach_the_user(tmp_path):
    """108 Mpx lies between Pillow's warning (89 Mpx) and error (179 Mpx) limits: semlib's own
    limit answers in one line, and Pillow's warning is not printed as a second one."""
    path = tmp_path / "huge.png"
    _png_claiming(path, 12000, 9000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # any warning would fail the test
        with pytest.raises(ImageError, match="larger than the limit"):
            data.load_image(path)


def test_a_configured_pixel_limit_applies_to_files(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_rgb(40, 40)).save(path)
    with pytest.raises(ImageError, match="larger than the limit of 1000 pixels"):
        data.load_image(path, max_pixels=1000)
    assert data.load_image(path, max_pixels=1600).shape == (40, 40, 3)


# --------------------------------------------------------------------------- not images


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"this is a text file, not an image\n" * 10, "not an image"),
    (None, "cannot decode"),          # a PNG cut in half
])
def test_files_that_are_not_images_raise_image_error(tmp_path, tiny_model, content, words):
    path = tmp_path / "x.png"
    if content is None:
        Image.fromarray(_rgb(64, 64)).save(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=words):
        codec.encode(path, gamma=100.0, model=tiny_model)


@pytest.mark.parametrize("array, words", [
    (np.zeros((0, 5, 3), np.uint8), "no pixels"),
    (np.zeros((4, 4, 2), np.uint8), "H x W x 3"),
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    (np.zeros((4, 4, 3), np.complex64), "dtype"),
])
def test_arrays_that_are_not_images_raise_image_error(tiny_model, array, words):
    with pytest.raises(ImageError, match=words):
        codec.encode(array, gamma=100.0, model=tiny_model)


# --------------------------------------------------------------------------- command line


def _one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_cli_codes_a_16_bit_grayscale_png_with_a_one_line_note(tmp_path, tiny_ckpt, capsys):
    src = _rgb(7, 13)[..., 0].astype(np.uint16) * 257
    Image.fromarray(src).save(tmp_path / "g16.png")
    semc, out = tmp_path / "g16.semc", tmp_path / "g16_out.png"
    assert main(["compress", str(tmp_path / "g16.png"), str(semc), "--gamma", "200", "--checkpoint", str(tiny_ckpt)]) == 0
    assert "16 bits" in _one_error_line(capsys)
    assert main(["decompress", str(semc), str(out), "--checkpoint", str(tiny_ckpt)]) == 0
    assert np.asarray(Image.open(out)).shape == (7, 13, 3)


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: _png_claiming(p, 12000, 9000), "larger than the limit"),
    (lambda p: p.write_bytes(b"%PDF-1.4 not an image"), "not an image"),
])
def test_cli_refuses_bad_images_with_exit_2_and_one_line(tmp_path, tiny_ckpt, capsys, make, words):
    src = tmp_path / "in.png"
    make(src)
    rc = main(["compress", str(src), str(tmp_path / "x.semc"), "--gamma", "200", "--checkpoint", str(tiny_ckpt)])
    assert rc == 2
    line = _one_error_line(capsys)
    assert line.startswith("semlib compress: error:") and words in line
    assert not (tmp_path / "x.semc").exists()
