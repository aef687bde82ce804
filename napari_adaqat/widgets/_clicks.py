"""The Segment dock's click corrections: the ``points`` layer, Negative / Undo / Redo / Reset with their hotkeys, the
prompt history, and brush edits of ``lung mask`` (a mixin of :class:`~napari_adaqat.widgets.segment.SegmentWidget`).

Hotkeys act while the ``boxes`` or ``points`` layer, or the film, is selected (bound on those layers, which take
precedence over the viewer's bindings); while ``lung mask`` is selected, Ctrl+Z is napari's own undo of
brush strokes.  R clears points, box and mask (on ``boxes`` it replaces napari's "rectangle mode" key:
Reset leaves the layer in rectangle mode anyway; on the Annotate dock's film R on ``boxes`` keeps napari's meaning).
"""
from __future__ import annotations

import weakref
from typing import Any, Callable, Optional

import numpy as np
from app_model.types import KeyCode, KeyMod
from magicgui.widgets import Container, PushButton

from napari_adaqat.widgets import _layers as L
from napari_adaqat.widgets import _points as P
from napari_adaqat.widgets._brush_edits import BrushEdits
from napari_adaqat.widgets._in_flight import InFlight
from napari_adaqat.widgets._prompt_history import EDIT, EMPTY, RESET, PromptHistory, PromptState, trim_to_budget
from napari_adaqat.widgets._renamed_prompts import RenamedPrompts

UNDO_KEY = KeyMod.CtrlCmd | KeyCode.KeyZ
REDO_KEY = KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ
RESET_KEY, NEGATIVE_KEY, BOX_KEY, POINTS_KEY = KeyCode.KeyR, KeyCode.KeyN, KeyCode.KeyB, KeyCode.KeyP
AGAIN_KEY = KeyCode.KeyG  # "Segment last box again": free in napari's keymaps and menus (test_segment_dock_qa2)
HELP = ("Box [B]: draw a rectangle around both lungs. Points [P]: a click adds lung; Ctrl+click (⌘ on a Mac) "
        "or Negative [N] marks 'not lung'.")


