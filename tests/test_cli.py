"""The command line: real files in and out, and one clear line on stderr for bad input."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from semlib import codec, data
from semlib.cli import main


def test_compress_info_decompress(tmp_path, photo_png, tiny_ckpt, capsys):
    semc, out = tmp_path / "a.semc", tmp_path / "a.png"
    assert main(["compress", str(photo_png), str(semc), "--gamma", "200", "--checkpoint", str(tiny_ckpt)]) == 0
    assert "bpp" in capsys.readouterr().out
    assert main(["info", str(semc), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bytes"] == semc.stat().st_size and info["width"] == 128 and info["height"] == 96
    assert main(["decompress", str(semc), str(out), "--checkpoint", str(tiny_ckpt)]) == 0
    decoded = np.asarray(Image.open(out))
    assert np.array_equal(decoded, codec.decode(semc.read_bytes(), checkpoint=tiny_ckpt))


def test_compress_with_a_mask_roi(tmp_path, photo_png, tiny_ckpt, capsys):
    mask = np.zeros((96, 128), np.uint8)
    mask[20:60, 30:90] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    semc = tmp_path / "roi.semc"
    assert main(["compress", str(photo_png), str(semc), "--gamma", "200", "--roi", str(tmp_path / "mask.png"),
                 "--checkpoint", str(tiny_ckpt)]) == 0
    assert "ROI" in capsys.readouterr().out
    assert codec.info(semc.read_bytes())["roi"]


def test_existing_output_is_not_overwritten(tmp_path, photo_png, tiny_ckpt, capsys):
    semc = tmp_path / "a.semc"
    semc.write_bytes(b"keep me")
    assert main(["compress", str(photo_png), str(semc), "--gamma", "200", "--checkpoint", str(tiny_ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "exists" in err[0]
    assert semc.read_bytes() == b"keep me"
    assert main(["compress", str(photo_png), str(semc), "--gamma", "200", "--checkpoint", str(tiny_ckpt), "--force"]) == 0


@pytest.mark.parametrize("argv, words", [
    (["info", "missing.semc"], "no such file"),
    (["decompress", "{bad}", "{tmp}/out.png"], "magic"),
    (["compress", "{bad}", "{tmp}/x.semc", "--gamma", "100"], "not an image"),
    (["compress", "{img}", "{tmp}/x.semc", "--gamma", "-1", "--checkpoint", "{ckpt}"], "gamma"),
    (["compress", "{img}", "{tmp}/nodir/x.semc", "--gamma", "100"], "does not exist"),
    (["compress", "{img}", "{tmp}/x.semc", "--gamma", "100", "--checkpoint", "{bad}"], "checkpoint"),
    (["compress", "{img}", "{tmp}/x.semc", "--gamma", "100", "--roi", "nothing.png"], "mask"),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, photo_png, tiny_ckpt, capsys, argv, words):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"garbage, not a file of any known kind")
    argv = [a.format(bad=bad, tmp=tmp_path, img=photo_png, ckpt=tiny_ckpt) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert words in err[0]


def test_the_installed_script_has_help_and_fails_cleanly():
    ok = subprocess.run([sys.executable, "-m", "semlib.cli", "compress", "--help"], capture_output=True, text=True)
    assert ok.returncode == 0 and "--bpp" in ok.stdout and "--roi" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "semlib.cli", "info", "nowhere.semc"], capture_output=True, text=True)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_importance_and_metrics_commands(tmp_path, photo_png, photo, capsys):
    map_png = tmp_path / "map.png"
    assert main(["importance", str(photo_png), "-o", str(map_png)]) == 0
    g = np.asarray(Image.open(map_png))
    assert g.shape == photo.shape[:2] and g.dtype == np.uint8 and g.max() == 255
    capsys.readouterr()
    noisy = np.clip(photo.astype(int) + np.random.default_rng(0).integers(-8, 9, photo.shape), 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    assert main(["metrics", str(photo_png), str(tmp_path / "noisy.png"), "--json"]) == 0
    uniform = json.loads(capsys.readouterr().out)
    assert set(uniform) == {"psnr", "ms_ssim", "ssim", "si_ssim"}
    assert 30 < uniform["psnr"] < 40
    assert uniform["si_ssim"] == pytest.approx(uniform["ssim"], abs=1e-3)   # uniform map: SI-SSIM = mean SSIM
    assert uniform["ms_ssim"] is None                                         # 96 px is too small for 5 scales
    assert main(["metrics", str(photo_png), str(tmp_path / "noisy.png"), "--json", "--importance", str(map_png)]) == 0
    weighted = json.loads(capsys.readouterr().out)
    assert weighted["si_ssim"] != pytest.approx(uniform["si_ssim"], abs=1e-6)
    Image.fromarray(photo[:50]).save(tmp_path / "small.png")
    assert main(["metrics", str(photo_png), str(tmp_path / "small.png")]) == 2
    assert "differ in size" in capsys.readouterr().err


def test_data_list_names_every_set_with_its_size(capsys, monkeypatch, tmp_path):
    from semlib import data

    monkeypatch.setenv("SEMLIB_DATA", str(tmp_path))
    (tmp_path / "kodak").mkdir()
    first = data.SETS["kodak"].files()[0]
    (tmp_path / "kodak" / first.name).write_bytes(b"not the real file")
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name, s in data.SETS.items():
        assert any(line.split()[:2] == [name, str(len(s.files()))] for line in out.splitlines()), name
    assert f"{tmp_path / 'kodak'} (1 files)" in out         # found here, but partial
    assert f"downloads go to {tmp_path}" in out


def test_data_verify_reports_missing_and_differing_files(tmp_path, capsys):
    (tmp_path / "kodak").mkdir()
    (tmp_path / "kodak" / "kodim01.png").write_bytes(b"tampered")
    assert main(["data", "verify", "kodak", "--in", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "0 files match their pinned sha256, 23 missing, 1 differ" in out and "mismatched: kodim01.png" in out
    assert main(["data", "verify", "kodak", "--in", str(tmp_path / "nowhere")]) == 2
    assert main(["data", "download", "nosuch"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such folder" in err[0] and "unknown data set 'nosuch'" in err[1]


_WITHOUT_TORCH = """
import sys
from semlib.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:          # argparse's --help
    code = e.code
