"""Embedding the Segment dock's image: the chosen plane, with the model and its baseline, in a worker, then a status
line that says what is shown (a mixin of :class:`~napari_adaqat.widgets.segment.SegmentWidget`)."""
from __future__ import annotations

from typing import Any

from napari_adaqat.widgets import _layers as L
from napari_adaqat.widgets._film_reading import reading_note
from napari_adaqat.widgets._planes import image_plane, plane_film


class Embedding:
    """Needs the dock's ``image``, ``viewer``, ``engine``, ``history``, ``status``, and its ``_chosen``,
    ``_submit``, ``_annotated`` and ``_hidden_note``."""

    image: Any
    viewer: Any
    engine: Any
    history: Any
    status: Any

    def start_embedding(self) -> None:
        """Embed the chosen image (current plane) with the model and baseline, in a worker."""
        layer = self.image.value
        if layer is None:
            return
        try:
            model, base, device = self._chosen()
            plane, _z = image_plane(layer, L.current_plane(self.viewer, layer), fresh=True)  # (Embed: as it is now)
            plane = plane_film(layer, plane)  # non-square pixels: with their spacing
        except ValueError as exc:
            self.status.value = f"Not ready: {exc}"
            return
        missing = [s.label() for s in (model, base) if s is not None and not s.available()]
        if missing:
            self.status.value = f"Not installed: {', '.join(missing)}. Choose a model file."
            return

        def done(seconds: float) -> None:
            state = self.history.current if self.history is not None else None
            other = state is not None and state.mask is not None and state.models not in (None, (model, base))
            shown = state is not None and state.mask is not None and state.kind not in ("start", "reset")
            hint = ("The Annotate dock's box is in 'boxes': click in 'points' [P] to correct its mask, or draw a new "
                    "box." if self._annotated(layer) else
                    f"Shown as you left it: {state.kind}, {state.prompt_text()} (Undo [Ctrl+Z] goes on from there)."
                    if shown else "Draw a box in 'boxes'.")
            self.status.value = f"Embedded in {seconds:.1f} s ({device}). {hint}" + (
                "\nThe mask shown was made with another model: Segment last box again [G] redoes it with this one."
                if other else "") + self._hidden_note(layer) + reading_note(layer)

        self._submit("embed", lambda: self.engine.embed(plane, model, base, device), done,
                     f"Embedding '{layer.name}' with {model.label()} on {device}… (busy)")
