"""TIFF and JPEG films that napari's own reader shows otherwise than they are, shown (and segmented) as they are.

napari's reader gives a TIFF's stored values: a white-is-zero film (Photometric MINISWHITE) opens inverted,
a palette film as its palette indices, a CMYK one (TIFF or JPEG) as ink taken for RGBA, an uncompressed YCbCr one
as YCbCr taken for RGB; the Segment dock would segment that, silently.  While a dock of this plugin is open, an
Image layer read from such a file (the file's header says so; its data still as the file stores it) gets
the reading of :func:`~napari_adaqat.io.read_image` (what ``adaqat segment`` and the API segment), with
fitting contrast limits and a one-line notice; ``layer.metadata["film_reading"]`` keeps that line (the
dock's status shows it), so a layer is never changed twice.  A layer whose data is neither the file's
stored values nor its reading (another reader, pixels set by a script) is left as it is.  Each layer costs
one header read when it is added; a film read the same way costs nothing more, and nothing per click.
No napari or Qt here (layers are used through their attributes).
"""
from __future__ import annotations

import weakref
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import tifffile
from PIL import Image

from napari_adaqat.io.image_data import to_gray01
from napari_adaqat.io.images import TIFF_SUFFIXES, read_raw, tiff_images
from napari_adaqat.io.orientation import pil_orientation, upright
from napari_adaqat.widgets._orientation import APPLIED, _source_path, orientation_tag, watch_image_layers

READING = "film_reading"  # layer.metadata key: the notice, once the layer holds our reading
# Photometric Interpretations that napari's reader (tifffile's stored values) shows otherwise than read_image
_SHOWN_OTHERWISE = {
    "MINISWHITE": "a white-is-zero TIFF, inverted; re-read as a radiograph",
    "PALETTE": "a palette TIFF, as its palette indices; re-read through its colormap",
    "SEPARATED": "a CMYK TIFF, its ink as RGBA; re-read as RGB",
    "YCBCR": "a YCbCr TIFF, as RGB; re-read as its luma (gray)",
}
_checked: "weakref.WeakSet" = weakref.WeakSet()  # layers looked at already (their file's header read once)
_watched: "weakref.WeakSet" = weakref.WeakSet()  # viewers already watched (every dock may ask)


CMYK_JPEG = "a CMYK JPEG, its ink as RGBA; re-read as RGB"
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


def _photometric(path: Path) -> Optional[str]:
    """The first page's Photometric Interpretation name, from the header only; None when not a readable TIFF."""
    try:
        with tifffile.TiffFile(path) as tif:
            return tif.pages[0].photometric.name if tif.pages else None
    except Exception:  # noqa: BLE001 - not a TIFF we can read: napari's reading stays
        return None


def _shown_otherwise(path: Path) -> Optional[str]:
    """How napari's reader shows ``path`` otherwise than :func:`~napari_adaqat.io.read_image` reads it (the
    notice's words), from its header; None when it shows it as it is."""
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return _SHOWN_OTHERWISE.get(_photometric(path) or "")
    if suffix in JPEG_SUFFIXES:  # (imageio gives a CMYK JPEG's ink values as four channels, K taken for alpha)
        try:
            with Image.open(path) as im:
                return CMYK_JPEG if im.mode == "CMYK" else None
        except Exception:  # noqa: BLE001 - not a JPEG we can read: napari's reading stays
            return None
    return None


def _stored(path: Path, words: str) -> np.ndarray:
    """The file's values as napari's reader gives them, upright (a TIFF's stored values, a CMYK JPEG's ink)."""
    if words != CMYK_JPEG:
        return read_raw(path, as_shown=False)[0]
    with Image.open(path) as im:
        return upright(np.asarray(im), pil_orientation(im))


def _same(data: Any, array: np.ndarray) -> bool:
    data = np.asarray(data)
    return data.shape == array.shape and np.array_equal(data, array)


