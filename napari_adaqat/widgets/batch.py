"""The "Batch segment (AdaLoRA-QAT)" dock: segment whole folders, as ``adaqat segment`` does.

The same engine and rules as the CLI (:func:`napari_adaqat.inference.batch.segment_files`): one mask per
input plus ``results.csv`` (journaled per file, compacted as the run goes and at its end), a bad file
becomes an error row and the rest go on, a rerun skips finished files, nothing is written into an input
folder, and a folder another run is working in is refused (one line naming it). The inputs are looked
through (a PACS tree can take a while: the status counts the files) and the files run in a napari worker
thread; the table fills in as they finish (sortable afterwards, e.g. by the estimated
Dice ``quality``: red ones are worth a look); Cancel (or closing the panel) stops after the current file, and
napari closing waits for it so the run closes its folder (see :mod:`._batch_job`).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Qt, QUrl
from qtpy.QtGui import QDesktopServices

from napari_adaqat.widgets._compat import guard_triton_import

guard_triton_import()  # before torch/torchvision load: see _compat.py

from napari_adaqat.data import check_output_folder  # noqa: E402
from napari_adaqat.data.folders import missing_inputs  # noqa: E402
from napari_adaqat.inference.batch import RESULTS_CSV, ResultRow, csv_text, load_results  # noqa: E402
from napari_adaqat.inference.lock import check_free  # noqa: E402
from napari_adaqat.io import read_image, read_mask  # noqa: E402
from napari_adaqat.io.dicom import MultiFrameError  # noqa: E402
from napari_adaqat.model.device import DEVICES, resolve_device  # noqa: E402
from napari_adaqat.util.defaults import DEFAULT_BOX_MARGIN_FRACTION  # noqa: E402
from napari_adaqat.util.errors import first_line  # noqa: E402
from napari_adaqat.widgets import _batch_boxes as B  # noqa: E402
from napari_adaqat.widgets._batch_job import RowSignal, RunHandle, Scanned, job, on_unparent  # noqa: E402
from napari_adaqat.widgets import _batch_table as T  # noqa: E402
from napari_adaqat.widgets._model_choice import ModelChoice  # noqa: E402
from napari_adaqat.widgets._shared import shared_engine, tab_with_folder_docks  # noqa: E402
from napari_adaqat.widgets._train_process import format_duration  # noqa: E402

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.bmp *.tif *.tiff *.dcm *.dicom);;All files (*)"
COLUMNS = T.COLUMNS  # the table's columns (table_rows() keys)
BATCH_SOURCE = "adaqat_batch_source"  # metadata of the layers a double-click on a row added: the film's path


def _text(edit: FileEdit) -> str:
    return str(edit.line_edit.value or "").strip()


class BatchWidget(Container):
    """Dock widget: inputs, output folder, model/baseline, boxes; Run/Cancel; a table of results."""

    # napari passes its viewer only to a parameter annotated exactly ``napari.viewer.Viewer`` (no Optional)
    def __init__(self, viewer: napari.viewer.Viewer = None) -> None:  # type: ignore[assignment]
        super().__init__(labels=False)
        tab_with_folder_docks(self.native)  # beside Segment, one tabbed area
        self.viewer = viewer
        self.engine = shared_engine()  # the Segment dock's loaded models are reused
        self.last_error: Optional[str] = None
        self.results: dict[str, dict] = {}  # file → results.csv row, as the table shows it
        self.box_notes: list[str] = []
        self.skipped_note = ""  # the files and sub-folders of the input folders that this run does not read
        self.missing_note = ""  # the inputs not found (an error row each; the others are segmented)
        self.run_notes: list[str] = []  # what the run says before its first row (a killed run's lock taken over)
        self._worker: Any = None
        self._run = RunHandle()  # Cancel: the worker stops after the current file
        self._row_signal = RowSignal()  # the worker's rows, queued to the GUI thread
        for signal, slot in ((self._row_signal.row, self._on_row), (self._row_signal.scanning, self._on_scanning),
                             (self._row_signal.scanned, self._on_scanned)):
            signal.connect(slot, Qt.ConnectionType.QueuedConnection)  # (GUI thread, any binding)
        self._scanned = False  # this run has looked through its inputs (Cancel before then: nothing was written)
        self._starting = ""  # the status once the inputs are looked through: the model, the device
        self._segmented, self._segment_s, self._to_segment = 0, 0.0, 0  # files segmented, their seconds, left
        self._done_before: set[str] = set()  # files that results.csv says are done: a rerun skips them at once
        self._closed = False
        self.native.destroyed.connect(self._on_destroyed)
        on_unparent(self.native, self.cancel)  # the panel's ✕ stops the run as Cancel does

        self.input_folder = FileEdit(label="input folder", mode="d",
                                     tooltip="every image file in it (and in its sub-folders: 'include subfolders')")
        self.recursive = CheckBox(text="include subfolders (the masks mirror them)", value=False,
                                  tooltip="segment the films in the input folder's sub-folders too, e.g. PATIENT/STUDY/"
                                          "SERIES/IM0001 → output/PATIENT/STUDY/SERIES/IM0001_mask.png")
        self.input_files = FileEdit(label="and/or files", mode="rm", filter=IMAGE_FILTER)
        self.out = FileEdit(label="output folder", mode="d",
                            tooltip="masks and results.csv; never an input folder or inside one")
        self.models = ModelChoice()
        self.box_kind = ComboBox(label="boxes", value=B.DEFAULT, choices=[
            (f"default: whole image − {100 * DEFAULT_BOX_MARGIN_FRACTION:g} % margin", B.DEFAULT),
            ("CSV file (file,x0,y0,x1,y1)…", B.CSV), ("mask folder (their bounding boxes)…", B.MASKS)])
        self.boxes_csv = FileEdit(label="boxes CSV", mode="r", filter="CSV (*.csv)")
        self.boxes_masks = FileEdit(label="mask folder", mode="d", tooltip="masks named like the images")
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.clean = CheckBox(text="clean up masks (two largest regions, holes filled)", value=True)
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="files", min=0, max=1, value=0)
        self.status = Label(label="status", value="Choose inputs and an output folder, then Run.")
        self.open_button = PushButton(text="Open results folder", enabled=False)
        buttons = Container(layout="horizontal", labels=False, widgets=[self.run_button, self.cancel_button])
        buttons.margins = (0, 0, 0, 0)
        self.table_model = T.ResultsModel()  # (a model, not an item per cell: 10,000 files fill it at once)
        self.table = T.ResultsView(self.table_model)
        table_box = Container(labels=False)
        table_box.margins = (0, 0, 0, 0)
        table_box.native.layout().addWidget(self.table)
        self._inputs = [self.input_folder, self.recursive, self.input_files, self.out, *self.models.widgets,
                        self.box_kind, self.boxes_csv, self.boxes_masks, self.device, self.clean]
        form = Container(labels=True, widgets=self._inputs)
        below = Container(labels=True, widgets=[self.progress, self.status])
        for box in (form, below):
            box.margins = (0, 0, 0, 0)
        self.extend([form, buttons, below, table_box, self.open_button])
        self.status.native.setWordWrap(True)
        self.status.native.setMinimumWidth(260)
        self.progress.native.setFormat("%v / %m")

        for w in (self.models.model, self.models.model_file, self.models.baseline, self.models.baseline_file,
                  self.box_kind):  # (a chosen file's suffix says whether '.pth architecture' is asked)
            w.changed.connect(self._update_visibility)
        self.run_button.changed.connect(lambda *_: self.run())
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self.open_button.changed.connect(lambda *_: self.open_results())
        self.table.doubleClicked.connect(lambda index: self.open_row(index.row()))
        self._update_visibility()

    def _update_visibility(self, *_: Any) -> None:
        self.models.update_visibility()
        self.boxes_csv.visible = self.box_kind.value == B.CSV
        self.boxes_masks.visible = self.box_kind.value == B.MASKS

    # ----------------------------------------------------------------- inputs
    def inputs(self) -> list[Path]:
        """The chosen input folder and files, as given."""
        items = [Path(_text(self.input_folder))] if _text(self.input_folder) else []
        files = self.input_files.value if _text(self.input_files) else ()
        return items + [Path(f) for f in (files if isinstance(files, (list, tuple)) else [files])]

    def out_dir(self) -> Optional[Path]:
        return Path(_text(self.out)) if _text(self.out) else None

    def results_url(self) -> QUrl:
        """What 'Open results folder' opens."""
        return QUrl.fromLocalFile(str(self.out_dir().resolve())) if self.out_dir() else QUrl()

    def use_models(self, model: Path, baseline: Optional[Path]) -> None:
        """Segment with these model files from now on (the Train dock's freshly exported pair)."""
        self.models.set_files(model, baseline)  # (shows the file fields)
        if not self.busy:
            self.status.value = f"Model: {Path(model).name}. Choose inputs and an output folder, then Run."

    # ---------------------------------------------------------------- actions
    @property
    def busy(self) -> bool:
        """True while files are being segmented."""
        return self._worker is not None

    def run(self) -> bool:
        """Check the inputs and segment every file in a worker; False (and a status line) when it cannot.  The
        worker looks through the inputs first: it refuses there, in the status, when they hold no image file."""
        if self.busy:
            return False
        try:
            items, out = self.inputs(), self.out_dir()
            if not items:
                raise ValueError("Choose an input folder or files.")
            if out is None:
                raise ValueError("Choose an output folder.")
            missing = missing_inputs(items)  # none there: refused; some: an error row each, as adaqat segment does
            check_output_folder(out, items, option="output folder")
            check_free(out)  # another run (a terminal's adaqat segment, another dock) holds it: one line
            model, baseline = self.models.model_ref(), self.models.baseline_ref()
            device = resolve_device(self.device.value)
            box_source = _text(self.boxes_csv) if self.box_kind.value == B.CSV else _text(self.boxes_masks)
            B.check_source(self.box_kind.value, box_source)
            load_results(out / RESULTS_CSV, header_only=True)  # another tool's results.csv there: refused, one line
        except (ValueError, RuntimeError, OSError) as exc:
            self.last_error = first_line(exc)
            self.status.value = self.last_error
            return False
        self.last_error, self.box_notes, self._run, self.run_notes = None, [], RunHandle(), []
        self.skipped_note, self._scanned = "", False  # said again when done
        self.missing_note = (f"Not found, an error row each (the others are segmented): {', '.join(missing[:3])}"
                             + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")) if missing else ""
        self._starting = f"with {model.label()} on {device}…"
        self.table.setSortingEnabled(False)  # rows fill in by position while running; sortable when done
        self.table_model.reset([], [])
        worker = create_worker(job, self.engine, items, bool(self.recursive.value), out, model, baseline,
                               self.box_kind.value, box_source, device, bool(self.clean.value), self.box_notes,
                               self._run, self._row_signal, run_notes=self.run_notes, _start_thread=False,
                               _ignore_errors=True)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True)
        self._on_scanning(0)
        worker.start()
        return True

    def _on_scanning(self, seen: int) -> None:
        """The worker is looking through the inputs: ``seen`` files so far (the bar runs, Cancel stops it)."""
        if self._closed or self._scanned or self._worker is None or self._run.stop.is_set():
            return
        self.progress.max, self.progress.value = 0, 0  # (a busy bar: how many there are is not known yet)
        self.progress.native.setFormat(f"looking through {seen} files…")
        self.status.value = (f"Looking through the inputs: {seen} files so far, to segment them {self._starting} "
                             "(Cancel stops it; nothing is written yet)") + "".join(
            f"\n{note}" for note in (self.missing_note,) if note)

    def _on_scanned(self, found: Optional[Scanned]) -> None:
        """What the worker found in the inputs: the table's rows, or a refusal (nothing there), in the status."""
        if self._closed or found is None:  # (cancelled: _on_finished says so)
            return
        self._scanned = True
        if found.refusal:
            self.last_error = self.status.value = found.refusal
            return
        self.skipped_note, self.results, self._done_before = found.skipped_note, found.results, found.done_before
        self._fill_table(found.files, found.roots)
        self.progress.max, self.progress.value = len(found.files), 0  # every file, the ones done before too
        self._segmented, self._segment_s = 0, 0.0
        self._to_segment = sum(key not in self._done_before for key in self.table_model.keys())
        self.progress.native.setFormat(self.progress_format())
        self.status.value = f"Segmenting {len(found.files)} files {self._starting}" + "".join(
            f"\n{note}" for note in (self.missing_note, self.skipped_note) if note)

    def cancel(self) -> None:
        """Stop after the file being segmented now (results.csv stays valid; a rerun continues)."""
        if self._worker is not None:
            self._run.stop.set()  # the worker ends after this file and releases the folder
            self.cancel_button.enabled = False
            self.status.value = "Cancelling after the current file…" if self._scanned else "Cancelling…"

    def open_results(self) -> bool:
        """Open the output folder in the system's file browser."""
        url = self.results_url()
        return bool(url.isValid()) and QDesktopServices.openUrl(url)

    def open_row(self, row: int) -> None:
        """Add the image of table row ``row`` and its mask (if any) to the viewer."""
        if not 0 <= row < self.table_model.rowCount() or self.viewer is None:
            return
        path = self.table_model.path(row)
        info = self.results.get(csv_text(str(path)), {})
        shown = [layer for layer in self.viewer.layers if layer.metadata.get(BATCH_SOURCE) == str(path)]
        mask = Path(info.get("mask") or "")
        if shown:  # opened by an earlier double-click: shown and selected again, not added twice (QA find); never
            for layer in shown:  # read again over the user's brush edits (delete the layers to see a new mask)
                layer.visible = True
            self.viewer.layers.selection.active = shown[0]
            self.status.value = f"{path.name} is open already: its layers are selected and shown."
            image = shown[0]
            if image.ndim == 2 and info.get("status") == "ok" and mask.is_file() \
                    and not any(type(layer).__name__ == "Labels" for layer in shown):  # (its mask came since)
                self.viewer.add_labels(read_mask(mask).astype(np.uint8), name=f"{image.name} lung mask",
                                       scale=image.scale, opacity=0.45, metadata={BATCH_SOURCE: str(path)})
            return
        try:
            image = read_image(path)
        except Exception as exc:  # noqa: BLE001 - shown, never raised into Qt
            exc = exc.hinted(path) if isinstance(exc, MultiFrameError) else exc  # (a dock's way, not frame=N)
            self.status.value = f"Cannot open {path.name}: {first_line(exc).removeprefix(f'{path}: ')}"
            return
        scale = image.shape_spacing or (1.0, 1.0)
        name = str(Path(self.table_model.shown(row)).parent / path.stem)  # a sub-folder's: its path
        source = {BATCH_SOURCE: str(path)}
        self.viewer.add_image(image.pixels, name=name, scale=scale, colormap="gray", metadata=source)
        if info.get("status") == "ok" and mask.is_file():
            self.viewer.add_labels(read_mask(mask).astype(np.uint8), name=f"{name} lung mask", scale=scale,
                                   opacity=0.45, metadata=dict(source))

    # ---------------------------------------------------------------- results
    def _fill_table(self, files: list[Path], roots: list[Path]) -> None:
        """One row per file, named as its mask is placed under the output folder: a sub-folder's film by its path
        there, under its input folder's name when there are several (``export_2/P1/IM0001``: two look alike)."""
        self.table_model.reset(files, T.shown_names(files, roots))

    def _on_row(self, results: list[ResultRow]) -> None:
        """Rows from the worker (a rerun's files done before come a few hundred at a time: one update of the bar)."""
        if self._closed:
            return
        row = None
        for result in results:
            if result.status == "skipped":  # done before: show what that run found
                info = {**self.results.get(result.file, {}), "status": "skipped"}
            else:  # (a file done before is skipped at once: it says nothing of the time)
                info = self.results[result.file] = asdict(result)
                self._segmented += 1
                self._segment_s += float(result.seconds or 0.0)
            updated = self.table_model.update(result.file, info)
            row = row if updated is None else updated
        if row is not None:
            self.table.scrollTo(self.table_model.index(row, 0))
        self.progress.value = min(self.progress.value + len(results), self.progress.max)
        self._show_run_notes()
        self.progress.native.setFormat(self.progress_format())

    def progress_format(self) -> str:
        """The progress bar's text: files done of all files, and the time left, estimated from the files this
        run segmented (not those a rerun skips at once) times the files still to segment.  The numbers are
        written in (with Qt's ``%v`` the bar repaints at once on every change: seconds for a rerun's 10,000 files)."""
        left = max(0, self._to_segment - self._segmented)
        eta = self._segment_s / self._segmented * left if self._segmented else 0.0
        done = f"{self.progress.value} / {self.progress.max}"
        return f"{done} · about {format_duration(eta)} left" if eta else done

    def _show_run_notes(self) -> None:
        """What the run said before its first row (a killed run's lock taken over), in the status, once."""
        for note in self.run_notes:
            line = f"Note: {note[:1].upper()}{note[1:]}."
            if line not in self.status.value:
                self.status.value += f"\n{line}"

    def table_rows(self) -> list[dict[str, str]]:
        """The table as dicts keyed by column name (for tests and scripts)."""
        return self.table_model.as_dicts()

    def _on_error(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if not self._closed:
            self.status.value = f"Error: {exc}"
            show_error(f"AdaLoRA-QAT batch: {exc}")

    def _on_finished(self) -> None:
        self._worker = None
        if self._closed:
            return
        self._set_running(False)
        self.table.setSortingEnabled(True)  # e.g. by quality: the masks worth a look first
        left = self.table_model.mark_not_run()
        if self.last_error is not None:
            return
        if not self._scanned:  # cancelled (or the panel closed) while looking through the inputs
            self.status.value = "Cancelled while looking through the inputs; nothing was written."
            return
        statuses = self.table_model.statuses()
        counts = {s: statuses.count(s) for s in ("ok", "error", "skipped", "ignored")}
        text = (f"{counts['ok']} segmented, {counts['skipped']} done before, {counts['error']} failed"
                + (f", {counts['ignored']} ignored (not films: the 'error' column says what)" if counts["ignored"] else "")
                + (f", {left} not run (cancelled: Run again to finish them)" if left else "")
                + f". Masks and results.csv in '{self.out_dir().name}'.")
        self.status.tooltip = str(self.out_dir() / RESULTS_CSV)
        failures = self.table_model.failures()  # why, here: the table's error column is off-screen in a narrow dock
        if failures:
            text += "\nFailed: " + "; ".join(f"{name}: {error}" for name, error in failures[:2]) + (
                f" (and {len(failures) - 2} more: the 'error' column)" if len(failures) > 2 else "")
        if self.box_notes:
            text += f"\nDefault box for {len(self.box_notes)}: " + "; ".join(self.box_notes[:3])
        text += "".join(f"\n{note}" for note in (self.missing_note, self.skipped_note) if note)
        self.status.value = text
        self._show_run_notes()
        show_info(f"AdaLoRA-QAT batch: {text.splitlines()[0]}")

    def _set_running(self, running: bool) -> None:
        self.progress.native.setFormat("%v / %m")
        for w in self._inputs:
            w.enabled = not running
        self.run_button.enabled = not running
        self.cancel_button.enabled = running
        self.open_button.enabled = not running and self.out_dir() is not None and self.out_dir().is_dir()

    def _on_destroyed(self, *_: Any) -> None:
        """napari closes: end the run after the current file and let it close its folder before napari exits
        (else the worker dies with the interpreter, leaving the folder's lock and journal behind)."""
        self._closed = True
        self._run.stop_and_wait()
