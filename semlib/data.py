"""Finding, loading and converting images.

Where data is looked up, in this order (the first folder that exists wins):

1. the folder named by the environment variable ``SEMLIB_DATA``;
2. ``data/`` of the repository (and ``./data`` of the working directory);
3. ``../shared/data`` beside the repository (and beside the working directory).

Images are handled as ``numpy.uint8`` arrays of shape H x W x 3 (RGB) at the edges
of the library, and as float tensors 1 x 3 x H x W in [0, 1] inside it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
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


def find_dataset(name: str) -> Path:
    """The first folder ``<root>/<name>`` holding at least one image.

    Raises ``FileNotFoundError`` naming every place that was looked at, and how to
    get the data (:func:`semlib.data.download`).
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


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
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
    max_pixels = MAX_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():
            # semlib applies its own pixel limit just below; Pillow's bomb warning would be noise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
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
    arr = np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy
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
    if not a.flags.writeable:             # a read-only view (np.asarray of a PIL image): torch warns
        a = a.copy()
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


# ---------------------------------------------------------------------------------------
# Downloading the test sets (DESIGN.md §8): pinned URLs, sha256 per file, atomic writes.
# ---------------------------------------------------------------------------------------


class DownloadError(SemlibError):
    """A dataset file could not be fetched, or its checksum did not match."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where to fetch it (URLs tried in order) and its sha256.

    ``sha256=None`` means the checksum is *not pinned*: the file is fetched, its sum is
    printed in a warning, and nothing guarantees it is the file the project used.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None


@dataclass(frozen=True)
class RemoteDataset:
    """A test set that :func:`download` can fetch into ``<root>/<name>/``.

    Either ``files`` (fetched one by one, each checked against its sha256) or
    ``archive`` (a zip; the images whose path inside it contains ``member_filter``
    are extracted, flattened, into the dataset folder; the zip is deleted afterwards).
    """

    name: str
    description: str
    citation: str
    files: tuple[RemoteFile, ...] = ()
    archive: RemoteFile | None = None
    member_filter: str = ""
    expected_images: int = 0


# sha256 of the 24 Kodak PNGs (768x512 / 512x768, the "Kodak Lossless True Color Image
# Suite", PhotoCD PCD0992). The same sums are checked by independent projects that fetch
# the files from r0k.us, and they match the copies in the two GitHub mirrors below.
KODAK_SHA256 = {
    "kodim01.png": "a56e27cbf5f843c048b6af1d6e090760e9c92fadba88b7dee0205918a37523bd",
    "kodim02.png": "4f4b74a79237e311d72cad958237b5f7088d8bce1c82305ebefe1a70e3022dfd",
    "kodim03.png": "e25ca1ff2f0c0cb5fdfd5f9b0a0bb21ac4c3de3c84a67f35b09a85d3306249db",
    "kodim04.png": "e3b946107c5d3441c022f678d0c3caf1e224d81b1604ba840a4f88e562de61aa",
    "kodim05.png": "10349e963c5c813d327852f82c1795fa4148d69fedffc4c589bee458e3ac3d53",
    "kodim06.png": "363510303b715d4cbc384e1ce227e466b613a09e1b71ae985882bf8e7fbd9b18",
    "kodim07.png": "b77d3f006f42414bb242222e0482e750c0fb9e5ee8d4bed2f6f11c5605fe54a4",
    "kodim08.png": "ba23983c76b4832ee0e8af0592664756841a16779acd69f792e268fb6d13d6e7",
    "kodim09.png": "6a4361c2fc194feb4edaa9f9a4a0620fb9943e460ac7fdf037fb0f6dd6607a7d",
    "kodim10.png": "9dfb70f5867c29ff9ed6313683f19b3d867849e40fbc0c4c54a4a89df341cf23",
    "kodim11.png": "7936814b58b5387fce2e4e2488b4ec830dadd95fa9520f358ddb30990b50f2b6",
    "kodim12.png": "d78c37c2f04f23761ed2367dd77e2db584ddd4c3950833fecf89f199a8126980",
    "kodim13.png": "bc34a3ce58dea09dce1704c997171602de90cb34d0c8503a988b77f473d39b08",
    "kodim14.png": "55a94550ff18f3246c4074fd32b77b0c74447c26b6ad274d564d999c0450ba6e",
    "kodim15.png": "7538cbb80cb9103606c48b806eae57d56c885c7f90b9b3be70a41160f9cbb683",
    "kodim16.png": "a89c7268ccd4718ba424a99fc4643c572cf692ca6eae887185ceb4e9f11d2e54",
    "kodim17.png": "37afcc89fbdcb76d9518e04b2fc011027e2f4cd14b3b2f83cefd721641a47c5b",
    "kodim18.png": "1a9258c365988961d87a0598725b609139c303ad48a5aad6c503c3b1a87849aa",
    "kodim19.png": "b7450b264b1b0a411390d8931b112c27905a992520fc90569dc4b920aa32bbdc",
    "kodim20.png": "3b46c71e3b92a563820ba32936be8330c586c41f938efd94be938386aae4328a",
    "kodim21.png": "ac958597c82073f6bb65129c68f72b651db5b9efd82e11547d07350214bc268b",
    "kodim22.png": "1cee58eb1f2d9c7ebb254d208a03c783ce6cf2c4d8c2cf45e235dd23b4ce1b29",
    "kodim23.png": "e3111a2fd4da24af15d6459ef9eacfe54106b38e27b4a21821b75c3f5d2d5baf",
    "kodim24.png": "1071c68372cc5a01435c2c225a5cf7d4bb803846ec08bb6b3d6721b156d7cb96",
}

_KODAK_URLS = (
    "https://r0k.us/graphics/kodak/kodak/{name}",
    # mirror, same bytes (pinned commit): coodie/quant:images/kodim/
    "https://raw.githubusercontent.com/coodie/quant/bc7affc715299a8d98403622918116b88657a8b8/images/kodim/{name}",
)

DATASETS: dict[str, RemoteDataset] = {
    "kodak": RemoteDataset(
        name="kodak",
        description="Kodak Lossless True Color Image Suite: 24 RGB PNGs, 768x512 (18) and 512x768 (6)",
        citation="Eastman Kodak, PhotoCD PCD0992; distributed at https://r0k.us/graphics/kodak/",
        files=tuple(
            RemoteFile(name, tuple(u.format(name=name) for u in _KODAK_URLS), sha)
            for name, sha in KODAK_SHA256.items()
        ),
        expected_images=24,
    ),
    "tecnick": RemoteDataset(
        name="tecnick",
        description=(
            "Tecnick TESTIMAGES, RGB_OR_1200x1200: 100 RGB PNGs, 1200x1200, from the "
            "'OLD_SAMPLING' archive (about 511 MB; only the 100 images are kept)"
        ),
        citation=(
            "N. Asuni and A. Giachetti, TESTIMAGES: a large-scale archive for testing visual "
            "devices and basic image processing algorithms, STAG 2014; https://testimages.org"
        ),
        archive=RemoteFile(
            "testimages.zip",
            ("https://sourceforge.net/projects/testimages/files/OLD/OLD_SAMPLING/testimages.zip/download",),
            None,  # NOT pinned: no published checksum for this archive was available
        ),
        member_filter="RGB_OR_1200x1200/",
        expected_images=100,
    ),
    "clic2022": RemoteDataset(
        name="clic2022",
        description="CLIC 2022 image test set: 30 RGB PNGs, about 2048 px on the long side",
        citation="Challenge on Learned Image Compression 2022, https://compression.cc",
        archive=RemoteFile(
            "image_test_30.zip",
            ("https://storage.googleapis.com/clic2022_public/test_sets/image_test_30.zip",),
            None,  # NOT pinned: no published checksum for this archive was available
        ),
        member_filter="",
        expected_images=30,
    ),
}


def default_data_root() -> Path:
    """Where :func:`download` writes: ``$SEMLIB_DATA`` if set, else the repository's ``data/``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return REPO_ROOT / "data"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _open_url(url: str, dest: Path, timeout: float):
    """``urlopen`` with the project's error messages (offline, HTTP status)."""
    try:
        return urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise DownloadError(
            f"cannot reach {url}: {e.reason}; you appear to be offline; connect to the "
            f"internet, or copy the files into {dest.parent} by hand"
        ) from None
    except OSError as e:  # includes TimeoutError
        raise DownloadError(f"cannot reach {url}: {e}; you appear to be offline") from None


