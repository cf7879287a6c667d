"""Finding, loading and converting images.

Where data is looked up, in this order (the first folder that exists wins):

1. the folder named by the environment variable ``SEMLIB_DATA``;
2. ``data/`` of the repository (and ``./data`` of the working directory);
3. ``../shared/data`` beside the repository (and beside the working directory).

A known set (:data:`SETS`) that none of them holds is downloaded into ``data/`` (or
``$SEMLIB_DATA``) on first use, each file checked against its pinned sha256;
``SEMLIB_DATA_MIRROR`` replaces the download sources by one base URL (a local copy).

Images are handled as ``numpy.uint8`` arrays of shape H x W x 3 (RGB) at the edges
of the library, and as float tensors 1 x 3 x H x W in [0, 1] inside it.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from semlib.errors import ImageError, SemlibError

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


def find_dataset(name: str, download: bool = True) -> Path:
    """The first folder ``<root>/<name>`` of :func:`data_roots` holding images (in subfolders too).

    ``name`` is a set of :data:`SETS` ("kodak", "tecnick", "clic_sample", "train"), a folder
    inside one ("train/bsds500/train"), or any folder name under a data root. When no root
    holds a known set (or the download folder holds an interrupted download of it) and
    ``download`` is true, its files are fetched into :func:`default_data_root` with a
    one-line message. Raises ``FileNotFoundError`` naming every place looked at, or
    :class:`DownloadError` in one line when the download fails (offline, say).
    """
    looked = []
    target = default_data_root() / name
    for root in data_roots():
        folder = root / name
        looked.append(str(folder))
        if folder.is_dir() and list_images(folder, recursive=True):
            missing = _missing_files(name, folder)
            if not missing:
                return folder
            if download and folder == target:
                break                                   # an interrupted download: complete it below
            warnings.warn(f"{folder} lacks {len(missing)} files of {name}; results on it are not "
                          f"results on the whole set", stacklevel=2)
            return folder
    set_name, _, inside = name.partition("/")
    if set_name not in SETS:
        raise FileNotFoundError(f"dataset {name!r} not found; looked in: {', '.join(looked)}. "
                                f"Set {ENV_VAR} to a folder that holds {name}/.")
    files = SETS[set_name].files(inside)
    if not download or not files:
        raise FileNotFoundError(f"dataset {name!r} not found; looked in: {', '.join(looked)}. "
                                + (f"Fetch it with: semlib data download {set_name}" if files else
                                   f"The set {set_name} has no folder {inside!r}."))
    print(f"semlib: {name} is not here; downloading {len(files)} files "
          f"({sum(x.size for x in files) / 1e6:.1f} MB) into {target}", flush=True)
    return _download_set(set_name, root=default_data_root(), only=inside) / inside


def list_images(folder: str | os.PathLike, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (extensions matched case-insensitively), sorted."""
    folder = Path(folder)
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _sixteen_bit_rgb(im: Image.Image) -> bool:
    """Whether Pillow reads ``im`` (not yet loaded) from 16 bits per sample into an 8-bit RGB(A)
    mode, that is keeping the high byte of each sample (48/64-bit PNG, 16-bit RGB TIFF)."""
    if im.mode not in ("RGB", "RGBA"):
        return False
    for tile in im.tile or ():
        args = tile[3] if len(tile) > 3 else None
        raw = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else "")
        if isinstance(raw, str) and ";16" in raw:
            return True
    return False


def upright(im: Image.Image, name: str = "image") -> Image.Image:
    """``im`` turned as its EXIF orientation says (a phone photo is stored sideways with
    orientation 6 or 8), in place; the image as stored, with a warning, when its EXIF data
    cannot be read."""
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except Exception as e:  # noqa: BLE001 - broken EXIF data must not make the image unreadable
        warnings.warn(f"{name}: its EXIF orientation cannot be read ({type(e).__name__}); "
                      "the image is used as stored", stacklevel=3)
    return im


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as RGB ``uint8`` H x W x 3, upright.

    The EXIF orientation is applied (:func:`upright`). Grayscale, palette, CMYK and RGBA
    images are converted to RGB (alpha is dropped), with a warning; 16-bit images are
    reduced to 8 bits, and of an animation or a multi-page file only the first frame is
    read, each with a warning (a "note" line on the command line).
    Raises :class:`semlib.ImageError` for a missing, empty, unreadable or too large file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: the file is empty")
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            # semlib applies its own pixel limit just below; Pillow's bomb warning would be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            if im.width * im.height > max_pixels:
                raise ImageError(f"{path}: {im.height} x {im.width} (height x width) is larger than the limit "
                                 f"of {max_pixels} pixels")
            frames = getattr(im, "n_frames", 1)
            if isinstance(frames, int) and frames > 1:
                warnings.warn(f"{path}: only the first of its {frames} frames is read", stacklevel=2)
            if _sixteen_bit_rgb(im):
                warnings.warn(f"{path}: {im.mode} image reduced from 16 to 8 bits per sample "
                              "(the low 8 bits are dropped)", stacklevel=2)
            im.load()
            return pil_to_array(upright(im, str(path)), name=str(path))
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (or a format Pillow cannot read)") from None
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: cannot decode the image ({e})") from None