print("exit", code)
print("torch" in sys.modules, "compressai" in sys.modules)
"""


@pytest.mark.parametrize("args", [["info", "FILE"], ["info", "FILE", "--json"], ["--help"], ["info", "--help"]])
def test_info_and_help_start_without_torch(args):
    """`semlib info` reads the file format alone (semlib.semc) and `semlib --help` lists the
    commands without reading the options of train, eval and bench: neither imports torch."""
    semc_file = str(Path(__file__).resolve().parent / "data" / "v2_tiny_roi.semc")
    argv = [semc_file if a == "FILE" else a for a in args]
    _assert_without_torch(argv, "usage: semlib" if "--help" in args else "96")


def test_info_on_a_tiled_file_starts_without_torch(tmp_path, tiny_model):
    """A tiled (version-3) file's structure is read by semlib.tiling's torch-free parser."""
    scene = data.sample_image("astronaut")[:200, :300].copy()
    path = tmp_path / "tiled.semc"
    path.write_bytes(codec.encode_image(scene, gamma=64.0, model=tiny_model, tile=128, tile_overlap=16).data)
    _assert_without_torch(["info", str(path)], "300")
    _assert_without_torch(["info", str(path), "--json"], '"tiles"')


def _assert_without_torch(argv, expect: str):
    p = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, *argv], capture_output=True, text=True, timeout=120)
    lines = p.stdout.strip().splitlines()
    assert lines[-2] == "exit 0", p.stdout + p.stderr[-2000:]
    assert lines[-1] == "False False", p.stdout
    assert expect in p.stdout, p.stdout