def _fetch_one(url: str, dest: Path, sha256: str | None, progress: bool, timeout: float) -> None:
    """Fetch ``url`` into ``dest`` through a temporary file and an atomic rename."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    response = _open_url(url, dest, timeout)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        total = response.headers.get("Content-Length")
        bar = tqdm(
            total=int(total) if total and total.isdigit() else None,
            unit="B",
            unit_scale=True,
            desc=dest.name,
            leave=False,
            disable=not progress,
        )
        with response, os.fdopen(fd, "wb") as out, bar:
            while True:
                try:
                    block = response.read(1 << 16)
                except OSError as e:
                    raise DownloadError(f"download of {url} broke off: {e}") from None
                if not block:
                    break
                out.write(block)
                h.update(block)
                bar.update(len(block))
        got = h.hexdigest()
        if sha256 is not None and got != sha256.lower():
            raise DownloadError(
                f"checksum mismatch for {dest.name} from {url}: expected sha256 {sha256}, "
                f"got {got}; the file was deleted"
            )
        if sha256 is None:
            warnings.warn(
                f"{dest.name}: checksum not pinned by semlib; the downloaded file has sha256 {got}",
                stacklevel=3,
            )
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def download_file(
    urls: str | tuple[str, ...] | list[str],
    dest: str | os.PathLike,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Fetch one file to ``dest``, trying each URL in turn, and check its sha256.

    A file already at ``dest`` with the right sum is kept (no network). The download goes
    to a temporary file in the same folder and is renamed into place only once complete
    and verified, so an interrupted or corrupt download never leaves a bad ``dest``.
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
    for url in urls:
        try:
            _fetch_one(url, dest, sha256, progress, timeout)
            return dest
        except DownloadError as e:
            errors.append(str(e))
    raise DownloadError(errors[0] if len(errors) == 1 else " | ".join(errors))


def _extract_images(archive: Path, folder: Path, member_filter: str) -> int:
    """Extract the image files of a zip whose path contains ``member_filter``, flattened."""
    count = 0
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            member = info.filename
            base = Path(member).name
            if info.is_dir() or not base or base.startswith("."):
                continue
            if Path(base).suffix.lower() not in IMAGE_EXTENSIONS or member_filter not in member:
                continue
            target = folder / base
            with z.open(info) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            count += 1
    return count


def download(name: str | RemoteDataset, root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Download a test set into ``<root>/<name>/`` and return that folder (DESIGN.md §8).

    ``name`` is a key of :data:`DATASETS` ("kodak", "tecnick", "clic2022") or a
    :class:`RemoteDataset`. ``root`` defaults to :func:`default_data_root`. Files already
    present with the right sha256 are skipped; a checksum mismatch deletes the file and
    raises :class:`DownloadError` naming the file, the expected and the received sum.
    Archives without a pinned checksum are fetched with a warning that prints their sum.
    """
    spec = DATASETS.get(name) if isinstance(name, str) else name
    if spec is None:
        raise DownloadError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    folder = Path(root).expanduser() if root is not None else default_data_root()
    folder = folder / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    for f in tqdm(spec.files, desc=spec.name, unit="file", disable=not progress or len(spec.files) < 2):
        download_file(f.urls, folder / f.name, f.sha256, progress=progress)
    if spec.archive is not None:
        have = len(list_images(folder))
        if spec.expected_images and have >= spec.expected_images:
            return folder
        zpath = download_file(spec.archive.urls, folder / spec.archive.name, spec.archive.sha256, progress=progress)
        try:
            n = _extract_images(zpath, folder, spec.member_filter)
        except zipfile.BadZipFile:
            raise DownloadError(f"{zpath}: not a zip archive (the server sent something else)") from None
        finally:
            zpath.unlink(missing_ok=True)
        if spec.expected_images and n != spec.expected_images:
            warnings.warn(f"{spec.name}: extracted {n} images, expected {spec.expected_images}", stacklevel=2)
    return folder


