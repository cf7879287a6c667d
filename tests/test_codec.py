"""The .semc file: decode(encode(x)) is the model's own reconstruction, and every bad file
raises semlib.FormatError with a message naming the problem."""

import json
import math
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch

from semlib import FormatError, SemlibError, codec
from semlib.data import to_tensor, to_uint8
from tests.conftest import random_tiny


@pytest.fixture(scope="module")
def encoded(photo, tiny_model):
    return codec.encode_image(photo, gamma=300.0, model=tiny_model)


def test_round_trip_is_the_models_own_reconstruction(photo, tiny_model, encoded):
    out = codec.decode(encoded.data, model=tiny_model)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert np.array_equal(out, encoded.x_hat)
    # ... and equals the model's quantized forward pass on the padded image, cropped
    x = codec._pad(to_tensor(photo))
    with torch.no_grad():
        ref = tiny_model(x, encoded.gamma)["x_hat"][..., : photo.shape[0], : photo.shape[1]]
    assert np.array_equal(out, to_uint8(ref))


def test_round_trip_in_a_fresh_process(tmp_path, photo, tiny_ckpt):
    enc = codec.encode_image(photo, gamma=150.0, checkpoint=tiny_ckpt)
    (tmp_path / "a.semc").write_bytes(enc.data)
    script = (
        "import sys, numpy as np; from semlib import codec; "
        f"out = codec.decode(open(r'{tmp_path / 'a.semc'}', 'rb').read(), checkpoint=r'{tiny_ckpt}'); "
        f"np.save(r'{tmp_path / 'out.npy'}', out)"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    assert np.array_equal(np.load(tmp_path / "out.npy"), enc.x_hat)


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (65, 130), (20, 300)])
def test_any_size_round_trips(tiny_model, shape):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8)
    enc = codec.encode_image(img, gamma=200.0, model=tiny_model)
    out = codec.decode(enc.data, model=tiny_model)
    assert out.shape == img.shape
    assert np.array_equal(out, enc.x_hat)
    assert enc.bpp == pytest.approx(8 * len(enc.data) / (shape[0] * shape[1]))


def test_roi_map_is_in_the_file_and_decodes_exactly(photo, tiny_model):
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[:48, :64] = 1.0
    enc = codec.encode_image(photo, gamma=200.0, importance=mask, kappa=1.0, model=tiny_model)
    info = codec.info(enc.data)
    assert info["roi"] and info["blocks"] == [12, 16]
    assert info["gamma_max"] > info["gamma"] > info["gamma_min"]
    # the important quarter gets the larger gammas
    assert enc.gamma_map[:6, :8].min() > enc.gamma_map[6:, 8:].max()
    assert np.array_equal(codec.decode(enc.data, model=tiny_model), enc.x_hat)


def test_kappa_zero_gives_a_uniform_gamma_map(photo, tiny_model):
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[:48] = 1.0
    enc = codec.encode_image(photo, gamma=200.0, importance=mask, kappa=0.0, model=tiny_model)
    assert np.allclose(enc.gamma_map, enc.gamma)


def test_rate_control_meets_the_target_or_reports_the_closest(photo, tiny_model):
    lo = codec.encode_image(photo, gamma=32.0, model=tiny_model).bpp
    hi = codec.encode_image(photo, gamma=2048.0, model=tiny_model).bpp
    inside = min(lo, hi) + 0.5 * abs(hi - lo)
    enc = codec.encode_image(photo, target_bpp=inside, model=tiny_model, tolerance=0.05)
    assert enc.target_bpp == inside
    assert enc.met_target == (abs(enc.bpp - inside) <= 0.05 * inside)
    far = codec.encode_image(photo, target_bpp=50.0, model=tiny_model)
    assert far.met_target is False and far.bpp < 50.0
    assert far.bpp == pytest.approx(max(lo, hi), rel=0.2)


@pytest.mark.parametrize("gamma", [0, -5, float("nan"), float("inf"), "abc"])
def test_bad_gamma_raises_a_semlib_error(photo, tiny_model, gamma):
    with pytest.raises(SemlibError, match="gamma"):
        codec.encode(photo, gamma=gamma, model=tiny_model)


def test_gamma_and_bpp_are_exclusive(photo, tiny_model):
    with pytest.raises(SemlibError, match="exactly one"):
        codec.encode(photo, gamma=10.0, target_bpp=1.0, model=tiny_model)
    with pytest.raises(SemlibError, match="exactly one"):
        codec.encode(photo, model=tiny_model)


