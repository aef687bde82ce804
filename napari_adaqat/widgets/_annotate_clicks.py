"""The Annotate dock's "Correct with clicks": the Segment dock opened (or raised) beside it, on the film being
annotated, with the model that pre-segments the films, in Points mode.  Its clicks are then prompted with the
Annotate dock's box and the mask on screen (``SegmentWidget._annotated``), and Accept saves what is shown."""
from __future__ import annotations

import weakref
from typing import Any, Optional

from napari_adaqat.inference.engine import ModelRef
from napari_adaqat.widgets._shared import PLUGIN, SEGMENT_DOCK, show_dock

CLICKS_HELP = ("Click in 'points' to correct this film's mask: a click adds lung, Ctrl+click or Negative [N] "
               "marks 'not lung'; Undo [Ctrl+Z] and Reset are on the Segment dock. Accept [Enter] saves "
               "the mask as shown.")
BUNDLED_BASELINE = ModelRef(None, baseline=True)


class ClicksDock:
    """The Segment dock that "Correct with clicks" opened, kept in step with the Annotate dock's model."""

    def __init__(self) -> None:
        self._segment: Optional[weakref.ReferenceType] = None

    def open(self, viewer: Any, film: Any, model: ModelRef, baseline: Optional[ModelRef]) -> Any:
        """Show the Segment dock on the image layer ``film`` with ``model`` (and ``baseline`` for its SSIM maps:
        the Annotate dock's file from a training run, else the bundled FP32 model), its ``points`` layer
        selected in add mode; returns its widget."""
        segment = show_dock(viewer, PLUGIN, SEGMENT_DOCK)
        self._segment = weakref.ref(segment)
        other_image = film is not None and segment.image.value is not film
        self._choose(segment, model, baseline, quiet=other_image)
        if other_image:
            segment.image.value = film  # embeds the film once, with the model chosen above
        segment.points_mode()
        return segment

    def _open(self) -> Any:
        """The Segment dock it opened, while that is still open; else None."""
        segment = self._segment() if self._segment is not None else None
        return None if segment is None or getattr(segment, "_closed", True) else segment

    def live_on(self, film: Any) -> Any:
        """The Segment dock it opened, when still open and on the image layer ``film``; else None."""
        segment = self._open()
        return segment if segment is not None and segment.image.value is film else None

    def busy(self) -> bool:
        """Whether the Segment dock it opened (if still open) has a click on its way: its mask not shown yet."""
        segment = self._open()
        if segment is None:
            return False
        return segment._pending is not None or segment.jobs.busy_besides("maps")

    def film_shown(self) -> None:
        """The Annotate dock shows another film (its maps cleared): the Segment dock's legends go until new maps."""
        segment = self._open()
        if segment is not None:
            segment.legends.show_for(None)

    def follow(self, model: ModelRef, baseline: Optional[ModelRef]) -> None:
        """The Annotate dock's model changed: the Segment dock it opened (if still open) follows."""
        segment = self._open()
        if segment is not None:
            self._choose(segment, model, baseline, quiet=False)

    @staticmethod
    def _choose(segment: Any, model: ModelRef, baseline: Optional[ModelRef], quiet: bool) -> None:
        """The clicks correct with the model that made the mask; ``quiet``: no embedding now (an image
        change follows, which embeds)."""
        baseline = baseline if baseline is not None and model.path is not None else BUNDLED_BASELINE
        try:
            current = (segment.model_ref(), segment.baseline_ref())
        except ValueError:  # a file asked for but not given
            current = None
        if current != (model, baseline):
            segment.use_refs(model, baseline, quiet=quiet)
