"""One run of the Batch dock: the worker job, Cancel, and ending the run when the dock goes away.

:func:`job` runs in a napari worker thread, hands each row to the dock through ``emit`` (a Qt signal's, queued
to the GUI thread) and closes its run there (results.csv written, the output folder's lock and journal released).
It is a plain function, not a generator that napari drives: a generator napari stops (as it does when the
viewer closes) would stay suspended and never close its run.  :class:`RunHandle` is what the dock keeps: Cancel sets ``stop`` (the job ends
after the current file); a dock being destroyed (napari closing) stops the run *and waits* for it to close
its folder, so that nothing is left half-done.  :func:`on_unparent` calls back when napari takes the dock
out of its window (the panel's ✕), so that closing the panel stops the run as Cancel does.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

from qtpy.QtCore import QEvent, QObject, QTimer, Signal
from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

from napari_adaqat.inference.batch import ResultRow, segment_files
from napari_adaqat.inference.engine import Engine, ModelRef
from napari_adaqat.widgets import _batch_boxes as B

CLOSE_WAIT_S = 60.0  # a dock being destroyed waits this long for the file being segmented now


class RunHandle:
    """``stop``: end after the current file; ``started``/``ended``: the job began / closed its run."""

    def __init__(self) -> None:
        self.stop, self.started, self.ended = threading.Event(), threading.Event(), threading.Event()

    def stop_and_wait(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Stop the run and wait until it has closed its output folder; True when it has (or never began)."""
        self.stop.set()
        return not self.started.is_set() or self.ended.wait(timeout_s)


def job(engine: Engine, files: list[Path], out: Path, model: ModelRef, baseline: Optional[ModelRef],
        box_kind: str, box_source: str, device: str, clean: bool, notes: list[str],
        run: RunHandle, emit: Callable[[ResultRow], None], *, roots: Sequence[Path] = (),
        run_notes: Optional[list[str]] = None) -> None:
    """The worker: boxes and models first (a bad model fails before any row), then ``emit(row)`` per file.
    ``run.stop`` ends it after the current file, closing the run here, in the worker.  ``roots``: the input
    folders whose tree the masks mirror; ``run_notes`` gets what the run says before its first row (a killed
    run's lock taken over), as ``adaqat segment`` prints it."""
    run.started.set()
    try:
        if run.stop.is_set():  # the dock closed before the worker began
            return
        boxes, missing = B.load_boxes(box_kind, box_source, files, roots)
        notes.extend(missing)
        engine.predictor(model, device)
        if baseline is not None:
            engine.predictor(baseline, device)
        if run.stop.is_set():  # cancelled (or the panel closed) while the models loaded: nothing written yet
            return
        rows = segment_files(files, model, out, boxes=boxes, baseline=baseline, clean=clean, device=device,
                             engine=engine, roots=roots, notes=run_notes)
        try:
            for row in rows:
                emit(row)
                if run.stop.is_set():
                    return
        finally:
            rows.close()
    finally:
        run.ended.set()


class RowSignal(QObject):
    """Carries the worker's rows to the GUI thread (its ``row.emit`` is the job's ``emit``)."""

    row = Signal(object)


class _Unparented(QObject):
    def __init__(self, widget: QWidget, callback: Callable[[], None]) -> None:
        super().__init__(widget)
        self._widget, self._callback = widget, callback
        widget.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Hide:
            QTimer.singleShot(0, self._check)  # after napari has finished taking the panel out
        return False

    def _check(self) -> None:
        try:
            top = self._widget.window()
        except RuntimeError:  # the widget is gone already
            return
        if not isinstance(top, (QMainWindow, QDockWidget)):  # not a hidden tab: out of napari's window
            self._callback()


def on_unparent(widget: QWidget, callback: Callable[[], None]) -> None:
    """Call ``callback`` when ``widget`` is hidden because it left its window (a tab switch does not count)."""
    _Unparented(widget, callback)
