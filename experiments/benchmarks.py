"""The codec benchmarks of BENCHMARKS.md (run by scripts/benchmarks.py and
scripts/batch_benchmark.py): encode, decode and Grad-CAM on Kodak images (768 x 512), the
classical codecs JPEG and WebP on the same images at the same rate, and the codec at 0.25
to 16 megapixels. Every item runs in a fresh Python process (:func:`run_isolated`), so its
peak memory (the RSS high-water mark, ``ru_maxrss``) is its own; a profile says where the
time goes. Numbers are printed and written as JSON, never asserted: BENCHMARKS.md records
them with their machine (:func:`markdown_report`, :func:`update_markdown`).
"""

from __future__ import annotations

import cProfile
import datetime
import json
import math
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from semlib import data
from semlib.bench import timed
from semlib.bench import (CPU_TRAIN_PIXELS_PER_S, GPU_PEAK_FLOPS,  # noqa: F401 (the GPU estimates live in semlib.bench)
                          gpu_training_estimates, training_flops_per_pixel)
from semlib.metrics import psnr

REPO = Path(__file__).resolve().parent.parent      # on the path of the worker processes
# =========================================================================== codec benchmarks

# Targets of issue 6, in seconds per 768 x 512 image.
TARGETS = {"encode_s": 0.4, "decode_s": 0.2, "gradcam_s": 0.1}
SCALES_MP = (0.25, 1.0, 4.0, 16.0)       # image sizes of the scaling benchmark, in megapixels
MEMORY_BUDGET_GIB = 24.0                 # the codec must code 16 MP within this
TARGET_BPP = 0.75                        # the rate of the Kodak timings (with trained weights)
RANDOM_GAMMA = 256.0                     # the gamma of the Kodak timings with random weights
CLASSIC_CODECS = ("jpeg", "webp")
KODAK_IMAGES = 8                         # evenly spaced over the 24


def cpu_model() -> str:
    """The CPU's model name, with its family, model and AVX-512 where /proc/cpuinfo says
    (a virtual machine often shows a bare vendor name)."""
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not line.strip():
                    break                                    # the first processor is enough
                info[key.strip()] = value.strip()
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine()
    extra = [f"family {info['cpu family']} model {info['model']}"] if "cpu family" in info and "model" in info else []
    if "avx512f" in info.get("flags", "").split():
        extra.append("AVX-512")
    return f"{name} ({', '.join(extra)})" if extra else name


def memory_gib(field: str = "MemTotal") -> float | None:
    """A field of /proc/meminfo (MemTotal, MemAvailable) in GiB; None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return None


def cpu_seconds() -> tuple[float, float] | None:
    """(CPU seconds every process of the machine has used since boot, those of this process and
    its finished children), or None off Linux. Their difference over a run is the work of the
    other processes: the measure of contention, which the load average is not (a benchmark's own
    threads raise it)."""
    import resource

    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()[1:]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    busy = sum(int(v) for v in fields[:3]) + sum(int(v) for v in fields[5:8])   # user nice system irq softirq steal
    own = sum(getattr(resource.getrusage(w), k) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
              for k in ("ru_utime", "ru_stime"))
    return busy / ticks, own


def other_cores(start, end, wall_s: float) -> float | None:
    """The mean number of cores other processes kept busy between two :func:`cpu_seconds`."""
    if start is None or end is None or wall_s <= 0:
        return None
    return max(0.0, ((end[0] - start[0]) - (end[1] - start[1])) / wall_s)


def machine_info(threads: int) -> dict:
    """What the numbers were measured on, and how busy the machine was when they started."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": threads,
            "memory_gib": memory_gib(), "torch": torch.__version__, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}",
            "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "date": datetime.datetime.now().isoformat(timespec="minutes")}


# --------------------------------------------------------------------------- test images


def scaled_size(megapixels: float) -> tuple[int, int]:
    """(height, width): about ``megapixels``, aspect 2:3 (Kodak's), multiples of 16."""
    h = max(16, 16 * round(math.sqrt(megapixels * 1e6 / 1.5) / 16))
    w = max(16, 16 * round(1.5 * h / 16))
    return h, w


