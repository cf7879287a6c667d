"""The defects that about 150 hostile probes of the command line found (issue 15, items 1, 2,
4, 5, 6 and 8): each test here failed on the code before its fix."""

import dataclasses
import io
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from semlib import CheckpointError, ImageError, SemlibError, codec, data, models
from semlib.cli import main
from semlib.models import GAMMA_RANGE, random_model, save_model

ROOT = Path(__file__).resolve().parents[1]


def _err_lines(capsys) -> list[str]:
    return capsys.readouterr().err.strip().splitlines()


def _one_error_line(capsys, command="compress") -> str:
    err = _err_lines(capsys)
    assert len(err) == 1, err
    assert err[0].startswith(f"semlib {command}: error:"), err
    return err[0]


class _Reached(Exception):
    """Raised by a patched step to prove that the checks before it passed."""


def _no_model(*_a, **_k):
    raise AssertionError("the model was loaded before the input was checked")


# --------------------------------------------------------------------------- 1. sides >= 65536



def _default_sigint():
    """In the child: SIGINT to its default. A test run started in the background by a
    non-interactive shell inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt (seen when CI was started with nohup ... &)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def test_a_side_of_65536_or_more_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(codec, "get_model", _no_model)
    for shape in ((2, 70000, 3), (65536, 1, 3)):
        with pytest.raises(SemlibError, match=r"at most 65535 pixels"):
            codec.encode_image(np.zeros(shape, np.uint8), gamma=100.0)


def test_a_side_of_65535_passes_the_size_check(monkeypatch):
    def reached(*_a, **_k):
        raise _Reached

    monkeypatch.setattr(codec, "get_model", reached)
    with pytest.raises(_Reached):
        codec.encode_image(np.zeros((1, 65535, 3), np.uint8), gamma=100.0)


def test_cli_refuses_a_2_x_70000_image_in_one_line(tmp_path, tiny_ckpt, capsys):
    src = tmp_path / "strip.png"
    Image.fromarray(np.zeros((2, 70000, 3), np.uint8)).save(src)
    out = tmp_path / "strip.semc"
    assert main(["compress", str(src), str(out), "--gamma", "100", "--checkpoint", str(tiny_ckpt)]) == 2
    line = _one_error_line(capsys)
    assert "2 x 70000 (height x width)" in line and "65535" in line
    assert not out.exists()


# --------------------------------------------------------------------------- 2. forged configurations


def _forged(tmp_path, **changes) -> Path:
    config = dataclasses.asdict(models.CONFIGS["tiny"])
    for k, v in changes.items():
        if v is _DROP:
            del config[k]
        else:
            config[k] = v
    path = tmp_path / "forged.pt"
    torch.save({"format": "semlib-model", "version": 1, "config": config, "model": {}, "meta": {}}, path)
    return path


_DROP = object()


@pytest.mark.parametrize("changes, words", [
    (dict(enc_widths=[4096] * 5, dec_widths=[4096] * 5), "enc_widths[0]' is 4096"),
    (dict(enc_blocks=[3000, 1, 1, 1, 1]), "enc_blocks[0]' is 3000"),
    (dict(dec_blocks=[0, 0, 0, 0, 3000]), "dec_blocks[4]' is 3000"),
    (dict(latents=[1, 1, 500, 1]), "latents[2]' is 500"),
    (dict(latents=[0, 1, 1, 1]), "latents[0]' is 0"),
    (dict(z_dims=[8, -1, 16, 4]), "z_dims[1]' is -1"),
    (dict(z_dims=[8, 8, 100000, 4]), "z_dims[2]' is 100000"),
    (dict(kernels=[5, 5, 3, 3, 4]), "odd"),
    (dict(kernels=[5, 5, 3, 3, 301]), "kernels[4]' is 301"),
    (dict(emb_dim=1 << 20), "emb_dim' is 1048576"),
    (dict(emb_dim="64"), "emb_dim' must be a whole number"),
    (dict(enc_widths=[24.5, 32, 48, 48, 48]), "enc_widths[0]' must be a whole number"),
    (dict(enc_widths=[True, 32, 48, 48, 48]), "enc_widths[0]' must be a whole number"),
    (dict(enc_widths=[24, 32]), "list of 5"),
    (dict(mlp_ratio=float("nan")), "mlp_ratio' must be a number"),
    (dict(mlp_ratio=1e6), "mlp_ratio' is"),
    (dict(gain_residual=-1.0), "gain_residual' is"),
    (dict(name="ü" * 3), "'name' must be 1 to 64 printable ASCII"),
    (dict(name="x" * 300), "'name' must be 1 to 64 printable ASCII"),
    (dict(name=""), "'name' must be 1 to 64 printable ASCII"),
    (dict(name=7), "'name' must be a string"),
    (dict(colour="red"), "unknown configuration field 'colour'"),
    (dict(z_dims=_DROP), "lacks the field 'z_dims'"),
    # every size inside its bounds, the whole far above 'paper' (96 M parameters)
    (dict(enc_widths=[2048] * 5, dec_widths=[2048] * 5, enc_blocks=[8] * 5), "M parameters, more than the limit"),
])
def test_a_forged_configuration_is_refused_before_anything_is_built(tmp_path, monkeypatch, changes, words):
    def built(*_a, **_k):
        raise AssertionError("a model was built from an unchecked configuration")

    monkeypatch.setattr(models.HierarchicalVAE, "__init__", built)
    path = _forged(tmp_path, **changes)
    t0 = time.perf_counter()
    with pytest.raises(CheckpointError) as e:
        models.load_model(path)
    assert time.perf_counter() - t0 < 10
    msg = str(e.value)
    assert words in msg and "\n" not in msg and len(msg) < 300, msg


def test_the_parameter_estimate_is_exact_and_the_limit_is_far_above_paper():
    for name in ("tiny", "small"):
        config = models.CONFIGS[name]
        assert models.estimate_parameters(config) == models.count_parameters(models.build_model(config))
        assert models.config_from_dict(dataclasses.asdict(config)) == config
    paper = models.CONFIGS["paper"]
    assert models.config_from_dict(dataclasses.asdict(paper)) == paper
    assert 3 * models.estimate_parameters(paper) < models.MAX_PARAMETERS


def test_cli_refuses_a_4096_wide_configuration_in_one_line(tmp_path, photo_png, capsys):
    path = _forged(tmp_path, enc_widths=[4096] * 5, dec_widths=[4096] * 5)
    rc = main(["compress", str(photo_png), str(tmp_path / "x.semc"), "--gamma", "100", "--checkpoint", str(path)])
    assert rc == 2
    assert "enc_widths" in _one_error_line(capsys)


# --------------------------------------------------------------------------- 4. one line, not a traceback


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_a_float_tiff_mask_with_negative_or_nan_pixels_is_an_image_error(tmp_path, photo, tiny_model, tiny_ckpt,
                                                                         photo_png, capsys, bad):
    m = np.ones(photo.shape[:2], np.float32)
    m[3, 4] = bad
    path = tmp_path / "mask.tif"
    Image.fromarray(m).save(path)
    assert Image.open(path).mode == "F"
    with pytest.raises(ImageError, match="negative|NaN"):
        codec.encode_image(photo, gamma=200.0, importance=str(path), model=tiny_model)
    rc = main(["compress", str(photo_png), str(tmp_path / "x.semc"), "--gamma", "200", "--roi", str(path),
               "--checkpoint", str(tiny_ckpt)])
    assert rc == 2
    assert "mask" in _one_error_line(capsys)


@pytest.mark.parametrize("name", ["ü", "n" * 300])
def test_a_model_whose_name_cannot_go_into_a_file_is_refused_in_one_line(tmp_path, tiny_model, photo, name):
    model = random_model("tiny")
    model.config = dataclasses.replace(model.config, name=name)
    with pytest.raises(CheckpointError, match="printable ASCII"):
        codec.encode_image(photo, gamma=200.0, model=model)
    with pytest.raises(CheckpointError, match="printable ASCII"):
        save_model(model, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()


def test_ctrl_c_while_torch_is_imported_is_one_line_and_exit_130(tmp_path, photo_png):
    """The console script runs ``from semlib.cli import main; sys.exit(main())``. Importing
    semlib.cli must not import torch, and main() must catch Ctrl-C while it does. The child
    says "ready" from inside main() (its first call, build_parser), so that the signal cannot
    land in the test's own lines between the import and main()."""
    child = ("import sys, semlib.cli\n"
             "state = 'torch' if 'torch' in sys.modules else 'ready'\n"
             "build = semlib.cli.build_parser\n"
             "def announced(argv):\n"
             "    sys.stderr.write(state + '\\n'); sys.stderr.flush()\n"
             "    return build(argv)\n"
             "semlib.cli.build_parser = announced\n"
             "sys.exit(semlib.cli.main(sys.argv[1:]))\n")
    argv = [sys.executable, "-c", child, "compress", str(photo_png), str(tmp_path / "x.semc"), "--gamma", "200"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    for delay in (0.0, 0.05, 0.3):
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                             preexec_fn=_default_sigint)
        first = p.stderr.readline().decode().strip()
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        lines = err.decode().strip().splitlines()
        assert first == "ready", (first, lines)
        assert p.returncode == 130, (delay, p.returncode, lines[-5:])
        assert lines == ["semlib: interrupted"] or lines == ["semlib compress: interrupted"], lines
    assert not (tmp_path / "x.semc").exists()


