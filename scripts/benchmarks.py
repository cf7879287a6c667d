"""Speed and memory of the codec: encode / decode / Grad-CAM per Kodak image against the
targets, JPEG and WebP at the same rate, 0.25 to 16 megapixels, and where the time goes.

    nice -n 10 .venv/bin/python scripts/benchmarks.py            # everything (~5-10 min on 2 cores)
    .venv/bin/python scripts/benchmarks.py --quick               # 2 images, 1 run each, no 16 MP (~3 min)

Prints the results, writes them as JSON (--json) and replaces the generated section of
BENCHMARKS.md (--markdown; the text around it is kept). Each item runs in a fresh Python
process so that its peak memory is its own (semlib.bench.run_isolated).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))   # the repository, for experiments/

from experiments import benchmarks as bench  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=None,
                    help="model checkpoint (default: the shipped one, else random 'small' weights)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of every item (default 2)")
    ap.add_argument("--images", type=int, default=bench.KODAK_IMAGES, help="Kodak images (evenly spaced)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per image, after a warm-up")
    ap.add_argument("--sizes", type=float, nargs="+", default=list(bench.SCALES_MP), metavar="MP",
                    help="megapixels of the scaling runs (default 0.25 1 4 16)")
    ap.add_argument("--codecs", nargs="*", default=list(bench.CLASSIC_CODECS), help="classical codecs to compare")
    ap.add_argument("--gamma", type=float, default=None,
                    help=f"gamma of the timings (default: {bench.TARGET_BPP} bpp on the first image with trained "
                         f"weights, {bench.RANDOM_GAMMA:g} with random ones)")
    ap.add_argument("--quick", action="store_true", help="2 images, 1 run each, sizes up to 4 MP")
    ap.add_argument("--no-profile", action="store_true", help="skip the profile of where the time goes")
    ap.add_argument("--json", default=str(ROOT / "results" / "benchmarks" / "codec_benchmarks.json"),
                    help="where to write the figures (default results/benchmarks/codec_benchmarks.json)")
    ap.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"),
                    help="markdown file whose generated section is replaced (default BENCHMARKS.md); '' = none")
    ap.add_argument("--render", metavar="JSON", default=None,
                    help="measure nothing: write the generated section of --markdown from a saved report")
    args = ap.parse_args(argv)
    if args.render:
        bench.update_markdown(args.markdown, bench.markdown_report(json.loads(Path(args.render).read_text())))
        print(f"updated the generated section of {args.markdown} from {args.render}")
        return 0
    if args.quick:
        args.images, args.repeats = min(args.images, 2), 1
        args.sizes = [s for s in args.sizes if s < 16]

    report = bench.codec_benchmarks(checkpoint=args.checkpoint, threads=args.threads, images=args.images,
                                    repeats=args.repeats, sizes=args.sizes, codecs=args.codecs, gamma=args.gamma,
                                    profile=not args.no_profile, log=lambda msg: print(msg, flush=True))
    report["command"] = " ".join(["python scripts/benchmarks.py", *(argv if argv is not None else sys.argv[1:])])
    bench.publish(report, bench.markdown_report(report), args.json, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
