"""Read 2-D grayscale images (PNG/JPEG/BMP/TIFF/DICOM) as float32 in [0, 1]."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from skimage.color import rgb2gray

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom",
)
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
RASTER_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")


class ImageReadError(ValueError):
    """An image or mask file could not be read; the message is one line."""


def fail(path: str | os.PathLike, problem: object) -> ImageReadError:
    """Build an :class:`ImageReadError` ``"<path>: <problem>"`` squeezed onto one line."""
    text = " ".join(str(problem).split()) or "unknown error"
    if len(text) > 300:
        text = text[:297] + "..."
    return ImageReadError(f"{path}: {text}")


@dataclass
class ImageData:
    """A 2-D grayscale image ready for segmentation."""

    pixels: np.ndarray  # float32 (H, W) in [0, 1]
    spacing: tuple[float, float] | None  # (row_mm, col_mm) when known
    source: str
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the pixel array."""
        return self.pixels.shape  # type: ignore[return-value]


def _minmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64, copy=False)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return np.zeros(x.shape, np.float64)
    return (x - lo) / (hi - lo)


def to_gray01(array: np.ndarray) -> np.ndarray:
    """Convert a 2-D gray, RGB or RGBA array of any common dtype to float32 (H, W) in [0, 1].

    uint8 is divided by 255, bool maps to {0, 1}, other integers (uint16 included) and
    floats outside [0, 1] are min-max normalised; RGB(A) uses luminance, alpha dropped.
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 2:  # gray + alpha
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4) array, got shape {a.shape}")
    if a.ndim == 3 and a.shape[-1] == 4:
        a = a[..., :3]  # drop alpha before any min-max scaling (an opaque 16-bit alpha is 65535)
    if a.dtype == bool:
        x = a.astype(np.float64)
    elif a.dtype == np.uint8:
        x = a.astype(np.float64) / 255.0
    elif np.issubdtype(a.dtype, np.integer):
        x = _minmax(a)
    elif np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float64)
        finite = np.isfinite(x)
        if not finite.all():
            x = np.where(finite, x, np.nanmin(np.where(finite, x, np.nan)) if finite.any() else 0.0)
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            x = _minmax(x)
    else:
        raise ValueError(f"unsupported pixel dtype {a.dtype}")
    if x.ndim == 3:
        x = rgb2gray(x[..., :3])
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def _read_tiff(path: Path) -> tuple[np.ndarray, dict]:
    """First series of a TIFF as (H, W) or (H, W, S); stacks are refused."""
    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise fail(path, "corrupt TIFF (no image data)")
        series = tif.series[0]
        axes, shape = series.axes, series.shape
        planes = math.prod(n for ax, n in zip(axes, shape) if ax not in "YXS")
        if len(tif.pages) > 1 and len(tif.series) == 1:
            planes = max(planes, len(tif.pages))
        if planes > 1:
            raise fail(path, f"is a 3-D stack ({planes} planes); give a single 2-D image")
        arr = series.asarray()
        page = tif.pages[0]
        meta = {"photometric": page.photometric.name, "bits": int(page.bitspersample)}
    kept = "".join(ax for ax, n in zip(axes, shape) if ax in "YXS")
    arr = arr.reshape([n for ax, n in zip(axes, shape) if ax in "YXS"])
    if "S" in kept and kept.index("S") != arr.ndim - 1:
        arr = np.moveaxis(arr, kept.index("S"), -1)
    return arr, meta


def _read_raster(path: Path) -> tuple[np.ndarray, dict]:
    """PNG/JPEG/BMP via skimage (imageio)."""
    from skimage.io import imread

    arr = np.asarray(imread(path))
    if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] not in (1, 2, 3, 4)):
        raise fail(path, f"is a 3-D stack ({arr.shape[0]} planes); give a single 2-D image")
    return arr, {"bits": int(arr.dtype.itemsize * 8) if arr.dtype != bool else 1}


def read_raw(path: str | os.PathLike) -> tuple[np.ndarray, dict]:
    """Read the stored pixel array of a PNG/JPEG/BMP/TIFF (no scaling)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        arr, meta = _read_tiff(p)
        meta["format"] = "tiff"
    elif suffix in RASTER_SUFFIXES:
        arr, meta = _read_raster(p)
        meta["format"] = "jpeg" if suffix == ".jpg" else suffix[1:]
    else:
        raise fail(p, f"unsupported image format {suffix or '(no extension)'!r}")
    if arr.size == 0:
        raise fail(p, "image is empty")
    return arr, meta


def check_file(path: str | os.PathLike) -> Path:
    """Return ``Path(path)`` or raise ImageReadError if it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise fail(p, "file not found")
    if not p.is_file():
        raise fail(p, "not a file")
    return p


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a known image suffix or a DICOM file without one."""
    from .dicom import is_dicom  # local import: dicom.py imports this module

    return Path(path).suffix.lower() in IMAGE_SUFFIXES or is_dicom(path)


def read_image(path: str | os.PathLike) -> ImageData:
    """Read any supported 2-D image as float32 (H, W) in [0, 1]; raise ImageReadError."""
    from .dicom import is_dicom, read_dicom  # local import: dicom.py imports this module

    p = check_file(path)
    if is_dicom(p):
        return read_dicom(p)
    try:
        arr, meta = read_raw(p)
        pixels = to_gray01(arr)
    except ImageReadError:
        raise
    except Exception as exc:  # corrupt files raise anything from the decoders
        problem = f"cannot decode image; corrupt or not a real {p.suffix.lower()} file"
        raise fail(p, f"{problem} ({type(exc).__name__})") from exc
    meta["dtype"] = str(arr.dtype)
    meta["channels"] = 1 if arr.ndim == 2 else int(arr.shape[-1])
    return ImageData(pixels=pixels, spacing=None, source=str(p), meta=meta)