# --------------------------------------------------------------------------- 5. EXIF orientation


def _sideways_jpeg(path: Path) -> np.ndarray:
    """An upright 48 x 80 image (red band at the top), stored as a phone does with orientation
    6: turned a quarter counter-clockwise, 80 x 48, the viewer turns it back clockwise."""
    up = np.full((48, 80, 3), 40, np.uint8)
    up[:12, :, 0] = 250
    im = Image.fromarray(np.ascontiguousarray(np.rot90(up, 1)))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(path, exif=exif, quality=95)
    return up


def test_exif_orientation_6_is_read_upright(tmp_path):
    path = tmp_path / "phone.jpg"
    up = _sideways_jpeg(path)
    assert Image.open(path).size == (48, 80)                  # stored sideways
    img = data.load_image(path)
    assert img.shape == up.shape
    assert img[:12, :, 0].mean() > 200 and img[20:, :, 0].mean() < 80


def test_compress_and_importance_of_a_phone_photo_come_back_upright(tmp_path, tiny_ckpt, capsys):
    path = tmp_path / "phone.jpg"
    up = _sideways_jpeg(path)
    semc, back, imp = tmp_path / "p.semc", tmp_path / "p.png", tmp_path / "imp.png"
    assert main(["compress", str(path), str(semc), "--gamma", "2000", "--checkpoint", str(tiny_ckpt)]) == 0
    assert main(["decompress", str(semc), str(back), "--checkpoint", str(tiny_ckpt)]) == 0
    assert np.asarray(Image.open(back)).shape == up.shape
    assert main(["importance", str(path), "-o", str(imp)]) == 0
    assert np.asarray(Image.open(imp)).shape == up.shape[:2]
    assert "48 x 80" in capsys.readouterr().out


