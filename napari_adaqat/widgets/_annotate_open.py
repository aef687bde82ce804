"""What the Annotate dock's worker does to open a film: read it, its draft or accepted mask, and prompt
the model with the box for it (or only embed it, when a saved mask is shown).  No napari or Qt here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from napari_adaqat.data.annotation import AnnotationFolder
from napari_adaqat.inference.engine import Engine, ModelRef
from napari_adaqat.io import read_image
from napari_adaqat.util.errors import first_line

SOURCES = {"model": "the model's mask", "saved": "the accepted mask, for review (saved again only by Accept)",
           "draft": "your draft (not saved yet)", "empty": "no mask"}


@dataclass
class Opened:
    """One film as read: pixels (H, W) in [0, 1], the mask to show (bool (H, W)) and where it came from."""

    pixels: Optional[np.ndarray] = None
    spacing: Optional[tuple[float, float]] = None  # (row, col) mm of a DICOM; None: unknown (square)
    mask: Optional[np.ndarray] = None
    source: str = "empty"  # a key of SOURCES
    box: Optional[np.ndarray] = None  # the box of a model mask, xyxy pixels (4,)
    note: str = ""  # a problem that did not stop the film from opening
    error: Optional[BaseException] = None  # the film cannot be opened


def read_film(engine: Engine, folder: AnnotationFolder, index: int, model: Optional[ModelRef], device: str,
              problem: str = "") -> Opened:
    """Read film ``index``; ``model`` None (with the ``problem`` why) opens it without a model mask.

    Never raises: a film that cannot be read comes back with ``error``, any other problem as ``note``."""
    try:
        film = read_image(folder.films[index].path)
    except Exception as exc:  # noqa: BLE001 - the film's row says why
        return Opened(error=exc)
    pixels = film.pixels
    out = Opened(pixels=pixels, spacing=film.shape_spacing, note="\n".join(line for line in (problem, folder.mask_note(index)) if line))
    try:
        saved, kind = folder.read_saved(index)
    except Exception as exc:  # noqa: BLE001 - an unreadable draft is kept, not overwritten
        saved, kind, out.note = None, "", f"{first_line(exc)} (kept as it is until you Accept)"
    if saved is not None and saved.shape != pixels.shape:
        out.note = (f"the {kind} mask has size {saved.shape}, the film {pixels.shape}: showing the model's "
                    "mask (the file is kept until you Accept)")
        saved = None
    if saved is not None:
        out.mask, out.source = saved, kind
    if model is None:
        return out
    try:
        if saved is not None:
            engine.embed(film, model, None, device)  # a new box answers at once (non-square pixels made square)
        else:
            out.box = folder.box_for(pixels.shape)
            out.mask, out.source = engine.predict(film, out.box, model, device).mask, "model"
    except Exception as exc:  # noqa: BLE001 - the film still opens, to paint by hand
        out.note = first_line(exc)
    return out
