"""One run of the Batch dock: the worker job, Cancel, and ending the run when the dock goes away.

:func:`job` runs in a napari worker thread: it looks through the inputs first (:func:`scan`: a PACS tree of
thousands of extension-less files, each opened to look for DICOM, takes a while and must not freeze the viewer;
the count so far goes to the dock, and Cancel stops it before anything is written), hands each row to the
dock through :class:`RowSignal` (queued to the GUI thread) and closes its run there (results.csv written, the
output folder's lock and journal released).
It is a plain function, not a generator that napari drives: a generator napari stops (as it does when the
viewer closes) would stay suspended and never close its run.  :class:`RunHandle` is what the dock keeps: Cancel sets ``stop`` (the job ends
after the current file); a dock being destroyed (napari closing) stops the run *and waits* for it to close
its folder, so that nothing is left half-done.  :func:`on_unparent` calls back when napari takes the dock
out of its window (the panel's ✕), so that closing the panel stops the run as Cancel does.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from qtpy.QtCore import QEvent, QObject, QTimer, Signal
from qtpy.QtWidgets import QDockWidget, QMainWindow, QWidget

from napari_adaqat.data import describe_skipped, scan_inputs
from napari_adaqat.data.csv_match import match_rows
from napari_adaqat.inference.batch import RESULTS_CSV, earlier_keys, load_results, recorded_mask, segment_files
from napari_adaqat.inference.engine import Engine, ModelRef
from napari_adaqat.inference.skipped_list import SKIPPED_CSV, write_skipped_csv
from napari_adaqat.io.dicom import IN_NAPARI
from napari_adaqat.util.errors import first_line
from napari_adaqat.widgets import _batch_boxes as B

CLOSE_WAIT_S = 60.0  # a dock being destroyed waits this long for the file being segmented now
SCAN_SHOW_S = 0.1  # the scan's count goes to the dock at most this often
ROWS_EVERY_S = 0.1  # files skipped at once (done before) go to the dock together, this often


class RunHandle:
    """``stop``: end after the current file; ``started``/``ended``: the job began / closed its run."""

    def __init__(self) -> None:
        self.stop, self.started, self.ended = threading.Event(), threading.Event(), threading.Event()

    def stop_and_wait(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Stop the run and wait until it has closed its output folder; True when it has (or never began)."""
        self.stop.set()
        return not self.started.is_set() or self.ended.wait(timeout_s)


class _Stopped(Exception):
    """Cancel (or the panel closed) while looking through the inputs."""


@dataclass
class Scanned:
    """What :func:`scan` found: ``refusal`` (one line) when there is nothing to segment, else the files, the
    input folders whose tree the masks mirror, the ``results.csv`` rows (keyed as this run names the files),
    the files it says are done, and the line on what the folders hold besides (``""``: nothing)."""
    files: list[Path] = field(default_factory=list)
    roots: list[Path] = field(default_factory=list)
    results: dict[str, dict] = field(default_factory=dict)
    done_before: set[str] = field(default_factory=set)
    skipped_note: str = ""
    refusal: str = ""
    skipped: list[Path] = field(default_factory=list)  # what the inputs hold besides (OUT/skipped.csv at the end)