def test_a_mask_with_an_exif_orientation_is_read_upright(tmp_path, tiny_model):
    from semlib import importance

    up = np.zeros((48, 80), np.uint8)
    up[:12] = 255
    im = Image.fromarray(np.ascontiguousarray(np.rot90(up, 1)))
    exif = im.getexif()
    exif[0x0112] = 6
    im.save(tmp_path / "mask.jpg", exif=exif, quality=95)
    g = importance.mask_map(str(tmp_path / "mask.jpg"), (48, 80))
    assert g[:10].mean() > 0.9 and g[16:].mean() < 0.1


# --------------------------------------------------------------------------- 6. gamma outside the trained range


@pytest.mark.parametrize("gamma", [0.001, 31.0, 2100.0, 1e9])
def test_a_gamma_outside_the_trained_range_is_refused(photo, tiny_model, gamma):
    with pytest.raises(SemlibError, match=r"outside the range the model was trained on, 32 \.\. 2048"):
        codec.encode_image(photo, gamma=gamma, model=tiny_model)


def test_the_ends_of_the_trained_range_are_accepted_and_roi_block_gammas_are_clipped(photo, tiny_model):
    for g in GAMMA_RANGE:
        assert codec.encode_image(photo, gamma=g, model=tiny_model, reconstruct=False).gamma == g
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[:40, :40] = 1.0
    enc = codec.encode_image(photo, gamma=2048.0, importance=mask + 0.05, kappa=1.0, model=tiny_model,
                             reconstruct=False)
    assert enc.gamma_map.max() <= 2048.0 and enc.gamma_map.min() >= 32.0


