"""What happens to a predicted lung mask before anyone sees it, in one place (:func:`finish_mask`):
the API, ``adaqat segment``, ``adaqat evaluate`` and the docks all call it through
:meth:`~napari_adaqat.inference.segmenter.Segmenter.clean_mask`.

* **Box clipping** (on by default): nothing of the mask lies outside the box plus a margin of
  :func:`clip_margin` = max(:data:`CLIP_MARGIN_MIN_PX` px, :data:`CLIP_MARGIN_FRACTION` of the longer
  image side); positive points outside the box widen the kept rectangle to include them.  Prompts
  without a box (points alone) are not clipped.
* **Clean-up** (on by default): keeps the (at most two) largest connected regions — the lungs —
  drops specks (under 10 % of the largest region, or :data:`MIN_REGION_FRACTION` of the image: a mask of
  specks alone becomes empty), and fills holes left by opacities.  scipy.ndimage does the labelling (:mod:`~napari_adaqat.util.regions`).

Clipping comes first, so the clean-up keeps the largest regions of what lies in the box (and filling
holes cannot reach outside the rectangle: a hole is enclosed by mask pixels).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from napari_adaqat.data.boxes import (  # noqa: F401  (the one clipping rule, shared with training)
    CLIP_MARGIN_FRACTION, CLIP_MARGIN_MIN_PX, clip_margin, clip_rectangle)
from napari_adaqat.util.regions import bounding_window, label_regions


def clip_to_box(mask: np.ndarray, box: np.ndarray, points: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, W) bool → (H, W) bool: ``mask`` with everything outside :func:`clip_rectangle` cleared."""
    r0, r1, c0, c1 = clip_rectangle(mask.shape[:2], box, points)
    out = np.zeros(mask.shape, dtype=bool)
    out[r0:r1, c0:c1] = mask[r0:r1, c0:c1]
    return out


def clip_probabilities(probs: np.ndarray, box: Optional[np.ndarray],
                       points: Optional[np.ndarray] = None) -> np.ndarray:
    """(H, W) probabilities → float32 (H, W) zero where :func:`clip_to_box` clears the mask (``box`` None: as they
    are), so the SSIM / ΔSSIM maps see what the clipped masks show (a box in an empty corner: clear maps)."""
    probs = np.asarray(probs, dtype=np.float32)
    if box is None:
        return probs
    r0, r1, c0, c1 = clip_rectangle(probs.shape[:2], box, points)
    out = np.zeros_like(probs)
    out[r0:r1, c0:c1] = probs[r0:r1, c0:c1]
    return out


def finish_mask(mask: np.ndarray, box: Optional[np.ndarray] = None, clean: bool = True, clip: bool = True,
                positive_points: Optional[np.ndarray] = None,
                negative_points: Optional[np.ndarray] = None) -> np.ndarray:
    """The one post-processing rule of a predicted mask (H, W) bool: clip to ``box`` (xyxy, or None:
    no clipping) when ``clip``, then :func:`clean_lung_mask` when ``clean``, whose hole filling leaves a hole
    that holds a "not lung" point (``negative_points`` (N, 2) x, y pixels) as the model left it."""
    mask = np.asarray(mask, dtype=bool)
    if clip and box is not None:
        mask = clip_to_box(mask, box, positive_points)
    if not clean:
        return mask
    cleaned = clean_lung_mask(mask)
    if negative_points is not None and len(negative_points):
        filled, _n = label_regions(cleaned & ~mask)
        h, w = mask.shape
        rows = np.clip(np.rint(negative_points[:, 1]).astype(int), 0, h - 1)
        cols = np.clip(np.rint(negative_points[:, 0]).astype(int), 0, w - 1)
        cleaned &= ~np.isin(filled, filled[rows, cols][filled[rows, cols] > 0])
    return cleaned


# A region under this fraction of the film (131 px at 512², 4,500 px at 3000²) is a speck, never a lung (a lung
# is a few % of the film even in a one-lung box): a box in an empty corner gives an empty mask, not 4 px (issue 32)
MIN_REGION_FRACTION = 5e-4


def clean_lung_mask(mask: np.ndarray, keep: int = 2, min_ratio: float = 0.1,
                    min_fraction: float = MIN_REGION_FRACTION) -> np.ndarray:
    """(H, W) bool → (H, W) bool: the ``keep`` largest regions that are at least ``min_ratio`` of the
    largest one and ``min_fraction`` of the image, with holes filled.

    The work is done on the mask's bounding rectangle only (a 3000² film's lungs fill about half of it):
    the same result, since everything outside it is background joined to the image border."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) mask, got shape {mask.shape}")
    out = np.zeros(mask.shape, dtype=bool)
    window = bounding_window(mask)
    if window is None:
        return out
    labels, n = label_regions(mask[window])
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1][:keep]
    floor = max(min_ratio * sizes[order[0]], min_fraction * mask.size)
    lut = np.zeros(n + 1, dtype=bool)
    lut[[i + 1 for i in order if sizes[i] >= floor]] = True
    out[window] = fill_holes(lut[labels])
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)`` for a 2-D mask in one labelling pass: background regions
    (4-connected, as binary_fill_holes' default structure) that touch no image border are holes."""
    background, n = label_regions(~mask)
    if n == 0:
        return mask.copy()
    outside = np.zeros(n + 1, dtype=bool)
    for edge in (background[0], background[-1], background[:, 0], background[:, -1]):
        outside[edge] = True
    outside[0] = True  # label 0 is the mask itself
    return ~outside[background] | mask
