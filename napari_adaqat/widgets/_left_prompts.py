"""A prompt still on its way when the Segment dock switches to another image is kept with the image it was
drawn on: coming back to that image puts back its box and points as drawn and runs the prompt again, so a box
drawn just before choosing another image is never lost (a mixin of
:class:`~napari_adaqat.widgets.segment.SegmentWidget`)."""
from __future__ import annotations

from typing import Any, Optional

from napari_adaqat.widgets import _points as P
from napari_adaqat.widgets._prompt_history import PromptHistory, PromptState


class LeftPrompts:
    """Needs the dock's ``viewer``, ``jobs``, ``_generation``, ``_pending``, ``_points_image`` (the image whose
    prompts the layers hold), ``_boxes``, ``_points``, ``_restoring``, ``_history_of``, ``_annotated``,
    ``_send_off``, ``_fill`` and ``_segment``."""

    viewer: Any
    jobs: Any
    _generation: int
    _pending: Optional[PromptState]
    _in_flight: tuple
    _pending_history: Optional[PromptHistory] = None  # the history the prompt on its way belongs to
    _points_image: Optional[str]
    _boxes: Any
    _points: Any
    _restoring: bool
    _left: Optional[dict[str, tuple[PromptHistory, PromptState]]] = None  # image id: (its history, the prompt)

    def _leave_image(self) -> None:
        """Another image is chosen: results still on their way for the image before are dropped, and its
        prompt still on its way (``_pending``: its boxes and points as drawn) is kept with it."""
        present = {str(layer.unique_id): layer for layer in self.viewer.layers}
        left = {key: entry for key, entry in (self._left or {}).items() if key in present}  # deleted: forgotten
        image = present.get(self._points_image or "")
        if self._pending is not None and image is not None:
            left[str(image.unique_id)] = (self._pending_history, self._pending)
            self._send_off(self._pending_history)  # the clicks sent before it: each one Undo step there
            self.jobs.drop("predict", "maps")  # its queued jobs: their results would be dropped
        self._in_flight = ()
        self._left = left
        self._generation, self._pending = self._generation + 1, None

    def _resume_prompt(self, image: Any) -> None:
        """Back on ``image`` (or the same image chosen again, e.g. renamed): the prompt left on its way there runs
        again with its box and points as drawn (not when the layer holds another film since: another history)."""
        history, request = (self._left or {}).pop(str(image.unique_id), (None, None))
        if self._boxes is None or self._points is None:
            return
        current = self._history_of(image).current
        if request is None or history is not self._history_of(image):
            if not current.computed:  # left while a replaced click's mask was being made
                self._fill(current)
            return
        self._restoring = True  # (the layers' events do not prompt: the prompt below does, once)
        try:
            if not self._annotated(image):  # (the Annotate dock's rectangles stay as they are: its to change)
                P.restore_boxes(self._boxes, request.boxes)
            P.restore_points(self._points, request.points, request.positive)
        finally:
            self._restoring = False
        self._segment(request.action, request.box_index)
