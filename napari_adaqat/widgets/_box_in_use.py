"""The box in use: a new box that the Segment dock segments replaces the boxes before it on its plane, so ``boxes``
shows only the box that made the mask (each box drawn stayed on the canvas, and only the last one counted).  The
boxes taken off stay one Undo away: the state before holds them (a mixin of
:class:`~napari_adaqat.widgets.segment.SegmentWidget`)."""
from __future__ import annotations

from typing import Any

import numpy as np

from napari_adaqat.widgets import _points as P
from napari_adaqat.widgets._layers import dock_write


class BoxInUse:
    """Needs the dock's ``_boxes``, ``history``, ``_pending`` and ``_in_flight`` (states whose boxes Undo restores) and
    ``_restoring`` (set while the dock writes ``boxes``)."""

    _boxes: Any
    history: Any
    _pending: Any
    _in_flight: tuple
    _restoring: bool

    def _keep_only_box(self, index: int, image: Any) -> int:
        """Take the other boxes on ``index``'s plane of ``image`` off ``boxes``; returns ``index`` after that.  A box
        taken off that no state holds (drawn before this dock's first prompt) joins the current state's boxes,
        so Undo brings it back with that state."""
        boxes = self._boxes
        drop = others_on_plane(boxes, index, image)
        if not drop:
            return index
        shapes, history = P.snapshot_boxes(boxes), self.history
        held = [state.boxes for state in (history.current if history is not None else None, self._pending,
                                          *(s for _h, s in self._in_flight)) if state is not None]
        missing = [shapes[i] for i in drop if not any(_holds(kept, shapes[i]) for kept in held)]
        if missing and history is not None:
            history.current.boxes = [*history.current.boxes, *missing]
        selected, mode = index in boxes.selected_data, boxes.mode
        self._restoring = True
        try:
            with dock_write(boxes):
                boxes.selected_data = set(drop)
                boxes.remove_selected()
        finally:
            self._restoring = False
        index -= sum(i < index for i in drop)
        if selected:
            boxes.selected_data = {index}
        if boxes.mode != mode:
            boxes.mode = mode
        return index


def others_on_plane(boxes: Any, index: int, image: Any) -> list[int]:
    """The shapes of ``boxes`` other than ``index`` on its plane of ``image`` (all others for a 2-D image)."""
    others = [i for i in range(len(boxes.data)) if i != index]
    if image.ndim < 3:
        return others
    plane = P._shape_plane(boxes, index, image)
    return [i for i in others if P._shape_plane(boxes, i, image) == plane]


def _holds(shapes: list[tuple[np.ndarray, str]], shape: tuple[np.ndarray, str]) -> bool:
    """Whether the :func:`~._points.snapshot_boxes` ``shapes`` hold ``shape``."""
    vertices, kind = shape
    return any(k == kind and v.shape == vertices.shape and np.allclose(v, vertices) for v, k in shapes)


def no_lung_line(mask: np.ndarray, has_box: bool) -> str:
    """The status line (with its newline) of an empty mask, else "": the box (or the points) held no lung."""
    if np.asarray(mask).any():
        return ""
    if has_box:
        return "The box holds no lung: draw it around both lungs (or around one lung).\n"
    return "No lung at these points: draw a box around both lungs in 'boxes'.\n"
