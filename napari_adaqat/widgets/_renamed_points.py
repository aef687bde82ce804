"""The Segment dock's ``points`` layer renamed by the user: as a renamed ``lung mask``, it becomes the user's.

The renamed layer is left as it is (its points, its colours) and the dock stops reading it; the dock's clicks go
on in a new ``points`` layer that starts with the same points, so that the prompt on screen, Undo and the
Annotate dock (which find the layer by its name) carry on.  The status line says so.  Before, the dock read
the renamed layer until the next image, then made a second ``points`` beside it with the same points.
"""
from __future__ import annotations

from typing import Any

from napari_adaqat.widgets import _points as P
from napari_adaqat.widgets._layers import PROMPT_LAYER


class RenamedPoints:
    """Needs the dock's ``viewer``, ``image``, ``status``, ``_points``, ``_restoring``, ``_attach_points`` and
    ``_on_points_data``."""

    viewer: Any
    _points: Any
    _restoring: bool

    def _watch_points_name(self, points: Any) -> None:
        """Call :meth:`_on_points_renamed` when ``points`` (the dock's layer) is renamed."""
        points.events.name.connect(self._on_points_renamed)

    def _on_points_renamed(self, event: Any = None) -> None:
        layer = getattr(event, "source", None) or self._points
        if layer is None or layer is not self._points or layer.name == P.POINTS:
            return
        image = getattr(self, "image").value
        data, positive = P.snapshot_points(layer)
        layer.events.name.disconnect(self._on_points_renamed)
        layer.events.data.disconnect(getattr(self, "_on_points_data"))
        layer.metadata.pop(PROMPT_LAYER, None)  # the user's layer now: kept (renamed aside), never removed
        was_adding = self.viewer.layers.selection.active is layer and str(layer.mode) == "add"
        layer.mode = "pan_zoom"  # a click there would add a point that no prompt reads
        self._points = None
        if image is None:
            return
        self._restoring = True  # the copy is the prompt on screen already: nothing to segment again
        try:
            getattr(self, "_attach_points")(image)
            if self._points is not None and len(data):
                P.restore_points(self._points, data, positive)
        finally:
            self._restoring = False
        if was_adding and self._points is not None:
            self.viewer.layers.selection.active = self._points
            self._points.mode = "add"
        status = getattr(self, "status")
        status.value = (f"'{layer.name}' (the renamed 'points') is yours now and is left as it is; this dock's "
                        f"clicks go on in a new '{P.POINTS}' layer, with the same points.")
