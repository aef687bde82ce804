"""Films stored sideways, shown upright in napari.

napari's own reader shows a JPEG/PNG/TIFF as its pixels are stored and ignores the EXIF (TIFF)
orientation tag, so a phone photo of a film, or an export that rotates by tag, opens on its side; a
mask drawn or predicted on it would be turned against the film in every other viewer.  While a dock
of this plugin is open, every image layer read from such a file is turned upright in place (what
``adaqat segment`` reads, so masks agree between the dock and the command line) and a notification
says so; ``layer.metadata["orientation_applied"]`` records it, so a layer is never turned twice.
"""
from __future__ import annotations

import weakref
from pathlib import Path

from napari_adaqat.io.images import RASTER_SUFFIXES, TIFF_SUFFIXES, file_orientation
from napari_adaqat.io.orientation import describe, upright

APPLIED = "orientation_applied"
_watched: "weakref.WeakSet" = weakref.WeakSet()  # viewers already watched (every dock may ask)


def _source_path(layer) -> Path | None:
    source = getattr(layer, "source", None)
    path = getattr(source, "path", None)
    return Path(path) if path else None


def orientation_tag(path: Path, orientation: int) -> str:
    """What the file's orientation ``orientation`` says, named by where it was read (a TIFF's own tag, else EXIF)."""
    return describe(orientation, "TIFF" if path.suffix.lower() in TIFF_SUFFIXES else "EXIF")


def upright_layer(layer) -> str | None:
    """Turn an Image layer read from a file with an orientation tag upright; return the one-line
    notice, or None when there was nothing to do (no file, no tag, already done, a stack or pyramid)."""
    path = _source_path(layer)
    if path is None or getattr(layer, "multiscale", False) or APPLIED in getattr(layer, "metadata", {}):
        return None
    if path.suffix.lower() not in RASTER_SUFFIXES + TIFF_SUFFIXES:
        return None
    orientation = file_orientation(path)
    data = layer.data
    spatial = 3 if getattr(layer, "rgb", False) else 2
    if orientation == 1 or data.ndim != spatial:
        return None
    tag = orientation_tag(path, orientation)
    layer.metadata = {**layer.metadata, APPLIED: tag}
    layer.data = upright(data, orientation)
    if orientation in (5, 6, 7, 8) and layer.scale[-1] != layer.scale[-2]:  # rows and columns swap: so do their
        layer.scale = (*layer.scale[:-2], layer.scale[-1], layer.scale[-2])  # spacings (a scale given to open())
    layer.reset_contrast_limits()
    return (f"{path.name} is stored sideways ({tag}); shown upright, as other viewers and "
            "'adaqat segment' show it")


def watch_orientation(viewer, notify=None) -> None:
    """Turn the image layers of ``viewer`` upright now and whenever one is added (see :func:`upright_layer`).

    ``notify(text)`` shows each notice (default: napari's ``show_info``)."""
    watch_image_layers(viewer, upright_layer, _watched, notify)


def watch_image_layers(viewer, fix, watched, notify=None) -> None:
    """Apply ``fix(layer) -> notice or None`` to the Image layers of ``viewer`` now and whenever one is added,
    once per viewer (``watched``: the fix's WeakSet of viewers); ``notify(text)`` shows each notice (default:
    napari's ``show_info``)."""
    if viewer in watched:
        return
    if notify is None:
        from napari.utils.notifications import show_info as notify

    def check(layer) -> None:
        if type(layer).__name__ != "Image":
            return
        notice = fix(layer)
        if notice:
            notify(notice)

    for layer in list(viewer.layers):
        check(layer)
    viewer.layers.events.inserted.connect(lambda event: check(event.value))
    watched.add(viewer)