def pil_to_array(im: Image.Image, name: str = "image") -> np.ndarray:
    """Convert any PIL image to RGB ``uint8`` H x W x 3, warning on lossy conversions."""
    if im.width == 0 or im.height == 0:
        raise ImageError(f"{name}: the image has no pixels ({im.height} x {im.width}, height x width)")
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
    arr = np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy
    return np.ascontiguousarray(arr)


def as_array(image) -> np.ndarray:
    """Accept a path, a PIL image, an H x W x 3 array (uint8 or float in [0,1]) or a
    1 x 3 x H x W / 3 x H x W tensor in [0,1]; return RGB ``uint8`` H x W x 3."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return pil_to_array(image)
    if _is_tensor(image):
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


def _is_tensor(x) -> bool:
    """``isinstance(x, torch.Tensor)`` without importing torch (this module does not need it
    to read images, and ``semlib info`` starts without it): no tensor exists before torch is
    imported."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_tensor(image) -> torch.Tensor:
    """RGB image (anything :func:`as_array` takes) -> float32 tensor 1 x 3 x H x W in [0, 1]."""
    import torch

    if isinstance(image, torch.Tensor) and image.dtype.is_floating_point:
        t = image if image.dim() == 4 else image.unsqueeze(0)
        return t.float()
    a = as_array(image)
    if not a.flags.writeable:             # a read-only view (np.asarray of a PIL image): torch warns
        a = a.copy()
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).float().div(255.0).contiguous()


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """Float tensor (1 x)3 x H x W in [0, 1] -> RGB ``uint8`` H x W x 3 (rounded, clipped)."""
    import torch

    t = t.detach().cpu().float()
    if t.dim() == 4:
        t = t[0]
    return t.clamp(0, 1).mul(255.0).round().to(torch.uint8).permute(1, 2, 0).numpy().copy()


def image_path(arg: str) -> str:
    """``skimage:NAME`` names a photo that ships with scikit-image (no download), e.g.
    ``skimage:astronaut``, ``skimage:chelsea``, ``skimage:coffee``: its file's path; anything
    else is a path, returned as given. (The one place that resolves these names: the command
    line and the demo use it.)"""
    if not arg.startswith("skimage:"):
        return arg
    import skimage

    name = arg.split(":", 1)[1]
    folder = Path(skimage.__file__).parent / "data"
    for ext in (".png", ".jpg"):
        if (folder / f"{name}{ext}").is_file():
            return str(folder / f"{name}{ext}")
    raise ImageError(f"scikit-image ships no photo named {name!r} (try astronaut, chelsea, coffee, rocket)")


def sample_image(name: str = "astronaut") -> np.ndarray:
    """A photo that ships with scikit-image (no download): 'astronaut', 'chelsea', 'coffee', ..."""
    from skimage import data as skdata

    loader = getattr(skdata, name, None)
    if loader is None:
        raise ImageError(f"scikit-image has no sample image {name!r}")
    return as_array(loader())


# ---------------------------------------------------------------------------------------
# The data sets and their downloads (docs/METHOD.md §8): one table of sets, a pinned sha256
# per file (semlib/sums/<set>.txt), temporary files renamed into place once verified.
# ---------------------------------------------------------------------------------------

MIRROR_VAR = "SEMLIB_DATA_MIRROR"     # a base URL laid out like data/: <mirror>/<set>/<path>
SUMS_DIR = Path(__file__).resolve().parent / "sums"


class DownloadError(SemlibError):
    """A data file could not be fetched, or it is not the pinned file."""

    def _render_traceback_(self):   # Jupyter shows this one line in place of a traceback
        return [f"DownloadError: {self}"]


def _github(repo: str, commit: str, folder: str = "") -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{folder}"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a set: its path in the set's folder, the URLs to try in order, its sha256 and size."""

    name: str
    urls: tuple[str, ...]
    sha256: str
    size: int


