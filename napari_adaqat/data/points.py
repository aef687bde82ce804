"""Point prompts from a CSV: rows ``file,x,y,label`` (x, y in image pixels of the upright image;
label 1 = lung, 0 = not lung; also true/false, yes/no, pos/neg), several rows per file.  The header line
is optional (without one the columns are taken in that order); the CSV quirks that box CSVs accept are
accepted here too (comma, semicolon or tab; any case; Excel's BOM and trailing empty rows; see
:mod:`napari_adaqat.data.boxes`).
A bad row refuses the whole file with one line naming the CSV, its line and the image file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from napari_adaqat.data.boxes import EDGE_TOLERANCE_PX, _number, _rows, csv_file_key, normalised
from napari_adaqat.data.csv_match import box_for

POINT_COLUMNS = ("file", "x", "y", "label")
# 1 = lung (positive), 0 = not lung (negative), as spreadsheets and napari's `positive` feature write them
LABELS = {**dict.fromkeys(("1", "true", "yes", "y", "pos", "positive"), 1),
          **dict.fromkeys(("0", "false", "no", "n", "neg", "negative"), 0)}


def _label(text: str) -> int | None:
    """A point's label (1 or 0) from a CSV field: 1/0 (also 1.0, 0.00), true/false, yes/no, pos/neg (any case)."""
    text = text.strip().casefold()
    if text in LABELS:
        return LABELS[text]
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value in (0.0, 1.0) else None

Points = tuple[np.ndarray, np.ndarray]  # (P, 2) float64 x, y pixels; (P,) int64 labels


def read_points_csv(path: str | Path) -> dict[str, Points]:
    """``file,x,y,label`` rows → {file name or path: (coords (P, 2), labels (P,))}, in row order;
    matched to inputs by path, name or stem (:func:`points_for`; a Windows path by its name).  Raises ValueError, one line
    ``PATH:LINE: (FILE) problem``, for a missing column, a value that is not a number, a negative
    coordinate, a label other than 1 or 0, or a CSV without rows."""
    found: dict[str, tuple[list, list]] = {}
    origins: dict[str, str] = {}
    for line, delimiter, row in _rows(path, POINT_COLUMNS, header_optional=True):
        name = row["file"].strip()
        if not name:
            raise ValueError(f"{path}:{line}: empty file name")
        name = csv_file_key(name, path, line, origins)
        try:
            xy = [_number(k, row[k], delimiter, names="x,y") for k in ("x", "y")]
            if not np.isfinite(xy).all() or min(xy) < -EDGE_TOLERANCE_PX:
                raise ValueError(f"point {xy[0]:g},{xy[1]:g}: x, y are pixels from the top-left corner "
                                 "(finite, not negative)")
            label = _label(row["label"])
            if label is None:
                raise ValueError(f"label is {row['label'].strip()[:20]!r}: write 1 (lung) or 0 (not lung); "
                                 "true/false, yes/no and pos/neg work too")
        except ValueError as exc:
            raise ValueError(f"{path}:{line}: ({' '.join(name.split())[:80]}) {exc}") from None
        coords, labels = found.setdefault(name, ([], []))
        coords.append(xy)
        labels.append(label)
    if not found:
        raise ValueError(f"{path}: no points (only a header line)")
    return {name: (np.array(c, dtype=np.float64), np.array(lab, dtype=np.int64)) for name, (c, lab) in found.items()}


def points_for(path: Path, points: dict[str, Points], roots: Sequence[Path] = ()) -> Points | None:
    """The points of ``path`` in a CSV's points, looked up by full path (or relative to one of ``roots``), then
    name, then stem; a run first checks that no row names two inputs (:func:`~napari_adaqat.data.csv_match.match_rows`,
    the same rule)."""
    return box_for(path, points, roots)  # type: ignore[arg-type]  (the same lookup rule)


def check_points(coords: np.ndarray, shape: tuple[int, int]) -> None:
    """Refuse points (P, 2) x, y outside an image of (H, W) ``shape`` (beyond the edge tolerance; not finite)."""
    h, w = shape
    if normalised(coords, shape):
        x, y = coords[0]
        raise ValueError(f"point {x:g},{y:g}: fractions of the image? give pixels from the top-left corner "
                         f"(this image is {w}x{h})")
    check_inside(coords, shape)


def check_inside(coords: np.ndarray, shape: tuple[int, int]) -> None:
    """Refuse points (P, 2) x, y that lie outside an image of (H, W) ``shape`` beyond the edge tolerance, or are
    not finite (one ValueError line: the first such point)."""
    h, w = shape
    outside = ~np.isfinite(coords).all(axis=1) | (coords.min(axis=1) < -EDGE_TOLERANCE_PX) \
        | (coords[:, 0] > w - 1 + EDGE_TOLERANCE_PX) | (coords[:, 1] > h - 1 + EDGE_TOLERANCE_PX)
    if outside.any():
        x, y = coords[np.flatnonzero(outside)[0]]
        raise ValueError(f"point {x:g},{y:g} lies outside the {w}x{h} image; was it placed on a resized copy?")
