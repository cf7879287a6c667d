"""The ``semlib`` command line (docs/METHOD.md §9).

    semlib importance IMAGE -o MAP.png
    semlib metrics REF REC [--importance MAP.png] [--json]
    semlib compress IMAGE OUT.semc (--gamma G | --bpp B) [--roi auto|none|MASK.png] [--kappa K] [--roi-top P] [--roi-boost F] [--refine N] [--tile N] [--checkpoint CKPT]
    semlib compress IMAGE|FOLDER ... -o OUTDIR (--gamma G | --bpp B) [--roi auto|none] [--workers N] [--force]
    semlib decompress IN.semc OUT.png [--checkpoint CKPT]
    semlib decompress FILE|FOLDER ... -o OUTDIR [--format png|tiff|webp-lossless] [--workers N] [--force]
    semlib info IN.semc
    semlib train --config tiny|small|paper --data DIR --steps N --out CKPT [--resume] [--beta B] [--fixed-gamma G] [--compile]
    semlib eval --codec NAME --data DIR -o RESULTS.json
    semlib bench
    semlib demo [IMAGE] [--bpp B] [--kappa K] [--roi-top P] [--roi-boost F] [--refine N] [--checkpoint CKPT] [-o FIGURE.png]
    semlib data list | download NAME [--to DIR] | verify NAME [--in DIR]

Bad input of any kind ends with a non-zero exit status and one line on stderr (argparse's
errors too); Ctrl-C at any moment, even while torch is being imported, ends with exit status
130 and the one line "semlib COMMAND: interrupted". Image sizes are written H x W (height x width).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import warnings
from pathlib import Path

from semlib import allocation as allocation_options  # numpy only: the ROI options
from semlib.errors import SemlibError

# Nothing heavy is imported here (semlib.batch, torch: in the commands), so that Ctrl-C
# while they load is caught by main().

EXIT_BAD_INPUT = 2


class CliError(Exception):
    """A problem with the command's arguments or files, reported in one line."""