def test_the_range_is_the_checkpoints_own(photo):
    model = random_model("tiny")
    model.meta = {"gamma_lo": 8.0, "gamma_hi": 8192.0}
    assert codec.encode_image(photo, gamma=10.0, model=model, reconstruct=False).gamma == 10.0
    with pytest.raises(SemlibError, match=r"8 \.\. 8192"):
        codec.encode_image(photo, gamma=5.0, model=model)
    with pytest.raises(SemlibError, match=r"8 \.\. 8192"):
        codec.encode_image(photo, target_bpp=1.0, gamma_range=(1.0, 100.0), model=model)


@pytest.mark.parametrize("gamma", ["0.001", "1e9"])
def test_cli_names_the_trained_range(tmp_path, photo_png, tiny_ckpt, capsys, gamma):
    out = tmp_path / "x.semc"
    assert main(["compress", str(photo_png), str(out), "--gamma", gamma, "--checkpoint", str(tiny_ckpt)]) == 2
    assert "32 .. 2048" in _one_error_line(capsys)
    assert not out.exists()


# --------------------------------------------------------------------------- 8. smaller ones


@pytest.mark.parametrize("argv", [
    ["compress", "a.png"],
    ["compress", "a.png", "b.semc", "--gamma", "abc"],
    ["compress", "a.png", "b.semc", "--gamma", "100", "--no-such-option"],
    ["decompress"],
    ["info"],
    ["data"],
    ["nonsense"],
    [],
])
def test_argparse_errors_are_one_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = _err_lines(capsys)
    assert len(err) == 1 and ": error: " in err[0] and "--help" in err[0], err


def test_a_checkpoint_with_pickled_code_is_one_line_and_never_runs(tmp_path, photo_png, capsys):
    flag = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {flag}",))

    for protocol in (2, 4):
        path = tmp_path / f"evil{protocol}.pt"
        path.write_bytes(pickle.dumps({"format": "semlib-model", "x": Evil()}, protocol=protocol))
        rc = main(["compress", str(photo_png), str(tmp_path / "x.semc"), "--gamma", "100", "--checkpoint", str(path)])
        assert rc == 2
        assert "refused unrun" in _one_error_line(capsys)
    assert not flag.exists()


def test_weights_that_do_not_fit_are_one_line(tmp_path, photo_png, tiny_model, capsys):
    state = {k: v.clone() for k, v in tiny_model.state_dict().items() if not k.startswith("entropy.")}
    state["dec_bias"] = torch.zeros(3)
    path = tmp_path / "mismatch.pt"
    torch.save({"format": "semlib-model", "version": 1, "config": dataclasses.asdict(tiny_model.config),
                "model": state, "meta": {}}, path)
    rc = main(["compress", str(photo_png), str(tmp_path / "x.semc"), "--gamma", "100", "--checkpoint", str(path)])
    assert rc == 2
    assert "do not fit" in _one_error_line(capsys)
    torch.save({"format": "semlib-model", "version": 1, "config": dataclasses.asdict(tiny_model.config),
                "model": {"x": 1}, "meta": {}}, path)
    rc = main(["compress", str(photo_png), str(tmp_path / "x.semc"), "--gamma", "100", "--checkpoint", str(path)])
    assert rc == 2
    assert "no table of weights" in _one_error_line(capsys)


