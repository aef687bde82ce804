"""Drafts in the Annotate dock: work on the film shown (brush strokes, clicks in the Segment dock, a Reset there) is
kept as the film's draft a moment after the last change and when the film is left; an empty mask is no work to
keep (a mixin of :class:`~napari_adaqat.widgets.annotate.AnnotateWidget`)."""
from __future__ import annotations

import os
import sys
import time
import weakref
from pathlib import Path
from typing import Any, Optional

from qtpy.QtCore import QEvent, QObject, QTimer

from napari_adaqat.io import write_mask
from napari_adaqat.util.errors import first_line

# where the window's close puts work that the dataset folder could not take as a draft (a read-only folder)
UNSAVED_ENV, UNSAVED_DIR = "ADAQAT_UNSAVED_DIR", Path.home() / ".cache" / "napari-adaqat" / "unsaved"

PROVIDER = "napari-adaqat Annotate"  # (napari's close dialog lists unfinished tasks as "provider: description")

EMPTY_NOTE = ("the mask is empty (a Reset?): draw a box in 'boxes', click in 'points', or Undo [Ctrl+Z] in the "
              "Segment dock. Accept needs a mask; an empty mask is no draft (an earlier draft is put aside in "
              "replaced/.drafts/), so the film opens again with its accepted mask, else the model's.")
EDITED_NOTE = "edited; Accept [Enter] saves the mask as shown."


class Drafts:
    """The draft of the film shown (needs the dock's ``folder``, ``index``, ``_draft_timer``, ``jobs``, and its
    ``_screen_mask``, ``_say``, ``_fail``, ``_refresh_rows``)."""

    folder: Any
    index: Optional[int]
    status: Any
    _touched: bool
    _carry: list[str]
    _draft_timer: Any
    _draft_error = ""  # why the last draft could not be kept
    _unkept_task: Any = None  # napari's task status saying so while it is true (its close dialog shows it)
    viewer: Any

    def _start_drafts(self, delay_ms: int) -> None:
        """The draft timer (a draft ``delay_ms`` after the last change), and the main window's close: the work is
        kept as a draft first, and napari's close dialog says when it could not be (before, closing the window
        lost it without a word)."""
        self._draft_timer = QTimer()
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(delay_ms)
        self._draft_timer.timeout.connect(self.keep_draft)
        window = getattr(getattr(self.viewer, "window", None), "_qt_window", None)
        if window is not None:
            window.installEventFilter(_DraftsFirst(window, self))

    def _say_unkept(self, line: str) -> None:
        """Tell napari (``line``) that work is on screen that no draft holds, or (``""``) that there is none now."""
        window = getattr(self.viewer, "window", None)
        register, update = (getattr(window, name, None) for name in ("_register_task_status", "_update_task_status"))
        if register is None or update is None:  # (another napari: the status line alone says it)
            return
        from napari.utils.task_status import Status

        if line and self._unkept_task is None:
            self._unkept_task = register(PROVIDER, Status.BUSY, line)
        elif line:
            update(self._unkept_task, Status.BUSY, line)
        elif self._unkept_task is not None:
            update(self._unkept_task, Status.COMPLETED, "")
            self._unkept_task = None

    def _where(self) -> str:
        """The place of the film shown that status lines start with: ``Film 3 of 12: name · ``."""
        return f"Film {self.index + 1} of {len(self.folder.films)}: {self.folder.films[self.index].path.name} · "

    def _on_paint(self) -> None:
        """A change of 'lung mask' that the dock did not make (a brush stroke; a click, Undo or Reset in the
        Segment dock): work to keep; an emptied mask is said (once the change is in the layer: napari tells of a
        ``data_setitem`` before it writes the pixels), and so is its end."""
        if self.index is None:
            return
        self._touch()
        QTimer.singleShot(0, self._say_if_empty)

    def _say_if_empty(self) -> None:
        mask = None if self.index is None or self.jobs.closed else self._screen_mask()
        if mask is None:
            return
        if not mask.any():
            self._say(self._where() + EMPTY_NOTE)
        elif self.status.value.endswith(EMPTY_NOTE):  # (that line is stale once there is a mask again)
            self._say(self._where() + EDITED_NOTE)

    def _touch(self) -> None:
        self._touched = True
        self._draft_timer.start()

    def keep_draft(self) -> bool:
        """Save the work on the film shown as its draft, when there is any not kept yet; True if saved.  An empty
        mask is no draft: the film's earlier draft is put aside (``replaced/.drafts/``, said when the film is left),
        so that it opens with its saved or model mask."""
        mask = self._screen_mask()
        self._draft_timer.stop()
        if mask is None or self.folder is None or not self._touched:
            self._say_unkept("")
            return False
        try:
            if not mask.any():
                aside = self.folder.drop_draft(self.index)
                if aside is not None:  # (said when the film is left: work of the user's, never deleted)
                    self._carry.append(f"{self.folder.films[self.index].path.name}: its mask was empty, so it opens "
                                       f"again with its accepted mask, else the model's; your earlier draft is in "
                                       f"{aside}.")
            else:
                self.folder.save_draft(self.index, mask)
        except OSError as exc:
            self._draft_error = first_line(exc)
            self._say_unkept(f"your work on {self.folder.films[self.index].path.name} could not be kept as a draft "
                             f"({self._draft_error}): closing loses it. Cancel, then save 'lung mask' yourself "
                             "(File → Save Selected Layers), or make the folder writable.")
            return self._fail(f"Could not keep your draft: {self._draft_error}")
        self._touched = False
        self._say_unkept("")
        self._refresh_rows()
        return bool(mask.any())

    def _leave_film(self) -> bool:
        """Keep the work on the film shown before another film (or folder) is shown; False, said in the status
        line, when there is work that could not be kept (a read-only dataset folder): the film stays."""
        if self.index is None:
            return True
        name = self.folder.films[self.index].path.name
        if self.keep_draft():
            self._carry.append(f"Your work on {name} is kept as a draft (not saved); Accept it to save it.")
        elif self._touched and self._screen_mask() is not None:  # work on screen that no draft holds
            self._fail(f"{name} stays open: your work on it could not be kept as a draft ({self._draft_error}). Make "
                       f"{self.folder.dataset} writable and go on, or save 'lung mask' yourself (File → Save "
                       "Selected Layers).")
            return False
        return True


