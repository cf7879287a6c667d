"""Do .semc files decode on other x86-64 CPUs? Encode Kodak images here, then decode each
in fresh processes that emulate older instruction sets (ONEDNN_MAX_CPU_ISA x
ATEN_CPU_CAPABILITY) and other thread counts, and compare with the encoder's reconstruction.

    python scripts/portable_decode.py [--images 6] [--gammas 16 256 4096] [--out results/robustness/portable.json]

Prints one row per setting (decodes, failures, differing sub-pixels, largest difference)
and the side information's cost (fragile symbols, bytes, share of the files).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from semlib import codec, data, entropy
from semlib.models import load_model

SETTINGS = [(isa, cap, 1) for isa in ("AVX512_CORE", "AVX2", "SSE41") for cap in ("avx2", "default")]
SETTINGS += [("", "", 2)]          # this machine's own kernels, 2 threads

_DECODE = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[1]))
from semlib import codec
for f in sys.argv[2:]:
    try:
        out = codec.decode(open(f, "rb").read()).astype(int)
    except Exception as e:
        print(f, "FAILED", 0, 0)
        continue
    diff = np.abs(out - np.load(f[:-5] + ".npy"))
    print(f, "ok", int((diff > 0).sum()), int(diff.max()))
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=6, help="the first N Kodak images")
    p.add_argument("--gammas", type=float, nargs="+", default=[16.0, 256.0, 4096.0])
    p.add_argument("--out", default="results/robustness/portable.json")
    args = p.parse_args(argv)

    torch.set_num_threads(1)
    model, fp = codec.get_model()
    paths = data.list_images(data.find_dataset("kodak"))[: args.images]
    files, total_bytes, side_bytes, fragile, symbols = [], 0, 0, 0, 0
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            img = data.load_image(path)
            for g in args.gammas:
                enc = codec.encode_image(img, gamma=g, model=model)
                f = Path(tmp) / f"{path.stem}_g{g:g}.semc"
                f.write_bytes(enc.data)
                np.save(f.with_suffix(".npy"), enc.x_hat)
                files.append(str(f))
                h = codec.parse(enc.data)
                total_bytes += h.size
                side_bytes += sum(len(entropy.pack_sides(pos, bits)) for pos, bits in h.sides) + 8
                fragile += sum(len(pos) for pos, _ in h.sides)
        pixels = sum(np.load(f[:-5] + ".npy").size for f in files)
        rows = []
        for isa, cap, threads in SETTINGS:
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            if isa:
                env.update(ONEDNN_MAX_CPU_ISA=isa, ATEN_CPU_CAPABILITY=cap)
            out = subprocess.run([sys.executable, "-c", _DECODE, str(threads), *files], env=env,
                                 capture_output=True, text=True, timeout=3600)
            if out.returncode:
                raise SystemExit(out.stderr[-2000:])
            res = [line.split() for line in out.stdout.strip().splitlines()]
            row = {"ONEDNN_MAX_CPU_ISA": isa or "(unset)", "ATEN_CPU_CAPABILITY": cap or "(unset)", "threads": threads,
                   "decodes": len(res), "failed": sum(r[1] == "FAILED" for r in res),
                   "differing_subpixels": sum(int(r[2]) for r in res), "subpixels": pixels,
                   "max_difference": max(int(r[3]) for r in res)}
            rows.append(row)
            print(f"{row['ONEDNN_MAX_CPU_ISA']:>12} {row['ATEN_CPU_CAPABILITY']:>8} {threads} threads: "
                  f"{row['decodes']} decodes, {row['failed']} failed, {row['differing_subpixels']} of {pixels} "
                  f"sub-pixels differ (at most by {row['max_difference']})", flush=True)
    summary = {"files": len(files), "images": [p.name for p in paths], "gammas": args.gammas,
               "bytes": total_bytes, "side_information_bytes": side_bytes,
               "side_share": side_bytes / total_bytes, "fragile_symbols": fragile,
               "checkpoint_fingerprint": fp.hex(), "machine": platform.processor() or platform.machine(),
               "torch": torch.__version__, "cpu_capability_here": torch.backends.cpu.get_cpu_capability(),
               "rows": rows}
    print(f"side information: {fragile} fragile symbols, {side_bytes} of {total_bytes} bytes "
          f"({100 * side_bytes / total_bytes:.2f} %)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
