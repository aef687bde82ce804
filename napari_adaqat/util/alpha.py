"""Transparency in an image: what the model sees is what napari draws, the image over its black canvas."""
from __future__ import annotations

import numpy as np


def over_black(a: np.ndarray) -> np.ndarray:
    """(H, W, 2) gray + alpha → (H, W); (H, W, 4) RGBA → (H, W, 3); other arrays unchanged.

    Partly transparent pixels are composited over black (colour × alpha, alpha scaled by the dtype's maximum),
    as napari shows them.  An alpha channel that is the same everywhere (opaque; transparent or half so, as some
    exporters write it) says nothing about where the film is: it is dropped and the colour kept as it is (same dtype).  Signed
    integers and floats are composited towards their minimum when it is below 0 (black of a range that a later
    min-max scales)."""
    a = np.asarray(a)
    if a.ndim != 3 or a.shape[-1] not in (2, 4):
        return a
    colour = a[..., 0] if a.shape[-1] == 2 else a[..., :3]
    if a.dtype == bool:
        top = 1.0
    elif np.issubdtype(a.dtype, np.integer):
        top = float(np.iinfo(a.dtype).max)
    else:
        top = 1.0
    alpha = np.clip(a[..., -1].astype(np.float32) / top, 0.0, 1.0)
    if not alpha.size or alpha.min() == alpha.max():
        return colour
    weight = alpha[..., None] if colour.ndim == 3 else alpha
    if a.dtype == bool:
        return colour & (weight >= 0.5)
    values = colour.astype(np.float64)
    finite = np.isfinite(values).any()
    low = min(float(np.nanmin(values)), 0.0) if finite else 0.0  # black: 0, or a signed range's minimum
    out = low + (values - low) * weight
    return np.round(out).astype(a.dtype) if np.issubdtype(a.dtype, np.integer) else out.astype(a.dtype)
