"""Rate-distortion evaluation: sweeps, result files, RD plots, BD tables, published anchors.

A *codec* here is anything with the contract of :class:`semlib.baselines.Codec`:
``encode(img, quality) -> bytes``, ``decode(bytes) -> img``, ``sweep`` (its default
operating points), ``quality_name``, ``version()``. The classical codecs of
:data:`semlib.baselines.CODECS` have it, and :func:`learned_codec` wraps the project's
own model (``semlib.codec.encode(image, gamma=...)`` / ``decode``), whose operating
points are values of γ (docs/METHOD.md §5).

:func:`evaluate_codec` measures, for every image and operating point (docs/METHOD.md §3, §9):

- ``bpp``: 8 · (bytes of the whole file) / (H · W);
- ``psnr-rgb``: :func:`semlib.metrics.psnr` over the three 8-bit channels;
- ``ms-ssim-rgb``: :func:`semlib.metrics.ms_ssim`, CompressAI's convention (RGB, 8 bit,
  data range 255); ``None`` for images under 161 pixels on a side;
- ``ssim``: mean SSIM (:func:`semlib.metrics.ssim`);
- ``si-ssim``: :func:`semlib.metrics.si_ssim` weighted by the Grad-CAM importance map
  of the original image (docs/METHOD.md §1, §3);
- ``encoding_time`` / ``decoding_time``: seconds of one ``encode`` / ``decode`` call.

Averages over the images (the mean of the per-image values, as CompressAI reports
them) go under ``results``; the per-image values under ``per_image``. The file is
CompressAI's results shape plus that key, with ``meta`` saying what ran, on what,
when and how; for the learned codec, ``meta.model_fingerprint`` is the fingerprint of the
weights measured (:func:`semlib.models.fingerprint`, hex), so that a results file can be
checked against a checkpoint (:func:`semlib.tables.fingerprint_check`).

Importance maps are computed once per image and cached on disk, in
``results/cache/importance/`` of the repository by default, as float32 ``.npy`` files
named ``<sha256 of the image file>-<classifier>.npy`` (for images given as arrays, the
sha256 of their shape and pixels). Delete the folder when the Grad-CAM code changes.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import hashlib
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from semlib import metrics
from semlib.baselines import CODECS, Codec, encode_at_bpp, get_codec
from semlib.data import REPO_ROOT, find_dataset, list_images, load_image
from semlib.allocation import add_roi_arguments, roi_allocation  # noqa: F401 (the ROI options, torch-free for the CLI)
from semlib.errors import SemlibError

RESULTS_ROOT = REPO_ROOT / "results"
DEFAULT_CACHE = RESULTS_ROOT / "cache" / "importance"
IMPORTANCE_CLASSIFIER = "efficientnet_lite0"
ANCHOR_DIR = Path(__file__).resolve().parent / "anchors"
METRIC_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "ssim", "si-ssim", "psnr-roi20", "encoding_time", "decoding_time")
METRIC_LABELS = {
    "psnr-rgb": "PSNR-RGB (dB)",
    "ms-ssim-rgb": "MS-SSIM (RGB)",
    "ms-ssim-db": "MS-SSIM (dB), -10·log10(1 - MS-SSIM)",
    "ssim": "SSIM",
    "si-ssim": "SI-SSIM",
    "psnr-roi20": "PSNR of the most important 20 % of pixels (dB)",
}
LEARNED_GAMMAS = (32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0)


# ---------------------------------------------------------------------------------------
# The project's learned codec behind the same contract


def sweep_gammas(lo: float, hi: float) -> tuple[float, ...]:
    """The powers of two from ``lo`` to ``hi`` (both ends included): a model's gamma sweep."""
    k0, k1 = math.ceil(math.log2(lo) - 1e-9), math.floor(math.log2(hi) + 1e-9)
    inner = [2.0 ** k for k in range(k0, k1 + 1) if lo < 2.0 ** k < hi]
    return tuple([float(lo)] + inner + ([float(hi)] if hi > lo else []))


