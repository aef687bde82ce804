"""Connected regions of 2-D masks, as the clean-up, the surface metrics and the click rule need them on native
(3000-4000 px) films: labels into an intp array, and the window that holds a mask's pixels."""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """``ndimage.label(mask)`` (4-connected) into an intp array (H, W): ``np.bincount`` and table lookups then
    need no cast (on a 3000² film that cast cost more than the labelling)."""
    labels = np.empty(mask.shape, dtype=np.intp)
    return labels, int(ndimage.label(mask, output=labels))


def bounding_window(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The smallest (rows, columns) window holding every True pixel of a (H, W) mask; None when it has none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
