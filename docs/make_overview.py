"""Draw docs/overview.png, the README's picture: a Kodak photo, its Grad-CAM importance,
the block levels T_i / M and the per-block gamma (docs/METHOD.md §1-2). Run from anywhere:
``python docs/make_overview.py [kodimNN]``."""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from semlib import allocation, data, importance  # noqa: E402

name = sys.argv[1] if len(sys.argv) > 1 else "kodim23"
img = data.load_image(data.find_dataset("kodak") / f"{name}.png")
cam = importance.gradcam(img)
alloc = allocation.allocate(cam.map, gamma=256.0, kappa=1.0)

fig, axes = plt.subplots(1, 4, figsize=(16, 3.2), dpi=80)
panels = [
    (img, None, f"{name} ({img.shape[1]}x{img.shape[0]})"),
    (cam.map, "inferno", f"Grad-CAM: '{cam.name}' (p={cam.probability:.2f})"),
    (alloc.at_pixels(alloc.T / alloc.mean_level), "viridis", "block level $T_i/\\bar M$ (8x8 blocks)"),
    (alloc.at_pixels(alloc.gamma_map), "magma", "block $\\gamma_i = \\gamma (T_i/\\bar M)^\\kappa$, $\\gamma$=256, $\\kappa$=1"),
]
for ax, (im, cmap, title) in zip(axes, panels):
    shown = ax.imshow(im, cmap=cmap)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    if cmap is not None:
        fig.colorbar(shown, ax=ax, fraction=0.035)
fig.tight_layout()
out = Path(__file__).resolve().parent / "overview.png"
fig.savefig(out)
print(f"wrote {out}")
