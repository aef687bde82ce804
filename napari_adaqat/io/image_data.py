"""What every reader returns and raises: :class:`ImageData`, :class:`ImageReadError`, and the
normalisation of any pixel array to float32 gray in [0, 1]."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage.color import rgb2gray


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


def check_file(path: str | os.PathLike) -> Path:
    """Return ``Path(path)`` or raise ImageReadError if it is missing or not a file."""
    p = Path(path)
    if not p.exists():
        raise fail(p, "file not found")
    if not p.is_file():
        raise fail(p, "not a file")
    return p
