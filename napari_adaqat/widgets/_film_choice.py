"""Which film the Segment dock works on (a mixin of :class:`~napari_adaqat.widgets.segment.SegmentWidget`): with
several films open, the one seen (selected, else the top visible one) at first, then the film the user picks in
napari's layer list (it stays selected there); a film napari selects because it was just opened does not switch the
dock.  A prompt on a film hidden under another says so: the mask would otherwise lie over a film it is not of."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from napari.layers import Image
from qtpy.QtCore import QTimer

from napari_adaqat.widgets._layers import MASK

HIDING_BLENDINGS = ("opaque", "translucent", "translucent_no_depth")  # a layer drawn so hides the layers under it


class FilmChoice:
    """Needs the dock's ``viewer``, ``image`` (its ComboBox), ``_image_choices`` and ``_closed`` (and ``status`` and
    ``_job_texts``, whose line on a hidden film :meth:`_refresh_hidden_note` keeps true)."""

    viewer: Any
    image: Any
    _closed: bool
    _inserted: Any = None  # the layer napari inserts now: selecting it (this turn of the event loop) is napari's doing
    _hidden_said = ""  # the last line of _hidden_note made: what the status line may show

    def _watch_films(self) -> None:
        """Start on the film seen; follow the film picked in the layer list from now on."""
        with self.image.changed.blocked():
            self.reset_choices()  # type: ignore[attr-defined]
            seen = self._film_seen()
            if seen is not None:
                self.image.value = seen
        self.viewer.layers.events.inserted.connect(self._on_film_inserted)
        self.viewer.layers.selection.events.active.connect(self._on_active_layer)

    def _films(self) -> list[Image]:
        return [layer for _name, layer in self._image_choices()]  # type: ignore[attr-defined]

    def _film_seen(self) -> Optional[Image]:
        """The selected film, else the top visible one (a film under it is hidden), else the top one."""
        films, active = self._films(), self.viewer.layers.selection.active
        if any(active is film for film in films):
            return active
        return ([film for film in films if film.visible] or films or [None])[-1]

    def _on_film_inserted(self, event: Any) -> None:
        self._inserted = getattr(event, "value", None)
        QTimer.singleShot(0, self._forget_inserted)

    def _forget_inserted(self) -> None:
        self._inserted = None

    def _on_active_layer(self, _event: Any = None) -> None:
        """A film selected in the layer list: the dock segments it (its own box, points and mask come back)."""
        layer = self.viewer.layers.selection.active
        if self._closed or layer is None or layer is self._inserted or layer is self.image.value:
            return
        if not any(layer is film for film in self._films()):
            return
        self.image.value = layer  # (the dock makes 'boxes' active for the next box ...)
        if self.viewer.layers.selection.active is not layer:
            self.viewer.layers.selection.active = layer  # (... but the film the user clicked stays selected)

    def _hidden_note(self, image: Image) -> str:
        """A status line when a visible film above ``image`` in the layer list hides it, else ""."""
        self._hidden_said = self._hiding_line(image)
        return self._hidden_said

    def _refresh_hidden_note(self) -> None:
        """The layers changed: the status line's (and its queued jobs') line on a film hiding the chosen one is made
        again, or dropped when no film hides it now (it stayed after that film was deleted)."""
        said = self._hidden_said
        if not said or self._closed:
            return
        now = self._hidden_note(self.image.value) if self.image.value is not None else ""
        if now == said:
            return
        self._hidden_said = now
        status: Any = getattr(self, "status")
        if said in status.value:
            status.value = status.value.replace(said, now)
        texts: dict = getattr(self, "_job_texts", {})
        for kind, text in texts.items():
            texts[kind] = text.replace(said, now)

    def _renamed_note(self, image: Image) -> str:
        """E.g. " · 'my lungs' (a renamed 'lung mask' of this image) is left as it was; this dock's mask is in
        'lung mask'", while such a layer is there (the dock writes its mask into a new 'lung mask'), else ""."""
        mask = MASK
        names = [ly.name for ly in self.viewer.layers if type(ly).__name__ == "Labels" and ly.name != mask
                 and ly.metadata.get("source_layer_id") == str(image.unique_id)]
        if not names:
            return ""
        what = "a renamed" if len(names) == 1 else "renamed copies of"
        return (f" · {', '.join(repr(n) for n in names)} ({what} '{mask}' of this image) "
                f"{'is' if len(names) == 1 else 'are'} left as it was; this dock's mask is in '{mask}'")

    def _hiding_line(self, image: Image) -> str:
        """The line of :meth:`_hidden_note`."""
        grid = getattr(getattr(self.viewer, "canvas", None), "grid", None) or self.viewer.grid  # (napari < 0.9)
        if getattr(grid, "enabled", False) or not any(image is ly for ly in self.viewer.layers):
            return ""
        below = self.viewer.layers.index(image)
        over = [film for film in self._films() if self.viewer.layers.index(film) > below and film.visible
                and film.opacity >= 0.9 and str(film.blending) in HIDING_BLENDINGS and _overlap(film, image)]
        if not over:
            return ""
        top = over[-1].name
        return (f"\n'{top}' lies over '{image.name}' and hides it: this mask is of '{image.name}'. To segment "
                f"'{top}', click it in the layer list.")


def _overlap(a: Any, b: Any) -> bool:
    """Whether the layers' extents (in the world, rows and columns) overlap."""
    ea, eb = np.asarray(a.extent.world)[:, -2:], np.asarray(b.extent.world)[:, -2:]
    return bool(np.all(np.minimum(ea[1], eb[1]) > np.maximum(ea[0], eb[0])))
