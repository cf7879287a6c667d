"""Classical image codecs as baselines: JPEG, JPEG 2000, WebP, AVIF, HEVC intra, JPEG XL.

Every codec has the same small contract, so that :mod:`semlib.evaluate` can sweep any
of them (and the project's own learned codec) the same way:

- ``encode(img, quality) -> bytes`` takes an RGB ``uint8`` H x W x 3 image;
- ``decode(bytes) -> uint8 H x W x 3``;
- ``quality_range``, ``integer_quality`` and ``rate_increases`` say what the knob is
  and which way it turns (so :func:`encode_at_bpp` can bisect it);
- ``sweep``: the default operating points, ordered from low to high rate, about
  0.1 to 2 bpp on Kodak;
- ``version()``: the exact libraries that ran (recorded in every result file).

The rate of a point is always the size of the whole file the codec wrote (container
and headers included), 8 · bytes / (H · W) bits per pixel, as for the published
anchors (docs/METHOD.md §9). Codecs whose library is missing stay in :data:`CODECS` and
say why they cannot run (:meth:`Codec.unavailable_reason`).

The settings, and why:

- ``jpeg`` / ``jpeg444``: Pillow (libjpeg-turbo), quality 1..100, 4:2:0 or 4:4:4
  chroma, optimised Huffman tables (a few % smaller files at the same pixels).
- ``jpeg2000``: Pillow (OpenJPEG), 9/7 irreversible wavelet with the colour transform
  (``mct=1``; Pillow's default leaves RGB untransformed, which costs several dB),
  bare codestream (``.j2k``), one quality layer. The knob is the target rate in bpp
  (OpenJPEG's compression ratio is 24 / bpp): the rate control is OpenJPEG's own.
- ``webp``: Pillow (libwebp), quality 0..100, ``method=4`` (libwebp's default).
- ``avif``: Pillow (libavif with the aom encoder, dav1d decoder), quality 0..100,
  4:4:4 chroma, full range, ``speed=6`` (Pillow's default), aom ``tune=psnr``
  (libavif's default tuning scores about 7 % worse in BD-rate on PSNR, measured on
  8 Kodak images; the tables here are PSNR tables).
- ``hevc``: HEVC intra in a HEIF file via pillow-heif (libheif with x265, decoded by
  libde265), quality 0..100 (libheif maps it to x265's rate factor), **4:4:4 chroma**
  (``chroma=444``), BT.601 full-range YCbCr, x265 tuned for PSNR: ``tune=psnr`` and
  ``aq-mode=0, psy-rd=0, psy-rdoq=0`` (libheif switches adaptive quantisation and the
  psycho-visual terms on after applying the tune, so they are switched off explicitly).
  Measured on the 24 Kodak images (5 points, BD-rate on PSNR against the published
  BPG 4:4:4 curve): libheif's defaults +16 %, ``tune=psnr`` alone +11 %, these settings
  +0.3 %, i.e. the same as BPG. The container differs (HEIF adds a few hundred bytes of
  boxes, BPG a few bytes).
- ``jpegxl``: imagecodecs (libjxl), the knob is libjxl's Butteraugli ``distance``
  (0.05..25, lower is better quality, so the rate *decreases* as it grows), effort 7.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from PIL import Image

from semlib import rate_control
from semlib.data import as_array, pil_to_array
from semlib.errors import ImageError, SemlibError
from semlib.rate_control import EncodeResult  # noqa: F401  (its home before)


def _pillow_version() -> str:
    import PIL

    return PIL.__version__


def _feature_version(feature: str) -> str:
    from PIL import features

    return str(features.version(feature))


@dataclass
class Codec:
    """A codec behind the common contract (see the module docstring).

    ``quality_range`` is (lowest, highest) value of the knob; ``rate_increases`` is
    True when a larger value gives a larger file.
    """

    name: str
    description: str
    quality_name: str
    quality_range: tuple[float, float]
    integer_quality: bool
    rate_increases: bool
    sweep: tuple[float, ...]
    _encode: Callable[[np.ndarray, float], bytes] = field(repr=False)
    _decode: Callable[[bytes], np.ndarray] = field(repr=False)
    _version: Callable[[], str] = field(repr=False)
    _check: Callable[[], str | None] = field(repr=False, default=lambda: None)

    def unavailable_reason(self) -> str | None:
        """None when the codec can run here, else a sentence saying what is missing."""
        try:
            return self._check()
        except Exception as e:  # a broken optional library must not crash the registry
            return f"{type(e).__name__}: {e}"

    @property
    def available(self) -> bool:
        return self.unavailable_reason() is None

    def _require(self) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            raise SemlibError(f"codec {self.name!r} is not available here: {reason}")

    def check_quality(self, quality) -> float | int:
        """The quality as the codec takes it; ValueError naming the range if it is outside."""
        lo, hi = self.quality_range
        try:
            q = float(quality)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: {self.quality_name} must be a number, got {quality!r}") from None
        if not (lo <= q <= hi) or math.isnan(q):
            raise ValueError(f"{self.name}: {self.quality_name} must be in [{lo:g}, {hi:g}], got {quality!r}")
        if self.integer_quality:
            if q != int(q):
                raise ValueError(f"{self.name}: {self.quality_name} must be an integer, got {quality!r}")
            return int(q)
        return q

    def encode(self, img, quality) -> bytes:
        """Compress an RGB ``uint8`` H x W x 3 image at ``quality``; the file's bytes."""
        self._require()
        a = as_array(img)
        q = self.check_quality(quality)
        return bytes(self._encode(a, q))

    def decode(self, data: bytes) -> np.ndarray:
        """The reconstruction, RGB ``uint8`` H x W x 3."""
        self._require()
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
            raise ImageError(f"{self.name}: nothing to decode (empty or not bytes)")
        try:
            out = self._decode(bytes(data))
        except ImageError:
            raise
        except Exception as e:
            raise ImageError(f"{self.name}: cannot decode the data ({type(e).__name__}: {e})") from None
        return np.ascontiguousarray(out, dtype=np.uint8)

    def version(self) -> str:
        """The libraries and versions that encode and decode, e.g. 'Pillow 13.0.0, libwebp 1.6.0'."""
        self._require()
        return self._version()

    def __call__(self, img, quality) -> bytes:
        return self.encode(img, quality)




