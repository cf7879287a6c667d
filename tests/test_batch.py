"""Folders in one command: every good file coded, a bad one reported and counted, outputs never
partial and never overwritten without --force, and the same bytes whatever the worker count."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from semlib import batch, codec
from semlib.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def folder(tmp_path):
    """photos/: two crops of astronaut (one in a nested folder), a 16-bit grey PNG and a corrupt PNG."""
    a = skdata.astronaut()
    top = tmp_path / "photos"
    (top / "trip" / "day1").mkdir(parents=True)
    Image.fromarray(a[:96, :128]).save(top / "a.png")
    Image.fromarray(a[100:196, 150:278]).save(top / "trip" / "day1" / "b.jpg", quality=95)
    ramp = np.linspace(0, 65535, 80 * 112).reshape(80, 112).astype(np.uint16)
    Image.fromarray(ramp).save(top / "grey16.png")
    (top / "trip" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 20)
    (top / "notes.txt").write_text("not an image, not picked")
    return top


GOOD = {"a.png": "a.semc", "trip/day1/b.jpg": "trip/day1/b.semc", "grey16.png": "grey16.semc"}


def semc_files(out):
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(Path(out).rglob("*.semc"))}



def _default_sigint():
    """In the child: SIGINT to its default. A test run started in the background by a
    non-interactive shell inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt (seen when CI was started with nohup ... &)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def test_a_folder_is_mirrored_and_a_corrupt_image_is_counted(folder, tmp_path, tiny_ckpt, capsys):
    out = tmp_path / "out"
    rc = main(["compress", str(folder), "-o", str(out), "--gamma", "200", "--checkpoint", str(tiny_ckpt),
               "--workers", "1"])
    assert rc == 2                                            # one file failed
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "broken.png" in errors[0] and "Traceback" not in captured.err
    assert any("grey16.png" in line and "16 bits" in line for line in captured.err.splitlines())
    assert set(semc_files(out)) == set(GOOD.values())
    for src, dst in GOOD.items():                             # each file decodes to its image's size
        with Image.open(folder / src) as im:
            w, h = im.size
        assert codec.decode((out / dst).read_bytes(), checkpoint=tiny_ckpt).shape == (h, w, 3)
    rows = {Path(r["input"]).name: r for r in json.loads((out / "manifest.json").read_text())["files"]}
    assert set(rows) == {"a.png", "b.jpg", "grey16.png", "broken.png"}
    assert rows["broken.png"]["status"] == "failed" and "cannot decode" in rows["broken.png"]["error"]
    a = rows["a.png"]
    assert a["status"] == "written" and a["bytes"] == (out / "a.semc").stat().st_size
    assert a["bpp"] == pytest.approx(8 * a["bytes"] / (96 * 128)) and a["gamma"] == 200 and a["roi"] == "none"
    assert rows["grey16.png"]["notes"] and a["seconds"] > 0
    table = captured.out.splitlines()
    assert table[1].split()[:2] == ["written", "3"] and table[2].split()[:2] == ["failed", "1"]
    assert table[3].split()[:3] == ["total", "4", f"{sum(r['bytes'] for r in rows.values() if r['bytes']):,}"]


def test_two_workers_write_the_bytes_one_worker_writes(folder, tmp_path, tiny_ckpt):
    one = list(codec.encode_many([folder], tmp_path / "one", gamma=300, checkpoint=tiny_ckpt, workers=1))
    two = list(codec.encode_many([folder], tmp_path / "two", gamma=300, checkpoint=tiny_ckpt, workers=2))
    assert sorted(r.status for r in one) == sorted(r.status for r in two) == ["failed", "written", "written", "written"]
    assert semc_files(tmp_path / "one") == semc_files(tmp_path / "two") and len(semc_files(tmp_path / "one")) == 3
    decoded = {Path(r.input).name: r.image for r in codec.decode_many([tmp_path / "two"], checkpoint=tiny_ckpt,
                                                                       workers=1)}
    # the workers decode on one thread each, this process on its default number: the file's entropy
    # decoding is the same, the synthesis network's sums may round apart by one 8-bit level (ROBUSTNESS.md §3)
    here = codec.decode((tmp_path / "one" / "a.semc").read_bytes(), checkpoint=tiny_ckpt)
    diff = np.abs(decoded["a.semc"].astype(int) - here.astype(int))
    assert decoded["a.semc"].shape == here.shape and diff.max() <= 1 and diff.mean() < 1e-3