def mosaic(height: int, width: int, paths) -> np.ndarray:
    """A ``height`` x ``width`` photo made of Kodak images side by side (portrait ones
    turned), so that every size has the texture of real photos, not of an upscaled one."""
    tiles = []
    for p in paths:
        a = data.load_image(p)
        tiles.append(np.rot90(a) if a.shape[0] > a.shape[1] else a)
    th, tw = tiles[0].shape[:2]
    rows, cols = -(-height // th), -(-width // tw)
    canvas = np.empty((rows * th, cols * tw, 3), np.uint8)
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        canvas[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tiles[k % len(tiles)][:th, :tw]
    return np.ascontiguousarray(canvas[:height, :width])


def kodak_paths(count: int, folder=None) -> list[str]:
    """``count`` images evenly spaced over ``folder`` (default: the Kodak set)."""
    paths = data.list_images(folder if folder is not None else data.find_dataset("kodak"))
    pick = np.linspace(0, len(paths) - 1, min(count, len(paths))).round().astype(int)
    return [str(paths[i]) for i in pick]


def _image(spec: dict) -> np.ndarray:
    """A task's image: ``{"path": ...}`` or ``{"mosaic": [h, w], "paths": [...]}``."""
    if "path" in spec:
        return data.load_image(spec["path"])
    return mosaic(*spec["mosaic"], spec["paths"])


# --------------------------------------------------------------------------- one item, one process


def peak_mib() -> float:
    """The RSS high-water mark of this process, MiB (Linux reports ru_maxrss in KiB)."""
    import resource                                  # Unix only: imported where it is used

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


def _limit_memory(gib: float) -> None:
    """Let this process allocate at most ``gib`` more (RLIMIT_DATA), so that a codec that
    needs more fails with an error here instead of waking the machine's OOM killer."""
    import resource

    used = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmData:"):
                used = int(line.split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (used + int(gib * 2 ** 30), resource.RLIM_INFINITY))


def _task_encode(task: dict) -> dict:
    """Encode each image ``repeats`` times at one gamma (calibrated on the first image for
    ``target_bpp`` if no gamma is given); the files go to ``out_dir`` for the decode task."""
    from semlib import codec
    from semlib.models import load_model

    t = time.perf_counter()
    model = load_model(task["checkpoint"])
    codec.get_model(model)                                       # the fingerprint, once
    setup_s = time.perf_counter() - t
    images = [_image(spec) for spec in task["images"]]
    base = peak_mib()
    gamma = task.get("gamma")
    warm = images[0] if task.get("warmup", True) else images[0][:256, :384]   # a crop: big images
    if gamma is None:                                            # rate control also warms up
        gamma = codec.encode_image(warm, target_bpp=task["target_bpp"], model=model).gamma
    warm_file = Path(task["out_dir"]) / f"{task.get('name', 'image')}_warm.semc"
    warm_file.write_bytes(codec.encode_image(warm, gamma=gamma, model=model).data)
    result = {"gamma": gamma, "setup_s": setup_s, "base_mib": base, "warm_file": str(warm_file),
              "seconds": [], "bpp": [], "psnr": [], "files": []}
    for i, img in enumerate(images):
        times, enc = timed(lambda: codec.encode_image(img, gamma=gamma, model=model), task["repeats"])
        path = Path(task["out_dir"]) / f"{task.get('name', 'image')}_{i}.semc"
        path.write_bytes(enc.data)
        result["seconds"].append(times)
        result["bpp"].append(enc.bpp)
        result["psnr"].append(float(psnr(img, enc.x_hat)))
        result["files"].append(str(path))
    return result


def _task_decode(task: dict) -> dict:
    from semlib import codec
    from semlib.models import load_model

    model = load_model(task["checkpoint"])
    codec.get_model(model)
    files = [Path(f).read_bytes() for f in task["files"]]
    base = peak_mib()
    codec.decode(Path(task["warm_file"]).read_bytes() if task.get("warm_file") else files[0], model=model)
    result = {"base_mib": base, "seconds": [], "pixels": []}
    for blob in files:
        times, out = timed(lambda: codec.decode(blob, model=model), task["repeats"])
        result["seconds"].append(times)
        result["pixels"].append(int(out.shape[0] * out.shape[1]))
    return result


def _task_gradcam(task: dict) -> dict:
    from semlib import importance

    images = [_image(spec) for spec in task["images"]]
    base = peak_mib()
    first, _ = timed(lambda: importance.importance_map(images[0]), 1)   # loads the classifier
    result = {"base_mib": base, "first_call_s": first[0], "seconds": []}
    for img in images:
        result["seconds"].append(timed(lambda: importance.importance_map(img), task["repeats"])[0])
    return result


def _task_classic(task: dict) -> dict:
    """A classical codec at the rate our codec reached on each image: the quality is found
    by bisection (not timed), then one encode and one decode at it are timed."""
    from semlib import baselines

    codec = baselines.get_codec(task["codec"])
    images = [_image(spec) for spec in task["images"]]
    base = peak_mib()
    result = {"codec": codec.name, "version": codec.version(), "base_mib": base,
              "encode_seconds": [], "decode_seconds": [], "bpp": [], "psnr": [], "quality": []}
    for img, bpp in zip(images, task["bpp"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")                      # "target not met": we record the bpp reached
            q = baselines.encode_at_bpp(codec, img, bpp, tol=0.02).quality
        codec.decode(codec.encode(img, q))                       # warm-up
        enc_t, blob = timed(lambda: codec.encode(img, q), task["repeats"])
        dec_t, rec = timed(lambda: codec.decode(blob), task["repeats"])
        result["encode_seconds"].append(enc_t)
        result["decode_seconds"].append(dec_t)
        result["bpp"].append(8 * len(blob) / (img.shape[0] * img.shape[1]))
        result["psnr"].append(float(psnr(img, rec)))
        result["quality"].append(q)
    return result


class _Stopwatch:
    """Seconds spent inside wrapped functions, by name (wrappers cost ~1 us a call)."""

    def __init__(self):
        self.seconds, self._undo = defaultdict(float), []

    def wrap(self, owner, attr: str, name: str) -> None:
        fn = getattr(owner, attr)

        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t

        had_own = attr in vars(owner)            # a module's function; else a method of the class
        setattr(owner, attr, timed)
        self._undo.append(lambda: setattr(owner, attr, fn) if had_own else delattr(owner, attr))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []


def _top_functions(profile: cProfile.Profile, rows: int) -> list[dict]:
    """The functions with the most time of their own (not counting what they call)."""
    stats = pstats.Stats(profile).stats
    top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:rows]
    out = []
    for (file, line, func), (_, calls, tottime, cumtime, _) in top:
        where = func if file == "~" else f"{Path(file).parent.name}/{Path(file).name}:{line}({func})"
        out.append({"function": where, "calls": calls, "own_s": tottime, "cumulative_s": cumtime})
    return out


def network_parts(model) -> list[tuple[torch.nn.Module, str]]:
    """The codec's network cut into parts by path and scale, for per-part timers. The
    decoder's parts after the last latent (its /8 residual blocks, the /8 -> /4 upsampling,
    the /4 blocks and the head) are labelled "after the last latent": they only make the
    reconstruction, none of the priors."""
    enc_scale, dec_scale = ("/4", "/8", "/16", "/32", "/64"), ("/64", "/32", "/16", "/8", "/4")
    parts = [(model.stem, "encoder /4")]
    parts += [(b, f"encoder {enc_scale[s]}") for s, stage in enumerate(model.enc_stages) for b in stage]
    parts += [(d, f"encoder {enc_scale[s + 1]}") for s, d in enumerate(model.enc_down)]
    parts += [(m, f"latent blocks {dec_scale[t]}") for t, blocks in enumerate(model.dec_latents)
              for b in blocks for m in b.children()]
    last = len(model.dec_latents) - 1
    for t, stage in enumerate(model.dec_stages):
        tail = " (after the last latent)" if t >= last else ""
        parts += [(b, f"decoder blocks {dec_scale[t]}{tail}") for b in stage]
    parts += [(u, f"decoder upsampling {dec_scale[t]}" + (" (after the last latent)" if t >= last else ""))
              for t, u in enumerate(model.dec_up)]
    parts.append((model.head, "decoder head /4 -> /1 (after the last latent)"))
    return parts


def _time_modules(parts, run, repeats: int) -> dict:
    """Mean seconds per run spent in each labelled module (forward hooks), most first."""
    seconds, started, handles = defaultdict(float), {}, []
    for module, label in parts:
        handles.append(module.register_forward_pre_hook(
            lambda m, args: started.__setitem__(id(m), time.perf_counter())))
        handles.append(module.register_forward_hook(
            lambda m, args, out, label=label: seconds.__setitem__(label, seconds[label] + time.perf_counter()
                                                                   - started[id(m)])))
    try:
        timed(run, repeats)
    finally:
        for h in handles:
            h.remove()
    return dict(sorted(((k, v / repeats) for k, v in seconds.items()), key=lambda kv: -kv[1]))


def _task_profile(task: dict) -> dict:
    """Where the time of one encode, one decode and one Grad-CAM goes: a breakdown by
    stage (timers around the stages, mean of ``repeats`` runs after a warm-up), the network
    by part (:func:`network_parts`), and the top functions of one cProfile run (whose own
    overhead inflates Python-heavy code)."""
    from semlib import codec, entropy, importance
    from semlib.models import load_model

    model = load_model(task["checkpoint"])
    img = _image(task["images"][0])
    gamma, repeats, rows = task["gamma"], task["repeats"], task.get("rows", 12)
    blob = codec.encode_image(img, gamma=gamma, model=model).data       # warm-up
    codec.decode(blob, model=model)
    importance.importance_map(img)

    watch = _Stopwatch()
    watch.wrap(model, "encode_features", "bottom-up network")
    watch.wrap(model, "top_down", "top-down pass")
    watch.wrap(model.entropy, "compress", "rANS encode (compressai, C++)")
    watch.wrap(model, "_decode_latent", "latent decoding")
    watch.wrap(entropy, "rans_decode", "rANS decode")
    watch.wrap(importance, "preprocess", "resize + normalise")
    watch.wrap(importance, "features_and_logits", "classifier forward")
    watch.wrap(importance, "class_gradient", "backward to the features")
    watch.wrap(importance, "upsample", "upsample the map")
    stages = {}
    try:
        for what, run in (("encode", lambda: codec.encode_image(img, gamma=gamma, model=model)),
                          ("decode", lambda: codec.decode(blob, model=model)),
                          ("gradcam", lambda: importance.importance_map(img))):
            watch.seconds.clear()
            total = sum(timed(run, repeats)[0]) / repeats
            stages[what] = {"total_s": total, **{k: v / repeats for k, v in watch.seconds.items()}}
    finally:
        watch.restore()
    result = {"stages": _stage_table(stages), "network": {}, "top": {}}
    parts = network_parts(model)
    result["network"]["encode"] = _time_modules(parts, lambda: codec.encode_image(img, gamma=gamma, model=model),
                                                repeats)
    result["network"]["decode"] = _time_modules(parts, lambda: codec.decode(blob, model=model), repeats)
    for what, run in (("encode", lambda: codec.encode_image(img, gamma=gamma, model=model)),
                      ("decode", lambda: codec.decode(blob, model=model)),
                      ("gradcam", lambda: importance.importance_map(img))):
        prof = cProfile.Profile()
        prof.runcall(run)
        result["top"][what] = _top_functions(prof, rows)
    return result


def _stage_table(stages: dict) -> dict:
    """Nested timers -> exclusive parts that add up to the total, per operation."""
    out = {}
    enc = stages["encode"]
    coder = enc.get("rANS encode (compressai, C++)", 0.0)
    parts = {"bottom-up network (encoder)": enc.get("bottom-up network", 0.0),
             "top-down network (priors, reconstruction)": enc.get("top-down pass", 0.0) - coder,
             "rANS encode (compressai, C++)": coder}
    parts["other (padding, conversions, file)"] = enc["total_s"] - sum(parts.values())
    out["encode"] = {"total_s": enc["total_s"], "parts": parts}
    dec = stages["decode"]
    latent = dec.get("latent decoding", 0.0)
    rans = dec.get("rANS decode", 0.0)
    parts = {"top-down network (priors, reconstruction)": dec.get("top-down pass", 0.0) - latent,
             "rANS decode (semlib.entropy.rans_decode, numba)": rans,
             "symbol indexes and tensors around it": latent - rans}
    parts["other (parsing, CRC, conversions)"] = dec["total_s"] - sum(parts.values())
    out["decode"] = {"total_s": dec["total_s"], "parts": parts}
    cam = stages["gradcam"]
    parts = {k: cam.get(k, 0.0) for k in ("resize + normalise", "classifier forward", "backward to the features",
                                           "upsample the map")}
    parts["other (map arithmetic)"] = cam["total_s"] - sum(parts.values())
    out["gradcam"] = {"total_s": cam["total_s"], "parts": parts}
    return out


TASKS = {"encode": _task_encode, "decode": _task_decode, "gradcam": _task_gradcam,
         "classic": _task_classic, "profile": _task_profile}


def run_task(task: dict) -> dict:
    """Run one benchmark item in this process: threads set, memory limited if asked, the
    peak RSS recorded; an allocation failure is reported, not raised."""
    old_threads = torch.get_num_threads()
    torch.set_num_threads(int(task["threads"]))
    try:
        if task.get("memory_limit_gib"):
            _limit_memory(task["memory_limit_gib"])
        result = TASKS[task["kind"]](task)
    except MemoryError as e:
        result = {"error": f"out of memory ({type(e).__name__})"}
    except RuntimeError as e:
        if "alloc" not in str(e).lower() and "memory" not in str(e).lower():
            raise
        result = {"error": f"out of memory ({str(e).splitlines()[0][:160]})"}
    finally:
        torch.set_num_threads(old_threads)
    result["peak_mib"] = peak_mib()
    return result


def run_isolated(task: dict, timeout: float = 1800.0, isolate: bool = True) -> dict:
    """:func:`run_task` in a fresh ``python -m experiments.benchmarks`` process (its peak memory is
    the item's own), or in this one with ``isolate=False`` (quick tests: the peak is then
    this process's high-water mark, marked ``"isolated": False``)."""
    if not isolate:
        task = {k: v for k, v in task.items() if k != "memory_limit_gib"}   # never limit this process
        return {**run_task(task), "isolated": False}
    with tempfile.TemporaryDirectory(prefix="semlib-bench-") as tmp:
        task_file, result_file = Path(tmp) / "task.json", Path(tmp) / "result.json"
        task_file.write_text(json.dumps(task))
        threads = str(task["threads"])
        env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
                   PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
        try:
            proc = subprocess.run([sys.executable, "-m", "experiments.benchmarks", str(task_file), str(result_file)],
                                  capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"{task['kind']} process did not finish within {timeout:g} s", "isolated": True}
        if proc.returncode != 0 or not result_file.is_file():
            lines = (proc.stderr or proc.stdout or "").strip().splitlines() or ["(no output)"]
            how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            return {"error": f"{task['kind']} process failed ({how}): {lines[-1][:300]}", "isolated": True}
        return {**json.loads(result_file.read_text()), "isolated": True}


# --------------------------------------------------------------------------- the whole set


def _median(values) -> float:
    flat = [v for row in values for v in (row if isinstance(row, list) else [row])]
    return statistics.median(flat)


def _weights(checkpoint, work: Path) -> tuple[str, str]:
    """(path, label) of the weights to time: ``checkpoint``, else the shipped one, else
    random 'small' weights written to ``work`` (they code as fast as trained ones, but
    their rate at a gamma is not that of a trained model)."""
    from semlib.models import SHIPPED_CHECKPOINT, build_model, save_model

    if checkpoint is not None:
        return str(checkpoint), f"checkpoint {checkpoint}"
    if SHIPPED_CHECKPOINT.is_file():
        return str(SHIPPED_CHECKPOINT), f"shipped checkpoint {SHIPPED_CHECKPOINT.name}"
    torch.manual_seed(0)
    path = work / "random_small.pt"
    save_model(build_model("small").eval(), path, note="random weights for benchmarks")
    return str(path), "random 'small' weights (seed 0; no trained checkpoint shipped yet)"


# Long: the list of benchmark items, each a few lines, run in order.
def codec_benchmarks(checkpoint=None, threads: int = 2, images: int = KODAK_IMAGES, repeats: int = 3,
                     sizes=SCALES_MP, codecs=CLASSIC_CODECS, gamma: float | None = None,
                     target_bpp: float = TARGET_BPP, profile: bool = True, isolate: bool = True,
                     log=print, folder=None) -> dict:
    """Every figure of BENCHMARKS.md, as a dict (see :func:`markdown_report`).

    Kodak: ``images`` images, ``repeats`` timed runs each after a warm-up, medians; the
    gamma is ``gamma``, else the one that gives ``target_bpp`` on the first image with
    trained weights, or :data:`RANDOM_GAMMA` with random ones. The classical ``codecs``
    are matched to the rate our codec reached on each image. ``sizes``: megapixels of the
    scaling runs (one timed run each, warm-up on a crop), each under a memory limit of
    :data:`MEMORY_BUDGET_GIB` or what the machine has free, whichever is smaller.
    ``folder``: another folder of images in place of Kodak (the report keeps the key "kodak").
    """
    with tempfile.TemporaryDirectory(prefix="semlib-bench-") as tmp:
        work = Path(tmp)
        ckpt, label = _weights(checkpoint, work)
        if gamma is None and label.startswith("random"):
            gamma = RANDOM_GAMMA
        paths = kodak_paths(images, folder)
        specs = [{"path": p} for p in paths]
        common = {"threads": threads, "checkpoint": ckpt, "out_dir": str(work)}
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        report = {"machine": machine_info(threads), "weights": label, "targets": dict(TARGETS),
                  "kodak": {"images": [Path(p).stem for p in paths], "repeats": repeats}}

        def item(what, **task):
            t = time.perf_counter()
            res = run_isolated({**common, **task}, isolate=isolate)
            log(f"  {what}: {time.perf_counter() - t:.1f} s" + (f" -- {res['error']}" if "error" in res else ""))
            return res

        log(f"benchmarks with {label}, {threads} threads")
        enc = item("encode Kodak", kind="encode", images=specs, repeats=repeats, gamma=gamma,
                   target_bpp=target_bpp, name="kodak")
        if "error" in enc:
            raise RuntimeError(f"encoding Kodak failed: {enc['error']}")
        dec = item("decode Kodak", kind="decode", files=enc["files"], repeats=repeats)   # warm-up: the first file
        cam = item("Grad-CAM Kodak", kind="gradcam", images=specs, repeats=repeats)
        ours = {"gamma": enc["gamma"], "bpp": float(np.mean(enc["bpp"])), "psnr": float(np.mean(enc["psnr"])),
                "encode_s": _median(enc["seconds"]), "decode_s": _median(dec.get("seconds", [[float("nan")]])),
                "encode_peak_mib": enc["peak_mib"], "encode_base_mib": enc["base_mib"],
                "decode_peak_mib": dec.get("peak_mib"), "decode_base_mib": dec.get("base_mib"),
                "model_load_s": enc["setup_s"]}
        report["kodak"]["ours"] = ours
        report["kodak"]["gradcam"] = {"seconds": _median(cam["seconds"]), "first_call_s": cam["first_call_s"],
                                      "peak_mib": cam["peak_mib"], "base_mib": cam["base_mib"]}
        report["kodak"]["classic"] = {}
        for name in codecs:
            c = item(f"{name} Kodak", kind="classic", codec=name, images=specs, bpp=enc["bpp"], repeats=repeats)
            if "error" in c:
                report["kodak"]["classic"][name] = {"error": c["error"]}
                continue
            enc_s, dec_s = _median(c["encode_seconds"]), _median(c["decode_seconds"])
            report["kodak"]["classic"][name] = {
                "version": c["version"], "encode_s": enc_s, "decode_s": dec_s, "bpp": float(np.mean(c["bpp"])),
                "psnr": float(np.mean(c["psnr"])), "peak_mib": c["peak_mib"], "base_mib": c["base_mib"],
                "ours_over_theirs": {"encode": ours["encode_s"] / enc_s, "decode": ours["decode_s"] / dec_s}}
        measured = {"encode_s": ours["encode_s"], "decode_s": ours["decode_s"],
                    "gradcam_s": report["kodak"]["gradcam"]["seconds"]}
        report["targets"] = {k: {"target_s": TARGETS[k], "measured_s": measured[k], "met": measured[k] <= TARGETS[k]}
                             for k in TARGETS}

        report["scaling"] = []
        free = memory_gib("MemAvailable")
        limit = MEMORY_BUDGET_GIB if free is None else min(MEMORY_BUDGET_GIB, max(1.0, free - 2.0))
        for mp in sizes:
            h, w = scaled_size(mp)
            spec = [{"mosaic": [h, w], "paths": kodak_paths(24, folder)}]
            row = {"megapixels": h * w / 1e6, "height": h, "width": w, "memory_limit_gib": limit}
            e = item(f"encode {h}x{w}", kind="encode", images=spec, repeats=1, gamma=ours["gamma"],
                     warmup=False, name=f"scale{h}x{w}", memory_limit_gib=limit)
            row.update(encode_peak_mib=e.get("peak_mib"), encode_base_mib=e.get("base_mib"))
            if "error" in e:
                row["error"] = f"encode: {e['error']}"
            else:
                row.update(encode_s=e["seconds"][0][0], bpp=e["bpp"][0])
                d = item(f"decode {h}x{w}", kind="decode", files=e["files"], warm_file=e["warm_file"], repeats=1,
                         memory_limit_gib=limit)
                row.update(decode_peak_mib=d.get("peak_mib"), decode_base_mib=d.get("base_mib"))
                if "error" in d:
                    row["error"] = f"decode: {d['error']}"
                else:
                    row["decode_s"] = d["seconds"][0][0]
            report["scaling"].append(row)

        if profile:
            p = item("profile", kind="profile", images=specs[:1], gamma=ours["gamma"], repeats=max(1, repeats))
            report["profile"] = p
        report["machine"]["load_average_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
        report["machine"]["other_cores"] = other_cores(cpu0, cpu_seconds(), time.perf_counter() - wall0)
        return report


# --------------------------------------------------------------------------- the report


GENERATED_BEGIN = "<!-- BEGIN GENERATED by scripts/benchmarks.py: do not edit by hand -->"
GENERATED_END = "<!-- END GENERATED by scripts/benchmarks.py -->"


def _s(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3f}"


def _mib(x) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def busy(machine: dict) -> bool:
    """True when other work was running: other processes kept more than a quarter of a core
    busy on average (``other_cores``), or, in reports without that measure, the load average
    at the start was above half the cores (the one at the end counts the benchmark's own threads)."""
    if machine.get("other_cores") is not None:
        return machine["other_cores"] > 0.25
    load = machine.get("load_average")
    return load is not None and load > 0.5 * (machine.get("cores") or 1)


# Long: the BENCHMARKS.md section, table by table.
def markdown_report(report: dict) -> str:
    """The generated section of BENCHMARKS.md: machine line, targets, Kodak table,
    classical codecs, scaling, and where the time goes."""
    m, k = report["machine"], report["kodak"]
    ours, cam = k["ours"], k["gradcam"]
    lines = [f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gib']:.0f} GiB, "
             f"{m['system']}, Python {m['python']}, torch {m['torch']}, **torch threads: {m['threads']}**"
             + (f" (OMP_WAIT_POLICY={m['omp_wait_policy']})" if m.get("omp_wait_policy") else "") + "; "
             f"weights: {report['weights']}."
             + (f" Command: `{report['command']}`." if report.get("command") else ""), ""]
    if busy(m):
        others = (f"other processes kept {m['other_cores']:.2f} cores busy on average"
                  if m.get("other_cores") is not None else f"load average {m.get('load_average', 0):.1f} at the start")
        lines += [f"**Measured under contention** ({others}, on {m['cores']} cores): other jobs were "
                  "running, so the times are inflated and noisy. They will be measured again on an idle machine.", ""]
    elif m.get("other_cores") is not None:
        lines += [f"Other processes kept {m['other_cores']:.2f} cores busy on average during the run "
                  f"(load average {m.get('load_average') or 0:.1f} at the start).", ""]
    lines += ["### Targets (per 768 x 512 Kodak image)", "",
              "| | target | measured | |", "|---|---:|---:|---|"]
    names = {"encode_s": "encode", "decode_s": "decode", "gradcam_s": "Grad-CAM"}
    for key, t in report["targets"].items():
        lines.append(f"| {names[key]} | <= {t['target_s']:.1f} s | {_s(t['measured_s'])} s | "
                     f"{'met' if t['met'] else '**missed**'} |")
    n = len(k["images"])
    lines += ["", f"### Kodak: {n} image{'s' if n > 1 else ''} ({', '.join(k['images'])}), median of "
                  f"{k['repeats']} run{'s' if k['repeats'] > 1 else ''} each after a warm-up", "",
              "| codec | bpp | PSNR (dB) | encode (s) | decode (s) | ours / this, encode | ours / this, decode "
              "| peak RSS (MiB) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|",
              f"| ours (gamma {ours['gamma']:.4g}) | {ours['bpp']:.3f} | {ours['psnr']:.2f} | {_s(ours['encode_s'])} | "
              f"{_s(ours['decode_s'])} | 1 | 1 | {_mib(ours['encode_peak_mib'])} encode, "
              f"{_mib(ours['decode_peak_mib'])} decode |"]
    for name, c in k["classic"].items():
        if "error" in c:
            lines.append(f"| {name} | | | | | | | {c['error']} |")
            continue
        r = c["ours_over_theirs"]
        lines.append(f"| {name} ({c['version']}) | {c['bpp']:.3f} | {c['psnr']:.2f} | {_s(c['encode_s'])} | "
                     f"{_s(c['decode_s'])} | {r['encode']:.0f}x | {r['decode']:.0f}x | {_mib(c['peak_mib'])} |")
    lines += ["", f"Grad-CAM (EfficientNet-Lite0): {_s(cam['seconds'])} s per image, {_s(cam['first_call_s'])} s "
                  f"for the first call of a process (loads the classifier); peak RSS {_mib(cam['peak_mib'])} MiB. "
                  f"Loading the codec's weights: {_s(ours['model_load_s'])} s.",
              "", "Peak RSS is the high-water mark of a fresh process doing only that item, Python and torch "
                  f"included (after loading, before coding: {_mib(ours['encode_base_mib'])} MiB for the encoder, "
                  f"{_mib(ours['decode_base_mib'])} MiB for the decoder). "
                  + ("" if ours.get("psnr", 0) > 20 else "With random weights the PSNR means nothing; "
                     "the classical codecs are matched to the rate, not the quality."), ""]
    lines += [f"### Scaling (gamma {ours['gamma']:.4g}; photos made of Kodak tiles)", "",
              "| size | megapixels | bpp | encode (s) | decode (s) | encode peak RSS (MiB) | decode peak RSS (MiB) | within "
              f"{MEMORY_BUDGET_GIB:.0f} GiB |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in report["scaling"]:
        peaks = [v for v in (r.get("encode_peak_mib"), r.get("decode_peak_mib")) if v is not None]
        if "error" in r:
            within = f"**no**: {r['error']} (limit here {r['memory_limit_gib']:.1f} GiB)"
        else:
            within = "yes" if max(peaks) <= MEMORY_BUDGET_GIB * 1024 else "**no**"
        bpp = f"{r['bpp']:.3f}" if "bpp" in r else ""
        lines.append(f"| {r['height']} x {r['width']} | {r['megapixels']:.2f} | {bpp} | {_s(r.get('encode_s'))} | "
                     f"{_s(r.get('decode_s'))} | {_mib(r.get('encode_peak_mib'))} | {_mib(r.get('decode_peak_mib'))} "
                     f"| {within} |")
    if "profile" in report and "error" not in report["profile"]:
        lines += _profile_markdown(report["profile"])
    return "\n".join(lines) + "\n"


def _profile_markdown(p: dict) -> list[str]:
    lines = ["", "### Where the time goes (one Kodak image)", "",
             "Timers around each stage (mean of the runs after a warm-up; the parts add up to the total):", "",
             "| operation | stage | seconds | share |", "|---|---|---:|---:|"]
    for what, st in p["stages"].items():
        total = st["total_s"]
        for part, sec in sorted(st["parts"].items(), key=lambda kv: -kv[1]):
            lines.append(f"| {what} | {part} | {sec:.3f} | {100 * sec / total:.0f} % |")
        lines.append(f"| {what} | **total** | **{total:.3f}** | |")
    if "network" in p:
        lines += ["", "The network by part (forward hooks, mean of the same runs; the top-down pass runs on "
                      "one thread in both encoder and decoder):", "",
                  "| operation | part | seconds |", "|---|---|---:|"]
        for what, parts in p["network"].items():
            for part, sec in list(parts.items())[:6]:
                lines.append(f"| {what} | {part} | {sec:.3f} |")
            tail = sum(v for k, v in parts.items() if "after the last latent" in k)
            lines.append(f"| {what} | *all parts after the last latent (reconstruction only)* | *{tail:.3f}* |")
    lines += ["", "Top functions by own time (one cProfile run; the profiler's overhead inflates "
                  "Python-heavy code such as the rANS decoder):", "",
              "| operation | function | calls | own (s) | cumulative (s) |", "|---|---|---:|---:|---:|"]
    for what, rows in p["top"].items():
        for r in rows[:6]:
            lines.append(f"| {what} | `{r['function']}` | {r['calls']} | {r['own_s']:.3f} | {r['cumulative_s']:.3f} |")
    return lines


def publish(report: dict, section: str, json_path=None, markdown=None, **markers) -> None:
    """Print a benchmark's markdown ``section``, write its ``report`` as JSON to ``json_path``
    and replace the generated section of the file ``markdown`` (``markers``: ``begin``/``end``
    of :func:`update_markdown`); a falsy path skips that step."""
    print()
    print(section)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {json_path}")
    if markdown:
        update_markdown(markdown, section, **markers)
        print(f"updated the generated section of {markdown}")


def update_markdown(path, section: str, title: str = "# Benchmarks", begin: str = GENERATED_BEGIN,
                    end: str = GENERATED_END) -> None:
    """Replace the generated section of ``path`` between the markers ``begin`` and ``end``
    (created with ``title`` if missing), keeping whatever is written by hand around it."""
    path = Path(path)
    text = path.read_text() if path.is_file() else f"{title}\n\n"
    block = f"{begin}\n{section}{end}\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


if __name__ == "__main__":      # python -m experiments.benchmarks TASK.json RESULT.json (see run_isolated)
    with open(sys.argv[1]) as f:
        _task = json.load(f)
    _result = run_task(_task)
    with open(sys.argv[2], "w") as f:
        json.dump(_result, f)