def scan(items: list[Path], recursive: bool, out: Path, run: RunHandle,
         show: Callable[[int], None]) -> Optional[Scanned]:
    """Look through the inputs (``show(n)``: the files looked at so far, every :data:`SCAN_SHOW_S`); ``None``
    when ``run.stop`` is set meanwhile.  Reads only: nothing is written into ``out``."""
    last = [0.0]

    def tick(n: int) -> None:
        if run.stop.is_set():
            raise _Stopped
        if time.monotonic() - last[0] >= SCAN_SHOW_S:
            last[0] = time.monotonic()
            show(n)

    try:
        files, skipped = scan_inputs(items, recursive=recursive, progress=tick)
        hint = "" if recursive else "tick 'include subfolders'"
        described = describe_skipped(skipped, recurse_hint=hint) if skipped else ""
        if not files:
            return Scanned(refusal="No image files in the inputs" + (f": {described}" if described else "."))
        results = load_results(out / RESULTS_CSV)  # (its header was checked before the run began)
    except _Stopped:
        return None
    except (ValueError, OSError) as exc:  # e.g. an input folder that cannot be listed: one line, as before
        return Scanned(refusal=first_line(exc))
    results.update({key: results[old] for key, old in earlier_keys(files, results, out).items()})  # (named another way)
    done = {key for key, row in results.items() if row.get("status") == "ok" and row.get("mask")
            and (mask := recorded_mask(row["mask"], out)) is not None and (out / mask).is_file()}  # (as segment_files)
    listed = f" (all {len(skipped)} listed in {SKIPPED_CSV} when the run ends)" if described else ""
    return Scanned(files, [p for p in items if p.is_dir()] if recursive else [], results, done,
                   f"Skipped {described}{listed}" if described else "", skipped=skipped)


def job(engine: Engine, items: list[Path], recursive: bool, out: Path, model: ModelRef,
        baseline: Optional[ModelRef], box_kind: str, box_source: str, device: str, clean: bool, notes: list[str],
        run: RunHandle, signals: RowSignal, *, run_notes: Optional[list[str]] = None) -> None:
    """The worker: the inputs looked through (:func:`scan`, its count to ``signals.scanning``, what it found to
    ``signals.scanned``: nothing more happens when it found nothing or was cancelled), then boxes and models (a
    bad model fails before any row), then ``signals.row`` with each file's row in a list (the files a rerun skips
    at once as done before: one list per :data:`ROWS_EVERY_S`).  ``run.stop`` ends it after the current
    file, closing the run here, in the worker.  ``run_notes`` gets what the run says before its first row (a
    killed run's lock taken over), as ``adaqat segment`` prints it."""
    run.started.set()
    try:
        if run.stop.is_set():  # the dock closed before the worker began
            return
        found = scan(items, recursive, out, run, signals.scanning.emit)
        signals.scanned.emit(found)  # (queued before any row: the dock fills its table first)
        if found is None or found.refusal or run.stop.is_set():
            return
        files, roots, emit = found.files, found.roots, signals.row.emit
        boxes, missing = B.load_boxes(box_kind, box_source, files, roots)
        if box_kind == B.CSV and boxes:  # a row naming two films (IM0001 in every series): refused, nothing written
            boxes = match_rows(box_source, boxes, files, roots)
        notes.extend(missing)
        engine.predictor(model, device)
        if baseline is not None:
            engine.predictor(baseline, device)
        if run.stop.is_set():  # cancelled (or the panel closed) while the models loaded: nothing written yet
            return
        rows = segment_files(files, model, out, boxes=boxes, baseline=baseline, clean=clean, device=device,
                             engine=engine, roots=roots, notes=run_notes, frame_hint=IN_NAPARI)  # (no --frame here)
        batch: list = []  # rows go to the dock in lists: a rerun's thousands of skipped files, a few at a time
        sent = time.monotonic()
        try:
            for row in rows:
                batch.append(row)
                if row.status != "skipped" or time.monotonic() - sent >= ROWS_EVERY_S:
                    emit(batch)
                    batch, sent = [], time.monotonic()
                if run.stop.is_set():
                    break  # (cancelled: what was skipped is still listed, as the scan's line said)
        finally:
            if batch:
                emit(batch)
            rows.close()
        if write_skipped_csv(out, found.skipped) is None and run_notes is not None:  # as adaqat segment does
            run_notes.append(f"{out / SKIPPED_CSV} is not adaqat's, so the list of what was skipped was not written "
                             "there")
    finally:
        run.ended.set()


class RowSignal(QObject):
    """Carries the worker's scan count, what it found (:class:`Scanned` or ``None``) and rows to the GUI thread."""

    row = Signal(object)  # a list of ResultRow
    scanning = Signal(int)
    scanned = Signal(object)


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
