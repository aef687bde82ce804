"""A per-mask quality score: an estimate of the mask's Dice with no reference, and the review flag.

Computed from what one box prompt already produced (no extra encoder forward): the probability map,
the cleaned mask and the model's predicted IoU.  Candidates were measured on the 93 development films
(``benchmarks/segment_quality.py``; figures and the choice in BENCHMARKS.md, "Which masks to review").
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_adaqat.util.regions import label_regions

# review a mask whose estimated Dice is below this (chosen by measurement, BENCHMARKS.md)
REVIEW_BELOW = 0.94


def soft_dice(probs: np.ndarray, mask: np.ndarray) -> float:
    """The Dice the mask would have if the truth were drawn from the model's own probabilities:
    ``2 Σ p·m / (Σ p + Σ m)``, for ``probs`` (H, W) in [0, 1] and ``mask`` (H, W) bool."""
    p = probs.astype(np.float64, copy=False)
    m = mask.astype(bool, copy=False)
    denom = float(p.sum() + m.sum())
    return float(2.0 * p[m].sum() / denom) if denom > 0 else 0.0


def uncertain_fraction(probs: np.ndarray, mask: np.ndarray, low: float = 0.1, high: float = 0.9) -> float:
    """Pixels the model is unsure about (``low < p < high``) per mask pixel."""
    unsure = int(np.count_nonzero((probs > low) & (probs < high)))
    return unsure / max(1, int(np.count_nonzero(mask)))


def shape_features(mask: np.ndarray, box: np.ndarray) -> dict[str, float]:
    """Shape statistics of a lung mask (H, W) bool inside its xyxy ``box``: area fraction of the box,
    number of regions, area ratio of the two largest (1 = symmetric, 0 = one lung), fraction of the
    mask's border that lies on the box's edge."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    box_area = max(1, (x1 - x0 + 1) * (y1 - y0 + 1))
    area = int(np.count_nonzero(mask))
    labels, n = label_regions(mask)
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1] if n else np.zeros(0)
    pair = sizes[1] / sizes[0] if n >= 2 else 0.0
    edge = mask & ~ndimage.binary_erosion(mask)
    band = np.zeros_like(mask)
    band[max(0, y0):y1 + 1, max(0, x0):x1 + 1] = True
    inner = np.zeros_like(mask)
    inner[max(0, y0 + 2):max(0, y1 - 1), max(0, x0 + 2):max(0, x1 - 1)] = True
    on_edge = np.count_nonzero(edge & (band & ~inner) | (edge & ~band))
    return {"area_fraction": area / box_area, "regions": float(n), "lung_ratio": float(pair),
            "touching_box": on_edge / max(1, int(np.count_nonzero(edge)))}


@dataclass(frozen=True)
class Quality:
    """The estimated Dice of one mask and whether someone should look at it."""

    score: float  # estimated Dice in [0, 1]
    review: bool


def mask_quality(probs: np.ndarray, mask: np.ndarray, threshold: float = REVIEW_BELOW) -> Quality:
    """The quality of ``mask`` (H, W) bool given the model's ``probs`` (H, W): its soft Dice
    (:func:`soft_dice`), flagged for review below ``threshold``."""
    score = soft_dice(probs, mask) if mask.any() else 0.0
    return Quality(round(score, 4), score < threshold)
