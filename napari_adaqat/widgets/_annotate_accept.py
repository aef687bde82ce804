"""Accept in the Annotate dock: save the mask on screen and open the next film — after the box or the click being
segmented, when Accept [Enter] comes while its mask is on its way (a mixin of
:class:`~napari_adaqat.widgets.annotate.AnnotateWidget`)."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
from qtpy.QtCore import QTimer

from napari_adaqat.io.dicom_seg import CLI_HINT
from napari_adaqat.util.errors import first_line
from napari_adaqat.widgets._shared import TRAIN_DOCK

WAITING = "Still segmenting the box… Accept follows as soon as its mask is shown."
CLICK_WAITING = "Still segmenting your click… Accept follows as soon as its mask is shown."
CLICK_POLL_MS = 40  # how often an Accept waiting for a click looks whether its mask is shown


class AcceptFlow:
    """Accept of the Annotate dock (needs its ``folder``, ``index``, ``jobs``, ``layers``, ``dicom_seg``, film
    state, its clicks' Segment dock ``_clicks``, and its ``_ready``, ``_screen_mask``, ``_say``, ``_fail``,
    ``_refresh_rows``, ``open_film``)."""

    folder: Any
    index: Optional[int]
    jobs: Any
    dicom_seg: Any
    last_error: Optional[str]
    _accept_waiting: bool = False  # Accept came while a box was segmented: it runs when the mask is shown

    def accept(self) -> bool:
        """Save the mask on screen for the film shown and open the next one; False when refused.  While a box
        is segmented, Accept waits for its mask (said in the status line) and saves that."""
        if not self._ready():
            return False
        if self.jobs.busy_besides("prefetch", "open", "check"):  # a box prompt runs or waits
            self._accept_waiting = True
            self._say(WAITING)
            return True
        if self._clicks.busy():  # a click in the Segment dock "Correct with clicks" opened (a QA find: dropped)
            self._accept_waiting = True
            self._say(CLICK_WAITING)
            QTimer.singleShot(CLICK_POLL_MS, self._after_clicks)
            return True
        return self._save_and_next()

    def _after_clicks(self) -> None:
        """An Accept that waits for a click: saves once the click's mask is shown (forgotten with the film)."""
        if not self._accept_waiting or self.jobs.closed:
            return
        if self._clicks.busy():
            QTimer.singleShot(CLICK_POLL_MS, self._after_clicks)
            return
        self._accept_waiting = False
        if self._ready():
            self._save_and_next()

    def _after_box(self) -> None:
        """The box's mask is on screen: an Accept that waited for it runs now (unless a newer box waits)."""
        if self._accept_waiting and not self.jobs.waiting("predict"):
            self._accept_waiting = False
            if self._ready():
                self._save_and_next()

    def _drop_waiting_accept(self) -> bool:
        """Forget an Accept waiting for a box (the box failed, or another film opens); True if there was one."""
        waiting, self._accept_waiting = self._accept_waiting, False
        return waiting

    def _save_and_next(self) -> bool:
        mask = self._screen_mask()
        if mask is None:
            return self._fail("The 'lung mask' layer is missing, of another size or another image's mask: open "
                              "this film again (double-click it in the list).")
        index, folder = self.index, self.folder
        try:
            folder.accept(index, mask)
        except ValueError as exc:
            return self._fail(first_line(exc))
        except OSError as exc:  # e.g. a full disk: the earlier files are back in place (see AnnotationFolder.accept)
            return self._fail(f"masks/{folder.mask_path(index).name} not saved: {first_line(exc)}. The earlier files "
                              f"in {folder.dataset} are left as they were; Accept again once that is fixed.")
        self._draft_timer.stop()
        self._touched, self._base = False, mask.copy()
        saved = f"Saved {folder.mask_path(index).name}.{folder.set_aside_line()}"
        if self.dicom_seg.value:
            saved += self._write_seg(index, mask)
        self._refresh_rows()
        following = folder.next_index(index)
        if following is None:
            self._say(f"{saved} All films are accepted or skipped; this one stays open (Accept saves a change). "
                      f"To fine-tune the model on them: Plugins → AdaLoRA-QAT lung segmentation → {TRAIN_DOCK} "
                      "opens on this dataset; press Start there.")
            return True
        self._carry.append(saved)
        self.open_film(following)
        return True

    def _write_seg(self, index: int, mask: np.ndarray) -> str:
        try:
            path = self.folder.write_seg(index, mask, model_file=self._model_and_device()[0].resolved())
        except Exception as exc:  # noqa: BLE001 - the mask is saved; say why the SEG is not
            why = first_line(exc).removesuffix(CLI_HINT)  # (the CLI's hint: no such option here)
            self.last_error = why
            return f" DICOM SEG not written: {why} (the mask is saved; untick 'also write a DICOM SEG' for such films)"
        if path is None:
            return " (no DICOM SEG: not a DICOM film)"
        return f" DICOM SEG: {path.name}.{self.folder.set_aside_line()}"
