"""The Train dock's data check: the data folder's image/mask pairs and split, checked in a worker thread as the
user types (debounced by the dock's ``_check_timer``); the result shows in the dock's 'data check' field."""
from __future__ import annotations

from pathlib import Path

from napari.qt.threading import create_worker

from napari_adaqat.widgets._data_check import DataReport, check_data
from napari_adaqat.widgets._train_reading import typed_path
from napari_adaqat.util.text import count_of

HOW_PICKED = {"seeded": "picked at random, the same each time", "layout": "from the train/, val/ and test/ folders",
              "split.json": "as split.json lists them"}
WHY_VALIDATION = ("The validation films are never trained on: after each epoch the model's Dice on them is the curve "
                  "in 'Learning → model', and at the end the new model is compared with the starting model on them.")


def plain_check(report: DataReport) -> tuple[str, str]:
    """``report``'s text with its split in plain words (for a clinician; the pairs used only where they differ from
    it), and the tooltip: the technical lines."""
    train, val, test = (report.split.get(part, 0) for part in ("train", "val", "test"))
    under = " (under 20 films)" if report.source == "seeded" else ""
    kept = f"{test} kept for a final test" if test else f"none kept for a final test{under}"
    lines, technical = [], []
    for line in report.text().splitlines():
        if line.startswith("split ("):
            technical.append(line)
            line = (f"{count_of(train, 'film')} to train on · {val} to check the model (validation) · {kept}; "
                    f"{HOW_PICKED.get(report.source, report.source)}")
        elif line.startswith("used: ") and report.used:
            technical.append(line)
            used = (report.used.get("train", 0), report.used.get("val", 0))
            if used == (train, val):
                continue
            line = f"used: {count_of(used[0], 'film')} to train on · {used[1]} to check the model"
        lines.append(line)
    return "\n".join(lines), "\n".join(technical + [WHY_VALIDATION]) if technical else ""


class TrainDataCheck:
    """Mixin of :class:`~napari_adaqat.widgets.train.TrainWidget`: uses its fields ``data``, ``data_check``,
    ``masks_as_given``, ``status``, ``eta``, its ``busy``, ``last_error`` (the refusal shown), ``_update_eta``, ``_check_timer``, ``_check_worker``
    and ``_holder`` (``"deleted"``: napari deleted the dock's Qt widgets)."""

    def check_data(self) -> None:
        """Check the data folder's pairs and split in a worker thread; the result shows in 'data check'."""
        folder = typed_path(self.data)
        if not folder:
            return
        self.data_check.value = f"Checking {Path(folder).name}…"

        def done(report: DataReport) -> None:
            if self._holder.get("deleted"):  # the panel's fields went while the check ran
                return
            self._check_worker = None
            if folder == typed_path(self.data):  # else the field changed meanwhile
                self.data_report = report
                self.data_check.value, self.data_check.tooltip = plain_check(report)
                self.masks_as_given.visible = bool(report.inverted or self.masks_as_given.value)  # the way through
                about = getattr(self, "_refused_data", None)  # the data folder a refusal shown was about
                refused = about is not None and self.last_error is not None and self.status.value == self.last_error
                if report.usable and not self.busy and refused and (  # not the old refusal: the data is fixed,
                        folder != about or str(report.folder) in self.last_error):
                    self.status.value = "The data check passes now: Start when ready."  # or another folder is
                self._update_eta()

        worker = create_worker(check_data, folder, masks_as_given=bool(self.masks_as_given.value),
                               _start_thread=False, _ignore_errors=True)
        worker.returned.connect(done)
        worker.errored.connect(self._on_check_error)
        self._check_worker = worker
        worker.start()

    def _on_check_error(self, exc: BaseException) -> None:
        if self._holder.get("deleted"):
            return
        self._check_worker = None
        self.data_check.value = f"✗ {exc}"
        self.eta.value = "none: no data to train on"  # not "after the data check": the check is done

    @property
    def checking(self) -> bool:
        """True while the data check runs (or waits for typing to end)."""
        return self._check_worker is not None or self._check_timer.isActive()
