"""Tiled files (format version 3, semlib.tiling): a large image is coded in overlapping tiles
in bounded memory; the decoder reproduces the encoder's blended reconstruction; seams cost
little; one block map spans the tiles; damaged tiled files are refused in one line; images
below the threshold keep their version-2 files."""

import struct
import zlib

import numpy as np
import pytest

from semlib import FormatError, SemlibError, codec, data, tiling
from semlib.cli import main as cli_main
from semlib.models import SHIPPED_CHECKPOINT, load_model


@pytest.fixture(scope="module")
def scene() -> np.ndarray:
    """200 x 300 crop of scikit-image's astronaut (face, flag, suit): 2 x 3 tiles of 128 pixels."""
    return data.sample_image("astronaut")[100:300, 50:350].copy()


@pytest.fixture(scope="module")
def shipped():
    if not SHIPPED_CHECKPOINT.is_file():
        pytest.skip("no shipped checkpoint in this clone")
    return load_model()


def _psnr(a, b) -> float:
    return float(10 * np.log10(255.0 ** 2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


# --------------------------------------------------------------------------- the grid


@pytest.mark.parametrize("length", [1, 64, 128, 129, 200, 300, 1000, 1009, 4099])
@pytest.mark.parametrize("tile,overlap", [(128, 16), (128, 0), (128, 64), (256, 32), (1024, 16)])
def test_tiles_cover_the_axis_on_the_block_grid_and_overlap_by_exactly_the_overlap(length, tile, overlap):
    spans = tiling.axis_spans(length, tile, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == length
    for (a0, a1), (b0, b1) in zip(spans, spans[1:]):
        assert a1 - a0 == tile and b0 % 8 == 0 and a1 - b0 == overlap
    assert len(spans) == 1 or spans[-1][1] - spans[-1][0] > overlap


@pytest.mark.parametrize("shape", [(200, 300), (129, 1000), (300, 129)])
def test_the_blending_weights_add_up_to_one_everywhere(shape):
    grid = tiling.Grid(*shape, 128, 32)
    total = np.zeros(shape, np.float64)
    for r, (y0, y1) in enumerate(grid.rows):
        for c, (x0, x1) in enumerate(grid.cols):
            total[y0:y1, x0:x1] += grid.weights(r, c)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    # a flat grey in every tile blends into the same flat grey
    flat = [np.full((y1 - y0, x1 - x0, 3), 0.5, np.float32) for y0, y1, x0, x1 in grid.tiles()]
    assert (tiling.assemble(grid, flat) == 128).all()


def test_images_below_the_threshold_keep_their_version_2_files(tiny_model, scene):
    plain = codec.encode(scene, gamma=300.0, model=tiny_model)
    assert plain[4] == 2
    assert codec.encode(scene, gamma=300.0, model=tiny_model, tile=0) == plain
    assert codec.encode(scene, gamma=300.0, model=tiny_model, tile=512) == plain      # fits in one tile
    assert tiling.plan(2048, 2048) is None and tiling.plan(2049, 2048) is not None


@pytest.mark.parametrize("tile,overlap", [(100, 16), (0.5, 0), (128, 12), (128, 72), (128, -8), (True, 0)])
def test_a_bad_tiling_is_refused_in_one_line(tiny_model, scene, tile, overlap):
    with pytest.raises(SemlibError, match="tile") as e:
        codec.encode(scene, gamma=300.0, model=tiny_model, tile=tile, tile_overlap=overlap)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- round trip


def test_a_tiled_file_decodes_to_the_encoders_blended_reconstruction(tiny_model, scene):
    enc = codec.encode_image(scene, gamma=300.0, model=tiny_model, tile=128, tile_overlap=16)
    assert enc.data[4] == tiling.VERSION
    h = codec.parse(enc.data)
    assert (len(h.grid.rows), len(h.grid.cols)) == (2, 3) and len(h.tiles) == 6
    out = codec.decode(enc.data, model=tiny_model)
    assert out.shape == scene.shape and out.dtype == np.uint8
    assert np.array_equal(out, enc.x_hat)
    d = codec.info(enc.data)
    assert d["version"] == 3 and d["tiles"] == [2, 3] and d["tile"] == 128 and d["overlap"] == 16
    assert sum(d["latent_bytes"]) < d["bytes"] and d["bpp"] == pytest.approx(enc.bpp)


def test_tiles_are_coded_like_whole_images(tiny_model, scene):
    """Each tile's section holds exactly the latent strings a version-2 file of that crop holds."""
    enc = codec.encode(scene, gamma=300.0, model=tiny_model, tile=128, tile_overlap=16)
    h = codec.parse(enc)
    for (y0, y1, x0, x1), t in zip(h.grid.tiles(), h.tiles):
        crop = codec.parse(codec.encode(scene[y0:y1, x0:x1], gamma=300.0, model=tiny_model))
        assert t.strings == crop.strings and t.symbols_crc == crop.symbols_crc


def test_the_command_line_tiles_on_request_and_decodes(tmp_path, tiny_ckpt, scene, capsys):
    from PIL import Image

    src, semc, back = tmp_path / "a.png", tmp_path / "a.semc", tmp_path / "b.png"
    Image.fromarray(scene).save(src)
    assert cli_main(["compress", str(src), str(semc), "--gamma", "300", "--tile", "128",
                     "--checkpoint", str(tiny_ckpt)]) == 0
    assert semc.read_bytes()[4] == 3
    assert cli_main(["info", str(semc)]) == 0
    assert "2 x 3 of 128 pixels, overlapping by 16" in capsys.readouterr().out
    assert cli_main(["decompress", str(semc), str(back), "--checkpoint", str(tiny_ckpt)]) == 0
    model = load_model(tiny_ckpt)
    assert np.array_equal(np.asarray(Image.open(back)), codec.decode(semc.read_bytes(), model=model))
    assert cli_main(["compress", str(src), str(tmp_path / "c.semc"), "--gamma", "300", "--tile", "100",
                     "--checkpoint", str(tiny_ckpt)]) == 2
    err = capsys.readouterr().err.strip()
    assert "multiple of 64" in err and "\n" not in err


# --------------------------------------------------------------------------- seams, rate, ROI


def test_seams_cost_little_quality(shipped, scene):
    """With the default 16-pixel overlap the image, and the strips around the tile borders,
    come out within 0.3 dB of the untiled file's (measured: +0.07 dB whole, +0.3 dB in the
    strips at gamma 64, where the blend averages two reconstructions); without overlap the
    strips lose 0.8 dB."""
    whole = codec.encode_image(scene, gamma=64.0, model=shipped)
    tiled = codec.encode_image(scene, gamma=64.0, model=shipped, tile=128, tile_overlap=16)
    assert _psnr(scene, tiled.x_hat) >= _psnr(scene, whole.x_hat) - 0.3
    grid = codec.parse(tiled.data).grid
    cols = np.concatenate([np.arange(x0 - 4, x0 + 20) for x0, _ in grid.cols[1:]])
    rows = np.concatenate([np.arange(y0 - 4, y0 + 20) for y0, _ in grid.rows[1:]])
    for pick in (lambda a: a[:, cols], lambda a: a[rows]):
        assert _psnr(pick(scene), pick(tiled.x_hat)) >= _psnr(pick(scene), pick(whole.x_hat)) - 0.3
    assert np.array_equal(codec.decode(tiled.data, model=shipped), tiled.x_hat)


def test_rate_control_meets_the_target_over_the_whole_tiled_file(tiny_model, scene):
    enc = codec.encode_image(scene, target_bpp=0.6, model=tiny_model, tile=128)
    assert enc.data[4] == 3 and enc.met_target
    assert abs(8 * len(enc.data) / scene[..., 0].size - 0.6) <= 0.01 * 0.6
    assert np.array_equal(codec.decode(enc.data, model=tiny_model), enc.x_hat)


def test_one_block_map_spans_the_tiles(shipped, scene):
    """An ROI across tile borders: the file holds the same map as the untiled file, each tile
    codes its own blocks of it, and in every tile that the ROI's border crosses, the ROI gains
    on the uniform file (same base gamma) more than the rest does."""
    mask = np.zeros(scene.shape[:2], np.float32)
    mask[64:176, 96:248] = 1.0                            # crosses both row borders and two column borders
    whole = codec.encode_image(scene, gamma=128.0, model=shipped, importance=mask, kappa=1.0)
    tiled = codec.encode_image(scene, gamma=128.0, model=shipped, importance=mask, kappa=1.0, tile=128)
    h, hw = codec.parse(tiled.data), codec.parse(whole.data)
    assert np.array_equal(h.levels.q, hw.levels.q) and np.array_equal(tiled.gamma_map, whole.gamma_map)
    uniform = codec.encode_image(scene, gamma=128.0, model=shipped, tile=128)
    err = ((scene.astype(np.float64) - tiled.x_hat) ** 2).mean(axis=2)
    err_u = ((scene.astype(np.float64) - uniform.x_hat) ** 2).mean(axis=2)
    for y0, y1, x0, x1 in h.grid.tiles():
        sub = tiling.tile_levels(h.levels, y0, y1, x0, x1)
        assert np.array_equal(sub.q, h.levels.q[y0 // 8:-(-y1 // 8), x0 // 8:-(-x1 // 8)])
        inside = mask[y0:y1, x0:x1] > 0
        if inside.any() and not inside.all():
            e, u = err[y0:y1, x0:x1], err_u[y0:y1, x0:x1]
            assert e[inside].mean() / u[inside].mean() < e[~inside].mean() / u[~inside].mean()


def test_the_large_image_roi_path_puts_a_mask_on_its_blocks():
    """For images above the threshold the map is computed at block resolution (bounded memory):
    a block-aligned mask gives the highest level exactly on its blocks."""
    img = np.zeros((200, 296, 3), np.uint8)
    mask = np.zeros((200, 296), np.float32)
    mask[40:120, 80:200] = 1.0
    levels = tiling.roi_levels(img, mask, kappa=1.0)
    r = levels.ratios()
    assert r.shape == (25, 37)
    inside = np.zeros(r.shape, bool)
    inside[5:15, 10:25] = True
    assert r[inside].min() > r[~inside].max()
    assert tiling.roi_levels(img, None, 1.0) is None


# --------------------------------------------------------------------------- damaged files


def _forge(body: bytes) -> bytes:
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def _offsets(blob: bytes) -> dict:
    n = blob[14]
    p = 15 + n + 12
    if blob[5] & 1:
        p += 16 + struct.unpack_from("<I", blob, p + 12)[0]
    t = struct.unpack_from("<I", blob, p + 4)[0]
    return {"tile": p, "overlap": p + 2, "count": p + 4, "lengths": p + 8, "sections": p + 8 + 4 * t}


@pytest.fixture(scope="module")
def tiled_file(tiny_model, scene):
    mask = np.zeros(scene.shape[:2], np.float32)
    mask[50:150, 100:250] = 1.0
    return codec.encode(scene, gamma=300.0, model=tiny_model, tile=128, importance=mask)


def _u16(blob, at, v):
    b = bytearray(blob[:-4])
    struct.pack_into("<H", b, at, v)
    return _forge(b)


def _u32(blob, at, v):
    b = bytearray(blob[:-4])
    struct.pack_into("<I", b, at, v)
    return _forge(b)


FORGERIES = {
    "tile not a multiple of 64": lambda b, o: _u16(b, o["tile"], 100),
    "tile 0": lambda b, o: _u16(b, o["tile"], 0),
    "overlap over half the tile": lambda b, o: _u16(b, o["overlap"], 72),
    "overlap off the block grid": lambda b, o: _u16(b, o["overlap"], 12),
    "other tile size, same count": lambda b, o: _u16(b, o["tile"], 192),
    "tile count": lambda b, o: _u32(b, o["count"], 7),
    "huge tile count": lambda b, o: _u32(b, o["count"], 0xFFFFFFFF),
    "section length": lambda b, o: _u32(b, o["lengths"], struct.unpack_from("<I", b, o["lengths"])[0] + 1),
    "section length 0": lambda b, o: _u32(b, o["lengths"], 0),
    "latent count in a section": lambda b, o: _forge(b[:o["sections"]] + b"\x00" + b[o["sections"] + 1:-4]),
    "truncated": lambda b, o: b[:len(b) // 2],
    "a flipped bit": lambda b, o: b[:40] + bytes([b[40] ^ 4]) + b[41:],
}


@pytest.mark.parametrize("how", sorted(FORGERIES))
def test_damaged_or_forged_tiled_files_are_refused_in_one_line(tiny_model, tiled_file, how):
    o = _offsets(tiled_file)
    forged = FORGERIES[how](tiled_file, o)
    with pytest.raises(FormatError) as e:
        codec.decode(forged, model=tiny_model)
    msg = str(e.value)
    assert msg and "\n" not in msg and len(msg) < 300


def test_every_truncation_of_a_tiled_file_is_refused(tiny_model, tiled_file):
    for n in range(0, len(tiled_file), 97):
        with pytest.raises(FormatError):
            codec.decode(tiled_file[:n], model=tiny_model)


def test_fuzzed_tiled_files_decode_or_raise_format_error(tiny_model):
    """6 cases of each kind of ``scripts/fuzz_decode.py --tiled`` (experiments/fuzzing.py's tiled
    seeds, in-process)."""
    from experiments import fuzzing as fuzz  # the repository root is on pytest's path (pyproject.toml)

    seeds = fuzz.tiled_seed_files(tiny_model)
    assert all(b[4] == 3 for b in seeds.values())
    outcomes = {}
    for i in range(6 * len(fuzz.TILED_KINDS)):
        kind, name, blob = fuzz.make_case(i, 11, seeds, fuzz.TILED_KINDS)
        outcome, detail = fuzz.judge(blob, tiny_model)
        assert outcome in fuzz.OK_OUTCOMES, (i, kind, name, outcome, detail)
        outcomes.setdefault(kind, []).append(outcome)
    for kind in ("truncate", "bitflip", "insert", "delete", "random"):
        assert set(outcomes[kind]) == {"format_error"}, kind
    assert outcomes["tiled_crc"].count("format_error") >= 3
