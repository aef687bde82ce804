"""Other sites' lung-mask conventions, made from ours (V7's: the lung behind the heart included where visible).

:func:`changed_mask` makes one named convention (``benchmarks/convention_change.py`` fine-tunes to it);
:func:`random_convention` draws one at random, for training a model to follow clicks that disagree with
what it was taught (issue 32: a negative click behind the heart must win over the model's own habit).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

CONVENTIONS = ("erode", "dilate", "above-line", "no-heart")
_CROSS = ndimage.generate_binary_structure(2, 1)


def changed_mask(mask: np.ndarray, convention: str, erode_px: int = 6, keep: float = 0.8,
                 heart_scale: float = 1.0) -> np.ndarray:
    """The new convention of ``mask`` (H, W) bool: ``erode`` / ``dilate``: by ``erode_px`` px (4-connected
    steps); ``above-line``: only the lung above the line at ``keep`` of the lung field's height (the bases
    dropped); ``no-heart``: an ellipse of semi-axes ``heart_scale`` x (22 % of the lung field's height, 20 % of
    its width) over the lower middle of the left lung removed (1.0: Dice 0.945 between old and new masks;
    1.4: 0.88, about the bundled model's Dice on real heart-excluding sets, issue 32).  An empty mask stays."""
    if not mask.any():
        return mask.copy()
    if convention == "erode":
        return ndimage.binary_erosion(mask, structure=_CROSS, iterations=erode_px)
    if convention == "dilate":
        return ndimage.binary_dilation(mask, structure=_CROSS, iterations=erode_px)
    if convention == "no-heart":  # an ellipse where the heart overlaps the left lung (the film's right side)
        ys, xs = np.nonzero(mask)
        (y0, y1), (x0, x1) = (ys.min(), ys.max()), (xs.min(), xs.max())
        h, w = y1 - y0, x1 - x0
        yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
        cy, cx = y0 + 0.78 * h, (x0 + x1) / 2 + 0.08 * w
        return mask & (((yy - cy) / (0.22 * heart_scale * h)) ** 2 + ((xx - cx) / (0.2 * heart_scale * w)) ** 2 > 1)
    if convention == "above-line":
        rows = np.flatnonzero(mask.any(axis=1))
        out = mask.copy()
        out[int(rows[0] + keep * (rows[-1] - rows[0])):] = False
        return out
    raise ValueError(f"unknown convention {convention!r}; choose one of {CONVENTIONS}")


def random_convention(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``mask`` (H, W) bool in a convention drawn at random: half the time without the lung behind the heart
    (heart ellipse 0.8-1.6x), else eroded or dilated by 2-8 px, or cut above 75-92 % of the lung height."""
    if rng.random() < 0.5:
        return changed_mask(mask, "no-heart", heart_scale=rng.uniform(0.8, 1.6))
    kind = rng.choice(["erode", "dilate", "above-line"])
    return changed_mask(mask, str(kind), erode_px=int(rng.integers(2, 9)), keep=rng.uniform(0.75, 0.92))
