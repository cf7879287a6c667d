"""Downloads (DESIGN.md §8): pinned sums, atomic writes, clear errors. Never the network:
every test talks to a throwaway HTTP server on 127.0.0.1 or to a closed port."""

import functools
import hashlib
import http.server
import re
import socket
import threading
import zipfile

import numpy as np
import pytest

from semlib import data
from semlib.data import DATASETS, DownloadError, RemoteDataset, RemoteFile, download, download_file, get_dataset


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


def test_download_dataset_of_files_and_get_dataset(server, tmp_path, monkeypatch):
    www, base = server
    files = {"one.png": b"\x89PNG fake 1", "two.png": b"\x89PNG fake 2"}
    for n, b in files.items():
        (www / n).write_bytes(b)
    spec = RemoteDataset(
        name="tinyset",
        description="two files",
        citation="test",
        files=tuple(RemoteFile(n, (f"{base}/{n}",), _sha(b)) for n, b in files.items()),
    )
    monkeypatch.setitem(DATASETS, "tinyset", spec)
    monkeypatch.setenv("SEMLIB_DATA", str(tmp_path / "root"))
    with pytest.raises(FileNotFoundError, match=r"download=True"):
        get_dataset("tinyset")
    folder = get_dataset("tinyset", download=True)
    assert folder == tmp_path / "root" / "tinyset"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    assert get_dataset("tinyset") == folder  # now found without downloading


def test_archive_dataset_extracts_only_the_chosen_images(server, tmp_path):
    www, base = server
    with zipfile.ZipFile(www / "set.zip", "w") as z:
        z.writestr("TESTIMAGES/RGB/RGB_OR_1200x1200/img_001.png", b"one")
        z.writestr("TESTIMAGES/RGB/RGB_OR_1200x1200/img_002.png", b"two")
        z.writestr("TESTIMAGES/RGB/RGB_OR_600x600/img_001.png", b"small")
        z.writestr("TESTIMAGES/README.txt", b"text")
    spec = RemoteDataset(
        name="arch",
        description="zip",
        citation="test",
        archive=RemoteFile("set.zip", (f"{base}/set.zip",), None),
        member_filter="RGB_OR_1200x1200/",
        expected_images=2,
    )
    with pytest.warns(UserWarning, match=r"not pinned.*sha256 [0-9a-f]{64}"):
        folder = download(spec, root=tmp_path, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == ["img_001.png", "img_002.png"]
    assert (folder / "img_001.png").read_bytes() == b"one"
    # a second call finds the images and does not fetch again (the server is not asked)
    (www / "set.zip").unlink()
    assert download(spec, root=tmp_path, progress=False) == folder


def test_unknown_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match=r"unknown dataset 'nosuch'.*kodak"):
        download("nosuch", root=tmp_path)


def test_kodak_registry_is_pinned_per_file():
    spec = DATASETS["kodak"]
    names = [f.name for f in spec.files]
    assert names == [f"kodim{i:02d}.png" for i in range(1, 25)]
    for f in spec.files:
        assert re.fullmatch(r"[0-9a-f]{64}", f.sha256)
        assert f.urls[0] == f"https://r0k.us/graphics/kodak/kodak/{f.name}"
    assert len({f.sha256 for f in spec.files}) == 24
    # the archives have no published sums: the registry must say so, not invent one
    for name in ("tecnick", "clic2022"):
        assert DATASETS[name].archive.sha256 is None


def test_pinned_kodak_sums_match_the_local_copy():
    try:
        folder = data.find_dataset("kodak")
    except FileNotFoundError:
        pytest.skip("Kodak is not available here")
    for f in DATASETS["kodak"].files[:4]:  # a few files keep the test fast
        assert data.sha256_file(folder / f.name) == f.sha256


def test_a_partial_dataset_is_returned_with_a_warning(tmp_path, monkeypatch):
    spec = RemoteDataset(name="part", description="3 images", citation="t",
                         files=tuple(RemoteFile(f"{i}.png", ("http://127.0.0.1:9/x",), None) for i in range(3)),
                         expected_images=3)
    monkeypatch.setitem(DATASETS, "part", spec)
    monkeypatch.setenv("SEMLIB_DATA", str(tmp_path))
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "0.png").write_bytes(b"x")
    with pytest.warns(UserWarning, match="holds 1 of the 3 images"):
        assert get_dataset("part") == tmp_path / "part"