class _Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (argparse itself prints the usage first, which
    for compress and decompress is two lines more), exit status 2."""

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _one_line(message) -> str:
    return " ".join(str(message).split())


def _output_path(path: str, force: bool) -> Path:
    p = Path(path)
    if p.exists() and not force:
        raise CliError(f"{p} exists (use --force to overwrite)")
    if p.is_dir():
        raise CliError(f"{p} is a directory")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise CliError(f"output folder {parent} does not exist")
    return p


def _read_bytes(path: str) -> bytes:
    p = Path(path)
    if not p.is_file():
        raise CliError(f"{p}: no such file")
    try:
        return p.read_bytes()
    except OSError as e:
        raise CliError(f"cannot read {p}: {e.strerror or e}") from None


def _image_path(arg: str) -> str:
    """A path, or ``skimage:NAME`` resolved by :func:`semlib.data.image_path`."""
    from semlib.data import image_path

    return image_path(arg)


def _save_png(path: Path, array, bits: int = 8, force: bool = False) -> None:
    import io

    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint16 if bits == 16 else np.uint8)).save(buf, format="PNG")
    _place(buf.getvalue(), path, force)


# --------------------------------------------------------------------------- commands


def cmd_importance(args) -> int:
    import numpy as np

    from semlib import data, importance

    out = _output_path(args.output, args.force)
    from semlib.batch import same_file

    if same_file(_image_path(args.image), out):
        raise CliError(f"{out} is the input: it would be overwritten")
    img = data.load_image(_image_path(args.image))
    target = args.target
    if target is not None and target.isdigit():
        target = int(target)
    g = importance.importance_map(img, classifier=args.classifier, target=target, topk=args.topk)
    top = 65535 if args.bits == 16 else 255
    _save_png(out, np.round(g * top).astype(np.uint16 if args.bits == 16 else np.uint8), bits=args.bits, force=args.force)
    print(f"wrote {out} ({g.shape[0]} x {g.shape[1]}, {args.bits}-bit grey, mean importance {g.mean():.3f})")
    return 0


def _load_map(path, shape):
    import numpy as np
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise CliError(f"{p}: no such file")
    from semlib.data import upright

    try:
        with Image.open(p) as im:
            im.load()
            upright(im, str(p))
            a = np.asarray(im.convert("I") if im.mode.startswith("I") else im.convert("L"), dtype=np.float64)
    except (OSError, SyntaxError) as e:
        raise CliError(f"{p}: cannot read the importance map ({e})") from None
    if a.shape != shape:
        raise CliError(f"{p}: importance map is {a.shape[0]} x {a.shape[1]}, the images are "
                       f"{shape[0]} x {shape[1]} (height x width)")
    if not np.isfinite(a).all() or a.min() < 0:
        raise CliError(f"{p}: the importance map holds negative or non-finite values")
    top = a.max()
    return (a / top if top > 0 else np.ones_like(a)).astype(np.float32)


def cmd_metrics(args) -> int:
    from semlib import data, metrics

    ref, rec = data.load_image(_image_path(args.ref)), data.load_image(_image_path(args.rec))
    if ref.shape != rec.shape:
        raise CliError(f"the images differ in size: {ref.shape[0]} x {ref.shape[1]} vs {rec.shape[0]} x {rec.shape[1]} "
                       "(height x width)")
    imp = _load_map(args.importance, ref.shape[:2]) if args.importance else None
    x, y = data.to_tensor(ref), data.to_tensor(rec)
    result = {
        "psnr": float(metrics.psnr(x, y)),
        "ms_ssim": _ms_ssim_or_none(metrics, x, y),
        "ssim": float(metrics.ssim(x, y)),
        "si_ssim": float(metrics.si_ssim(x, y, imp)),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:8s} {'n/a (image too small)' if v is None else f'{v:.6f}'}")
    return 0


def _ms_ssim_or_none(metrics, x, y):
    try:
        return float(metrics.ms_ssim(x, y))
    except ValueError:
        return None


def _one_pair(args, what: str, inputs: tuple[str, ...]) -> tuple[str, Path]:
    """The single-file form ``INPUT OUTPUT`` (no -o): the two paths, the output checked. An
    output named like an input (``inputs``: its suffixes) is refused: ``compress a.png b.png``
    means two inputs without -o, and --force would write over b.png."""
    if len(args.paths) != 2:
        raise CliError(f"give INPUT {what}, or several inputs (files or folders) with -o OUTDIR")
    src, out = args.paths
    if Path(out).suffix.lower() in inputs:
        raise CliError(f"{out} is named like an input: give INPUT {what}, or several inputs with -o OUTDIR")
    if Path(src).is_dir():
        raise CliError(f"{src} is a folder: give -o OUTDIR to code every file in it")
    if Path(out).is_dir():
        raise CliError(f"{out} is a folder: give -o {out} to write into it")
    from semlib.batch import same_file

    out = _output_path(out, args.force)
    if same_file(src, out):
        raise CliError(f"{out} is the input: it would be overwritten")
    return src, out


def _place(data: bytes, out: Path, force: bool) -> None:
    from semlib.batch import place

    try:
        place(data, out, force)
    except FileExistsError:
        raise CliError(f"{out} exists (use --force to overwrite)") from None
    except OSError as e:
        raise CliError(f"cannot write {out}: {e.strerror or e}") from None


def _run_batch(args, results, about: dict) -> int:
    """Print each failure and note on its own line while the bar runs, then the summary table;
    write the manifest. Exit status 2 if any file failed."""
    from tqdm.auto import tqdm

    from semlib import batch

    done = []
    manifest = Path(args.manifest) if args.manifest else Path(args.output_dir) / batch.MANIFEST
    try:
        with contextlib.closing(results):
            for r in results:
                done.append(r)
                for note in r.notes:
                    tqdm.write(f"semlib {args.command}: note: {note}", file=sys.stderr)
                if r.status == "failed":
                    msg = r.error if r.error.startswith(r.input) else f"{r.input}: {r.error}"
                    tqdm.write(f"semlib {args.command}: error: {msg}", file=sys.stderr)
    finally:
        if done:
            try:
                batch.write_manifest(manifest, done, command=args.command, **about)
            except OSError as e:
                raise CliError(f"cannot write the manifest {manifest}: {e.strerror or e}") from None
    print(batch.summary(done))
    print(f"manifest   {manifest}")
    return EXIT_BAD_INPUT if any(r.status == "failed" for r in done) else 0


def _batch_options(args) -> dict:
    return dict(workers=args.workers, threads=args.threads, force=args.force, progress=True)


def cmd_compress(args) -> int:
    from semlib import batch, codec, data
    from semlib.allocation import roi_allocation

    roi = None if args.roi in (None, "none") else args.roi
    alloc = roi_allocation(args)
    if args.output_dir is not None:
        if roi not in (None, "auto"):
            raise CliError("--roi MASK fits one image; with -o OUTDIR use --roi auto or none")
        if args.tile is not None or args.tile_overlap is not None:
            raise CliError("--tile and --tile-overlap set one image's tiling; with -o OUTDIR the default tiling applies")
        results = batch.encode_many([_image_path(p) for p in args.paths], args.output_dir, gamma=args.gamma,
                                    target_bpp=args.bpp, importance=roi, kappa=args.kappa, refine=args.refine,
                                    checkpoint=args.checkpoint, allocation=alloc, **_batch_options(args))
        return _run_batch(args, results, dict(gamma=args.gamma, target_bpp=args.bpp, roi=args.roi, kappa=args.kappa,
                                              refine=args.refine, checkpoint=args.checkpoint, threads=args.threads))
    from semlib.data import IMAGE_EXTENSIONS

    src, out = _one_pair(args, "OUT.semc", IMAGE_EXTENSIONS)
    img = data.load_image(_image_path(src))
    if roi not in (None, "auto") and not Path(roi).is_file():
        raise CliError(f"--roi: {roi} is neither 'auto', 'none' nor an existing mask file")
    enc = codec.encode_image(img, gamma=args.gamma, target_bpp=args.bpp, importance=roi,
                             kappa=args.kappa, checkpoint=args.checkpoint, refine=args.refine,
                             reconstruct=False, tile=args.tile, tile_overlap=args.tile_overlap, **alloc)
    _place(enc.data, out, args.force)
    msg = f"wrote {out}: {len(enc.data)} bytes, {enc.bpp:.4f} bpp, gamma {enc.gamma:.2f}"
    if enc.gamma_map is not None:
        msg += f" (ROI: block gamma {enc.gamma_map.min():.1f}..{enc.gamma_map.max():.1f}, kappa {args.kappa})"
    if enc.met_target is False:
        msg += f"; target {enc.target_bpp} bpp not reachable, closest file written"
    print(msg)
    return 0


FORMAT_OF_SUFFIX = {".tif": "tiff", ".tiff": "tiff", ".webp": "webp-lossless"}


def cmd_decompress(args) -> int:
    from semlib import batch, codec

    if args.output_dir is not None:
        fmt = args.format or "png"
        results = batch.decode_many(args.paths, args.output_dir, format=fmt, checkpoint=args.checkpoint,
                                    **_batch_options(args))
        return _run_batch(args, results, dict(format=fmt, checkpoint=args.checkpoint, threads=args.threads))
    src, out = _one_pair(args, "OUT.png", (batch.SEMC,))
    fmt = args.format or FORMAT_OF_SUFFIX.get(out.suffix.lower(), "png")
    img = codec.decode(_read_bytes(src), checkpoint=args.checkpoint)
    _place(batch.image_bytes(img, fmt), out, args.force)
    print(f"wrote {out} ({img.shape[0]} x {img.shape[1]}, height x width)")
    return 0


def cmd_info(args) -> int:
    from semlib import semc          # the file format alone: no torch, no model

    d = semc.info(_read_bytes(args.input))
    if args.json:
        print(json.dumps(d))
        return 0
    print(f"image      {d['height']} x {d['width']} (height x width)")
    print(f"size       {d['bytes']} bytes, {d['bpp']:.4f} bpp")
    print(f"model      {d['config']} (checkpoint fingerprint {d['fingerprint']})")
    if "tile" in d:
        print(f"tiles      {d['tiles'][0]} x {d['tiles'][1]} of {d['tile']} pixels, overlapping by {d['overlap']}")
    if d["roi"]:
        print(f"gamma      {d['gamma']:.3f} with a block map of {d['blocks'][0]} x {d['blocks'][1]}, "
              f"kappa {d['kappa']:.3f}: {d['gamma_min']:.2f} .. {d['gamma_max']:.2f}")
    else:
        print(f"gamma      {d['gamma']:.3f} (uniform)")
    print(f"latents    {', '.join(str(n) for n in d['latent_bytes'])} bytes")
    return 0


def cmd_train(args) -> int:
    from semlib import train

    return train.run_train(args) or 0


def cmd_eval(args) -> int:
    from semlib import evaluate

    return evaluate.run_eval(args) or 0


def cmd_bench(args) -> int:
    from semlib import bench

    return bench.run_bench(args) or 0


def cmd_demo(args) -> int:
    from semlib import demo

    image = _image_path(args.image)
    if Path(args.output).resolve() == Path(image).resolve():
        raise CliError(f"-o {args.output} would overwrite the input image")
    from semlib.allocation import roi_allocation

    demo.run_demo(image, bpp=args.bpp, kappa=args.kappa, checkpoint=args.checkpoint,
                  out=args.output, progress=True, allocation=roi_allocation(args), refine=args.refine)
    return 0


def cmd_data(args) -> int:
    from semlib import data

    if args.action == "list":
        print(f"{'set':<12} {'files':>5} {'MB':>6}  where")
        for name, s in data.SETS.items():
            files = s.files()
            folder, have = data.where(name)
            place = "not here" if folder is None else str(folder) + ("" if have == len(files) else f" ({have} files)")
            print(f"{name:<12} {len(files):>5} {sum(f.size for f in files) / 1e6:>6.1f}  {place}")
            print(f"{'':<26}{s.description}; {s.licence}")
        print(f"downloads go to {data.default_data_root()}; semlib data download NAME [--to DIR]")
        return 0
    if args.name not in data.SETS:
        raise CliError(f"unknown data set {args.name!r}; known: {', '.join(data.SETS)}")
    if args.action == "download":
        folder = data.download(args.name, root=args.to)
        print(f"{args.name}: {len(data.SETS[args.name].files())} files verified in {folder}")
        return 0
    folder = Path(args.dir) / args.name if args.dir else None
    if folder is not None and not folder.is_dir():
        raise CliError(f"{folder}: no such folder")
    r = data.verify(args.name, folder)
    print(f"{args.name} in {r['folder'][0]}: {len(r['ok'])} files match their pinned sha256, "
          f"{len(r['missing'])} missing, {len(r['mismatched'])} differ")
    for key in ("missing", "mismatched"):
        for name in r[key][:10]:
            print(f"  {key}: {name}")
    return 0 if not r["missing"] and not r["mismatched"] else 1


# --------------------------------------------------------------------------- parser


def _add_batch_arguments(s) -> None:
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes with -o (default: one per idle core, that is the cores less the load "
                        "average, fewer if the memory of the largest image would not allow it)")
    s.add_argument("--threads", type=int, default=1, metavar="T",
                   help="torch threads of each worker with -o (default 1; the files do not depend on --workers)")
    s.add_argument("--manifest", metavar="FILE.json", help="with -o: where to write the manifest (default OUTDIR/manifest.json)")


def _add_options_of(s, command: str, argv) -> None:
    """The options of train, eval and bench are defined beside their code, in modules that
    import torch: they are read only for the command being run (``argv`` names it; None: for
    every command), so that ``semlib info`` and ``semlib --help`` start without torch."""
    if argv is not None and next((a for a in argv if not a.startswith("-")), None) != command:
        return
    import importlib

    module, adder = _OPTIONS_OF[command]
    getattr(importlib.import_module(module), adder)(s)


_OPTIONS_OF = {"train": ("semlib.train", "add_train_arguments"), "eval": ("semlib.evaluate", "add_eval_arguments"),
               "bench": ("semlib.bench", "add_bench_arguments")}


# Long (a table of commands and their options, argparse's boilerplate): one command per block.
def build_parser(argv=None) -> argparse.ArgumentParser:
    """The parser of every command; given the command line ``argv``, the options of the
    heavy commands other than the one it runs are left out (:func:`_add_options_of`)."""
    p = _Parser(prog="semlib", description="Semantic-aware variable-rate learned image compression.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("importance", help="Grad-CAM importance map of an image, as a grey PNG",
                       description="Write the semantic importance map (Grad-CAM, docs/METHOD.md §1) of IMAGE as a grey PNG of the same size.")
    s.add_argument("image", help="input image (PNG, JPEG, ...), or skimage:NAME for a photo shipped with scikit-image")
    s.add_argument("-o", "--output", required=True, help="output PNG (0..255, or 0..65535 with --bits 16)")
    s.add_argument("--classifier", default="efficientnet_lite0",
                   help="efficientnet_lite0 (default, works offline), vgg16 or resnet50 (download weights)")
    s.add_argument("--target", default=None, help="ImageNet class index or name to explain (default: the top-1 class)")
    s.add_argument("--topk", type=int, default=None, help="weight the maps of the k most probable classes by their probability")
    s.add_argument("--bits", type=int, choices=(8, 16), default=8, help="bit depth of the PNG (default 8)")
    s.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    s.set_defaults(func=cmd_importance)

    s = sub.add_parser("metrics", help="PSNR, MS-SSIM, SSIM and SI-SSIM of a reconstruction",
                       description="Compare REC against REF. SI-SSIM weights each 8x8 block's SSIM by its importance (docs/METHOD.md §3); "
                                   "without --importance the map is uniform and SI-SSIM equals the mean SSIM.")
    s.add_argument("ref", help="reference image")
    s.add_argument("rec", help="reconstructed image, same size")
    s.add_argument("--importance", help="importance map PNG (as written by 'semlib importance')")
    s.add_argument("--json", action="store_true", help="print one JSON object with psnr, ms_ssim, ssim, si_ssim")
    s.set_defaults(func=cmd_metrics)

    s = sub.add_parser("compress", help="compress an image into a .semc file, or a folder of them",
                       description="Compress IMAGE into OUT.semc at a Lagrange multiplier --gamma (QARV units, inside "
                                   "the model's trained range) or at a target rate --bpp (a search over gamma). With --roi the gamma of each "
                                   "8x8 block follows its semantic level: gamma * (T_i / M)^kappa (docs/METHOD.md §2). "
                                   "With -o OUTDIR: every image given, and every image in the folders given (searched "
                                   "recursively, their structure kept), becomes OUTDIR/.../NAME.semc, in worker processes; "
                                   "outputs that exist are skipped (so an interrupted run resumes), a bad file is reported "
                                   "and counted, and OUTDIR/manifest.json gets one row per file.",
                       usage="semlib compress IMAGE OUT.semc (--gamma G | --bpp B) [options]\n"
                             "       semlib compress IMAGE|FOLDER ... -o OUTDIR (--gamma G | --bpp B) [options]")
    s.add_argument("paths", nargs="+", metavar="PATH",
                   help="IMAGE OUT.semc; or, with -o, images and folders (an image may be skimage:NAME, e.g. skimage:astronaut)")
    s.add_argument("-o", "--output-dir", metavar="OUTDIR", help="code every input into this folder (created if needed)")
    rate = s.add_mutually_exclusive_group(required=True)
    rate.add_argument("--gamma", type=float,
                      help="Lagrange multiplier: higher = better quality, more bits. It must lie in the range the "
                           "model was trained on (its checkpoint records it; the paper's 32 .. 2048 if it does not), "
                           "else it is refused. With --roi "
                           "it is the base gamma, and the block gammas gamma * (T_i / M)^kappa are clipped to that "
                           "range (so at its ends ROI moves fewer bits)")
    rate.add_argument("--bpp", type=float, help="target bits per pixel (met within 1%% when possible)")
    s.add_argument("--roi", default="none", help="'auto' (Grad-CAM map), 'none' (uniform, default) or a mask PNG (bright = important; one image only)")
    s.add_argument("--kappa", type=float, default=1.0,
                   help="strength of the ROI, >= 0: 0 = uniform, 1 = gamma proportional to the level (default 1)")
    allocation_options.add_roi_arguments(s)
    s.add_argument("--refine", type=int, default=0, metavar="N",
                   help="N steps of encoder-side refinement of the latents for R + gamma*D with this image's own "
                        "gamma map (20 is a good choice; each step costs about one decoding; same decoder and format; "
                        "default 0). The file is never worse by that measure than without it")
    s.add_argument("--tile", type=int, default=None, metavar="N",
                   help="code the image in N x N pixel tiles (a multiple of 64), in bounded memory, as a version-3 "
                        "file; 0 = never tile (default: tile images of more than 4 Mpx, in 2048-pixel tiles)")
    s.add_argument("--tile-overlap", type=int, default=None, metavar="O",
                   help="pixels shared by neighbouring tiles, blended (a multiple of 8, at most N/2; default 16)")
    s.add_argument("--checkpoint", help="model checkpoint (default: the one shipped with semlib)")
    s.add_argument("--force", action="store_true", help="overwrite outputs that exist")
    _add_batch_arguments(s)
    s.set_defaults(func=cmd_compress)

    s = sub.add_parser("decompress", help="decode a .semc file into a PNG, or a folder of them",
                       description="Decode IN.semc into OUT.png (or OUT.tiff, OUT.webp: lossless). The checkpoint must be "
                                   "the one that wrote the file (checked). With -o OUTDIR: every .semc file given, and "
                                   "every one in the folders given (recursively), becomes OUTDIR/.../NAME.png, as for "
                                   "'semlib compress -o'.",
                       usage="semlib decompress IN.semc OUT.png [options]\n"
                             "       semlib decompress FILE|FOLDER ... -o OUTDIR [--format FORMAT] [options]")
    s.add_argument("paths", nargs="+", metavar="PATH", help="IN.semc OUT.png; or, with -o, .semc files and folders")
    s.add_argument("-o", "--output-dir", metavar="OUTDIR", help="decode every input into this folder (created if needed)")
    s.add_argument("--format", choices=("png", "tiff", "webp-lossless"), default=None,
                   help="image format, lossless (default: png, or the single output's suffix .tif/.tiff/.webp)")
    s.add_argument("--checkpoint", help="model checkpoint (default: the one shipped with semlib)")
    s.add_argument("--force", action="store_true", help="overwrite outputs that exist")
    _add_batch_arguments(s)
    s.set_defaults(func=cmd_decompress)

    s = sub.add_parser("info", help="what a .semc file holds (size, gamma, bpp, bytes per latent)")
    s.add_argument("input", help="a .semc file")
    s.add_argument("--json", action="store_true", help="print one JSON object")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("train", help="train a model (see 'semlib train --help')",
                       description="Train the gamma-conditioned hierarchical VAE with the loss R + gamma*(MSE + beta*(1 - SI-SSIM)).")
    _add_options_of(s, "train", argv)
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("eval", help="evaluate a codec over a folder of images into a results JSON",
                       description="Sweep a codec (a classical codec name or a checkpoint path) over the images of DIR.")
    _add_options_of(s, "eval", argv)
    s.set_defaults(func=cmd_eval)

    s = sub.add_parser("bench", help="speed and memory of the codec, Grad-CAM and classical codecs",
                       description="Print parameters and step times of the configurations, and encode/decode/Grad-CAM times.")
    _add_options_of(s, "bench", argv)
    s.set_defaults(func=cmd_bench)

    s = sub.add_parser("demo", help="the whole method on one photo: ROI vs uniform vs JPEG at one bpp, in a figure",
                       description="Compute the Grad-CAM importance map of IMAGE, compress it at --bpp with the learned "
                                   "codec twice (one gamma for the whole image; gamma per 8x8 block from the map), "
                                   "decode both files, compress it with JPEG at the same bpp, and print bpp (from the "
                                   "file sizes), PSNR, SI-SSIM and the PSNR of the most important 20% of the pixels. "
                                   "Writes the figure NAME.png (-o) and, beside it, NAME_roi.semc, NAME_uniform.semc "
                                   "and NAME_jpeg.jpg, replacing files of these names. Nothing is downloaded.")
    s.add_argument("image", nargs="?", default="skimage:astronaut",
                   help="input image, or skimage:NAME for a photo shipped with scikit-image (default skimage:astronaut)")
    s.add_argument("--bpp", type=float, default=1.0, help="target bits per pixel for all three codecs (default 1.0)")
    s.add_argument("--kappa", type=float, default=1.0,
                   help="strength of the ROI: 0 = uniform, 1 = gamma proportional to the block level (default 1)")
    allocation_options.add_roi_arguments(s)
    s.add_argument("--refine", type=int, default=0, metavar="N",
                   help="N steps of encoder-side refinement for both learned files (slower; default 0)")
    s.add_argument("--checkpoint", help="model checkpoint (default: the one shipped with semlib)")
    s.add_argument("-o", "--output", default="demo.png", metavar="NAME.png", help="the figure, a PNG (default demo.png)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("data", help="list, download and verify the data sets (Kodak, Tecnick, CLIC sample, training photos)",
                       description="The data sets of the tutorials, each file pinned by its sha256 (data/README.md).")
    acts = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    acts.add_parser("list", help="the sets, their sizes and where they were found")
    a = acts.add_parser("download", help="fetch a set (files already there and verified are kept)")
    a.add_argument("name", help="kodak, tecnick, clic_sample or train")
    a.add_argument("--to", metavar="DIR", help="the data folder (default $SEMLIB_DATA, else data/ of the repository)")
    a = acts.add_parser("verify", help="check a set's files against their pinned sha256")
    a.add_argument("name", help="kodak, tecnick, clic_sample or train")
    a.add_argument("--in", dest="dir", metavar="DIR", help="the data folder that holds NAME/ (default: where it is found)")
    s.set_defaults(func=cmd_data)
    return p


def main(argv=None) -> int:
    command = None
    try:
        # Everything, the building of the parser included (for train, eval and bench it imports
        # torch), is inside this try: Ctrl-C at any moment is one line and exit status 130,
        # never a traceback.
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        command = args.command

        def one_line(message, category, *_args, **_kw):
            print(f"semlib {command}: note: {_one_line(message)}", file=sys.stderr)

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                warnings.showwarning = one_line
                return args.func(args)
        except (CliError, SemlibError, FileNotFoundError) as e:
            print(f"semlib {command}: error: {_one_line(e)}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except MemoryError:
            print(f"semlib {command}: error: out of memory", file=sys.stderr)
            return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"semlib{'' if command is None else ' ' + command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