def test_an_interrupted_run_resumes(folder, tmp_path, tiny_ckpt):
    out, clean = tmp_path / "out", tmp_path / "clean"
    list(codec.encode_many([folder], clean, gamma=200, checkpoint=tiny_ckpt, workers=1))
    run = codec.encode_many([folder], out, gamma=200, checkpoint=tiny_ckpt, workers=1)
    first = next(run)
    while first.status != "written":
        first = next(run)
    run.close()                                                # stopped after one file
    assert len(semc_files(out)) == 1 and not list(out.rglob("*.tmp"))
    again = {Path(r.input).name: r for r in codec.encode_many([folder], out, gamma=200, checkpoint=tiny_ckpt,
                                                               workers=1)}
    assert again[Path(first.input).name].status == "skipped"
    assert again[Path(first.input).name].bpp == pytest.approx(first.bpp)   # read back from the file
    assert sum(r.status == "written" for r in again.values()) == 2
    assert semc_files(out) == semc_files(clean)


def test_ctrl_c_stops_the_workers_and_leaves_no_partial_file(folder, tmp_path, tiny_ckpt):
    for i in range(6):                                         # more work, so that Ctrl-C comes mid-run
        Image.fromarray(skdata.astronaut()[i * 40:i * 40 + 96, :128]).save(folder / f"more{i}.png")
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "semlib.cli", "compress", str(folder), "-o", str(out), "--gamma", "200",
            "--refine", "60", "--checkpoint", str(tiny_ckpt), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=_default_sigint)
    deadline = time.time() + 240
    while not list(out.rglob("*.semc")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not list(out.rglob("*.tmp"))
    done = semc_files(out)
    assert 1 <= len(done) < 9
    for name, blob in done.items():                            # whatever is in place is a whole file
        codec.parse(blob)
    rows = json.loads((out / "manifest.json").read_text())["files"]
    assert {r["status"] for r in rows} <= {"written", "failed"}


def test_outputs_that_exist_are_skipped_unless_force(folder, tmp_path, tiny_ckpt):
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.semc").write_bytes(b"not a semc file")
    results = {Path(r.input).name: r for r in batch.encode_many([folder / "a.png", folder / "grey16.png"], out,
                                                                gamma=200, checkpoint=tiny_ckpt, workers=1)}
    assert results["a.png"].status == "failed" and "--force" in results["a.png"].error
    assert (out / "a.semc").read_bytes() == b"not a semc file"
    assert results["grey16.png"].status == "written"
    again = {Path(r.input).name: r for r in batch.encode_many([folder / "a.png", folder / "grey16.png"], out,
                                                              gamma=200, checkpoint=tiny_ckpt, workers=1, force=True)}
    assert {r.status for r in again.values()} == {"written"}
    codec.parse((out / "a.semc").read_bytes())


def test_place_never_replaces_a_file_without_force(tmp_path):
    dst = tmp_path / "x.semc"
    batch.place(b"first", dst)
    with pytest.raises(FileExistsError):
        batch.place(b"second", dst)
    assert dst.read_bytes() == b"first"
    batch.place(b"third", dst, force=True)
    assert dst.read_bytes() == b"third" and os.listdir(tmp_path) == ["x.semc"]   # no temporary file left


def test_a_file_created_while_encoding_is_not_overwritten(tmp_path, photo_png, tiny_ckpt, monkeypatch, capsys):
    semc = tmp_path / "a.semc"
    real = codec.encode_image

    def encode_while_someone_writes(*args, **kwargs):
        semc.write_bytes(b"written meanwhile")
        return real(*args, **kwargs)

    monkeypatch.setattr(codec, "encode_image", encode_while_someone_writes)
    assert main(["compress", str(photo_png), str(semc), "--gamma", "200", "--checkpoint", str(tiny_ckpt)]) == 2
    assert "exists" in capsys.readouterr().err
    assert semc.read_bytes() == b"written meanwhile"


def test_force_never_writes_over_the_input(tmp_path, photo_png, tiny_ckpt, capsys):
    before = photo_png.read_bytes()
    assert main(["compress", str(photo_png), str(photo_png), "--gamma", "200", "--force",
                 "--checkpoint", str(tiny_ckpt)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1 and photo_png.read_bytes() == before
    unnamed = tmp_path / "photo"                                 # an image whose name says nothing
    unnamed.write_bytes(before)
    assert main(["compress", str(unnamed), str(unnamed), "--gamma", "200", "--force",
                 "--checkpoint", str(tiny_ckpt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is the input" in err[0]
    assert unnamed.read_bytes() == before
    semc = tmp_path / "a.semc"
    assert main(["compress", str(photo_png), str(semc), "--gamma", "200", "--checkpoint", str(tiny_ckpt)]) == 0
    kept = semc.read_bytes()
    link = tmp_path / "same.png"
    os.link(semc, link)                                          # another name of the same file
    assert main(["decompress", str(semc), str(link), "--force", "--checkpoint", str(tiny_ckpt)]) == 2
    assert "is the input" in capsys.readouterr().err and semc.read_bytes() == kept


@pytest.mark.parametrize("fmt", ["png", "tiff", "webp-lossless"])
def test_decompress_a_folder_into_lossless_images(tmp_path, photo_png, tiny_ckpt, fmt, capsys):
    semcs = tmp_path / "semc" / "nested"
    semcs.mkdir(parents=True)
    assert main(["compress", str(photo_png), str(semcs / "p.semc"), "--gamma", "200",
                 "--checkpoint", str(tiny_ckpt)]) == 0
    (semcs / "bad.semc").write_bytes(b"SEMC garbage")
    out = tmp_path / "images"
    rc = main(["decompress", str(tmp_path / "semc"), "-o", str(out), "--format", fmt,
               "--checkpoint", str(tiny_ckpt), "--workers", "1"])
    assert rc == 2 and "bad.semc" in capsys.readouterr().err
    written = out / "nested" / ("p" + batch.FORMATS[fmt])
    expected = codec.decode((semcs / "p.semc").read_bytes(), checkpoint=tiny_ckpt)
    assert np.array_equal(np.asarray(Image.open(written).convert("RGB")), expected)


def test_batch_arguments_give_one_line(tmp_path, folder, tiny_ckpt, capsys):
    grey = (folder / "grey16.png").read_bytes()
    for argv, words in [
        (["compress", str(folder), str(tmp_path / "x.semc"), "--gamma", "100"], "folder"),
        (["compress", str(folder / "a.png"), str(folder / "grey16.png"), str(tmp_path), "--gamma", "100"], "-o OUTDIR"),
        (["compress", str(folder / "a.png"), str(folder / "grey16.png"), "--gamma", "100", "--force"], "named like an input"),
        (["compress", str(folder), "-o", str(tmp_path / "o"), "--gamma", "100", "--roi", str(folder / "a.png")], "one image"),
        (["compress", str(folder), "-o", str(tmp_path / "o"), "--gamma", "100", "--checkpoint",
          str(tmp_path / "missing.pt"), "--workers", "1", "--force"], "checkpoint"),
        (["decompress", str(folder), "-o", str(tmp_path / "o")], "no .semc files"),
        (["compress", str(folder / "a.png"), "-o", str(tmp_path / "m"), "--gamma", "100", "--checkpoint",
          str(tiny_ckpt), "--workers", "1", "--manifest", str(tmp_path)], "manifest"),
    ]:
        assert main(argv) == 2, argv
        err = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
        assert len(err) == 1 and words in err[0], (argv, err)
    assert (folder / "grey16.png").read_bytes() == grey
