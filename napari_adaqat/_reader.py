"""napari reader contribution: DICOM radiographs (``.dcm``, ``.dicom`` or extension-less).

The manifest offers this reader for DICOM extensions and for the numbered names that
extension-less DICOM exports use (``IM-0001-0001``, ``00000001``, ``1.2.840.…1``); it is not
offered for every file, so opening a PNG never asks the user to pick a reader. It sniffs the
content and returns ``None`` for anything that is not DICOM (a PNG, JPEG, TIFF or BMP named ``.dcm`` is
read as what it is). Any other DICOM file opens with
``viewer.open(path, plugin="napari-adaqat")``.  A multi-frame file opens as a stack (frames, H, W).
The layer metadata keeps the source path and SOP Instance UID, which the DICOM SEG writer needs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from napari_adaqat.io.dicom import DICOM_SUFFIXES, is_dicom, read_dicom_stack
from napari_adaqat.io.images import read_image

PathOrPaths = Union[str, Sequence[str]]
LayerData = tuple[Any, dict, str]


def _paths(path: PathOrPaths) -> list[str]:
    return [os.fspath(path)] if isinstance(path, (str, os.PathLike)) else [os.fspath(p) for p in path]


def get_dicom_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """Return :func:`read_dicom_layers` when every path is a DICOM file, else ``None``."""
    paths = _paths(path)
    if not paths or not all(os.path.isfile(p) and (is_dicom(p) or _named_dicom(p)) for p in paths):
        return None
    return read_dicom_layers


def _named_dicom(path: str) -> bool:
    """A PNG, JPEG, TIFF or BMP named ``.dcm``/``.dicom`` (no other reader would take it): read as what it is."""
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def read_dicom_layers(path: PathOrPaths) -> list[LayerData]:
    """One grayscale Image layer per DICOM file, windowed to [0, 1], scaled by its pixel spacing (mm);
    (H, W) for one frame, (frames, H, W) for a multi-frame file."""
    layers: list[LayerData] = []
    for p in _paths(path):
        image = read_dicom_stack(p) if is_dicom(p) else read_image(p)
        stack = image.pixels.ndim == 3
        kwargs: dict = {
            "name": Path(p).stem or Path(p).name,
            "colormap": "gray",
            "contrast_limits": (0.0, 1.0),
            "metadata": {"source": image.source, "spacing_mm": image.spacing, **image.meta},
        }
        if image.spacing is not None:
            kwargs["scale"] = (1.0,) * stack + tuple(float(s) for s in image.spacing)
            kwargs["units"] = ("pixel",) * stack + ("mm", "mm")
        layers.append((image.pixels, kwargs, "image"))
    return layers