def _with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_bad_files_raise_format_error(encoded, tiny_model):
    data = encoded.data
    cases = {
        "empty": (b"", "magic"),
        "foreign": (b"\x89PNG\r\n\x1a\n" + data[8:], "magic"),
        "truncated": (data[: len(data) // 2], "checksum|truncated"),
        "bit flip": (data[:40] + bytes([data[40] ^ 0x10]) + data[41:], "checksum"),
        "extra byte": (data + b"\0", "checksum"),
        "version": (data[:4] + b"\x09" + data[5:], "version"),
        "forged size": (_with_crc(data[:6] + (10**6).to_bytes(4, "little") + (10**6).to_bytes(4, "little") + data[14:-4]), "size"),
        "forged lengths": (_with_crc(data[:-5]), "lengths"),
    }
    for name, (bad, pattern) in cases.items():
        with pytest.raises(FormatError, match=pattern):
            codec.decode(bad, model=tiny_model)


def test_wrong_checkpoint_is_detected(encoded):
    with pytest.raises(FormatError, match="different checkpoint"):
        codec.decode(encoded.data, model=random_tiny(seed=7))


def test_info_describes_the_file(encoded):
    d = codec.info(encoded.data)
    assert d["bytes"] == len(encoded.data)
    assert d["bpp"] == pytest.approx(encoded.bpp)
    assert d["gamma"] == pytest.approx(300.0)
    assert sum(d["latent_bytes"]) < d["bytes"]
    json.dumps(d)


def test_encoding_without_reconstruction_writes_the_same_file(photo, tiny_model):
    """reconstruct=False skips the image-building layers: same bytes, x_hat None, at a gamma and by rate control."""
    full = codec.encode_image(photo, gamma=300.0, model=tiny_model)
    lean = codec.encode_image(photo, gamma=300.0, model=tiny_model, reconstruct=False)
    assert lean.x_hat is None and lean.data == full.data
    assert codec.encode(photo, gamma=300.0, model=tiny_model) == full.data
    by_rate = codec.encode_image(photo, target_bpp=full.bpp, model=tiny_model)
    assert np.array_equal(by_rate.x_hat, codec.decode(by_rate.data, model=tiny_model))
    assert codec.encode(photo, target_bpp=full.bpp, model=tiny_model) == by_rate.data


def test_block_gammas_stay_inside_the_trained_range(photo, tiny_model):
    """With a low base gamma the ROI's background blocks would fall below 32: the model is given
    the clipped map, and the decoder computes the same one from the file."""
    from semlib.models import GAMMA_RANGE
    m = np.zeros(photo.shape[:2], np.float32)
    m[:48] = 1.0
    enc = codec.encode_image(photo, gamma=40.0, importance=m, kappa=1.0, model=tiny_model)
    raw = codec.parse(enc.data).levels.gamma_map(enc.gamma)
    assert raw.min() < GAMMA_RANGE[0]                       # what the allocation alone asks for
    assert enc.gamma_map.min() == pytest.approx(GAMMA_RANGE[0]) and enc.gamma_map.max() <= GAMMA_RANGE[1]
    assert codec.info(enc.data)["gamma_min"] == pytest.approx(GAMMA_RANGE[0])
    assert np.array_equal(codec.decode(enc.data, model=tiny_model), enc.x_hat)


def test_rate_control_tries_the_ends_first_and_converges_in_few_encodings(photo, tiny_model, monkeypatch):
    calls = []
    real = codec._encode_at

    def counting(*args, **kwargs):
        calls.append(args[5])             # the gamma of each encoding
        return real(*args, **kwargs)

    monkeypatch.setattr(codec, "_encode_at", counting)
    lo = codec.encode_image(photo, gamma=32.0, model=tiny_model, reconstruct=False).bpp
    hi = codec.encode_image(photo, gamma=2048.0, model=tiny_model, reconstruct=False).bpp
    calls.clear()
    far = codec.encode_image(photo, target_bpp=10 * max(lo, hi), model=tiny_model, reconstruct=False)
    assert not far.met_target and len(calls) == 2 and calls[:2] == [32.0, 2048.0]
    calls.clear()
    inside = codec.encode_image(photo, target_bpp=math.sqrt(lo * hi), model=tiny_model,
                                reconstruct=False, tolerance=0.01)
    assert inside.met_target or abs(inside.bpp - math.sqrt(lo * hi)) < 0.01 * max(lo, hi)
    assert len(calls) <= 10


def test_a_model_changed_in_place_writes_its_new_fingerprint(photo):
    """codec.get_model keeps a model's fingerprint on it only while its weights are the same:
    a model trained further in the same process writes files that its new weights decode."""
    from semlib.models import fingerprint, random_model

    model = random_model("tiny", 3)
    before = codec.encode(photo, gamma=300.0, model=model)
    with torch.no_grad():
        model.stem.weight.mul_(1.01)                      # what an optimiser step does
    after = codec.encode(photo, gamma=300.0, model=model)
    assert codec.parse(before).fingerprint != codec.parse(after).fingerprint == fingerprint(model)
    assert codec.decode(after, model=model).shape == photo.shape
