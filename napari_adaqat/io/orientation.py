"""EXIF/TIFF orientation: the stored pixel grid turned the way every photo viewer shows it.

A phone photo of a film, or an export that rotates by tag, stores the pixels sideways and says so
in the Orientation tag (EXIF 0x0112 in JPEG and PNG, tag 274 in TIFF; the values are the same).
Segmenting the stored grid would show the model a chest on its side, and the mask would be turned
against the film in every viewer that honours the tag.  :func:`upright` applies the tag (as
``PIL.ImageOps.exif_transpose`` does); :func:`stored` undoes it.
"""
from __future__ import annotations

import numpy as np

ORIENTATION_TAG = 0x0112  # EXIF; TIFF tag 274 is the same number and the same values

# value -> what turning the stored pixels upright does (1: nothing)
ORIENTATION_TEXT = {
    2: "mirrored left-right", 3: "rotated 180°", 4: "mirrored top-bottom", 5: "transposed",
    6: "rotated 90° clockwise", 7: "transverse-mirrored", 8: "rotated 90° counter-clockwise",
}


def upright(array: np.ndarray, orientation: int | None) -> np.ndarray:
    """The stored (H, W[, C]) array as displayed for an orientation tag value (1-8; others: unchanged).
    Transposing values (5-8) swap H and W."""
    ops = {
        2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1], 5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).swapaxes(0, 1), 8: lambda a: np.rot90(a, 1),
    }
    op = ops.get(int(orientation or 1))
    return np.ascontiguousarray(op(array)) if op else array


def stored(array: np.ndarray, orientation: int | None) -> np.ndarray:
    """The inverse of :func:`upright`: the array to store with ``orientation`` so that it displays as ``array``."""
    inverse = {6: 8, 8: 6}.get(int(orientation or 1), orientation)  # 2, 3, 4, 5, 7 undo themselves
    return upright(array, inverse)


TAG_NAMES = {"EXIF": "EXIF orientation", "TIFF": "TIFF Orientation tag"}  # where the tag was read: its wording


def describe(orientation: int | None, source: str = "EXIF") -> str:
    """``"EXIF orientation 6: rotated 90° clockwise"`` (``source`` "TIFF": ``"TIFF Orientation tag 6: ..."``) for
    results.csv; ``""`` when nothing was applied."""
    value = int(orientation or 1)
    name = TAG_NAMES.get(source, TAG_NAMES["EXIF"])
    return f"{name} {value}: {ORIENTATION_TEXT[value]}" if value in ORIENTATION_TEXT else ""


def pil_orientation(image) -> int:
    """The orientation tag of an opened (loaded) Pillow image; 1 when it has none or it is unreadable."""
    try:
        value = image.getexif().get(ORIENTATION_TAG, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:  # a broken EXIF block must not make a readable film unreadable
        return 1


def tiff_orientation(page) -> int:
    """The orientation tag (274) of a tifffile page; 1 when absent or out of range."""
    tag = page.tags.get(274)
    try:
        value = int(tag.value) if tag is not None else 1
    except (TypeError, ValueError):
        return 1
    return value if value in range(1, 9) else 1
