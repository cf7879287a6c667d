"""Downloads (docs/METHOD.md §8): pinned sums, atomic writes, clear errors. Never the network:
every test talks to a throwaway HTTP server on 127.0.0.1 or to a closed port."""

import functools
import hashlib
import http.server
import re
import socket
import threading

import numpy as np
import pytest

from semlib import data
from semlib.data import DownloadError, download, download_file


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/www`` over HTTP on a free local port; yields (folder, base URL)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more
    return f"http://127.0.0.1:{port}/file.bin"


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".part")]


def test_good_file_is_fetched_and_verified(server, tmp_path):
    www, base = server
    payload = np.random.default_rng(0).bytes(200_000)
    (www / "a.bin").write_bytes(payload)
    out = tmp_path / "out"
    path = download_file(f"{base}/a.bin", out / "a.bin", _sha(payload), progress=False)
    assert path.read_bytes() == payload
    assert _leftovers(out) == []


def test_present_valid_file_is_skipped_without_network(tmp_path):
    payload = b"already here"
    dest = tmp_path / "x.bin"
    dest.write_bytes(payload)
    # the URL is unreachable: success proves no request was made
    assert download_file(_closed_port_url(), dest, _sha(payload), progress=False) == dest
    assert dest.read_bytes() == payload


def test_corrupt_file_is_deleted_and_the_error_names_both_sums(server, tmp_path):
    www, base = server
    (www / "b.bin").write_bytes(b"tampered bytes")
    expected = _sha(b"the real bytes")
    out = tmp_path / "out"
    with pytest.raises(DownloadError) as err:
        download_file(f"{base}/b.bin", out / "b.bin", expected, progress=False)
    msg = str(err.value)
    assert "b.bin" in msg and expected in msg and _sha(b"tampered bytes") in msg
    assert not (out / "b.bin").exists()
    assert _leftovers(out) == []


def test_missing_file_reports_http_404(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match=r"HTTP 404"):
        download_file(f"{base}/nope.png", tmp_path / "nope.png", None, progress=False)
    assert not (tmp_path / "nope.png").exists()


def test_unreachable_server_says_offline(tmp_path):
    url = _closed_port_url()
    with pytest.raises(DownloadError) as err:
        download_file(url, tmp_path / "file.bin", "0" * 64, progress=False, timeout=5)
    msg = str(err.value)
    assert msg.startswith(f"cannot reach {url}") and "offline" in msg
    assert list(tmp_path.iterdir()) == []


def test_second_url_is_tried_when_the_first_fails(server, tmp_path):
    www, base = server
    (www / "c.bin").write_bytes(b"mirror copy")
    path = download_file(
        (f"{base}/missing/c.bin", f"{base}/c.bin"), tmp_path / "c.bin", _sha(b"mirror copy"), progress=False
    )
    assert path.read_bytes() == b"mirror copy"


def test_present_but_corrupt_file_is_replaced(server, tmp_path):
    www, base = server
    (www / "d.bin").write_bytes(b"good")
    dest = tmp_path / "d.bin"
    dest.write_bytes(b"bad")
    with pytest.warns(UserWarning, match="does not match"):
        download_file(f"{base}/d.bin", dest, _sha(b"good"), progress=False)
    assert dest.read_bytes() == b"good"


@pytest.fixture
def fake_set(server, tmp_path, monkeypatch):
    """A two-file set "tinyset" of SETS, pinned in a sums table of its own, served by ``server``
    laid out like data/ and reached through SEMLIB_DATA_MIRROR. Yields (files, data root)."""
    www, base = server
    files = {"one.png": b"\x89PNG fake 1", "sub/two.png": b"\x89PNG fake 2" * 1000}
    (www / "tinyset" / "sub").mkdir(parents=True)
    for name, b in files.items():
        (www / "tinyset" / name).write_bytes(b)
    sums = tmp_path / "sums"
    sums.mkdir()
    (sums / "tinyset.txt").write_text("".join(f"{_sha(b)}  {len(b)}  {n}\n" for n, b in files.items()))
    monkeypatch.setattr(data, "SUMS_DIR", sums)
    monkeypatch.setitem(data.SETS, "tinyset", data.DataSet("tinyset", "two files", "none", (("", ("http://127.0.0.1:9/",)),)))
    monkeypatch.setenv(data.MIRROR_VAR, base)
    monkeypatch.setenv("SEMLIB_DATA", str(tmp_path / "root"))
    return files, tmp_path / "root"


