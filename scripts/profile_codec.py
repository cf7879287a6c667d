"""Where one encode and one decode of a Kodak image spend their time, on one thread.

    PYTHONPATH=. OMP_NUM_THREADS=1 nice -n 10 python scripts/profile_codec.py [--image kodim01.png] [--gamma 64]

CPU seconds (``time.process_time``, so that other jobs on a shared machine count less) of
``codec.encode`` (file only, as ``semlib compress`` does) and ``codec.decode``, median of 3
runs after a warm-up, then one cProfile run of each: the functions by own time, as shares of
the profiled run. Writes results/benchmarks/profile_1thread.json.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from semlib import bench, codec, data  # noqa: E402
from semlib.models import load_model  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--image", default="kodim01.png")
    ap.add_argument("--gamma", type=float, default=64.0)
    ap.add_argument("--rows", type=int, default=10)
    ap.add_argument("--json", default=str(ROOT / "results" / "benchmarks" / "profile_1thread.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = load_model()
    codec.get_model(model)
    img = data.load_image(Path(data.find_dataset("kodak")) / args.image)
    blob = codec.encode(img, gamma=args.gamma, model=model)
    codec.decode(blob, model=model)                                     # warm-up (numba compiles)
    report = {"image": args.image, "gamma": args.gamma, "bytes": len(blob), "machine": bench.machine_info(1)}
    for what, run in (("encode", lambda: codec.encode(img, gamma=args.gamma, model=model)),
                      ("decode", lambda: codec.decode(blob, model=model))):
        cpu = []
        for _ in range(3):
            t = time.process_time()
            run()
            cpu.append(time.process_time() - t)
        prof = cProfile.Profile()
        prof.runcall(run)
        stats = pstats.Stats(prof).stats
        total = sum(v[2] for v in stats.values())                    # own times add up to the run
        top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:args.rows]
        rows = [{"function": f"{Path(k[0]).name}:{k[1]}({k[2]})" if k[0] != "~" else k[2],
                 "calls": v[1], "own_s": round(v[2], 4), "share": round(v[2] / total, 3)} for k, v in top]
        report[what] = {"cpu_s_median": statistics.median(cpu), "cpu_s": cpu, "top": rows}
        print(f"{what}: {statistics.median(cpu):.3f} CPU s (median of 3, 1 thread)")
        for r in rows:
            print(f"  {r['share']:6.1%}  {r['own_s']:7.3f} s  {r['calls']:5d}  {r['function']}")
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
