"""Undo and redo of the Annotate dock's boxes, Ctrl+Z / Ctrl+Shift+Z on ``boxes`` or the film, as in the Segment dock
(a mixin of :class:`~napari_adaqat.widgets.annotate.AnnotateWidget`).

Each box drawn on the film shown is one step: Undo puts back the mask and the rectangle from before it (and the box
remembered for the next films), Redo the box's again.  A step never overwrites brush strokes made since (the line
says how to undo those first: napari's Ctrl+Z on ``lung mask``).  When the Segment dock is open on the film, its own Undo (which knows these boxes too)
holds the keys.  Before, Ctrl+Z on ``boxes`` in this dock did nothing and said nothing (a QA find).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from app_model.types import KeyCode, KeyMod

from napari_adaqat.widgets import _points as P

UNDO_KEY = KeyMod.CtrlCmd | KeyCode.KeyZ  # (as the Segment dock's, _clicks.py)
REDO_KEY = KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ


@dataclass
class BoxStep:
    """One box on film generation ``gen``: the mask (H, W) bool, the dock's base mask, the rectangles and the box
    remembered for the next films (``AnnotationFolder.last_box``), before and after it."""

    gen: int
    before: tuple[np.ndarray, Optional[np.ndarray], list, Any]
    after: tuple[np.ndarray, Optional[np.ndarray], list, Any]


class BoxUndo:
    """Needs the dock's ``layers``, ``_gen``, ``_base``, ``_pixels``, ``_screen_mask``, ``_say``, ``_where``, ``_touch``."""

    layers: Any
    _gen: int
    _base: Optional[np.ndarray]
    _box_steps: Optional[list] = None
    _box_redo: Optional[list] = None

    def _record_box(self, before: np.ndarray, base: Optional[np.ndarray], boxes: list, last_box: Any,
                    shape_index: int) -> None:
        """The box ``shape_index`` replaced mask ``before`` (and ``base``); the rectangles were ``boxes`` then, and
        the box remembered for the next films ``last_box``."""
        earlier = [shape for i, shape in enumerate(boxes) if i != shape_index]
        after = (np.asarray(self._screen_mask()).copy(), self._base, P.snapshot_boxes(self.layers.boxes),
                 getattr(self, "folder").last_box)
        steps = [s for s in (self._box_steps or []) if s.gen == self._gen]
        self._box_steps, self._box_redo = [*steps, BoxStep(self._gen, (before, base, earlier, last_box), after)], []
        self._unbind_box_keys()
        for layer in (self.layers.boxes, self.layers.image):  # (again after a Segment dock, now closed, took them)
            for key, redo in ((UNDO_KEY, False), (REDO_KEY, True)):
                run = self._box_key(redo)
                layer.bind_key(key, run, overwrite=True)
                self._box_keys.append((layer, key, run))

    _box_keys: Any = ()  # [(layer, key, function)] bound by this dock

    def _box_key(self, redo: bool) -> Any:
        """Ctrl+Z / Ctrl+Shift+Z on 'boxes' or the film: the Segment dock's Undo / Redo while the one "Correct with
        clicks" opened is open on this film (it knows these boxes too), else this dock's; nothing once it closed."""
        def run(_layer: Any) -> None:
            if getattr(self, "jobs").closed:
                return
            segment = getattr(self, "_clicks").live_on(self.layers.image)
            if segment is not None:
                (segment.redo if redo else segment.undo)()
            else:
                (self.redo_box if redo else self.undo_box)()

        return run

    def _unbind_box_keys(self) -> None:
        """Take back the keys this dock bound, where they are still its own (the dock closes, or binds again)."""
        from napari.utils.key_bindings import coerce_keybinding

        for layer, key, run in self._box_keys:
            if layer.keymap.get(coerce_keybinding(key)) is run:
                layer.bind_key(key, None, overwrite=True)
        self._box_keys = []

    def undo_box(self) -> bool:
        """Ctrl+Z: the mask and rectangle from before the last box; False (said) when there is none to undo."""
        return self._box_move(self._box_steps, self._box_redo, "Undone", 0)

    def redo_box(self) -> bool:
        """Ctrl+Shift+Z: the last box undone, again."""
        return self._box_move(self._box_redo, self._box_steps, "Redone", 1)

    def _box_move(self, source: Optional[list], target: Optional[list], verb: str, forward: int) -> bool:
        steps = [s for s in (source or []) if s.gen == self._gen]
        screen = getattr(self, "_screen_mask")()
        say = getattr(self, "_say")
        if not steps or screen is None:
            say(f"Nothing to {verb.lower()[:-2]} here: a brush stroke is undone with Ctrl+Z on 'lung mask'.")
            return False
        step = steps[-1]
        leave, come = (step.after, step.before) if not forward else (step.before, step.after)
        if not np.array_equal(screen, leave[0]):  # brush strokes since: never overwritten
            say("Your brush strokes since that box would be lost: undo them first (Ctrl+Z with 'lung mask' "
                "selected).")
            return False
        source.remove(step)
        target.append(step)
        mask, base, boxes, last_box = come
        self.layers.write_mask(mask)
        self._base = base
        self.layers.put_boxes(boxes)
        try:
            getattr(self, "folder").put_back_box(last_box)  # (the next films' box: as it was then)
        except OSError:  # (a read-only dataset folder: annotate.json not written; the mask is undone all the same)
            pass
        getattr(self, "_touch")()
        redo = "Redo [Ctrl+Shift+Z] brings it back" if not forward else "Undo [Ctrl+Z] takes it back"
        say(f"{getattr(self, '_where')()}{verb}: the box ({redo}).")
        return True
