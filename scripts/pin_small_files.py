"""Rewrite tests/data/v2_small_*.semc with the shipped small model, and beside each its decoded
image as a PNG (on one thread; the decoder's image equals the encoder's reconstruction here),
the reference tests/test_portable.py compares other machines' decodes with. Run it when a new
model ships: the files of the old one are skipped by the test.

    python scripts/pin_small_files.py
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from PIL import Image

from semlib import codec, data
from semlib.models import load_model

ROOT = Path(__file__).resolve().parents[1]
# name -> (scikit-image photo, crop rows, crop columns, encode options)
FILES = {
    "chelsea_g64": ("chelsea", (40, 232), (100, 356), {"gamma": 64.0}),
    "chelsea_g512": ("chelsea", (40, 232), (100, 356), {"gamma": 512.0}),
    "coffee_roi_g128": ("coffee", (100, 292), (150, 406), {"gamma": 128.0, "importance": "auto"}),
    "coffee_bpp08": ("coffee", (100, 292), (150, 406), {"target_bpp": 0.8}),
}


def main() -> int:
    torch.set_num_threads(1)
    model = load_model()
    for name, (photo, (y0, y1), (x0, x1), options) in FILES.items():
        image = data.sample_image(photo)[y0:y1, x0:x1].copy()
        enc = codec.encode_image(image, model=model, **options)
        path = ROOT / "tests" / "data" / f"v2_small_{name}.semc"
        path.write_bytes(enc.data)
        decoded = codec.decode(enc.data, model=model)
        assert (decoded == enc.x_hat).all(), name
        Image.fromarray(decoded).save(path.with_suffix(".png"), optimize=True)
        print(f"{path.name}: {len(enc.data)} bytes, reference {path.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
