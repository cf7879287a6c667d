"""Many files in one call: a folder of photos into ``.semc`` files, or ``.semc`` files back
into lossless images, in a few worker processes (``semlib compress ... -o OUTDIR``).

    for r in encode_many(["photos/"], "out/", gamma=200, progress=True):
        print(r.input, r.status, r.bpp)

- Each worker loads the model once and codes on ``threads`` torch threads (default 1), the
  same in every worker, so a file does not depend on how many workers made it.
- Results come as they finish. A bad file gives a result with ``status="failed"`` and its
  ``error``; it never stops the batch, and a worker that dies (out of memory, killed) fails
  only the file it was coding and is replaced.
- Every output goes to a temporary file beside it and is then put in place without replacing
  a file that exists, unless ``force`` (:func:`place`): an interrupted run leaves no partial
  file, and running it again skips what is done.
- A folder is searched recursively and its structure is kept under the output folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import signal
import threading
import time
import warnings
from collections import deque
from dataclasses import asdict, dataclass, field
from multiprocessing import connection, get_context
from pathlib import Path

from semlib.errors import CheckpointError, SemlibError

SEMC = ".semc"
FORMATS = {"png": ".png", "tiff": ".tiff", "webp-lossless": ".webp"}   # lossless formats Pillow writes
MANIFEST = "manifest.json"

# Peak memory of one worker (ru_maxrss, small model, one thread): 895 MiB with Python, torch and
# the model loaded, 955 MiB after encoding a Kodak image, 1,368 MiB after a 4 MP one; BENCHMARKS.md's
# scaling table (2 threads) gives about 145 MiB per megapixel to encode and 105 to decode up to
# 16 MP. Rounded up: Grad-CAM (--roi auto) adds about 0.1 GiB.
WORKER_BASE_MIB = 1024
WORKER_MIB_PER_MP = {"encode": 160, "decode": 120}


@dataclass
class Result:
    """One file of a batch. ``status``: 'written' (to ``output``), 'coded' (no output folder:
    the bytes are in ``data``, a decoded image in ``image``), 'skipped' (the output exists) or
    'failed' (see ``error``)."""

    input: str
    output: str | None
    status: str = "failed"
    bytes: int | None = None          # of the output file (or of ``data``)
    bpp: float | None = None          # of the .semc file, written or read
    width: int | None = None
    height: int | None = None
    gamma: float | None = None        # the base gamma in the file
    target_bpp: float | None = None
    met_target: bool | None = None
    roi: str | None = None            # 'auto' or 'none' (encode)
    kappa: float | None = None
    seconds: float | None = None      # reading, coding and writing the file in its worker
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    data: bytes | None = field(default=None, repr=False)
    image: object = field(default=None, repr=False)

    def row(self) -> dict:
        """The manifest row: every field but the data."""
        d = asdict(self)
        del d["data"], d["image"]
        return d


# --------------------------------------------------------------------------- the public calls


def encode_many(paths, out_dir=None, *, gamma=None, target_bpp=None, importance=None, kappa: float = 1.0,
                refine: int = 0, model=None, checkpoint=None, workers: int | None = None, threads: int = 1,
                force: bool = False, progress: bool = False, allocation: dict | None = None):
    """Compress images (files, or folders searched recursively) into ``.semc`` files under
    ``out_dir``, yielding a :class:`Result` per file as it finishes. Without ``out_dir``
    nothing is written and each result holds its file in ``data``.

    The options are those of :func:`semlib.codec.encode_image`; ``importance`` is None or
    'auto' (a mask fits only one image). ``workers``: processes (default
    :func:`default_workers`); ``threads``: torch threads of each; ``force``: replace outputs
    that exist (else they are skipped); ``progress``: a tqdm bar with the mean bpp;
    ``allocation``: options of :func:`semlib.allocation.allocate` for the ROI (``top``, ``boost``, ...)."""
    from semlib import codec

    if gamma is not None:
        gamma = codec.check_gamma(gamma)        # once, here; the model's trained range: per file
    kappa = codec.check_kappa(kappa)
    options = dict(gamma=gamma, target_bpp=target_bpp, importance=importance, kappa=kappa, refine=refine,
                   model=model, checkpoint=checkpoint, allocation=dict(allocation or {}))
    pairs = plan(paths, out_dir, SEMC, _images)
    return _run("encode", pairs, options, workers, threads, force, progress)


def decode_many(paths, out_dir=None, *, format: str = "png", model=None, checkpoint=None,
                workers: int | None = None, threads: int = 1, force: bool = False, progress: bool = False):
    """Decode ``.semc`` files (files, or folders searched recursively) into lossless images
    (``format``: png, tiff or webp-lossless) under ``out_dir``, yielding a :class:`Result` per
    file as it finishes. Without ``out_dir`` each result holds the RGB array in ``image``.
    The other options are those of :func:`encode_many`."""
    if format not in FORMATS:
        raise SemlibError(f"unknown image format {format!r}; choose one of {', '.join(FORMATS)}")
    pairs = plan(paths, out_dir, FORMATS[format], _semc_files)
    return _run("decode", pairs, dict(format=None if out_dir is None else format, model=model, checkpoint=checkpoint),
                workers, threads, force, progress)


def plan(paths, out_dir, suffix: str, pick) -> list[tuple[Path, Path | None]]:
    """(input, output) pairs: a file goes to ``out_dir``/its name with ``suffix``; the files of a
    folder (those ``pick`` finds, recursively) keep their place below it."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = None if out_dir is None else Path(out_dir)
    pairs = []
    for p in map(Path, paths):
        if p.is_dir():
            found = pick(p)
            if not found:
                raise SemlibError(f"{p}: the folder holds no {'images' if pick is _images else '.semc files'}")
            pairs += [(f, None if out is None else out / f.relative_to(p).with_suffix(suffix)) for f in found]
        else:
            pairs.append((p, None if out is None else out / Path(p.name).with_suffix(suffix)))
    return list(dict.fromkeys(pairs))           # a file named twice is coded once


