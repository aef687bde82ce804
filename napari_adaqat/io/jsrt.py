"""JSRT's films as the database ships them: ``JPCLN001.IMG`` (Japanese Society of Radiological Technology; with
the SCR lung masks, one of the most used chest X-ray sets).

A JSRT ``.IMG`` has no header: 2048 x 2048 pixels of 0.175 mm, 12 bits stored in 16, big-endian, and the
values inverted against a radiograph's display (0 is white: bone and the mediastinum high on the screen, the
lungs low, as the database's own conversion scripts read it, ``1 - x / 4096``).  No library reads this layout (it
is no standard format: pydicom, tifffile and Pillow see bytes), so it is read here, and only where a file is
exactly that size, named ``.img``, and holds only 12-bit values: anything else named ``.img`` (an Analyze volume,
a disk image) keeps its one-line refusal.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .image_data import ImageData, fail, to_gray01

JSRT_SUFFIX = ".img"
JSRT_SHAPE = (2048, 2048)
JSRT_BYTES = JSRT_SHAPE[0] * JSRT_SHAPE[1] * 2
JSRT_SPACING_MM = (0.175, 0.175)  # (row, col), the database's stated pixel size
JSRT_MAX = 4095  # 12 bits


def is_jsrt(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named ``.img``, has the size of a JSRT film and no Analyze header beside it (its values
    are checked on reading)."""
    p = Path(path)
    if p.suffix.lower() != JSRT_SUFFIX:
        return False
    try:
        return p.stat().st_size == JSRT_BYTES and _analyze_header(p) is None
    except OSError:
        return False


def _analyze_header(path: Path) -> Path | None:
    """The ``.hdr`` beside ``path`` (an Analyze 7.5 / NIfTI pair's header), else None."""
    return next((h for h in (path.with_suffix(".hdr"), path.with_suffix(".HDR")) if h.is_file()), None)


def not_jsrt(path: Path) -> str:
    """Why ``path``, named ``.img``, is not read as a JSRT film (its size, or the Analyze header beside it)."""
    header = _analyze_header(path)
    if header is not None:
        return f"an Analyze volume ({header.name} beside it), not a film"
    try:
        size = path.stat().st_size
    except OSError:
        return "not readable"
    return f"{size} bytes, not JSRT's {JSRT_BYTES} (truncated, or not a JSRT film)"


def read_jsrt(path: str | os.PathLike) -> ImageData:
    """A JSRT ``.IMG`` film as float32 (2048, 2048) in [0, 1] with the lungs dark (as a 16-bit PNG of it would be
    read), and its 0.175-mm spacing;
    ImageReadError for a file of that name and size whose values do not fit 12 bits (not JSRT's layout)."""
    p = Path(path)
    try:
        raw = np.fromfile(p, dtype=">u2")
    except OSError as exc:
        raise fail(p, f"cannot open ({exc.strerror or exc})") from None
    if raw.size != JSRT_SHAPE[0] * JSRT_SHAPE[1]:
        raise fail(p, f"not JSRT's .IMG layout: {raw.size * 2} bytes, not {JSRT_BYTES}")
    top = int(raw.max())
    if top > JSRT_MAX and int(raw.byteswap().max()) <= JSRT_MAX:
        raise fail(p, "a little-endian copy of a JSRT film (its values fit 12 bits with their bytes swapped; JSRT's "
                      "are big-endian): convert it to a 16-bit PNG, e.g. np.fromfile(path, '<u2').reshape(2048, 2048)")
    if top > JSRT_MAX:
        raise fail(p, f"not JSRT's .IMG layout (values up to {top}, above 12 bits' {JSRT_MAX}): convert it to a "
                      "16-bit PNG or TIFF, with the lungs dark")
    shown = (JSRT_MAX - raw.reshape(JSRT_SHAPE)).astype(np.uint16)  # inverted: the lungs dark
    pixels = to_gray01(shown)  # then as a 16-bit PNG of that film is read
    meta = {"format": "jsrt", "dtype": "uint16", "channels": 1, "bits_stored": 12, "inverted": True,
            "orientation": 1, "orientation_applied": ""}
    return ImageData(pixels=pixels, spacing=JSRT_SPACING_MM, source=str(p), meta=meta)