def test_a_set_is_fetched_on_first_use_then_found(fake_set, capsys):
    files, root = fake_set
    with pytest.raises(FileNotFoundError, match="semlib data download tinyset"):
        data.find_dataset("tinyset", download=False)
    folder = data.find_dataset("tinyset")
    assert "downloading 2 files" in capsys.readouterr().out
    assert folder == root / "tinyset"
    assert {n: (folder / n).read_bytes() for n in files} == files
    assert data.verify("tinyset")["ok"] == sorted(files)
    assert data.find_dataset("tinyset") == folder and capsys.readouterr().out == ""   # found, not fetched


def test_one_folder_of_a_set_is_fetched_alone(fake_set):
    files, root = fake_set
    assert data.find_dataset("tinyset/sub") == root / "tinyset" / "sub"
    assert not (root / "tinyset" / "one.png").exists()


def test_an_interrupted_download_is_completed(fake_set):
    files, root = fake_set
    (root / "tinyset").mkdir(parents=True)
    (root / "tinyset" / "one.png").write_bytes(files["one.png"])
    assert data.find_dataset("tinyset") == root / "tinyset"
    assert (root / "tinyset" / "sub" / "two.png").read_bytes() == files["sub/two.png"]


def test_a_corrupt_mirror_leaves_nothing_in_place(fake_set, server):
    files, root = fake_set
    www, _ = server
    (www / "tinyset" / "sub" / "two.png").write_bytes(b"x" * len(files["sub/two.png"]))
    with pytest.raises(DownloadError, match="checksum mismatch for two.png"):
        download("tinyset", progress=False)
    assert not (root / "tinyset" / "sub" / "two.png").exists() and _leftovers(root / "tinyset" / "sub") == []


def test_a_short_file_is_refused(fake_set, server):
    files, root = fake_set
    www, _ = server
    (www / "tinyset" / "one.png").write_bytes(files["one.png"][:5])
    with pytest.raises(DownloadError, match=r"broke off: 5 of 11 bytes"):
        download("tinyset", progress=False)
    assert list((root / "tinyset").iterdir()) == []


def test_offline_is_one_line(fake_set, monkeypatch):
    monkeypatch.setenv(data.MIRROR_VAR, _closed_port_url().rsplit("/", 1)[0])
    with pytest.raises(DownloadError) as err:
        data.find_dataset("tinyset")
    assert "offline?" in str(err.value) and "\n" not in str(err.value)
    assert err.value._render_traceback_() == [f"DownloadError: {err.value}"]   # what Jupyter prints


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match=r"unknown data set 'nosuch'.*kodak"):
        download("nosuch", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="'nosuch' not found"):
        data.find_dataset("nosuch")


@pytest.mark.parametrize("name", list(data.SETS))
def test_every_file_of_every_set_is_pinned_and_has_a_source(name, monkeypatch):
    monkeypatch.delenv(data.MIRROR_VAR, raising=False)
    files = data.SETS[name].files()
    assert files and len({f.name for f in files}) == len(files)
    for f in files:
        assert re.fullmatch(r"[0-9a-f]{64}", f.sha256) and f.size > 0
        assert f.urls and all(u.startswith("https://") for u in f.urls)
        assert all(re.search(r"/[0-9a-f]{40}/", u) for u in f.urls if "githubusercontent" in u)   # pinned commits


def test_the_sets_hold_what_their_descriptions_say():
    count = {name: len(s.files()) for name, s in data.SETS.items()}
    assert count == {"kodak": 24, "tecnick": 1, "clic_sample": 5, "train": 1143}
    assert [f.name for f in data.SETS["kodak"].files()] == [f"kodim{i:02d}.png" for i in range(1, 25)]
    assert len(data.SETS["train"].files("bsds500/train")) == 200
    renamed = [f for f in data.SETS["train"].files() if "carpenter" in f.name]
    assert renamed[0].urls[0].endswith("n02966687_carpenter%27s_kit.JPEG")   # the source's own name


def test_the_mirror_replaces_every_source(monkeypatch):
    monkeypatch.setenv(data.MIRROR_VAR, "http://127.0.0.1:1234/copy/")
    f = data.SETS["train"].files("bsds500/val")[0]
    assert f.urls == (f"http://127.0.0.1:1234/copy/train/{f.name}",)
