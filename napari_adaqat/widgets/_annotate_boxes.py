"""The Annotate dock's boxes: a rectangle drawn in ``boxes`` re-segments the film shown, in a worker, and
the user's brush edits are kept on top of the new mask (or replaced, as the dock's checkbox says) — a mixin
of :class:`~napari_adaqat.widgets.annotate.AnnotateWidget`."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from napari_adaqat.inference.engine import SegmentResult, torch_threads
from napari_adaqat.io import ImageData
from napari_adaqat.util.errors import first_line
from napari_adaqat.widgets import _kept_edits as K
from napari_adaqat.widgets import _layers as L
from napari_adaqat.widgets import _points as P
from napari_adaqat.widgets._annotate_box_undo import BoxUndo

ONE_LUNG = 0.55  # a box narrower than this part of the film is not remembered for the next films


class BoxPrompts(BoxUndo):
    """Box prompts of the Annotate dock (needs its ``layers``, ``jobs``, ``engine``, ``folder``, film state
    ``index`` / ``opening`` / ``_gen`` / ``_pixels`` / ``_spacing`` / ``_base``, ``keep_edits``, and its ``_say``, ``_fail``,
    ``_model_and_device``, ``_screen_mask``, ``_touch``, ``_where``, ``_after_box`` and ``_drop_waiting_accept``)."""

    layers: Any
    jobs: Any
    engine: Any
    folder: Any
    keep_edits: Any
    index: Optional[int]
    opening: Optional[int]
    last_result: Optional[SegmentResult]
    _gen: int
    _pixels: Any
    _spacing: Any
    _base_mask: Optional[np.ndarray] = None

    @property
    def _base(self) -> Optional[np.ndarray]:
        """The mask the dock put on screen before the user's brush edits (in 'lung mask' metadata too)."""
        return self._base_mask

    @_base.setter
    def _base(self, mask: Optional[np.ndarray]) -> None:
        self._base_mask = mask
        if mask is not None and self.layers.present(self.layers.mask):
            self.layers.mask.metadata[L.ANNOTATE_BASE] = mask

    def _on_boxes(self, event: Any) -> None:
        count = len(self.layers.boxes.data)
        if self.index is None or self.opening is not None or not count:
            return
        if str(getattr(event, "action", "added")) not in ("added", "changed"):
            return
        index = int((tuple(getattr(event, "data_indices", ()) or (-1,)))[-1])
        self.segment_box(index if index >= 0 else count + index)

    def segment_box(self, shape_index: int, by_user: bool = True) -> None:
        """Re-segment the film shown with rectangle ``shape_index`` of ``boxes``, in a worker (``by_user``:
        a box the user drew, which is work to keep, not the dock redoing a mask with another model)."""
        if self.index is None or not self.layers.present(self.layers.image):
            return
        box = self.layers.box(shape_index)
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            self._say("Box too small (or outside the film); draw it around both lungs.")
            return
        try:
            model, device = self._model_and_device()
        except ValueError as exc:
            self._fail(first_line(exc))
            return
        gen, film = self._gen, ImageData(self._pixels, self._spacing, "")  # (non-square pixels: made square)

        def job() -> SegmentResult:
            with torch_threads(1):  # a prompt is small: leave the other core to napari's painting
                return self.engine.predict(film, box, model, device)

        self._say(f"Segmenting with {model.label()}…")
        self.jobs.submit("predict", job, lambda result: self._box_done(gen, result, shape_index, by_user))

    def _box_done(self, gen: int, result: SegmentResult, shape_index: int, by_user: bool) -> None:
        if self._show_prediction(gen, result, shape_index, by_user):
            self._after_box()  # an Accept that waited for this mask (AcceptFlow)
        elif gen == self._gen:
            self._drop_waiting_accept()  # (nothing shown to save: the line says why)

    def _show_prediction(self, gen: int, result: SegmentResult, shape_index: int, by_user: bool) -> bool:
        """Show the box's mask, the user's edits kept (or not, as the checkbox says); False when not shown."""
        screen = self._screen_mask()
        if gen != self._gen:
            return False
        if screen is None:  # 'lung mask' deleted (or another image's): the mask has nowhere to go (QA: "Segmenting…" stayed)
            name = self.folder.films[self.index].path.name
            draft = " (your work on it is kept as its draft)" if self.folder.has_draft(self.index) else ""
            self._say(f"The box's mask is not shown: 'lung mask' no longer holds {name}'s mask{draft}. Double-click "
                      f"{name} in the list to open it again, then draw the box.")
            return False
        new, note = result.mask.copy(), ""
        before = (screen.copy(), self._base, P.snapshot_boxes(self.layers.boxes), self.folder.last_box)
        edits = K.add_edit(None, self._base, screen)  # (painted, erased) by hand since the dock's mask, or None
        if edits is not None:
            painted, erased = edits
            if self.keep_edits.value:
                new = K.apply_edits(new, edits)
                note = (f"\nKept your edits, brush or clicks ({int(painted.sum())} px added, {int(erased.sum())} px "
                        "removed), on top of the new mask; untick 'keep my brush edits' and draw the box again to "
                        "drop them.")
            else:
                note = "\nThe new mask replaced your edits, brush or clicks (Ctrl+Z on 'lung mask' brings them back)."
        self.layers.write_mask(new)
        self.last_result, self._base = result, result.mask.copy()
        if result.box[2] - result.box[0] >= ONE_LUNG * self._pixels.shape[1]:
            self.folder.remember_box(result.box, self._pixels.shape)
        else:  # a box around one lung would give the next films one lung
            note += "\nThis box is narrow (one lung?): the next films keep the box before."
        self.layers.keep_only_box(shape_index)
        if by_user:
            self._touch()
            self._record_box(*before, shape_index)  # one Undo step (BoxUndo)
        else:  # the dock's own mask again (another model): the steps before it would undo to another model's mask
            self._box_steps, self._box_redo = [], []
        self._say(f"{self._where()}{result.summary().splitlines()[0]}{note}")
        return True  # (where one is, after a model switch too)