@dataclass(frozen=True)
class DataSet:
    """A set that :func:`download` fetches into ``<root>/<name>/``, one pinned file at a time.

    ``sources``: (prefix, URL bases) pairs; a file whose path starts with ``prefix`` comes
    from ``base + the rest of its path`` (bases tried in order; the first matching prefix
    wins). ``renames``: (path in the set, name at the source) where the two differ. The
    files, sums and sizes are listed in ``semlib/sums/<name>.txt`` (scripts/pin_data.py).
    """

    name: str
    description: str
    licence: str
    sources: tuple[tuple[str, tuple[str, ...]], ...]
    renames: tuple[tuple[str, str], ...] = ()

    def urls(self, path: str) -> tuple[str, ...]:
        mirror = os.environ.get(MIRROR_VAR)
        if mirror:
            return (f"{mirror.rstrip('/')}/{self.name}/{urllib.parse.quote(path)}",)
        prefix, bases = next((p, b) for p, b in self.sources if path.startswith(p))
        source_name = dict(self.renames).get(path, path[len(prefix):])
        return tuple(base + urllib.parse.quote(source_name) for base in bases)

    def files(self, inside: str = "") -> list[RemoteFile]:
        """The pinned files, those under the folder ``inside`` of the set only if given."""
        rows = [line.split(None, 2) for line in (SUMS_DIR / f"{self.name}.txt").read_text().splitlines() if line]
        inside = inside.strip("/") + "/" if inside.strip("/") else ""
        return [RemoteFile(path, self.urls(path), sha, int(size)) for sha, size, path in rows if path.startswith(inside)]


SETS: dict[str, DataSet] = {
    "kodak": DataSet(
        "kodak",
        "Kodak Lossless True Color Image Suite (PhotoCD PCD0992): 24 PNGs, 768x512 and 512x768",
        "released by Eastman Kodak for unrestricted use",
        (("", (_github("coodie/quant", "bc7affc715299a8d98403622918116b88657a8b8", "images/kodim/"),
               "https://r0k.us/graphics/kodak/kodak/")),),
    ),
    "tecnick": DataSet(
        "tecnick",
        "Tecnick TESTIMAGES RGB_OR_1200x1200: 1 of the 100 images (1200x1200 PNG); not the whole set",
        "Tecnick TESTIMAGES licence (N. Asuni and A. Giachetti, testimages.org)",
        (("", (_github("Ezio77/DINER", "4179b483624752a6c5a7ad321d50d432e29515e9", "pic/"),)),),
    ),
    "clic_sample": DataSet(
        "clic_sample",
        "5 CLIC professional-track photos (1152x768 .. 2048x1363 PNG); NOT the CLIC 2022 test set",
        "Unsplash licence (CLIC professional photos)",
        (("CLIC2020_", (_github("Justin-Tan/high-fidelity-generative-compression",
                                "7d4e9e785932c039df7fb436159600ed8b474a83", "assets/originals/"),)),
         ("", (_github("abcbdf/Variable_Rate_Compress", "3f89740b5ea465faacc05660bb4e659db85eebcd"),))),
    ),
    "train": DataSet(
        "train",
        "training photos: BSDS500 (500 JPEGs, 481x321) and 643 ImageNet images (one per class); no Kodak image",
        "BSDS500: UC Berkeley, research use; ImageNet: non-commercial research and education only",
        (("bsds500/", (_github("Sisso16/ssn_pytorch", "c4f9ac8c43397cbacbf2e2ba1505efafa769435d",
                               "BSR/BSDS500/data/images/"),)),
         ("imagenet_sample/", (_github("EliSchwartz/imagenet-sample-images",
                                       "bc69043e2862758a1906c6a24a792bb28c6bb2ff"),))),
        renames=(("imagenet_sample/n02966687_carpenters_kit.JPEG", "n02966687_carpenter's_kit.JPEG"),
                 ("imagenet_sample/n03590841_jack-o-lantern.JPEG", "n03590841_jack-o'-lantern.JPEG"),
                 ("imagenet_sample/n12057211_yellow_ladys_slipper.JPEG", "n12057211_yellow_lady's_slipper.JPEG")),
    ),
}


def default_data_root() -> Path:
    """Where downloads go: ``$SEMLIB_DATA`` if set, else ``data/`` of the repository
    (of the working directory when semlib is installed from a wheel)."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return (REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else Path.cwd()) / "data"


def _missing_files(name: str, folder: Path) -> list[str]:
    """The pinned files of ``name`` (a set or a folder in one) that ``folder`` lacks; [] for other names."""
    set_name, _, inside = name.partition("/")
    if set_name not in SETS:
        return []
    skip = len(inside.strip("/")) + 1 if inside.strip("/") else 0
    return [f.name for f in SETS[set_name].files(inside) if not (folder / f.name[skip:]).is_file()]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _open_url(url: str, timeout: float):
    """``urlopen`` with the project's one-line errors (offline, HTTP status)."""
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DownloadError(f"cannot reach {url} ({e.reason}): offline?") from None
    except OSError as e:  # includes TimeoutError
        raise DownloadError(f"cannot reach {url} ({e}): offline?") from None


