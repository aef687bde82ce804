"""The standard corrective-click rule of interactive segmentation (RITM, SAM §A, micro-sam), one home for
``adaqat evaluate --clicks`` (:mod:`napari_adaqat.report.clicks`) and the training's simulated clicks
(:mod:`napari_adaqat.train.interactive`)."""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

from napari_adaqat.util.regions import label_regions


def next_click(mask: np.ndarray, reference: np.ndarray) -> Optional[tuple[float, float, int]]:
    """The next simulated click (x, y, label) on a predicted ``mask`` (H, W) bool against the
    ``reference`` (H, W) bool, or None when they agree: the point of the largest connected error
    region (missed: label 1; false: label 0) farthest from that region's boundary (the image border
    counts as boundary), by ``scipy.ndimage.distance_transform_edt``."""
    mask, reference = np.asarray(mask, bool), np.asarray(reference, bool)
    best: Optional[tuple[int, np.ndarray, int, int]] = None  # (area, labelled errors, region's label, click label)
    for error, label in ((reference & ~mask, 1), (mask & ~reference, 0)):
        regions, n = label_regions(error)
        if n == 0:
            continue
        sizes = np.bincount(regions.ravel())[1:]
        biggest = int(np.argmax(sizes))
        if best is None or sizes[biggest] > best[0]:
            best = (int(sizes[biggest]), regions, biggest + 1, label)
    if best is None:
        return None
    _area, regions, index, label = best
    # the distance transform on the region's bounding window padded by one background pixel: the same distances
    # as over the whole film (a nearer background pixel outside the window would have one on the padding nearer
    # still), the same first maximum in row-major order, and ~10x less work on a native film
    rows, cols = ndimage.find_objects(regions, max_label=index)[index - 1]
    inside = ndimage.distance_transform_edt(np.pad(regions[rows, cols] == index, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(inside)), inside.shape)
    return float(x + cols.start), float(y + rows.start), label