def _limits(arr: np.ndarray) -> tuple[float, float]:
    """Contrast limits that show ``arr`` as the dock segments it (:func:`~napari_adaqat.io.to_gray01`)."""
    if arr.dtype == np.uint8:
        return 0.0, 255.0
    if arr.dtype == bool or (np.issubdtype(arr.dtype, np.floating) and arr.min() >= 0 and arr.max() <= 1):
        return 0.0, 1.0
    lo, hi = float(arr.min()), float(arr.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def reread_layer(layer: Any) -> Optional[str]:
    """Put our reading of a TIFF film into an Image layer that holds napari's reading of it (see the module);
    return the one-line notice, or None when there was nothing to do.  Looks at each layer once."""
    if layer in _checked:
        return None
    _checked.add(layer)
    path = _source_path(layer)
    metadata = getattr(layer, "metadata", {})
    if path is None or getattr(layer, "multiscale", False) or READING in metadata:
        return None
    words = _shown_otherwise(path)
    if words is None:
        return _first_page_note(layer, path)
    try:
        stored = _stored(path, words)  # upright, as napari's reader gives it
        shown, meta = read_raw(path)
    except Exception:  # noqa: BLE001 - napari read it; whatever we cannot read stays as napari shows it
        return None
    orientation = meta.get("orientation") or 1
    data = layer.data if APPLIED in metadata else upright(np.asarray(layer.data), orientation)
    if _same(data, shown) or not _same(data, stored):
        return None  # our reading already, or pixels of another reader or a script: left as they are
    notice = f"napari's reader showed {path.name}, {words}, as 'adaqat segment' reads it"
    layer.metadata = {**metadata, READING: notice, **({APPLIED: orientation_tag(Path(path), orientation)} if orientation != 1 else {})}
    new = _fitting(shown, bool(getattr(layer, "rgb", False)))
    layer.data = new
    if not layer.rgb:
        layer.colormap = "gray"
    layer.contrast_limits = _limits(new)
    return notice


def _first_page_note(layer: Any, path: Path) -> Optional[str]:
    """A TIFF of several pages shown as one plane (napari's reader shows its first series): the notice that the
    dock segments that page, where the API and ``adaqat segment`` refuse the file; None otherwise."""
    if path.suffix.lower() not in TIFF_SUFFIXES or getattr(layer, "ndim", 2) != 2:
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            pages = tiff_images(tif)  # (as read_image counts them)
    except Exception:  # noqa: BLE001 - not a TIFF we can read
        return None
    if pages < 2:
        return None
    notice = (f"{path.name} holds {pages} pages; napari's reader shows the first, which is what is segmented "
              "('adaqat segment' refuses the file: save each page as its own film)")
    layer.metadata = {**getattr(layer, "metadata", {}), READING: notice}
    return notice


def _fitting(shown: np.ndarray, rgb: bool) -> np.ndarray:
    """``shown`` in the layout of a layer that is (not) RGB (napari cannot switch a shown layer between the
    two): a palette's colours as their gray (what is segmented), a luma as three equal channels."""
    if (shown.ndim == 3 and shown.shape[-1] in (3, 4)) == rgb:
        return shown
    return np.repeat(shown[..., None], 3, axis=-1) if rgb else to_gray01(shown)


def reading_note(layer: Any) -> str:
    """``"\\n<notice>"`` for a layer that holds our reading instead of napari's (the dock's status), else ``""``."""
    notice = getattr(layer, "metadata", {}).get(READING) if layer is not None else None
    return f"\n{notice}" if notice else ""


def watch_film_reading(viewer: Any, notify: Optional[Callable[[str], Any]] = None) -> None:
    """Re-read the image layers of ``viewer`` now and whenever one is added (see :func:`reread_layer`).

    ``notify(text)`` shows each notice (default: napari's ``show_info``).  Call it after
    :func:`~napari_adaqat.widgets._orientation.watch_orientation` (which turns a sideways film upright first)."""
    watch_image_layers(viewer, reread_layer, _watched, notify)