# ---------------------------------------------------------------------------------------
# Pillow codecs


def _pil_save(a: np.ndarray, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, "RGB").save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return pil_to_array(im, name="decoded image")


def _needs_feature(feature: str, what: str) -> Callable[[], str | None]:
    def check() -> str | None:
        from PIL import features

        if not features.check(feature):
            return f"Pillow {_pillow_version()} was built without {what} (PIL.features.check({feature!r}) is False)"
        return None

    return check


def _jpeg(subsampling: str) -> Callable[[np.ndarray, float], bytes]:
    def enc(a: np.ndarray, q: int) -> bytes:
        return _pil_save(a, "JPEG", quality=q, subsampling=subsampling, optimize=True)

    return enc


def _jpeg_version() -> str:
    from PIL import features

    lib = "libjpeg-turbo" if features.check("libjpeg_turbo") else "libjpeg"
    v = features.version("libjpeg_turbo") if lib == "libjpeg-turbo" else features.version("jpg")
    return f"Pillow {_pillow_version()}, {lib} {v}"


def _jpeg2000_encode(a: np.ndarray, target_bpp: float) -> bytes:
    bits_per_pixel = 8 * a.shape[2]
    return _pil_save(
        a,
        "JPEG2000",
        quality_mode="rates",
        quality_layers=[bits_per_pixel / target_bpp],
        irreversible=True,
        mct=1,
        no_jp2=True,
    )


def _webp_encode(a: np.ndarray, q: int) -> bytes:
    return _pil_save(a, "WEBP", quality=q, method=4)


def _avif_encode(a: np.ndarray, q: int) -> bytes:
    return _pil_save(a, "AVIF", quality=q, subsampling="4:4:4", speed=6, range="full", advanced={"tune": "psnr"})


def _avif_version() -> str:
    from PIL import _avif

    return f"Pillow {_pillow_version()}, libavif {_avif.libavif_version} ({_avif.codec_versions()})"


# ---------------------------------------------------------------------------------------
# HEVC intra (pillow-heif) and JPEG XL (imagecodecs)


def _heif_check() -> str | None:
    try:
        import pillow_heif
    except ImportError:
        return "pillow-heif is not installed (pip install pillow-heif)"
    info = pillow_heif.libheif_info()
    if "x265" not in info.get("encoders", {}):
        return f"libheif {info.get('libheif')} has no x265 HEVC encoder"
    return None


# libheif sets aq-mode=1, psy-rd=1, psy-rdoq=1 after the tune; "x265:" keys come last.
_X265_PSNR = {"tune": "psnr", "x265:aq-mode": "0", "x265:psy-rd": "0", "x265:psy-rdoq": "0"}


def _hevc_encode(a: np.ndarray, q: int) -> bytes:
    import pillow_heif

    h, w = a.shape[:2]
    heif = pillow_heif.from_bytes(mode="RGB", size=(w, h), data=a.tobytes())
    buf = io.BytesIO()
    heif.save(buf, quality=q, chroma=444, enc_params=dict(_X265_PSNR))
    return buf.getvalue()


def _hevc_decode(data: bytes) -> np.ndarray:
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
    return pil_to_array(heif.to_pillow(), name="decoded HEIF image")


def _hevc_version() -> str:
    import pillow_heif

    info = pillow_heif.libheif_info()
    enc = info["encoders"].get("x265", "x265")
    dec = ", ".join(info.get("decoders", {}).values())
    return f"pillow-heif {pillow_heif.__version__}, libheif {info['libheif']}, encoder {enc}, decoder {dec}"


