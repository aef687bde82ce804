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

import numpy as np

from napari_adaqat.io.dicom import DICOM_SUFFIXES, is_dicom, read_dicom_stack
from napari_adaqat.io.dicom_open import frame_count, open_dicom
from napari_adaqat.io.dicom_pixels import decode
from napari_adaqat.io.image_data import NotAFilm
from napari_adaqat.io.images import read_image, sample_name
from napari_adaqat.io.jsrt import is_jsrt

PathOrPaths = Union[str, Sequence[str]]
LayerData = tuple[Any, dict, str]


def _paths(path: PathOrPaths) -> list[str]:
    return [os.fspath(path)] if isinstance(path, (str, os.PathLike)) else [os.fspath(p) for p in path]


def get_dicom_reader(path: PathOrPaths) -> Callable[[PathOrPaths], list[LayerData]] | None:
    """Return :func:`read_dicom_layers` when every path is a DICOM file (or a JSRT ``.IMG`` film, which no other
    reader takes), else ``None``."""
    paths = _paths(path)
    if not paths or not all(os.path.isfile(p) and (is_dicom(p) or _named_dicom(p) or is_jsrt(p)) for p in paths):
        return None
    return read_dicom_layers


def _named_dicom(path: str) -> bool:
    """A PNG, JPEG, TIFF or BMP named ``.dcm``/``.dicom`` (no other reader would take it): read as what it is."""
    return Path(path).suffix.lower() in DICOM_SUFFIXES


def read_dicom_layers(path: PathOrPaths) -> list[LayerData]:
    """One grayscale Image layer per DICOM file, windowed to [0, 1], scaled by its pixel spacing (mm);
    (H, W) for one frame, (frames, H, W) for a multi-frame file.  A DICOM Segmentation (``adaqat segment --format
    dcm-seg``) is a Labels layer; another object that is no film is refused in one line (:class:`NotAFilm`)."""
    layers: list[LayerData] = []
    for p in _paths(path):
        try:
            image = read_dicom_stack(p) if is_dicom(p) else read_image(p)
        except NotAFilm:
            layers.append(_segmentation_layer(p))  # a DICOM SEG (a mask): as labels; anything else says what it is
            continue
        stack = image.pixels.ndim == 3
        kwargs: dict = {
            "name": sample_name(p),  # (1.2.840.113619.2.55.3 keeps its last part: a UID, not a suffix)
            "colormap": "gray",
            "contrast_limits": (0.0, 1.0),
            "metadata": {"source": image.source, "spacing_mm": image.spacing, **image.meta},
        }
        if image.shape_spacing is not None:  # the film at its true shape (mm, or a unitless Pixel Aspect Ratio)
            kwargs["scale"] = (1.0,) * stack + tuple(float(s) for s in image.shape_spacing)
        if image.spacing is not None:
            kwargs["units"] = ("pixel",) * stack + ("mm", "mm")
        layers.append((image.pixels, kwargs, "image"))
    return layers


SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.4"


def _segmentation_layer(path: str) -> LayerData:
    """A DICOM Segmentation as a Labels layer (segment = 1; (frames, H, W) for several frames), at its pixel
    spacing; :class:`NotAFilm` (its one line) for any other object that is no film."""
    ds = open_dicom(path)  # (a file without preamble too; one without pixel data raises its NotAFilm line)
    if str(ds.get("SOPClassUID", "")) != SEGMENTATION:
        read_dicom_stack(path)  # raises its NotAFilm line
    frames = frame_count(ds)
    data = decode(Path(path), ds, None, frames) != 0  # (the data set read once: (H, W), or (F, H, W))
    kwargs: dict = {"name": f"{sample_name(path)} (SEG)", "opacity": 0.45, "metadata": {"source": path}}
    try:  # the Pixel Measures of the Shared Functional Groups (PS3.3 C.7.6.16.2.1)
        spacing = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing
        kwargs["scale"] = (1.0,) * (frames > 1) + tuple(float(v) for v in spacing)
        kwargs["units"] = ("pixel",) * (frames > 1) + ("mm", "mm")
    except (AttributeError, IndexError, TypeError, ValueError):
        pass
    return np.asarray(data).astype(np.uint8), kwargs, "labels"