def get_dataset(name: str, download: bool = False, root: str | os.PathLike | None = None) -> Path:
    """The folder of dataset ``name``: :func:`find_dataset`, or a fresh download if allowed.

    With ``download=False`` a missing dataset raises ``FileNotFoundError`` that says how
    to get it; with ``download=True`` a known dataset (:data:`DATASETS`) is fetched.
    A folder holding fewer images than the dataset has (e.g. the one Tecnick image of
    ``../shared/data``) is returned with a warning, or completed by a download if allowed.
    """
    try:
        folder = find_dataset(name)
        spec = DATASETS.get(name)
        have = len(list_images(folder))
        if spec is None or not spec.expected_images or have >= spec.expected_images:
            return folder
        if not download:
            warnings.warn(
                f"{folder} holds {have} of the {spec.expected_images} images of {name}; "
                f"results on it are not results on {name}",
                stacklevel=2,
            )
            return folder
    except FileNotFoundError as e:
        if not download:
            hint = (
                f" Fetch it with semlib.data.get_dataset({name!r}, download=True)."
                if name in DATASETS
                else ""
            )
            raise FileNotFoundError(str(e) + hint) from None
        if name not in DATASETS:
            raise FileNotFoundError(f"{e} semlib knows no download for {name!r}.") from None
    return _download_dataset(name, root=root)


_download_dataset = download
