"""napari writer contribution: a Labels layer saved as a binary 0/255 PNG or TIFF mask."""
from __future__ import annotations

from typing import Any

import numpy as np

from napari_adaqat.io import write_mask


def write_labels(path: str, data: Any, attributes: dict) -> list[str]:
    """Write a 2-D labels layer (any non-zero label = lung) to ``path``; return the written path.

    napari's save dialog already asks before replacing a file, so an existing file is overwritten.
    """
    mask = np.asarray(data)
    if mask.ndim != 2:
        name = attributes.get("name", "labels")
        raise ValueError(f"{name!r} has shape {mask.shape}; only 2-D masks can be saved as PNG/TIFF")
    return [str(write_mask(path, mask, overwrite=True))]
