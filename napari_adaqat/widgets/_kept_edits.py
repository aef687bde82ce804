"""The user's brush edits of ``lung mask``, kept through the clicks that follow them.

A click re-segments from the model, whose answer barely moves for an edited mask prompt: the pixels the user
erased came back with the next click (a QA find). So the dock keeps the edits themselves, (painted, erased)
(H, W) bool, and lays them over each new mask, except the edited regions that a new click lands in (there the
click is the user's newer word). A new box or a reset starts afresh. Pure numpy / scipy (no Qt).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

Edits = tuple[np.ndarray, np.ndarray]  # (painted, erased), each (H, W) bool
TOUCH_PX = 4  # a click this close to an edited region (in image pixels) is taken as meant for it


def add_edit(kept: Optional[Edits], before: np.ndarray, edited: np.ndarray) -> Optional[Edits]:
    """``kept`` with one more brush edit: ``edited`` (H, W) bool against the mask ``before`` it (None: none)."""
    painted, erased = edited & ~before, before & ~edited
    if kept is not None and kept[0].shape == edited.shape:
        painted, erased = (kept[0] & ~erased) | painted, (kept[1] & ~painted) | erased
    return (painted, erased) if painted.any() or erased.any() else None


def drop_touched(kept: Optional[Edits], x: float, y: float) -> Optional[Edits]:
    """``kept`` without the edited regions (8-connected) within :data:`TOUCH_PX` of the click at ``x``, ``y``
    (image pixels); None when nothing is left."""
    if kept is None:
        return None
    changed = kept[0] | kept[1]
    labels, _n = ndimage.label(changed, structure=np.ones((3, 3), dtype=bool))
    h, w = changed.shape
    r, c = int(round(y)), int(round(x))
    window = labels[max(0, r - TOUCH_PX):min(h, r + TOUCH_PX + 1), max(0, c - TOUCH_PX):min(w, c + TOUCH_PX + 1)]
    hit = np.unique(window[window > 0])
    if not hit.size:
        return kept  # (the same arrays: states that share them cost no memory)
    touched = np.isin(labels, hit)
    painted, erased = kept[0] & ~touched, kept[1] & ~touched
    return (painted, erased) if painted.any() or erased.any() else None


def apply_edits(mask: np.ndarray, kept: Optional[Edits]) -> np.ndarray:
    """``mask`` (H, W) bool with the kept edits laid over it (painted pixels lung, erased ones not)."""
    if kept is None or kept[0].shape != mask.shape:
        return mask
    return (mask | kept[0]) & ~kept[1]


def describe(kept: Optional[Edits]) -> str:
    """E.g. " · kept your brush edits (120 px painted, 1537 px erased)", or "" without any."""
    if kept is None:
        return ""
    return (f" · kept your brush edits ({int(kept[0].sum())} px painted, {int(kept[1].sum())} px erased; "
            "a click on one hands it back to the model)")


def kept_for(kind: str, carried: Optional[Edits], coords: np.ndarray) -> Optional[Edits]:
    """The edits a prompt of ``kind`` keeps: none for a new box; else those ``carried`` by the mask shown (a brush
    edit's state holds its own), less the regions that a point just "added" (the last of ``coords`` (N, 2) x, y
    pixels) lands in (a point moved onto an edited region does not hand it back)."""
    if kind == "box":
        return None
    if kind == "added" and len(coords):
        return drop_touched(carried, float(coords[-1][0]), float(coords[-1][1]))
    return carried