def learned_codec(checkpoint=None, gammas=None, roi: str | None = None, kappa: float = 1.0,
                  allocation: dict | None = None, refine: int = 0) -> Codec:
    """The project's codec (:mod:`semlib.codec`) as a :class:`~semlib.baselines.Codec`.

    Its knob is γ (docs/METHOD.md §5: higher γ, higher quality and rate); ``gammas`` are the
    sweep's operating points (default: the powers of two over the model's trained range,
    :func:`sweep_gammas`; 32 ... 2048 for a model trained on the paper's range). ``roi="auto"`` codes each 8 x 8 block at
    γ·(T_i / M̄)^κ from the Grad-CAM levels (docs/METHOD.md §2), inside the encoder (its time
    counts as encoding time); ``allocation``: options of :func:`semlib.allocation.allocate` (default:
    :data:`semlib.allocation.AUTO_ALLOCATION`). ``checkpoint=None``: the checkpoint shipped with semlib.
    ``refine``: steps of encoder-side refinement per file (:mod:`semlib.refine`); the codec then
    (and with ``roi="auto"`` and no ``boost`` given, whose boost follows the target rate,
    :func:`semlib.allocation.auto_allocation`) also has ``encode_at_target(a, bpp, tol)``, the codec's own rate control
    (:func:`semlib.codec.encode_image` with ``target_bpp``), which :func:`evaluate_codec` uses
    for target rates instead of bisecting with a refined file per step.
    """
    from semlib import codec as scodec

    extra = {} if checkpoint is None else {"checkpoint": str(checkpoint)}
    model, fp = scodec.get_model(**extra)
    lo, hi = scodec.trained_range(model)
    if gammas is None:
        gammas = sweep_gammas(lo, hi)
    importance = None if roi in (None, "none") else roi
    alloc = dict(allocation or {})
    where = "shipped checkpoint" if checkpoint is None else f"checkpoint {Path(str(checkpoint)).name}"
    where += f", model fingerprint {fp.hex()}"    # results files record which weights they measured

    def enc(a: np.ndarray, g: float) -> bytes:
        return scodec.encode(a, gamma=g, importance=importance, kappa=kappa, refine=refine, **extra, **alloc)

    def enc_at_target(a: np.ndarray, bpp: float, tol: float) -> tuple[bytes, float]:
        e = scodec.encode_image(a, target_bpp=bpp, tolerance=tol / bpp, importance=importance, kappa=kappa,
                                refine=refine, reconstruct=False, **extra, **alloc)
        return e.data, e.gamma

    def dec(b: bytes) -> np.ndarray:
        return scodec.decode(b, **extra)

    def version() -> str:
        import torch

        import semlib

        return f"semlib {semlib.__version__} ({where}), torch {torch.__version__}"

    name = "semlib" if checkpoint is None else f"semlib-{Path(str(checkpoint)).stem}"
    how, by_rate = "", False
    if importance is not None:
        from semlib.allocation import AUTO_ALLOCATION

        full = {**AUTO_ALLOCATION, **alloc} if importance == "auto" else alloc
        paper = full.get("top") is None
        by_rate = importance == "auto" and not paper and "boost" not in alloc   # allocation.auto_allocation
        how = ", ".join((["paper's map"] if paper else []) + [
            f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in full.items()
            if not (paper and k in ("top", "boost"))])
        if by_rate:
            how += " (at a target bpp the boost of allocation.auto_allocation)"
        boost = "auto" if by_rate else f"{full.get('boost', 3.0):g}"
        name += f"-roi-k{kappa:g}" + ("" if paper else f"-top{full['top']:g}-b{boost}")
    if refine:
        name += f"-refine{refine}"
        how += f"{', ' if how else ''}refine={refine} steps"
    codec = Codec(
        name, f"semlib hierarchical VAE, γ-conditioned ({where}; roi={roi or 'none'}, κ={kappa:g}"
              f"{'; ' + how if how else ''})",
        "gamma", (float(lo), float(hi)), False, True, tuple(float(g) for g in gammas),
        enc, dec, version,
    )
    codec.model_fingerprint = fp.hex()   # written into meta.model_fingerprint by evaluate_codec
    if refine or by_rate:     # by_rate: the boost depends on the target, so the codec's own search finds the file
        codec.encode_at_target = enc_at_target
    return codec


def resolve_codec(name_or_path: str, **learned) -> Codec:
    """A classical codec by name, or the learned codec: ``semlib`` (shipped checkpoint)
    or the path of a checkpoint file."""
    if isinstance(name_or_path, str) and name_or_path.lower() in CODECS:
        return get_codec(name_or_path)
    if name_or_path == "semlib":
        return learned_codec(None, **learned)
    if Path(name_or_path).is_file():
        return learned_codec(name_or_path, **learned)
    raise SemlibError(
        f"unknown codec {name_or_path!r}: not one of {', '.join(CODECS)}, not 'semlib', "
        f"and no checkpoint file of that name"
    )


# ---------------------------------------------------------------------------------------
# Importance maps, cached