def _fetch_one(url: str, dest: Path, sha256: str | None, size: int | None, bar, timeout: float) -> None:
    """Fetch ``url`` into a temporary file beside ``dest``; rename it into place once verified."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    response = _open_url(url, timeout)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp, got = Path(tmp_name), 0
    try:
        h = hashlib.sha256()
        with response, os.fdopen(fd, "wb") as out:
            while True:
                try:
                    block = response.read(1 << 16)
                except (OSError, http.client.HTTPException) as e:
                    raise DownloadError(f"download of {url} broke off after {got} bytes ({e!r})") from None
                if not block:
                    break
                out.write(block)
                h.update(block)
                got += len(block)
                bar.update(len(block))
        if size is not None and got != size:
            raise DownloadError(f"download of {url} broke off: {got} of {size} bytes; nothing was kept")
        if sha256 is not None and h.hexdigest() != sha256.lower():
            raise DownloadError(f"checksum mismatch for {dest.name} from {url}: expected sha256 {sha256}, "
                                f"got {h.hexdigest()}; nothing was kept")
        os.replace(tmp, dest)
    except DownloadError:
        bar.update(-got)
        raise
    finally:
        tmp.unlink(missing_ok=True)


def download_file(urls: str | tuple[str, ...] | list[str], dest: str | os.PathLike, sha256: str | None = None,
                  progress: bool = True, timeout: float = 60.0, size: int | None = None, bar=None) -> Path:
    """Fetch one file to ``dest``, trying each URL in turn, and check its sha256 (and size).

    A file already at ``dest`` with the right sum is kept (no network). The download goes
    to a temporary file in the same folder and is renamed into place only once complete
    and verified, so an interrupted, truncated or corrupt download never leaves a ``dest``.
    Raises :class:`DownloadError` naming every URL tried and why it failed.
    """
    dest = Path(dest)
    urls = (urls,) if isinstance(urls, str) else tuple(urls)
    if dest.is_file():
        if sha256 is None or sha256_file(dest) == sha256.lower():
            return dest
        warnings.warn(f"{dest}: sha256 does not match the pinned sum; fetching it again", stacklevel=2)
        dest.unlink()
    errors = []
    own_bar = bar is None
    bar = bar or tqdm(total=size, unit="B", unit_scale=True, desc=dest.name, leave=False, disable=not progress)
    try:
        for url in urls:
            try:
                _fetch_one(url, dest, sha256, size, bar, timeout)
                return dest
            except DownloadError as e:
                errors.append(str(e))
    finally:
        if own_bar:
            bar.close()
    raise DownloadError(" | ".join(errors))


def download(name: str, root: str | os.PathLike | None = None, only: str = "", progress: bool = True) -> Path:
    """Download the set ``name`` of :data:`SETS` into ``<root>/<name>/`` and return that folder.

    ``root`` defaults to :func:`default_data_root`; ``only`` limits the download to one
    folder of the set ("bsds500/train" of "train"). Files already there with the right
    sha256 are kept; every other file is fetched, checked against its pinned sum and size,
    and renamed into place. The first file that cannot be had raises :class:`DownloadError`
    (the files fetched before it stay, verified).
    """
    if name not in SETS:
        raise DownloadError(f"unknown data set {name!r}; known: {', '.join(SETS)}")
    folder = (Path(root).expanduser() if root is not None else default_data_root()) / name
    files = SETS[name].files(only)
    if not files:
        raise DownloadError(f"{name} has no folder {only!r}")
    with tqdm(total=sum(f.size for f in files), unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
        for f in files:
            dest = folder / f.name
            if dest.is_file() and dest.stat().st_size == f.size and sha256_file(dest) == f.sha256:
                bar.update(f.size)
                continue
            download_file(f.urls, dest, f.sha256, size=f.size, bar=bar)
    return folder


_download_set = download      # find_dataset's argument ``download`` hides the function there


def verify(name: str, folder: str | os.PathLike | None = None) -> dict[str, list[str]]:
    """Check a folder of the set ``name`` against the pinned sums (default: the folder
    :func:`find_dataset` finds, without downloading). Returns the file names that are
    ``"ok"``, ``"missing"`` and ``"mismatched"``, and the ``"folder"`` checked."""
    if name not in SETS:
        raise DownloadError(f"unknown data set {name!r}; known: {', '.join(SETS)}")
    folder = Path(folder) if folder is not None else find_dataset(name, download=False)
    report = {"folder": [str(folder)], "ok": [], "missing": [], "mismatched": []}
    for f in SETS[name].files():
        path = folder / f.name
        key = "missing" if not path.is_file() else "ok" if sha256_file(path) == f.sha256 else "mismatched"
        report[key].append(f.name)
    return report


def where(name: str) -> tuple[Path | None, int]:
    """The first data root's folder that holds files of the set ``name``, and how many of them."""
    total = len(SETS[name].files())
    for root in data_roots():
        folder = root / name
        if folder.is_dir():
            have = total - len(_missing_files(name, folder))
            if have:
                return folder, have
    return None, 0
