"""The new user's path: an empty data folder is filled over HTTP, each file checked against
its pinned sha256, and a notebook runs on what was fetched.

A local HTTP server on 127.0.0.1 stands in for the internet (SEMLIB_DATA_MIRROR points at
it). It serves a local copy of Kodak -- the real files, since their sums are pinned: the
data folder of the repository or the project's shared folder. Without any copy (a fresh
clone that never downloaded Kodak) the test is skipped; CI has the shared folder and runs it.
"""

import functools
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from semlib import data
from semlib.data import DownloadError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "03_si_ssim.ipynb"      # the cheapest notebook that reads a data set


def _local_copy():
    """A data root whose kodak/ holds every pinned Kodak file, or None."""
    for root in data.data_roots():
        if (root / "kodak").is_dir() and not data.verify("kodak", root / "kodak")["missing"]:
            return root
    return None


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; ``broken`` maps a file name to "corrupt" (one byte flipped) or
    "truncated" (the full Content-Length announced, half the bytes sent)."""

    broken: dict = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        how = self.broken.get(Path(self.path).name)
        if how is None:
            return super().do_GET()
        body = bytearray(Path(self.translate_path(self.path)).read_bytes())
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if how == "corrupt":
            body[len(body) // 2] ^= 0xFF
            self.wfile.write(bytes(body))
        else:
            self.wfile.write(bytes(body[: len(body) // 2]))


@pytest.fixture(scope="module")
def mirror():
    root = _local_copy()
    if root is None:
        pytest.skip("no local copy of Kodak to serve (run `semlib data download kodak` once; CI has one)")
    handler = type("H", (_Handler,), {"broken": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.broken
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def fetched(mirror, tmp_path_factory):
    """A clean data folder filled with Kodak through the mirror."""
    url, _ = mirror
    root = tmp_path_factory.mktemp("new_user") / "data"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(data.MIRROR_VAR, url)
        folder = data.download("kodak", root=root, progress=False)
    return root, folder


def test_a_clean_folder_is_filled_with_verified_files(fetched):
    root, folder = fetched
    r = data.verify("kodak", folder)
    assert len(r["ok"]) == 24 and not r["missing"] and not r["mismatched"]
    assert sorted(p.name for p in folder.iterdir()) == r["ok"]          # nothing else: no .part files


@pytest.mark.parametrize("how, message", [("corrupt", "checksum mismatch for kodim01.png"),
                                          ("truncated", "kodim01.png broke off")])
def test_a_corrupt_or_truncated_file_is_refused_and_nothing_stays(mirror, tmp_path, monkeypatch, how, message):
    url, broken = mirror
    broken["kodim01.png"] = how
    monkeypatch.setenv(data.MIRROR_VAR, url)
    try:
        with pytest.raises(DownloadError, match=message):
            data.download("kodak", root=tmp_path, progress=False)
    finally:
        broken.clear()
    assert list((tmp_path / "kodak").iterdir()) == []


def test_the_command_line_fetches_and_verifies(mirror, tmp_path):
    url, _ = mirror
    env = {**os.environ, data.MIRROR_VAR: url, "PYTHONPATH": str(REPO)}
    cli = [sys.executable, "-m", "semlib.cli", "data"]
    p = subprocess.run(cli + ["download", "tecnick", "--to", str(tmp_path)], env=env, capture_output=True, text=True)
    # the local copy may lack the Tecnick image: then the mirror answers 404, in one line
    assert p.returncode == 0 or ("HTTP 404" in p.stderr and len(p.stderr.strip().splitlines()) == 1), p.stderr
    if p.returncode == 0:
        p = subprocess.run(cli + ["verify", "tecnick", "--in", str(tmp_path)], env=env, capture_output=True, text=True)
        assert p.returncode == 0 and "1 files match" in p.stdout, p.stdout + p.stderr


def test_a_notebook_runs_on_the_fetched_data(fetched, mirror):
    root, _ = fetched
    env = {**os.environ, "SEMLIB_QUICK": "1", "SEMLIB_DATA": str(root), data.MIRROR_VAR: mirror[0],
           "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-m", "pytest", str(NOTEBOOK), "--nbmake", "--nbmake-timeout=600", "-q",
                        "-p", "no:cacheprovider"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