def _image_key(path: Path | None, a: np.ndarray) -> str:
    h = hashlib.sha256()
    if path is not None:
        h.update(Path(path).read_bytes())
    else:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def cached_importance(
    a: np.ndarray, path: Path | None = None, cache_dir: Path | str | None = DEFAULT_CACHE,
    classifier: str = IMPORTANCE_CLASSIFIER,
) -> np.ndarray:
    """Grad-CAM importance map of image ``a`` (:func:`semlib.importance.importance_map`),
    read from / written to ``cache_dir`` (None: no cache). Keyed by the sha256 of the
    image file (or of the pixels) and the classifier name."""
    from semlib.importance import cached_map, importance_map

    name = None if cache_dir is None else f"{_image_key(path, a)}-{classifier}.npy"
    return cached_map(lambda: np.asarray(importance_map(a, classifier=classifier), dtype=np.float32),
                      cache_dir, name, a.shape[:2])


# ---------------------------------------------------------------------------------------
# The sweep


def _as_images(images) -> list[tuple[str, Path | None, np.ndarray | None]]:
    """A folder, a list of paths, or a dict name -> array -> [(name, path, array-or-None)]."""
    if isinstance(images, (str, os.PathLike)):
        folder = Path(images)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        paths = list_images(folder)
        if not paths:
            raise FileNotFoundError(f"{folder}: no images in it")
        return [(p.name, p, None) for p in paths]
    if isinstance(images, dict):
        return [(str(k), None, np.asarray(v)) for k, v in images.items()]
    out = []
    for i, item in enumerate(images):
        if isinstance(item, (str, os.PathLike)):
            out.append((Path(item).name, Path(item), None))
        else:
            out.append((f"image{i:03d}", None, np.asarray(item)))
    if not out:
        raise ValueError("no images to evaluate")
    return out


def _versions() -> dict:
    import PIL
    import torch

    import semlib

    v = {"python": platform.python_version(), "semlib": semlib.__version__, "numpy": np.__version__,
         "torch": torch.__version__, "pillow": PIL.__version__, "platform": platform.platform()}
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("pytorch-msssim", "pillow-heif", "imagecodecs", "compressai", "grad-cam"):
        try:
            v[dist] = version(dist)
        except PackageNotFoundError:  # not installed: leave it out
            pass
    return v


def _command_line() -> str:
    """How this process was started, as a user would type it."""
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if prog in ("evaluate.py", "__main__.py"):
        prog = "python -m semlib.evaluate"
    return " ".join([prog, *sys.argv[1:]])


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _score(a: np.ndarray, rec: np.ndarray, imp: np.ndarray | None, keys=METRIC_KEYS) -> dict:
    """The quality metrics of ``keys`` (those of :data:`METRIC_KEYS` that compare images)."""
    side_ok = min(a.shape[:2]) >= metrics.MS_SSIM_MIN_SIDE
    score = {
        "psnr-rgb": lambda: float(metrics.psnr(a, rec)),
        "ms-ssim-rgb": lambda: float(metrics.ms_ssim(a, rec)) if side_ok else None,
        "ssim": lambda: float(metrics.ssim(a, rec)),
        "si-ssim": lambda: float(metrics.si_ssim(a, rec, importance=imp)),
        # PSNR of the most important 20 % of pixels (the ROI measure of issue 5)
        "psnr-roi20": lambda: float(metrics.roi_psnr(a, rec, imp)) if imp is not None else None,
    }
    return {k: f() for k, f in score.items() if k in keys}


def evaluate_codec(
    codec,
    images,
    qualities: Iterable[float] | None = None,
    target_bpps: Iterable[float] | None = None,
    importance: str | Callable | None = "gradcam",
    *,
    tol: float = 0.01,
    cache_dir: Path | str | None = DEFAULT_CACHE,
    dataset: str | None = None,
    name: str | None = None,
    progress: bool = True,
    command: str | None = None,
    threads: int | None = 1,
    keys: Iterable[str] = METRIC_KEYS,
) -> dict:
    """Sweep ``codec`` over ``images`` and return a results dict (see the module docstring).

    ``codec``: a codec object or a name (:func:`resolve_codec`). ``images``: a folder, a
    list of paths (or arrays), or a dict name -> array. Operating points: ``qualities``
    (values of the codec's knob; default ``codec.sweep``) or ``target_bpps`` (each image
    encoded by :func:`semlib.baselines.encode_at_bpp` within ``tol`` bpp; the knob found
    for each image is kept per image). ``importance``: ``"gradcam"`` (cached Grad-CAM
    maps), ``"uniform"``/None (SI-SSIM is then the mean block SSIM), or a function
    image -> H x W map. ``threads``: torch threads during the sweep (restored afterwards;
    None leaves them alone). One is the default: the metrics are small convolutions, and
    on a busy machine more threads mostly wait on each other (measured here: 1 s instead
    of 0.01 s for MS-SSIM of a 176 x 192 image with 2 threads under load). ``keys``: the
    measures of :data:`METRIC_KEYS` to record (default all; :func:`semlib.tables.sweep`
    asks for bpp, PSNR and MS-SSIM alone, which on large images saves most of the time).
    """
    import torch

    sweep = functools.partial(_evaluate, codec, images, qualities=qualities, target_bpps=target_bpps,
                              importance=importance, tol=tol, cache_dir=cache_dir, dataset=dataset, name=name,
                              progress=progress, command=command, keys=tuple(k for k in METRIC_KEYS if k in keys))
    if threads is None:
        return sweep()
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        return sweep()
    finally:
        torch.set_num_threads(before)


