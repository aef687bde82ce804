"""The Segment dock's ``points`` or ``boxes`` layer renamed by the user: as a renamed ``lung mask``, it is the user's.

The renamed layer is left as it is (its shapes, its colours) and the dock stops reading it; the dock's prompts go on
in a new layer of the old name that starts with the same points or boxes, so that the prompt on screen, Undo and
the Annotate dock (which find the layers by name) carry on.  The status line says so.  Before, the dock read the
renamed layer until the next image, then wrote that image's prompts into it (a renamed ``boxes`` lost its box)
and made a second layer of the old name beside it.
"""
from __future__ import annotations

from typing import Any

from napari_adaqat.widgets import _points as P
from napari_adaqat.widgets._layers import ANNOTATE_OWNER, BOXES, PROMPT_LAYER

# per prompt layer: the dock's attribute, its handler of data events, how to copy it, its drawing mode, the words
_KINDS = {P.POINTS: ("_points", "_on_points_data", P.snapshot_points, "add", "clicks"),
          BOXES: ("_boxes", "_on_boxes_data", P.snapshot_boxes, "add_rectangle", "boxes")}


class RenamedPrompts:
    """Needs the dock's ``viewer``, ``image``, ``status``, ``_points``, ``_boxes``, ``_restoring``,
    ``_attach_points``, ``_attach_boxes``, ``_on_points_data`` and ``_on_boxes_data``."""

    viewer: Any
    _restoring: bool

    def _watch_prompt_name(self, layer: Any, name: str) -> None:
        """Call :meth:`_on_prompt_renamed` when ``layer``, the dock's ``name`` layer, is renamed."""
        layer.events.name.connect(lambda event, name=name: self._on_prompt_renamed(event, name))

    def _on_prompt_renamed(self, event: Any, name: str) -> None:
        attribute, on_data, snapshot, mode, words = _KINDS[name]
        layer = getattr(event, "source", None)
        if layer is None or layer is not getattr(self, attribute) or layer.name == name \
                or getattr(self, "_closed", False) or layer.metadata.get(ANNOTATE_OWNER):  # (that dock's own boxes)
            return
        image = getattr(self, "image").value
        copied = snapshot(layer)
        layer.events.data.disconnect(getattr(self, on_data))
        layer.metadata.pop(PROMPT_LAYER, None)  # the user's layer now: kept (renamed aside), never removed
        for key, action in list(layer.keymap.items()):  # the dock's keys (R, Ctrl+Z...) act on its own layers only
            if getattr(action, "adaqat_dock_key", False):
                layer.bind_key(key, None, overwrite=True)
        active = self.viewer.layers.selection.active
        was_drawing = self.viewer.layers.selection.active is layer and str(layer.mode) == mode
        layer.mode = "pan_zoom"  # what is drawn there now prompts nothing
        setattr(self, attribute, None)
        if image is None:
            getattr(self, "status").value = (f"'{layer.name}' (the renamed '{name}') is yours now and is left as it "
                                             f"is; this dock makes a new '{name}' when an image is chosen.")
            return
        self._restoring = True  # the copy is the prompt on screen already: nothing to segment again
        try:
            getattr(self, "_attach_points" if name == P.POINTS else "_attach_boxes")(image)
            new = getattr(self, attribute)
            if new is not None and name == P.POINTS and len(copied[0]):
                P.restore_points(new, *copied)
            elif new is not None and name == BOXES and copied:
                P.restore_boxes(new, copied)
        finally:
            self._restoring = False
        if new is not None:
            self.viewer.layers.selection.active = new if was_drawing or active is None else active
            new.mode = mode if was_drawing else new.mode
        line = (f"'{layer.name}' (the renamed '{name}') is yours now and is left as it is; this dock's {words} go on "
                f"in a new '{name}' layer, with the same {'points' if name == P.POINTS else 'boxes'}.")
        getattr(self, "status").value = line
        from napari.utils.notifications import show_info

        show_info(line)  # (also as a notice: the maps of the last prompt, coming late, rewrite the status line)