class ClickPrompts(BrushEdits, InFlight, RenamedPrompts):
    """Points, history and the buttons of the Segment dock (needs the dock's ``viewer``, ``image``,
    ``status``, ``_boxes``, ``jobs``, ``_segment``, ``segment_last_box``, ``_show`` and ``_annotated``)."""

    viewer: Any
    _points: Any = None
    _restoring = False  # set while a state is written back: the layers' events do not prompt then
    _generation = 0  # bumped by undo / redo / reset / a new image: late results of older prompts are dropped
    _pending: Optional[PromptState] = None  # a prompt sent to the worker whose mask is not shown yet
    _points_image: Optional[str] = None  # the image whose prompts the points layer holds

    def _build_click_controls(self) -> list[Container]:
        def button(text: str, tip: str, action: Any) -> PushButton:
            b = PushButton(text=text, tooltip=tip)
            b.changed.connect(lambda _=None: action())
            return b

        self.negative = PushButton(text="Negative [N]", tooltip="on: clicks mark 'not lung' (as Ctrl+click)")
        self.negative.native.setCheckable(True)
        self.negative.native.toggled.connect(lambda _=None: self._sync_default_label())  # by click, key or code
        self.box_button = button("Box [B]", "draw a box in the 'boxes' layer", self.box_mode)
        self.points_button = button("Points [P]", "click corrections in the 'points' layer", self.points_mode)
        self.undo_button = button("Undo [Ctrl+Z]", "the previous box, points and mask, exactly", self.undo)
        self.redo_button = button("Redo [Ctrl+Shift+Z]", "what Undo took back", self.redo)
        self.reset_button = button("Reset [R]", "clear points, box and mask (Undo brings them back)",
                                   self.reset_prompts)
        self._histories: dict[str, tuple[Callable[[], Any], PromptHistory]] = {}  # layer id: (its data, history)
        rows = [[self.box_button, self.points_button, self.negative],
                [self.undo_button, self.redo_button, self.reset_button]]
        containers = [Container(layout="horizontal", widgets=row, labels=False) for row in rows]
        for c in containers:
            c.margins = (0, 0, 0, 0)
        self._update_buttons()
        return containers

    # ---------------------------------------------------------------- layers
    def _attach_points(self, image: Any) -> None:
        points = P.ensure_points(self.viewer, image)
        new_layer = self._points is None or points.unique_id != self._points.unique_id
        if new_layer:
            points.events.data.connect(self._on_points_data)
            # napari selects a new point, which makes its label the default; the next one is positive again
            points.events.features.connect(lambda _e=None: self._sync_default_label())
            P.watch_modifiers(points, lambda: bool(self.negative.value))
            self._watch_prompt_name(points, P.POINTS)
        self._points = points
        # another image: its own points, not these; an empty 'points' made again (deleted by hand): the state's
        refill = new_layer and not len(points.data) and len(self.history.current.points)
        if self._points_image not in (None, str(image.unique_id)) or refill:
            state, restoring, self._restoring = self.history.current, self._restoring, True
            try:
                P.restore_points(points, state.points, state.positive)
            finally:
                self._restoring = restoring
        self._points_image = str(image.unique_id)
        self._sync_default_label()
        for layer, extra in ((self._boxes, {POINTS_KEY: self.points_mode, RESET_KEY: self._reset_or_rectangle}),
                             (points, {BOX_KEY: self.box_mode, RESET_KEY: lambda: self._reset_or_rectangle(False)}),
                             # (and the film, picked in the layer list:)
                             (image, {BOX_KEY: self.box_mode, POINTS_KEY: self.points_mode,
                                      RESET_KEY: self._reset_or_rectangle})):
            keys = {UNDO_KEY: self.undo, REDO_KEY: self.redo, RESET_KEY: self.reset_prompts,
                    NEGATIVE_KEY: self.toggle_negative, AGAIN_KEY: self.segment_last_box, **extra}
            for key, action in keys.items():
                layer.bind_key(key, _key_action(self, action), overwrite=True)
        self._update_buttons()

    def _leave_points(self) -> None:
        """The dock closes: 'points' goes to pan & zoom, so that a click no longer adds a point nobody prompts with."""
        try:
            if self._points is not None and self._present(self._points) and self._points.mode != "pan_zoom":
                self._points.mode = "pan_zoom"
        except RuntimeError:  # (Qt tearing down)
            pass

    def _on_points_data(self, event: Any) -> None:
        action = str(getattr(event, "action", ""))
        if getattr(self, "_closed", False) or self._restoring or action not in ("added", "removed", "changed"):
            return
        if self._points is not None and self._points.metadata.get(L.DOCK_WRITE):  # the Annotate dock's new film
            return
        if action == "added" and self._drop_outside(getattr(event, "data_indices", (-1,))):
            return
        self._segment(action)

    def _drop_outside(self, indices: Any) -> bool:
        """Take back the new points ``indices`` that lie outside the image (they would prompt nothing) and
        say so in the status line; True when there were such points."""
        image, points = self.image.value, self._points
        if image is None or points is None or not len(points.data):
            return False
        n = len(points.data)
        out = sorted({int(i) % n for i in indices or ()} & set(P.outside_image(points, image)))
        if not out:
            return False
        keep = np.setdiff1d(np.arange(n), out)
        data, positive = P.snapshot_points(points)
        self._restoring = True
        try:
            P.restore_points(points, data[keep], positive[keep])
        finally:
            self._restoring = False
        self.status.value = "That point is outside the image, so it was not added: click on the film."
        return True

    def _annotate_film_elsewhere(self, image: Any) -> bool:
        """True, said in the status line, when ``lung mask`` holds the Annotate dock's film and ``image`` is
        another image: its mask is not written there (Accept would save it as the film's mask)."""
        film = L.annotate_film(self.viewer)
        if film is None or image is None or film.unique_id == image.unique_id:
            return False
        self.status.value = (f"Not segmented: 'lung mask' holds the Annotate dock's film, '{film.name}'. Choose it "
                             "in 'image' to correct it, or close the Annotate dock to segment this image.")
        return True

    def _sync_default_label(self) -> None:
        if self._points is not None:
            P.set_default_label(self._points, not bool(self.negative.value))

    def _reset_or_rectangle(self, rectangle: bool = True) -> None:
        """R: Reset, but never on the Annotate dock's film (a stray R must not clear the mask that Accept saves;
        the button does, on purpose): there napari's rectangle mode on 'boxes' and the film, a line on 'points'."""
        if not self._annotated(self.image.value):
            self.reset_prompts()
        elif rectangle:
            self.box_mode()
        else:
            self.status.value = ("R does not clear the Annotate dock's film (a stray key would lose its mask): the "
                                 "Reset button does, and Undo [Ctrl+Z] brings it back.")

    def toggle_negative(self) -> None:
        """Negative [N]: clicks mark 'not lung' until toggled off."""
        self.negative.value = not bool(self.negative.value)

    def box_mode(self) -> None:
        """Box [B]: select ``boxes`` in rectangle mode (made again if it was deleted)."""
        if (self._boxes is None or not self._present(self._boxes)) and self.image.value is not None:
            self._attach_boxes(self.image.value)
        if self._boxes is not None and self._present(self._boxes):
            self.viewer.layers.selection.active = self._boxes
            self._boxes.mode = "add_rectangle"

    def points_mode(self) -> None:
        """Points [P]: select ``points`` in add mode (a click adds a point; made again if it was deleted)."""
        if (self._points is None or not self._present(self._points)) and self.image.value is not None:
            self._attach_points(self.image.value)
        if self._points is not None and self._present(self._points):
            self.viewer.layers.selection.active = self._points
            self._points.mode = "add"

    # --------------------------------------------------------------- history
    @property
    def history(self) -> Optional[PromptHistory]:
        """The prompt history of the chosen image (None without an image)."""
        image = self.image.value
        return None if image is None else ClickPrompts._history_of(self, image)  # (also on a test's stand-in)

    def _history_of(self, image: Any) -> PromptHistory:
        """The prompt history of the image layer ``image`` for the data it holds now."""
        # one history per layer, for the data it holds: the Annotate dock shows each film in the same layer,
        # and Undo must never bring back another film's mask (``id(data)`` is no key: a freed film's id is
        # reused by a later film)
        key, data = str(image.unique_id), image.data
        entry = self._histories.pop(key, None)  # (re-inserted last: the dict is in order of use)
        if entry is None or entry[0]() is not data:
            entry = (_ref(data), PromptHistory())
        self._histories[key] = entry
        return entry[1]

    def _push(self, history: PromptHistory, state: PromptState) -> None:
        """Make ``state`` current in ``history``; the images used longest ago give up undo steps first when all
        histories together hold more than ``MAX_TOTAL_BYTES`` (every image keeps the mask it shows)."""
        history.push(state)
        trim_to_budget([entry[1] for entry in self._histories.values()])

    def _forget_removed_images(self) -> None:
        """Drop the prompt histories (masks and maps, up to ``MAX_BYTES`` each) of image layers deleted from
        the viewer: a session through many films keeps only those still open."""
        present = {str(layer.unique_id) for layer in self.viewer.layers}
        for key in [key for key in self._histories if key not in present]:
            del self._histories[key]

    def _update_buttons(self) -> None:
        history = self.history
        self.undo_button.enabled = history is not None and history.can_undo
        self.redo_button.enabled = history is not None and history.can_redo

    def _request(self, kind: str, box_index: Optional[int], plane: Optional[int]) -> PromptState:
        """A new state holding the prompts as they are now (its mask comes with the result)."""
        data, positive = P.snapshot_points(self._points)
        return PromptState(kind, P.snapshot_boxes(self._boxes), box_index, data, positive, plane)

    def undo(self) -> None:
        """Back to the previous state: its box, points and mask exactly (Ctrl+Z).  While a prompt is on its
        way, it is that prompt that is undone (its result is dropped)."""
        if self._annotate_film_elsewhere(self.image.value):
            return
        history = self.history
        if self._pending is not None and history is not None:
            newest = self._pending
            if self._pending_history is history:  # the clicks sent before it stay, each one Undo step
                self._send_off(history)
            self._step((newest, history.current), "Undone")
            return
        if not self._napari_undid():  # (napari's Ctrl+Z on 'lung mask' went back a step: on from there)
            self._keep_brush_edit()  # Undo then goes back to the mask before the edit, and Redo brings it back
        self._step(history.undo() if history is not None else None, "Undone")

    def redo(self) -> None:
        """Forward again to the state Undo left (Ctrl+Shift+Z); none after a brush edit (the newest state)."""
        if self._annotate_film_elsewhere(self.image.value):
            return
        self._keep_brush_edit()
        self._step(self.history.redo() if self.history is not None else None, "Redone")

    def reset_prompts(self) -> None:
        """Clear points, box and mask of this plane (R; a stack's other planes keep theirs); Undo brings them back."""
        image, history = self.image.value, self.history
        if image is None or history is None or self._annotate_film_elsewhere(image):
            return
        plane = L.current_plane(self.viewer, image)
        edited = self._brush_edit(image, plane) is not None  # an unsaved edit is kept in the history
        if self._pending is not None and self._pending_history is history:  # clicks on their way: each one Undo
            pending = self._pending  # step before the reset (their masks made when Undo comes back to them)
            self._send_off(history)
            self._push(history, pending)
        now = history.current
        boxes, points, positive = P.off_plane(self._boxes, self._points, image, plane)  # (other planes: kept)
        cleared = len(points) == len(P.snapshot_points(self._points)[0]) \
            and len(boxes) == len(P.snapshot_boxes(self._boxes))  # nothing left on this plane
        if not edited and now.kind == RESET and now.plane == plane and cleared:  # R twice: one Undo brings all back
            self.status.value = "Already reset: points, box and mask are cleared (Undo [Ctrl+Z] brings them back)."
            self.box_mode()
            return
        empty = np.zeros(L.plane_shape(image), dtype=bool)
        state = PromptState(RESET, boxes=boxes, plane=plane, mask=empty, points=points, positive=positive)
        left = history.current
        self._push(history, state)
        self._step((left, state), "Reset")
        self.box_mode()

    def _step(self, move: Optional[tuple[PromptState, PromptState]], verb: str) -> None:
        if move is None:
            self.status.value = "Nothing to undo." if verb == "Undone" else "Nothing to redo."
            return
        left, state = move
        self._generation += 1  # results of older prompts still on their way are dropped
        self._pending, self._in_flight = None, ()
        self.jobs.drop("predict", "maps")
        self._restore(left, state)
        if verb == "Reset":
            self.status.value = "Reset: points, box and mask cleared (Undo [Ctrl+Z] brings them back)."
        else:
            self.status.value = f"{verb}: {self._kind(left)} → {self._kind(state)} ({state.prompt_text()})."
        if state.result is not None and state.mask is not None and state.kind != EDIT:
            self.status.value += "\n" + state.result.summary()
        self._update_buttons()
        if not state.computed:
            self._fill(state)

    def _fill(self, state: PromptState) -> None:
        """Make the mask of ``state``, the current state, whose prompt was never answered (a click replaced while
        it waited): its box and points are on screen (:meth:`_restore`), so it is run again as drawn."""
        self._segment("rerun", into=state)

    def _kind(self, state: PromptState) -> str:
        """The state's kind as the status line names it: the Annotate dock's mask is no brush edit of the user's."""
        if state.kind == EDIT and state.annotate:
            return "the Annotate dock's mask" + (" with your edits" if state.kept is not None else "")
        return state.kind

    def _restore(self, left: PromptState, state: PromptState) -> None:
        """Write ``state`` into the layers; the plane that ``left`` painted gets back what was there before."""
        image = self.image.value
        self._restoring = True
        try:
            if self._boxes is not None:
                P.restore_boxes(self._boxes, state.boxes)
            if self._points is not None:
                P.restore_points(self._points, state.points, state.positive)
            self._last_box_index = state.box_index
            history = self.history
            if left.mask is not None and left.plane != state.plane:
                before = history.painted(left.plane)
                L.show_mask(self.viewer, image, before if before is not None else np.zeros_like(left.mask),
                            left.plane)
            mask = state.mask if state.mask is not None else history.painted(state.plane)
            if mask is None and left.mask is not None:
                mask = np.zeros_like(left.mask)
            if mask is not None:
                self._show_plane(image, state, mask)
            self.last_result = state.result
        finally:
            self._restoring = False

    def _show_plane(self, image: Any, state: PromptState, mask: np.ndarray) -> None:
        """Show ``mask`` (H, W) bool on ``state``'s plane with ``state``'s maps (none: neutral maps, no legends)."""
        if state.result is not None and state.kind != EDIT:
            self._show_state(image, state.result, mask)
            return
        meta = None if state.result is None else L.mask_meta(image, state.result, state.plane)
        L.show_mask(self.viewer, image, mask, state.plane, meta)  # an edit keeps its model's provenance
        if state.result is None:
            L.neutral_maps(self.viewer, image, state.plane)
            self.legends.show_for(None)

    def _switch_image(self, image: Any) -> None:
        """Another image is chosen: a brush edit of the image before is kept in its history first, then
        ``boxes`` and ``lung mask`` show this image's own box, mask and maps (its last state; none yet: none),
        never another image's.  A mask that no history holds (the Annotate dock's film, an image deleted
        since) is left as it is, and so are the Annotate dock's rectangles."""
        before = next((ly for ly in self.viewer.layers if str(ly.unique_id) == self._points_image), None)
        if before is image:
            return
        if before is not None and not self._annotated(before):
            self._brush_edit(before, L.current_plane(self.viewer, before))
        if self._annotated(image):
            return
        history, plane = self._history_of(image), L.current_plane(self.viewer, image)
        boxes = self._boxes if self._boxes is not None and self._boxes.ndim == image.ndim \
            and L.ANNOTATE_OWNER not in self._boxes.metadata else None  # (the Annotate dock's rectangles stay)
        if before is not None and boxes is not None:  # its own boxes (none yet: none), its clicks' box
            self._restoring = True
            try:
                P.restore_boxes(boxes, history.current.boxes)
            finally:
                self._restoring = False
            self._last_box_index = history.current.box_index
        if not self._mask_in_history():
            return
        mask, state = history.painted(plane), history.current
        if mask is not None and state.plane == plane and state.result is not None:
            self._show_state(image, state.result, mask)  # its mask (a brush edit too) and its maps, as left
        else:  # never segmented (an empty mask), reset, or another plane: no maps of another image
            L.show_mask(self.viewer, image, mask if mask is not None else np.zeros(L.plane_shape(image), bool), plane)
            L.drop_maps(self.viewer, image)
            self.legends.show_for(None)
        self.last_result = state.result

    def _mask_in_history(self) -> bool:
        """Whether what ``lung mask`` shows is the mask a prompt history holds for its image (so nothing is
        lost when another image's mask replaces it)."""
        layer = self.viewer.layers[L.MASK] if L.MASK in self.viewer.layers else None
        source = None if layer is None else layer.metadata.get("source_layer_id")
        image = next((ly for ly in self.viewer.layers if str(ly.unique_id) == source), None)
        if image is None or self._annotated(image):
            return False
        plane = L.current_plane(self.viewer, image)
        shown, painted = self._shown_mask(image, plane), self._history_of(image).painted(plane)
        return shown is not None and np.array_equal(shown, painted if painted is not None else np.zeros_like(shown))


def _ref(data: Any) -> Callable[[], Any]:
    """A weak reference to a layer's data (a removed layer's pixels are not kept), else a strong one."""
    try:
        return weakref.ref(data)
    except TypeError:
        return lambda: data


def _key_action(dock: ClickPrompts, action: Any) -> Any:
    """A layer key binding that runs ``action`` while the dock is open."""
    def run(_layer: Any) -> None:
        if not getattr(dock, "_closed", False):
            action()

    run.adaqat_dock_key = True  # type: ignore[attr-defined]  (taken back from a renamed prompt layer)
    return run
