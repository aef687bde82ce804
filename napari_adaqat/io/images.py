"""Read 2-D grayscale images (PNG/JPEG/BMP/TIFF/DICOM) as float32 in [0, 1]."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import tifffile

from .dicom import is_dicom, read_dicom
from .image_data import ImageData, ImageReadError, check_file, fail, to_gray01

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom",
)
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
RASTER_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp")


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


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a known image suffix or a DICOM file without one."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES or is_dicom(path)


def read_image(path: str | os.PathLike) -> ImageData:
    """Read any supported 2-D image as float32 (H, W) in [0, 1]; raise ImageReadError."""
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