def _images(folder: Path) -> list[Path]:
    from semlib import data

    return data.list_images(folder, recursive=True)


def _semc_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == SEMC)


def default_workers(kind: str, megapixels: float, files: int) -> int:
    """One worker per idle core (the cores less the load average: on a machine whose other
    core trains a model, two workers were slower than one, BENCHMARKS.md), as long as each has
    the memory to code an image of ``megapixels`` (the largest of the batch), and no more than
    ``files``."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if hasattr(os, "getloadavg"):
        cores = min(cores, max(1, round(cores - os.getloadavg()[0])))
    need = WORKER_BASE_MIB + WORKER_MIB_PER_MP[kind] * megapixels
    free = available_mib()
    by_memory = cores if free is None else int(free // need)
    return max(1, min(cores, by_memory, files))


def available_mib() -> float | None:
    """Memory available to new processes (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def place(data: bytes, dst: Path, force: bool = False) -> None:
    """Write ``data`` to ``dst`` so that ``dst`` never holds a partial file: into a temporary
    file beside it, then linked into place, which fails with ``FileExistsError`` if ``dst``
    exists, even when it was created while the data was being made; with ``force`` it is
    replaced (``os.replace``). On a file system without hard links the check and the move are
    two steps."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data)
        if force:
            os.replace(tmp, dst)
            return
        try:
            os.link(tmp, dst)
        except FileExistsError:
            raise
        except OSError:                            # no hard links here (FAT, some network shares)
            if dst.exists():
                raise FileExistsError(f"{dst} exists") from None
            os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def same_file(a: Path, b: Path) -> bool:
    """True when ``b`` is ``a`` (the same path, or an existing link to the same file)."""
    a, b = Path(a), Path(b)
    if b.exists() and a.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


# --------------------------------------------------------------------------- the run


def _run(kind, pairs, options, workers, threads, force, progress):
    """Yield a Result per pair: those that need no work first, then as the workers finish."""
    from tqdm.auto import tqdm

    todo, ready = [], []
    owner = {}
    for src, dst in pairs:
        r = Result(str(src), None if dst is None else str(dst))
        if kind == "encode":
            imp = options["importance"]
            r.roi = "none" if imp is None or (isinstance(imp, str) and imp == "none") else (
                imp if isinstance(imp, str) else "map")
            r.kappa = None if r.roi == "none" else options["kappa"]
            r.target_bpp = options["target_bpp"]
        if dst is not None:
            first = owner.setdefault(dst.resolve(), src)
            if first != src:
                r.error = f"its output {dst} is also the output of {first}"
            elif same_file(src, dst):
                r.error = f"its output {dst} would replace it"
            elif dst.exists() and not force:
                _describe_existing(r, kind, dst)
        (ready if r.error or r.status == "skipped" else todo).append(r)

    if workers is None:
        workers = default_workers(kind, max((_megapixels(kind, r.input) for r in todo), default=0), len(todo))
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise SemlibError(f"workers must be a whole number >= 1, got {workers!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SemlibError(f"threads must be a whole number >= 1, got {threads!r}")

    bar = tqdm(total=len(pairs), unit="img", desc=kind, disable=None if progress else True, dynamic_ncols=True)
    bpps = []

    def tick(r):
        if r.bpp is not None:
            bpps.append(r.bpp)
            bar.set_postfix_str(f"mean {sum(bpps) / len(bpps):.3f} bpp", refresh=False)
        bar.update(1)
        return r

    try:
        for r in ready:
            yield tick(r)
        if not todo:
            return
        code = _in_process if workers == 1 or len(todo) <= 1 else _pooled
        with contextlib.closing(code(kind, [r.input for r in todo], options, min(workers, len(todo)), threads)) as done:
            for i, payload in done:
                if payload.get("fatal"):
                    raise CheckpointError(payload["error"])
                yield tick(_finish(todo[i], payload, force))
    finally:
        bar.close()


def _describe_existing(r: Result, kind: str, dst: Path) -> None:
    """A skipped output: what it holds (for a .semc file, read from its header)."""
    r.status, r.bytes = "skipped", dst.stat().st_size
    if kind != "encode":
        return
    from semlib import codec

    try:
        d = codec.info(dst.read_bytes())
    except (SemlibError, OSError) as e:
        r.status, r.error = "failed", f"its output {dst} exists but is not a readable .semc file ({e}); --force replaces it"
        return
    r.bpp, r.width, r.height, r.gamma = d["bpp"], d["width"], d["height"], d["gamma"]
    r.roi, r.kappa = ("map" if d["roi"] else "none"), d.get("kappa")


def _finish(r: Result, payload: dict, force: bool) -> Result:
    """Fill ``r`` from a worker's payload and put its file in place."""
    r.seconds, r.notes = payload.get("seconds"), payload.get("notes", [])
    if "error" in payload:
        r.error = payload["error"]
        return r
    for k in ("bpp", "width", "height", "gamma", "met_target"):
        if k in payload:
            setattr(r, k, payload[k])
    data = payload.get("data")
    r.bytes = None if data is None else len(data)
    if r.output is None:
        r.status, r.data, r.image = "coded", data, payload.get("image")
        return r
    try:
        place(data, Path(r.output), force)
        r.status = "written"
    except FileExistsError:
        r.status = "skipped"
        r.notes.append(f"{r.output} was created by something else while this file was coded; it was kept")
    except OSError as e:
        r.error = f"cannot write {r.output}: {e.strerror or e}"
    return r


def _megapixels(kind: str, path: str) -> float:
    """The size of an input, read from its header only (0 if it cannot be read)."""
    try:
        if kind == "encode":
            from PIL import Image

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as im:
                    return im.width * im.height / 1e6
        from semlib import codec

        h = codec.parse(Path(path).read_bytes())
        return h.width * h.height / 1e6
    except Exception:  # noqa: BLE001 - a bad file fails later, with its message
        return 0.0


# --------------------------------------------------------------------------- the workers


def _code(kind: str, src: str, options: dict) -> dict:
    """Code one file. Every failure comes back as ``{'error': ...}`` (with ``fatal`` when no
    file can be coded: the checkpoint), so a worker outlives its bad files."""
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", FutureWarning)
        try:
            out = _encode_file(src, **options) if kind == "encode" else _decode_file(src, **options)
        except CheckpointError as e:
            out = {"error": str(e), "fatal": True}
        except (SemlibError, OSError) as e:
            out = {"error": str(e)}
        except MemoryError:
            out = {"error": "out of memory"}
        except Exception as e:  # noqa: BLE001 - an unexpected failure is this file's, not the batch's
            out = {"error": f"{type(e).__name__}: {e}"}
    out["notes"] = list(dict.fromkeys(str(w.message) for w in caught))
    out["seconds"] = time.perf_counter() - t0
    return out


def _encode_file(src, gamma, target_bpp, importance, kappa, refine, model, checkpoint, allocation=None) -> dict:
    from semlib import codec, data

    img = data.load_image(src)
    enc = codec.encode_image(img, gamma=gamma, target_bpp=target_bpp, importance=importance, kappa=kappa,
                             refine=refine, model=model, checkpoint=checkpoint, reconstruct=False,
                             **(allocation or {}))
    return {"data": enc.data, "bpp": enc.bpp, "gamma": enc.gamma, "met_target": enc.met_target,
            "width": img.shape[1], "height": img.shape[0]}


def _decode_file(src, format, model, checkpoint) -> dict:
    from semlib import codec

    data = Path(src).read_bytes()
    img = codec.decode(data, model=model, checkpoint=checkpoint)
    h, w = img.shape[:2]
    out = {"bpp": 8 * len(data) / (h * w), "width": w, "height": h}
    if format is None:
        out["image"] = img
    else:
        out["data"] = image_bytes(img, format)
    return out


def image_bytes(img, format: str = "png") -> bytes:
    """An RGB uint8 array as the bytes of a lossless PNG, TIFF (deflate) or WebP file."""
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(img)
    if format == "png":
        im.save(buf, format="PNG")
    elif format == "tiff":
        im.save(buf, format="TIFF", compression="tiff_adobe_deflate")
    elif format == "webp-lossless":
        im.save(buf, format="WEBP", lossless=True, exact=True)
    else:
        raise SemlibError(f"unknown image format {format!r}; choose one of {', '.join(FORMATS)}")
    return buf.getvalue()


def _in_process(kind, sources, options, workers, threads):
    """One worker: this process, on ``threads`` torch threads while it codes."""
    import torch

    from semlib import codec

    codec.get_model(options["model"], options["checkpoint"])     # a bad checkpoint stops here
    for i, src in enumerate(sources):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            payload = _code(kind, src, options)
        finally:
            torch.set_num_threads(before)
        yield i, payload


def _pooled(kind, sources, options, workers, threads):
    """Yield (index, payload) as ``workers`` processes finish. A worker that dies fails the
    file it was coding and is replaced; leaving (done, error, Ctrl-C) stops them all."""
    ctx = get_context("spawn")
    todo = deque(enumerate(sources))
    pool = {}                                   # connection -> [process, (index, source) or None]

    def start():
        here, there = ctx.Pipe()
        proc = ctx.Process(target=_worker, args=(there, kind, options, threads), daemon=True)
        with _ctrl_c_ignored():                 # inherited: Ctrl-C reaches the parent only
            proc.start()
        there.close()
        pool[here] = [proc, None]

    try:
        for _ in range(workers):
            start()
        while todo or any(job for _, job in pool.values()):
            for conn, slot in pool.items():
                if slot[1] is None and todo:
                    slot[1] = todo.popleft()
                    conn.send(slot[1][1])
            for conn in connection.wait([c for c, (_, job) in pool.items() if job]):
                proc, (i, _) = pool[conn]
                try:
                    payload = conn.recv()
                    pool[conn][1] = None
                except (EOFError, OSError):
                    proc.join()
                    payload = {"error": f"the worker process died while coding it (exit status {proc.exitcode}; "
                                        "out of memory?)"}
                    conn.close()
                    del pool[conn]
                    if todo:
                        start()
                yield i, payload
    finally:
        for proc, _ in pool.values():
            proc.terminate()
        for conn, (proc, _) in pool.items():
            proc.join()
            conn.close()


@contextlib.contextmanager
def _ctrl_c_ignored():
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _load_model(options) -> None:
    """Load the model before the first file, so that each file's time is its own (a bad
    checkpoint is reported with the first file)."""
    from semlib import codec

    with contextlib.suppress(SemlibError):
        codec.get_model(options["model"], options["checkpoint"])


def _worker(conn, kind, options, threads):
    """A worker process: code the files it is sent, one at a time, until it is sent None or
    the parent is gone."""
    import torch

    torch.set_num_threads(threads)
    _load_model(options)
    while True:
        try:
            src = conn.recv()
        except EOFError:
            return
        if src is None:
            return
        conn.send(_code(kind, src, options))


# --------------------------------------------------------------------------- reporting


def summary(results: list[Result]) -> str:
    """A table of the batch: files, bytes and mean bpp (over the files) per status, and the total."""
    lines = [f"{'':8s} {'files':>6s} {'bytes':>14s} {'mean bpp':>9s}"]
    groups = [(s, [r for r in results if r.status == s]) for s in ("written", "coded", "skipped", "failed")]
    for name, rs in groups + [("total", results)]:
        if not rs and name not in ("failed", "total"):
            continue
        sizes = [r.bytes for r in rs if r.bytes is not None and r.status != "failed"]
        bpps = [r.bpp for r in rs if r.bpp is not None and r.status != "failed"]
        total = f"{sum(sizes):,}" if sizes else "-"
        mean = f"{sum(bpps) / len(bpps):.4f}" if bpps else "-"
        lines.append(f"{name:8s} {len(rs):6d} {total:>14s} {mean:>9s}")
    return "\n".join(lines)


def manifest(results: list[Result], **about) -> dict:
    """The JSON manifest: ``about`` (command, options) and one row per file, by input path."""
    return {**about, "files": [r.row() for r in sorted(results, key=lambda r: (r.input, r.output or ""))]}


def write_manifest(path, results: list[Result], **about) -> None:
    place((json.dumps(manifest(results, **about), indent=2) + "\n").encode(), Path(path), force=True)
