"""The Annotate dock's "Correct with clicks": the Segment dock opened (or raised) beside it, on the film being
annotated, with the model that pre-segments the films, in Points mode.  Its clicks are then prompted with the
Annotate dock's box and the mask on screen (``SegmentWidget._annotated``), and Accept saves what is shown."""
from __future__ import annotations

from typing import Any, Optional

from napari_adaqat.inference.engine import ModelRef
from napari_adaqat.widgets._shared import PLUGIN, SEGMENT_DOCK

CLICKS_HELP = ("Click in 'points' to correct this film's mask: a click adds lung, Ctrl+click or Negative [N] "
               "marks 'not lung'; Undo [Ctrl+Z] and Reset [R] are on the Segment dock. Accept [Enter] saves "
               "the mask as shown.")


def open_clicks(viewer: Any, film: Any, model: ModelRef, baseline: Optional[ModelRef]) -> Any:
    """Show the Segment dock on the image layer ``film``, segmenting with ``model`` (and ``baseline`` for
    its SSIM maps when the model is a file), its ``points`` layer selected in add mode; returns its widget."""
    dock, segment = viewer.window.add_plugin_dock_widget(PLUGIN, SEGMENT_DOCK)
    dock.show()
    dock.raise_()
    try:
        current = segment.model_ref()
    except ValueError:  # a model file asked for but not given
        current = None
    if current != model:  # the clicks must correct with the model that made the mask
        file = None if model.path is None else model.path
        segment.use_models(file, None if baseline is None or file is None else baseline.path, model.model_type)
    if film is not None and segment.image.value is not film:
        segment.image.value = film
    segment.points_mode()
    return segment