def rescue_copy(dock: Drafts) -> Optional[Path]:
    """The window closes with work on the film shown that no draft holds: a copy of the mask goes to
    ``$ADAQAT_UNSAVED_DIR`` (default ``~/.cache/napari-adaqat/unsaved/``), said on the terminal and to napari's
    close dialog; None when there is no such work (or the copy fails too)."""
    mask = dock._screen_mask()  # type: ignore[attr-defined]
    if mask is None or not dock._touched or dock.folder is None or dock.index is None:
        return None
    film = dock.folder.films[dock.index].path
    path = Path(os.environ.get(UNSAVED_ENV) or UNSAVED_DIR) / f"{film.stem}_{time.strftime('%Y%m%d-%H%M%S')}.png"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mask(path, mask)
    except OSError:
        return None
    line = f"your work on {film.name} could not be kept as a draft; a copy of its mask is in {path}"
    print(f"napari-adaqat: {line}", file=sys.stderr)
    dock._say_unkept(line)
    return path


class _DraftsFirst(QObject):
    """On the main window's close, before napari's own close handling: the dock's work is kept as a draft, else a
    copy of it outside the dataset folder (:func:`rescue_copy`)."""

    def __init__(self, window: QObject, dock: Drafts) -> None:
        super().__init__(window)
        self._dock = weakref.ref(dock)  # (a closed dock is not kept alive by its window)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        dock = self._dock()
        if event.type() == QEvent.Type.Close and dock is not None and not getattr(dock, "jobs").closed:
            try:
                if not dock.keep_draft():
                    rescue_copy(dock)  # (napari's close dialog, for the window's ×, says where)
            except RuntimeError:  # (Qt tearing the dock down)
                pass
        return False
