"""Does shipping the EMA weights in float16 cost quality? (issue 5)

Exports the EMA weights of a training checkpoint twice, as float32 and as float16 (loaded
back as float32, as the shipped file is), codes the same Kodak images at the same γ with
both (real files, ``codec.encode_image``) and writes bpp and PSNR side by side, with the
largest differences, to ``results/training/fp16_check.txt``.

    python scripts/fp16_check.py --train-state /work/runs/small/small.pt
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from semlib import codec, data, metrics
from semlib.models import load_model
from semlib.train import export_model, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-state", required=True, help="a training checkpoint (semlib train --out)")
    p.add_argument("--images", default="kodim01.png,kodim02.png,kodim03.png")
    p.add_argument("--gammas", default="32,256,2048")
    p.add_argument("--out", default=str(ROOT / "results" / "training" / "fp16_check.txt"))
    a = p.parse_args()
    kodak = data.find_dataset("kodak")
    step = int(load_checkpoint(a.train_state)["step"])
    lines = [f"# Exported EMA weights, float32 vs float16 (loaded back as float32), step {step}; real files, "
             f"{torch.get_num_threads()} threads.",
             "# Written by: python scripts/fp16_check.py --train-state <the training checkpoint>"]
    worst_bpp = worst_db = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for name, half in (("fp32", False), ("fp16", True)):
            models[name] = load_model(export_model(a.train_state, Path(tmp) / f"{name}.pt", fp16=half))
        for image in a.images.split(","):
            img = data.load_image(kodak / image)
            for g in (float(v) for v in a.gammas.split(",")):
                row = {}
                for name, model in models.items():
                    enc = codec.encode_image(img, gamma=g, model=model)
                    row[name] = (enc.bpp, metrics.psnr(img, enc.x_hat))
                (b32, p32), (b16, p16) = row["fp32"], row["fp16"]
                worst_bpp, worst_db = max(worst_bpp, abs(b16 - b32)), max(worst_db, abs(p16 - p32))
                lines.append(f"{image} {g:g} fp32 {b32:.4f} bpp {p32:.3f} dB | fp16 {b16:.4f} bpp {p16:.3f} dB")
    lines.append(f"# largest difference: {worst_bpp:.4f} bpp, {worst_db:.3f} dB")
    Path(a.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