def _jxl_check() -> str | None:
    try:
        import imagecodecs
    except ImportError:
        return "imagecodecs is not installed (pip install imagecodecs)"
    if not getattr(imagecodecs, "JPEGXL", None) or not imagecodecs.JPEGXL.available:
        return f"imagecodecs {imagecodecs.__version__} was built without JPEG XL"
    return None


def _jxl_encode(a: np.ndarray, distance: float) -> bytes:
    import imagecodecs

    return imagecodecs.jpegxl_encode(a, distance=distance, effort=7)


def _jxl_decode(data: bytes) -> np.ndarray:
    import imagecodecs

    out = imagecodecs.jpegxl_decode(data)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    return out[..., :3]


def _jxl_version() -> str:
    import imagecodecs

    return f"imagecodecs {imagecodecs.__version__}, {imagecodecs.jpegxl_version()}"


# ---------------------------------------------------------------------------------------
# The registry

_INT_0_100 = (0, 100)

CODECS: dict[str, Codec] = {
    c.name: c
    for c in (
        Codec(
            "jpeg", "JPEG, YCbCr 4:2:0, optimised Huffman tables (Pillow)",
            "quality", (1, 100), True, True,
            (5, 10, 15, 20, 30, 40, 50, 60, 75, 90),
            _jpeg("4:2:0"), _pil_decode, _jpeg_version, _needs_feature("jpg", "JPEG"),
        ),
        Codec(
            "jpeg444", "JPEG, YCbCr 4:4:4, optimised Huffman tables (Pillow)",
            "quality", (1, 100), True, True,
            (5, 10, 15, 20, 30, 40, 50, 60, 75, 90),
            _jpeg("4:4:4"), _pil_decode, _jpeg_version, _needs_feature("jpg", "JPEG"),
        ),
        Codec(
            "jpeg2000", "JPEG 2000, 9/7 wavelet + colour transform, OpenJPEG rate control (Pillow)",
            "bpp", (0.01, 12.0), False, True,
            (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0),
            _jpeg2000_encode, _pil_decode, lambda: f"Pillow {_pillow_version()}, OpenJPEG {_feature_version('jpg_2000')}",
            _needs_feature("jpg_2000", "JPEG 2000 (OpenJPEG)"),
        ),
        Codec(
            "webp", "WebP lossy, method 4 (Pillow)",
            "quality", _INT_0_100, True, True,
            (0, 5, 10, 20, 30, 40, 50, 60, 75, 90),
            _webp_encode, _pil_decode, lambda: f"Pillow {_pillow_version()}, libwebp {_feature_version('webp')}",
            _needs_feature("webp", "WebP"),
        ),
        Codec(
            "avif", "AVIF (AV1 intra), YCbCr 4:4:4, aom speed 6, tune psnr (Pillow)",
            "quality", _INT_0_100, True, True,
            (5, 10, 20, 30, 40, 50, 55, 60, 65, 70, 75, 80),
            _avif_encode, _pil_decode, _avif_version, _needs_feature("avif", "AVIF"),
        ),
        Codec(
            "hevc", "HEVC intra in HEIF, YCbCr 4:4:4, x265 tuned for PSNR (pillow-heif); the core of BPG 4:4:4",
            "quality", _INT_0_100, True, True,
            (5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55),
            _hevc_encode, _hevc_decode, _hevc_version, _heif_check,
        ),
        Codec(
            "jpegxl", "JPEG XL (VarDCT), effort 7 (imagecodecs / libjxl)",
            "distance", (0.05, 25.0), False, False,
            (16.0, 12.0, 9.0, 7.0, 5.0, 4.0, 3.0, 2.5, 2.0, 1.5, 1.0),
            _jxl_encode, _jxl_decode, _jxl_version, _jxl_check,
        ),
    )
}


def available_codecs() -> list[str]:
    """Names of the codecs of :data:`CODECS` that can run here."""
    return [name for name, c in CODECS.items() if c.available]


def get_codec(codec) -> Codec:
    """A codec by name (a key of :data:`CODECS`), or the codec object itself.

    Raises :class:`semlib.SemlibError` for an unknown name or a codec whose library is
    missing here, saying which.
    """
    if not isinstance(codec, str):
        return codec
    c = CODECS.get(codec.lower())
    if c is None:
        raise SemlibError(f"unknown codec {codec!r}; known: {', '.join(CODECS)}")
    c._require()
    return c


# ---------------------------------------------------------------------------------------
# Rate control: the search is semlib.rate_control's (one module for every codec's search)


def encode_at_bpp(codec, img, target_bpp: float, tol: float = 0.01, max_steps: int = 40) -> EncodeResult:
    """:func:`semlib.rate_control.encode_at_bpp` for ``codec``, a :class:`Codec` or the name of
    one of :data:`CODECS`: the file closest to ``target_bpp``, within ``tol`` bpp where the
    knob allows (else the closest, with a warning)."""
    return rate_control.encode_at_bpp(get_codec(codec), img, target_bpp, tol, max_steps, _stacklevel=3)
