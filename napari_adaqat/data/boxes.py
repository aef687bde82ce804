"""Box prompts: the default and tight boxes, the one validity rule, and box CSV files.

A box is an xyxy float array (4,) in original image pixels.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def default_box(shape: tuple[int, int], margin: float = 0.02) -> np.ndarray:
    """The whole image minus a small margin, as an xyxy box (4,)."""
    h, w = shape
    mx, my = margin * w, margin * h
    return np.array([mx, my, w - 1 - mx, h - 1 - my], dtype=np.float64)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Bounding box (4,) xyxy of a boolean mask (H, W), or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)


def check_box(box: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    """Refuse an xyxy box that is not finite, is inverted, or misses the (H, W) image entirely."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not np.isfinite([x0, y0, x1, y1]).all() or x1 <= x0 or y1 <= y0:
        raise ValueError(f"invalid box {x0:g},{y0:g},{x1:g},{y1:g}: needs finite numbers with x1 > x0 and y1 > y0")
    if shape is None:
        return
    h, w = shape
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise ValueError(f"box {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {w}x{h} image")


def read_boxes_csv(path: str | Path) -> dict[str, np.ndarray]:
    """``file,x0,y0,x1,y1`` rows → {file name or path: (4,) box}; matched by path, name or stem."""
    boxes: dict[str, np.ndarray] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: CSVs saved by Excel start with a BOM
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                box = np.array([float(row[k]) for k in ("x0", "y0", "x1", "y1")])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}:{line}: expected columns file,x0,y0,x1,y1 with numbers") from None
            try:
                check_box(box)
            except ValueError as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
            boxes[row["file"]] = box
    return boxes


def box_for(path: Path, boxes: dict[str, np.ndarray]) -> np.ndarray | None:
    """The box of ``path`` in a CSV's boxes, looked up by full path, then name, then stem."""
    for key in (str(path), path.name, path.stem):
        if key in boxes:
            return boxes[key]
    return None