def _notes(capsys) -> list[str]:
    return [line for line in _err_lines(capsys) if ": note: " in line]


def test_the_frames_after_the_first_of_a_gif_are_dropped_with_a_note(tmp_path, tiny_ckpt, capsys):
    frames = [Image.fromarray(np.full((16, 24, 3), 60 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert main(["compress", str(tmp_path / "a.gif"), str(tmp_path / "a.semc"), "--gamma", "200",
                 "--checkpoint", str(tiny_ckpt)]) == 0
    notes = _notes(capsys)
    assert len(notes) == 1 and "only the first of its 3 frames" in notes[0], notes


def test_16_bit_rgb_is_reduced_with_a_note(tmp_path, tiny_ckpt, capsys):
    import imagecodecs

    src = np.random.default_rng(0).integers(0, 65536, size=(16, 24, 3), dtype=np.uint16)
    (tmp_path / "rgb48.png").write_bytes(imagecodecs.png_encode(src))
    assert main(["compress", str(tmp_path / "rgb48.png"), str(tmp_path / "a.semc"), "--gamma", "200",
                 "--checkpoint", str(tiny_ckpt)]) == 0
    notes = _notes(capsys)
    assert len(notes) == 1 and "from 16 to 8 bits per sample" in notes[0], notes
    assert np.array_equal(data.load_image(tmp_path / "rgb48.png"), (src >> 8).astype(np.uint8))


def test_an_8_bit_single_frame_image_gets_no_note(tmp_path, photo_png, tiny_ckpt, capsys):
    assert main(["compress", str(photo_png), str(tmp_path / "a.semc"), "--gamma", "200",
                 "--checkpoint", str(tiny_ckpt)]) == 0
    assert _notes(capsys) == []


@pytest.mark.parametrize("kappa", [-1.0, float("nan"), float("inf")])
def test_a_negative_kappa_is_refused_with_or_without_roi(photo, tiny_model, kappa):
    for importance in (None, np.ones(photo.shape[:2], np.float32)):
        with pytest.raises(SemlibError, match="kappa"):
            codec.encode_image(photo, gamma=200.0, importance=importance, kappa=kappa, model=tiny_model)


def test_cli_refuses_kappa_minus_1_without_roi(tmp_path, photo_png, tiny_ckpt, capsys):
    out = tmp_path / "x.semc"
    assert main(["compress", str(photo_png), str(out), "--gamma", "200", "--kappa", "-1",
                 "--checkpoint", str(tiny_ckpt)]) == 2
    assert "kappa" in _one_error_line(capsys)
    assert not out.exists()


def test_sizes_are_written_height_x_width(tmp_path, photo_png, tiny_ckpt, capsys):
    """photo is 96 high and 128 wide: every message says 96 x 128, none 128x96."""
    semc, back = tmp_path / "p.semc", tmp_path / "p.png"
    assert main(["compress", str(photo_png), str(semc), "--gamma", "200", "--checkpoint", str(tiny_ckpt)]) == 0
    assert main(["decompress", str(semc), str(back), "--checkpoint", str(tiny_ckpt)]) == 0
    assert main(["info", str(semc)]) == 0
    out = capsys.readouterr().out
    assert "96 x 128" in out and "128x96" not in out and "128 x 96" not in out
    assert "image      96 x 128 (height x width)" in out
    other = tmp_path / "other.png"
    Image.fromarray(np.zeros((96, 100, 3), np.uint8)).save(other)
    assert main(["metrics", str(photo_png), str(other)]) == 2
    assert "96 x 128 vs 96 x 100 (height x width)" in _one_error_line(capsys, "metrics")


def test_a_folder_with_a_negative_kappa_is_refused_once_before_any_worker(tmp_path, photo_png, tiny_ckpt, capsys):
    out = tmp_path / "out"
    rc = main(["compress", str(photo_png.parent), "-o", str(out), "--gamma", "200", "--kappa", "-1",
               "--checkpoint", str(tiny_ckpt)])
    assert rc == 2
    assert "kappa" in _one_error_line(capsys)
    assert not out.exists()
