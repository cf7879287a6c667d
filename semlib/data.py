"""Finding, loading and converting images.

Where data is looked up, in this order (the first folder that exists wins):

1. the folder named by the environment variable ``SEMLIB_DATA``;
2. ``data/`` of the repository (and ``./data`` of the working directory);
3. ``../shared/data`` beside the repository (and beside the working directory).

Images are handled as ``numpy.uint8`` arrays of shape H x W x 3 (RGB) at the edges
of the library, and as float tensors 1 x 3 x H x W in [0, 1] inside it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from semlib.errors import ImageError

ENV_VAR = "SEMLIB_DATA"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
REPO_ROOT = Path(__file__).resolve().parent.parent

# Largest image load_image accepts, in pixels (about 100 megapixels, ~1.2 GB as float).
MAX_PIXELS = 100_000_000


def data_roots() -> list[Path]:
    """The candidate data folders, in lookup order (existing or not)."""
    roots = []
    if os.environ.get(ENV_VAR):
        roots.append(Path(os.environ[ENV_VAR]).expanduser())
    for base in (REPO_ROOT, Path.cwd()):
        roots.append(base / "data")
    for base in (REPO_ROOT, Path.cwd()):
        roots.append(base.parent / "shared" / "data")
    unique = []
    for r in roots:
        if r not in unique:
            unique.append(r)
    return unique


def find_dataset(name: str) -> Path:
    """The first folder ``<root>/<name>`` holding at least one image.

    Raises ``FileNotFoundError`` naming every place that was looked at, and how to
    get the data (:func:`semlib.data.download`, once the downloaders exist).
    """
    looked = []
    for root in data_roots():
        folder = root / name
        looked.append(str(folder))
        if folder.is_dir() and list_images(folder):
            return folder
    raise FileNotFoundError(
        f"dataset {name!r} not found; looked in: {', '.join(looked)}. "
        f"Set {ENV_VAR} to a folder that holds {name}/, or download it."
    )


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (extensions matched case-insensitively), sorted."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def load_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read an image file as RGB ``uint8`` H x W x 3.

    Grayscale, palette, CMYK and RGBA images are converted to RGB (alpha is dropped),
    with a warning; 16-bit images are scaled to 8 bits.
    Raises :class:`semlib.ImageError` for a missing, empty, unreadable or too large file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty")
    try:
        with Image.open(path) as im:
            if im.width * im.height > max_pixels:
                raise ImageError(
                    f"{path}: {im.width}x{im.height} is larger than the limit of {max_pixels} pixels"
                )
            im.load()
            return pil_to_array(im, name=str(path))
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: cannot decode the image ({e})") from None


def pil_to_array(im: Image.Image, name: str = "image") -> np.ndarray:
    """Convert any PIL image to RGB ``uint8`` H x W x 3, warning on lossy conversions."""
    if im.width == 0 or im.height == 0:
        raise ImageError(f"{name}: the image has no pixels ({im.width}x{im.height})")
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        warnings.warn(f"{name}: {mode} image scaled from 16 bits to 8 bits per sample", stacklevel=3)
        g = np.clip(np.round(a / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "F":
        raise ImageError(f"{name}: floating-point images are not supported")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
        warnings.warn(f"{name}: alpha channel dropped", stacklevel=3)
    elif mode in ("L", "1", "P"):
        if mode != "P":
            warnings.warn(f"{name}: grayscale image converted to RGB", stacklevel=3)
    elif mode == "CMYK":
        warnings.warn(f"{name}: CMYK image converted to RGB", stacklevel=3)
    elif mode not in ("RGB",):
        warnings.warn(f"{name}: {mode} image converted to RGB", stacklevel=3)
    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(arr)


def as_array(image) -> np.ndarray:
    """Accept a path, a PIL image, an H x W x 3 array (uint8 or float in [0,1]) or a
    1 x 3 x H x W / 3 x H x W tensor in [0,1]; return RGB ``uint8`` H x W x 3."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return pil_to_array(image)
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ImageError(f"expected one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.dim() != 3 or t.shape[0] != 3:
            raise ImageError(f"expected a 3 x H x W tensor, got shape {tuple(image.shape)}")
        return to_uint8(t)
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ImageError(f"expected an H x W x 3 image array, got shape {a.shape}")
    a = a[..., :3]
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"the image has no pixels (shape {a.shape})")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16:
        return np.round(a / 65535.0 * 255.0).astype(np.uint8)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("the image holds NaN or infinite values")
        return np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8)
    raise ImageError(f"unsupported image dtype {a.dtype}")


def to_tensor(image) -> torch.Tensor:
    """RGB image (anything :func:`as_array` takes) -> float32 tensor 1 x 3 x H x W in [0, 1]."""
    if isinstance(image, torch.Tensor) and image.dtype.is_floating_point:
        t = image if image.dim() == 4 else image.unsqueeze(0)
        return t.float()
    a = as_array(image)
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).float().div(255.0).contiguous()


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """Float tensor (1 x)3 x H x W in [0, 1] -> RGB ``uint8`` H x W x 3 (rounded, clipped)."""
    t = t.detach().cpu().float()
    if t.dim() == 4:
        t = t[0]
    return t.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).numpy().copy()


def sample_image(name: str = "astronaut") -> np.ndarray:
    """A photo that ships with scikit-image (no download): 'astronaut', 'chelsea', 'coffee', ..."""
    from skimage import data as skdata

    loader = getattr(skdata, name, None)
    if loader is None:
        raise ImageError(f"scikit-image has no sample image {name!r}")
    return as_array(loader())