def _operating_points(codec, qualities, target_bpps) -> tuple[bool, list]:
    """(by rate?, the points): target bpps, or qualities checked by the codec."""
    if qualities is not None and target_bpps is not None:
        raise ValueError("give qualities or target_bpps, not both")
    by_rate = target_bpps is not None
    points = [float(t) for t in target_bpps] if by_rate else list(qualities if qualities is not None else codec.sweep)
    if not points:
        raise ValueError("no operating points")
    if not by_rate:
        points = [codec.check_quality(q) if hasattr(codec, "check_quality") else q for q in points]
    return by_rate, points


def _importance_of(importance, a, path, cache_dir):
    if importance == "gradcam":
        return cached_importance(a, path, cache_dir)
    if importance is None:
        return None
    return np.asarray(importance(a), dtype=np.float32)


def _code(codec, a, p, by_rate: bool, tol: float, img_name: str):
    """One operating point of one image: (knob used, the file, encoding seconds, the decoded
    image, decoding seconds). At a target bpp the file is searched for, then one encode at the
    knob found is timed (a codec with ``encode_at_target``, the refined learned one or ``--roi
    auto`` with its boost by rate, searches with its own rate control, and the time is that of
    the whole search)."""
    if by_rate and getattr(codec, "encode_at_target", None) is not None:
        t0 = time.perf_counter()
        data, q = codec.encode_at_target(a, p, tol)
        t_enc = time.perf_counter() - t0
    elif by_rate:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the bpp reached is recorded instead
            data, q, _ = encode_at_bpp(codec, a, p, tol=tol)
        t0 = time.perf_counter()
        again = codec.encode(a, q)  # time one encode at the knob found
        t_enc = time.perf_counter() - t0
        if len(again) != len(data):
            warnings.warn(f"{codec.name}: {img_name} encodes to different sizes at the same setting")
    else:
        q = p
        t0 = time.perf_counter()
        data = codec.encode(a, q)
        t_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    rec = codec.decode(data)
    t_dec = time.perf_counter() - t0
    if rec.shape != a.shape:
        raise SemlibError(f"{codec.name}: {img_name} decoded to shape {rec.shape}, expected {a.shape}")
    return q, data, t_enc, rec, t_dec


def _evaluate(codec, images, *, qualities, target_bpps, importance, tol, cache_dir, dataset, name, progress, command,
              keys=METRIC_KEYS):
    from tqdm.auto import tqdm

    codec = resolve_codec(codec) if isinstance(codec, str) else codec
    by_rate, points = _operating_points(codec, qualities, target_bpps)
    items = _as_images(images)
    if dataset is None:
        dataset = Path(images).name if isinstance(images, (str, os.PathLike)) else "images"
    if importance == "uniform":
        importance = None
    if importance not in (None, "gradcam") and not callable(importance):
        raise ValueError(f"importance must be 'gradcam', 'uniform', None or a function, got {importance!r}")

    started = time.perf_counter()
    per_image: dict[str, dict[str, list]] = {}
    bar = tqdm(total=len(items) * len(points), desc=f"{codec.name}", unit="code", disable=not progress)
    with bar:
        for img_name, path, arr in items:
            a = load_image(path) if arr is None else np.ascontiguousarray(arr, dtype=np.uint8)
            h, w = a.shape[:2]
            imp = _importance_of(importance, a, path, cache_dir) if {"si-ssim", "psnr-roi20"} & set(keys) else None
            rows: dict[str, list] = {k: [] for k in ("quality", *keys)}
            for p in points:
                q, data, t_enc, rec, t_dec = _code(codec, a, p, by_rate, tol, img_name)
                measured = {"quality": q, "bpp": metrics.bpp(len(data), h, w), **_score(a, rec, imp, keys),
                            "encoding_time": t_enc, "decoding_time": t_dec}
                for k in rows:
                    rows[k].append(measured[k])
                bar.update(1)
            per_image[img_name] = rows

    results: dict[str, list] = {"target_bpp" if by_rate else "quality": list(points)}
    for k in keys:
        results[k] = [_mean([per_image[n][k][j] for n in per_image]) for j in range(len(points))]
    meta = _meta(codec, images, items, by_rate, tol, dataset, importance, command, started)
    return {"name": name or codec.name, "description": f"{getattr(codec, 'description', codec.name)}. {meta['codec_version']}",
            "meta": meta, "results": results, "per_image": per_image}


