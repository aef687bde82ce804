"""Optional clean-up of a predicted lung mask (on by default in ``adaqat segment`` and the dock).

Keeps the (at most two) largest connected regions — the lungs — drops specks, and fills
holes left by opacities.  scipy.ndimage does the labelling and hole filling.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def clean_lung_mask(mask: np.ndarray, keep: int = 2, min_ratio: float = 0.1) -> np.ndarray:
    """(H, W) bool → (H, W) bool: the ``keep`` largest regions that are at least
    ``min_ratio`` of the largest one, with holes filled."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1][:keep]
    lut = np.zeros(n + 1, dtype=bool)
    lut[[i + 1 for i in order if sizes[i] >= min_ratio * sizes[order[0]]]] = True
    return fill_holes(lut[labels])


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)`` for a 2-D mask in one labelling pass: background regions
    (4-connected, as binary_fill_holes' default structure) that touch no image border are holes."""
    background, n = ndimage.label(~mask)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, dtype=bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    return ~outside[background] | mask
