"""Brush edits of ``lung mask`` in the Segment dock: found (the layer differs from what the dock painted), recorded
as a history state with the edits it keeps through later clicks (:mod:`._kept_edits`), and recorded before Undo or
Redo moves away from them (a mixin of :class:`~napari_adaqat.widgets._clicks.ClickPrompts`)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from napari_adaqat.widgets import _kept_edits as K
from napari_adaqat.widgets import _layers as L
from napari_adaqat.widgets import _points as P
from napari_adaqat.widgets._prompt_history import EDIT, EMPTY, PromptState


class BrushEdits:
    """Needs the dock's ``viewer``, ``image``, ``history``, ``_boxes``, ``_history_of``, ``_annotated`` and ``_push``."""

    viewer: Any
    _annotate_base_seen: Any = None  # the Annotate dock's last mask that a brush edit was measured against

    def _brush_edit(self, image: Any, plane: Optional[int]) -> Optional[np.ndarray]:
        """The ``lung mask`` plane (H, W) bool when it differs from what the dock painted there last (a brush
        edit), after recording it as a state (Undo comes back to it); None when unedited."""
        history, shown = self._history_of(image), self._shown_mask(image, plane)
        if history is None or shown is None:
            return None
        painted = history.painted(plane)
        if np.array_equal(shown, painted if painted is not None else np.zeros_like(shown)):
            return None
        current = history.current
        boxes, box_index, annotated = current.boxes, current.box_index, self._annotated(image)
        before, carried, made_by_annotate = painted, history.kept_on(plane), False
        if annotated:  # the Annotate dock's rectangle (drawn outside this history) made the mask
            boxes = P.snapshot_boxes(self._boxes)
            box_index = len(boxes) - 1 if boxes else None
            base = L.annotate_base(self.viewer, shown.shape)
            if base is not None and base is not self._annotate_base_seen:  # its new mask: afresh
                before, carried, self._annotate_base_seen = base, None, base
                made_by_annotate = True  # (with the edits it kept on top, as its line said)
        state = PromptState(EDIT, boxes, box_index, current.points, current.positive,
                            plane, shown.copy(), None, None, current.result,
                            kept=K.add_edit(carried, before if before is not None else np.zeros_like(shown), shown),
                            annotate=made_by_annotate)
        first = annotated and current.kind == EMPTY  # the Annotate dock's film: Undo stops at its mask
        if first and made_by_annotate and not np.array_equal(shown, before) and history.restart(PromptState(
                EDIT, boxes, box_index, current.points, current.positive, plane, before.copy(), None, None,
                current.result, annotate=True)):
            state.annotate = False  # the user's strokes on the film's mask: one Undo step after it ("brush edit")
            self._push(history, state)
        elif first and history.restart(state):
            state.annotate = True  # the start: the film's mask as the Annotate dock left it, edits and all
        else:
            self._push(history, state)
        return shown

    def _shown_mask(self, image: Any, plane: Optional[int]) -> Optional[np.ndarray]:
        """What ``lung mask`` shows on ``plane`` of ``image`` ((H, W) bool), None when it shows another image."""
        layer = self.viewer.layers[L.MASK] if L.MASK in self.viewer.layers else None
        if layer is None or layer.metadata.get("source_layer_id") != str(image.unique_id):
            return None
        data = np.asarray(layer.data)
        data = data[plane] if plane is not None and data.ndim == 3 else data
        return data != 0 if data.shape == L.plane_shape(image) else None

    def _napari_undid(self) -> bool:
        """Whether napari's own Ctrl+Z on ``lung mask`` took the last mask(s) back: the layer then shows exactly the
        mask of a state before the current one, and its redo history is not empty (a stroke, even one that happens
        to restore an earlier mask, empties it).  The history then steps back to that state, so that the dock's
        Undo goes on backwards (before, it took this for a brush edit, and its Undo brought the undone mask back)."""
        image, history = self.image.value, self.history
        if image is None or history is None or not history.can_undo:
            return False
        layer = self.viewer.layers[L.MASK] if L.MASK in self.viewer.layers else None
        redo = getattr(layer, "_redo_history", None)  # (napari's, private: without it, one step is looked at)
        if redo is not None and not len(redo):
            return False
        plane = L.current_plane(self.viewer, image)
        shown, painted = self._shown_mask(image, plane), history.painted(plane)
        if shown is None or painted is None or np.array_equal(shown, painted):
            return False
        steps = 0
        while history.can_undo and steps < (len(redo) if redo is not None else 1):
            history.undo()
            steps += 1
            before = history.painted(plane)
            if np.array_equal(shown, before if before is not None else np.zeros_like(shown)):
                return True
        for _ in range(steps):
            history.redo()
        return False

    def _keep_brush_edit(self) -> None:
        """Record a brush edit as a state before Undo or Redo moves away from it."""
        image = self.image.value
        if image is not None and self.history is not None:
            self._brush_edit(image, L.current_plane(self.viewer, image))