def _meta(codec, images, items, by_rate, tol, dataset, importance, command, started) -> dict:
    return {
        "codec": codec.name,
        "codec_version": codec.version() if hasattr(codec, "version") else "unknown",
        # semlib.models.fingerprint of the learned codec's weights (hex); None for classical codecs
        "model_fingerprint": getattr(codec, "model_fingerprint", None),
        "quality_name": getattr(codec, "quality_name", "quality"),
        "mode": "target_bpp" if by_rate else "quality",
        "tolerance_bpp": tol if by_rate else None,
        "dataset": dataset,
        "dataset_path": str(images) if isinstance(images, (str, os.PathLike)) else None,
        "num_images": len(items),
        "images": [n for n, _, _ in items],
        "importance": {None: "uniform", "gradcam": f"gradcam:{IMPORTANCE_CLASSIFIER}"}.get(
            importance if isinstance(importance, (str, type(None))) else "", "custom function"),
        "metrics": "bpp = 8*bytes/(H*W) of the whole file; psnr-rgb over 8-bit RGB; ms-ssim-rgb "
                   "pytorch_msssim on 8-bit RGB, data_range 255 (CompressAI convention); ssim and "
                   "si-ssim per docs/METHOD.md §3 (11x11 Gaussian, sigma 1.5, data range 1); psnr-roi20 over "
                   "the 20 % of pixels with the highest importance; values are "
                   "means over the images; times are seconds per image",
        "versions": _versions(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command if command is not None else _command_line(),
        "elapsed_seconds": round(time.perf_counter() - started, 2),
    }


# ---------------------------------------------------------------------------------------
# Result files


def results_path(dataset: str, name: str, root: Path | str = RESULTS_ROOT) -> Path:
    """Where a result file lives: ``results/<dataset>/<name>.json``."""
    return Path(root) / dataset / f"{name}.json"


def save_results(results: dict, path: Path | str) -> Path:
    """Write a results dict as JSON (parent folders created; atomic replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_results(path: Path | str) -> dict:
    """Read a results JSON (ours, CompressAI's or an anchor curve); ValueError if it has
    no ``results.bpp`` list."""
    path = Path(path)
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from None
    if not isinstance(d, dict) or not isinstance(d.get("results"), dict) or "bpp" not in d["results"]:
        raise ValueError(f"{path}: not a results file (no 'results': {{'bpp': [...]}})")
    return d


def subset_results(results: dict, images) -> dict:
    """The results dict re-averaged over the named ``images`` only (from its ``per_image``),
    so that a curve measured on a whole data set can be set beside one measured on a few of
    its images. KeyError for an image the file does not hold."""
    names = list(images)
    per = results.get("per_image") or {}
    missing = [n for n in names if n not in per]
    if missing or not names:
        raise KeyError(f"{results.get('name', '?')} holds no per-image values for {missing or 'an empty list'}")
    first = per[names[0]]
    out = {k: list(v) for k, v in results["results"].items() if k not in first}
    for k, v in first.items():
        if k in ("quality", "target_bpp"):
            out[k] = list(v)
        else:
            out[k] = [_mean([per[n][k][j] for n in names]) for j in range(len(v))]
    meta = {**results.get("meta", {}), "num_images": len(names), "images": names}
    return {**results, "meta": meta, "results": out, "per_image": {n: per[n] for n in names}}


# ---------------------------------------------------------------------------------------
# Published anchors


def load_anchors(dataset: str = "kodak") -> dict[str, dict]:
    """The published RD curves for ``dataset`` ("kodak", "tecnick", "clic2022"), by name.

    Each curve is a dict with ``name``, ``label``, ``source`` (repository:path @ commit),
    ``note``, ``published: True`` and ``results`` ({"bpp": [...], "psnr-rgb": [...],
    maybe "ms-ssim-rgb"}), points in increasing bpp. They are facts from elsewhere,
    to be shown with their source, never as this project's measurements.
    """
    file = ANCHOR_DIR / f"{dataset}.json"
    if not file.is_file():
        known = sorted(p.stem for p in ANCHOR_DIR.glob("*.json"))
        raise FileNotFoundError(f"no published anchors for {dataset!r}; known: {', '.join(known)}")
    d = json.loads(file.read_text())
    return {c["name"]: {**c, "published": True, "dataset": d["dataset"]} for c in d["curves"]}


def _curve(obj, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, values) of a results dict or anchor curve, sorted by bpp; ms-ssim-db derived."""
    r = obj["results"]
    key = "ms-ssim-rgb" if metric == "ms-ssim-db" else metric
    if key not in r or r[key] is None:
        raise KeyError(f"{obj.get('name', '?')} has no {key!r} values")
    pts = [(b, v) for b, v in zip(r["bpp"], r[key]) if b is not None and v is not None]
    if not pts:
        raise KeyError(f"{obj.get('name', '?')} has no {key!r} values")
    x, y = map(np.asarray, zip(*sorted(pts)))
    if metric == "ms-ssim-db":
        y = -10.0 * np.log10(np.clip(1.0 - y, 1e-12, None))
    return x.astype(float), y.astype(float)


def _as_result_list(results) -> list[dict]:
    if isinstance(results, (dict, str, os.PathLike)):
        results = [results]
    return [load_results(r) if isinstance(r, (str, os.PathLike)) else r for r in results]


def _anchor_list(anchors, dataset: str) -> list[dict]:
    out, table = [], None
    for a in anchors or ():
        if isinstance(a, str):
            table = table or load_anchors(dataset)
            if a not in table:
                raise KeyError(f"no published anchor {a!r} for {dataset}; known: {', '.join(table)}")
            out.append(table[a])
        else:
            out.append(a)
    return out


def _short_source(src: str) -> str:
    repo = src.split(":")[0]
    return repo.split("/")[-1] if "/" in repo else repo


def plot_rd(results_list, metric: str = "psnr-rgb", anchors=(), dataset: str = "kodak", ax=None, title: str | None = None):
    """Rate-distortion plot: bpp on x, ``metric`` on y (``psnr-rgb``, ``ms-ssim-rgb``,
    ``ms-ssim-db``, ``ssim``, ``si-ssim``).

    ``results_list``: result dicts or paths (solid lines, markers). ``anchors``: names of
    published curves of ``dataset`` (:func:`load_anchors`) or curve dicts, drawn dashed
    and labelled "published" with their source. Curves lacking the metric are skipped
    with a warning. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.6), dpi=90)
    for r in _as_result_list(results_list):
        try:
            x, y = _curve(r, metric)
        except KeyError as e:
            warnings.warn(str(e), stacklevel=2)
            continue
        ax.plot(x, y, marker="o", ms=3.5, lw=1.6, label=r.get("name", "?"))
    for c in _anchor_list(anchors, dataset):
        try:
            x, y = _curve(c, metric)
        except KeyError as e:
            warnings.warn(str(e), stacklevel=2)
            continue
        ax.plot(x, y, ls="--", lw=1.2, marker=".", ms=3,
                label=f"{c.get('label', c.get('name'))} (published, {_short_source(c.get('source', '?'))})")
    ax.set_xlabel("Rate (bits per pixel)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title or f"Rate-distortion on {dataset}")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return ax


def _display_name(curve: dict) -> str:
    """A curve's name, marked "(published)" for anchors so they never pass for ours."""
    name = curve.get("name", "?")
    return f"{name} (published)" if curve.get("published") else name


def bd_table(results, anchor, metric: str = "psnr-rgb", dataset: str = "kodak", quality_range=None) -> list[dict]:
    """BD-rate (%) and BD-quality of each result against ``anchor`` (docs/METHOD.md §9).

    ``anchor``: a results dict, a path, or the name of a published curve of ``dataset``.
    Each row: ``{"name", "anchor", "metric", "bd_rate", "bd_quality", "error"}`` where
    ``bd_rate`` < 0 means fewer bits than the anchor for the same quality
    (:func:`semlib.metrics.bd_rate`) and ``bd_quality`` is the gain in dB
    (:func:`semlib.metrics.bd_psnr` on the metric; for ``ms-ssim-rgb`` the MS-SSIM is
    taken in dB, -10·log10(1 - MS-SSIM)). When the curves cannot be compared the two
    numbers are None and ``error`` says why. ``quality_range`` = (lo, hi), in the metric's
    units (dB for ``ms-ssim-rgb``), cuts the BD-rate's interval to that range
    (:func:`semlib.metrics.bd_rate`); the BD-quality stays over the common rate interval.
    """
    if isinstance(anchor, str) and not Path(anchor).is_file():
        ref = _anchor_list([anchor], dataset)[0]
    else:
        ref = _as_result_list(anchor)[0]
    m = "ms-ssim-db" if metric == "ms-ssim-rgb" else metric
    xb, yb = _curve(ref, m)
    rows = []
    for r in _as_result_list(results):
        row = {"name": _display_name(r), "anchor": _display_name(ref), "metric": metric,
               "bd_rate": None, "bd_quality": None, "error": None}
        try:
            xa, ya = _curve(r, m)
            row["bd_rate"] = metrics.bd_rate(xa, ya, xb, yb, psnr_range=quality_range)
            row["bd_quality"] = metrics.bd_psnr(xa, ya, xb, yb)
        except (KeyError, ValueError) as e:
            row["error"] = str(e)
        rows.append(row)
    return rows


def format_bd_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`bd_table` rows."""
    unit = "dB"
    lines = [f"| method | anchor | BD-rate (%) | BD-{rows[0]['metric'] if rows else 'quality'} ({unit}) |",
             "| --- | --- | ---: | ---: |"]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['name']} | {r['anchor']} | n/a | n/a ({r['error']}) |")
        else:
            lines.append(f"| {r['name']} | {r['anchor']} | {r['bd_rate']:+.1f} | {r['bd_quality']:+.2f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# semlib eval (docs/METHOD.md §9)


def _floats(text: str) -> list[float]:
    try:
        vals = [float(t) for t in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not vals or not all(math.isfinite(v) for v in vals):
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {text!r}")
    return vals


def add_eval_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``semlib eval``."""
    p.add_argument("--codec", required=False,
                   help=f"a classical codec ({', '.join(CODECS)}), 'semlib' (shipped model) or a checkpoint path")
    p.add_argument("--data", default="kodak", help="a folder of images, or a dataset name found by semlib.data (default kodak)")
    p.add_argument("-o", "--output", help="results JSON (default results/<dataset>/<codec>.json)")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=_floats, help="operating points of the codec's knob, e.g. '10,30,50' (default: its sweep)")
    rate.add_argument("--target-bpp", type=_floats, help="target rates in bpp, e.g. '0.75,1.12,1.25' (rate control per image)")
    p.add_argument("--tol", type=float, default=0.01, help="bpp tolerance of --target-bpp (default 0.01)")
    p.add_argument("--importance", choices=("gradcam", "uniform"), default="gradcam",
                   help="map weighting SI-SSIM (default gradcam, cached under results/cache/importance)")
    p.add_argument("--limit", type=int, help="use only the first N images")
    p.add_argument("--roi", choices=("none", "auto"), default="none", help="learned codec only: block-wise gamma from Grad-CAM")
    p.add_argument("--kappa", type=float, default=1.0, help="learned codec only: strength of --roi auto")
    p.add_argument("--refine", type=int, default=0, metavar="N",
                   help="learned codec only: N steps of encoder-side refinement per file (default 0)")
    add_roi_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--list", action="store_true", help="list the classical codecs and whether they run here")
    return p


def _list_codecs() -> str:
    lines = []
    for name, c in CODECS.items():
        reason = c.unavailable_reason()
        state = c.version() if reason is None else f"UNAVAILABLE: {reason}"
        lines.append(f"{name:9s} {c.description} [{state}]")
    return "\n".join(lines)


def run_eval(args: argparse.Namespace) -> int:
    """Run ``semlib eval`` with parsed arguments; returns the exit status (2 on bad input)."""
    try:
        if args.list:
            print(_list_codecs())
            return 0
        if not args.codec:
            raise SemlibError("--codec is required (see --list)")
        if args.refine and args.codec.lower() in CODECS:
            raise SemlibError("--refine is for the learned codec only")
        codec = resolve_codec(args.codec, roi=args.roi, kappa=args.kappa, allocation=roi_allocation(args),
                              refine=args.refine)
        folder = Path(args.data)
        if not folder.is_dir():
            folder = find_dataset(args.data)
        dataset = folder.name
        images = list_images(folder)
        if not images:
            raise SemlibError(f"{folder}: no images in it")
        if args.limit is not None:
            if args.limit < 1:
                raise SemlibError("--limit must be >= 1")
            images = images[: args.limit]
        out = Path(args.output) if args.output else results_path(dataset, codec.name)
        res = evaluate_codec(
            codec, images, qualities=args.quality, target_bpps=args.target_bpp, importance=args.importance,
            tol=args.tol, dataset=dataset, progress=not args.no_progress,
        )
        res["meta"]["dataset_path"] = str(folder)
        save_results(res, out)
        r = res["results"]
        print(f"{codec.name}: {len(images)} images x {len(r['bpp'])} points, "
              f"{r['bpp'][0]:.3f}..{r['bpp'][-1]:.3f} bpp, {res['meta']['elapsed_seconds']:.0f} s -> {out}")
        return 0
    except (SemlibError, ValueError, FileNotFoundError, KeyError, OSError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"semlib eval: error: {msg}", file=sys.stderr)
        return 2


def main_eval(argv: list[str] | None = None) -> int:
    """``semlib eval --codec NAME --data DIR -o RESULTS.json`` (docs/METHOD.md §9)."""
    p = argparse.ArgumentParser(prog="semlib eval", description="Sweep a codec over a folder of images into a results JSON.")
    add_eval_arguments(p)
    return run_eval(p.parse_args(argv))


if __name__ == "__main__":  # python -m semlib.evaluate --codec jpeg --data kodak
    sys.exit(main_eval())


def gamma_sweep(model, images, gammas) -> np.ndarray:
    """One model at each of ``gammas`` (uniform, no ROI) on ``images`` (uint8 arrays): rows of
    (gamma, mean bpp from the real file sizes, mean PSNR in dB), the file decoded by
    :func:`semlib.codec.decode`."""
    from semlib import codec, metrics

    images = [np.asarray(im) for im in images]
    if not images:
        raise SemlibError("no images to sweep")
    rows = []
    for g in gammas:
        bpps, psnrs = [], []
        for image in images:
            data = codec.encode(image, gamma=g, model=model)
            bpps.append(8 * len(data) / (image.shape[0] * image.shape[1]))
            psnrs.append(metrics.psnr(image, codec.decode(data, model=model)))
        rows.append((float(g), float(np.mean(bpps)), float(np.mean(psnrs))))
    return np.array(rows)


def fixed_rate_points(checkpoints: dict, images) -> dict[float, tuple[float, float, float]]:
    """Fixed-rate models (gamma -> checkpoint path or model, each trained at that one gamma) on
    ``images`` (uint8 arrays whose sides are multiples of 64): gamma -> (mean bpp of the real
    files, mean bpp estimated from the model's likelihoods, mean PSNR in dB). Every file is
    decoded and must give the encoder's reconstruction."""
    import torch

    from semlib import codec
    from semlib.data import to_tensor
    from semlib.models import load_model

    from semlib.models import MAX_STRIDE

    images = [np.asarray(im) for im in images]
    if not images:
        raise SemlibError("no images to code")
    for im in images:
        if im.ndim != 3 or im.shape[0] % MAX_STRIDE or im.shape[1] % MAX_STRIDE:
            raise SemlibError(f"fixed_rate_points needs RGB images whose sides are multiples of {MAX_STRIDE} "
                              f"(the likelihood estimate is of the unpadded image), got {im.shape}")
    points = {}
    for gamma, ckpt in sorted(checkpoints.items()):
        model = load_model(ckpt) if isinstance(ckpt, (str, Path)) else ckpt
        file_bpp, estimated, psnr = [], [], []
        for image in images:
            enc = codec.encode_image(image, gamma=float(gamma), model=model)
            if not np.array_equal(codec.decode(enc.data, model=model), enc.x_hat):
                raise SemlibError(f"the file of gamma {gamma:g} does not decode to the encoder's reconstruction")
            file_bpp.append(enc.bpp)
            psnr.append(metrics.psnr(image, enc.x_hat))
            with torch.no_grad():
                out = model(to_tensor(image), float(gamma))
            bits = sum(float(-lik.log2().sum()) for lik in out["likelihoods"].values())
            estimated.append(bits / (image.shape[0] * image.shape[1]))
        points[float(gamma)] = (float(np.mean(file_bpp)), float(np.mean(estimated)), float(np.mean(psnr)))
    return points


def quality_sweep(codec_name: str, images, qualities) -> np.ndarray:
    """A classical codec (:func:`semlib.baselines.get_codec`) at each of ``qualities``: rows of
    (quality, mean bpp, mean PSNR in dB) over ``images``."""
    from semlib import metrics
    from semlib.baselines import get_codec

    images = [np.asarray(im) for im in images]
    if not images:
        raise SemlibError("no images to sweep")
    c = get_codec(codec_name)
    rows = []
    for q in qualities:
        coded = [c.encode(im, q) for im in images]
        rows.append((float(q), float(np.mean([8 * len(d) / (im.shape[0] * im.shape[1]) for d, im in zip(coded, images)])),
                     float(np.mean([metrics.psnr(im, c.decode(d)) for d, im in zip(coded, images)]))))
    return np.array(rows)
