"""The Batch dock's table of results as a Qt model (:class:`ResultsModel`, shown by a ``QTableView``).

A model holds one small record per file and answers the view for the rows it paints, so a folder of 10,000
films fills the table at once (no ``QTableWidgetItem`` per cell: that took ~0.75 s of the GUI thread) and a
finished file updates one row.  Sorting (the header click) sorts the records: numbers as numbers, empty cells
before them (by ``quality``, best first: the failed files last).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

from qtpy.QtCore import QAbstractTableModel, QModelIndex, QObject, Qt
from qtpy.QtGui import QBrush, QColor
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableView

from napari_adaqat.data.folders import root_labels
from napari_adaqat.inference.batch import csv_text

COLUMNS = ("file", "status", "error", "area (px)", "seconds", "quality")
QUALITY_TIP = "estimated Dice of the mask (1 = sure); red: worth a look (review = 1 in results.csv). Click to sort"
STATUS_COLOR = {"ok": "#5fbf4a", "error": "#e8505b", "skipped": "#9aa3ad", "ignored": "#9aa3ad"}
_BRUSH = {status: QBrush(QColor(color)) for status, color in STATUS_COLOR.items()}
_ROLE = Qt.ItemDataRole
_WIDEST = ("P001/ST1/SE1/IM0001.dcm", "skipped", "cannot read: not an image", "9999999", "999.99", "0.999")


def _number(value: Any, digits: int) -> Any:
    """A results.csv value as the table shows it: a number (rounded to ``digits``) that sorts as one,
    or the text as it is."""
    try:
        number = round(float(value), digits)
    except (TypeError, ValueError):
        return "" if value is None else str(value)
    return int(number) if digits == 0 else number


def shown_names(files: list[Path], roots: Sequence[Path]) -> list[str]:
    """What the first column shows for each file: its path under the output folder, where its mask goes
    (:func:`~napari_adaqat.data.folders.mirror_folder`): a sub-folder's film by its path there, under its input
    folder's name when there are several (``export_2/P1/IM0001.dcm``), else its name.  (Strings, not
    ``Path.relative_to``: 10,000 files in a few ms.)"""
    labels = root_labels(roots)
    prefixes = [(os.path.join(str(root), ""), os.path.join(label, "") if len(labels) > 1 else "")
                for root, label in labels.items()]
    names = []
    for path in files:
        text = str(path)
        names.append(next((name + text[len(prefix):] for prefix, name in prefixes if text.startswith(prefix)),
                          path.name))
    return names


def _sort_key(value: Any) -> tuple:
    """Empty cells first, then numbers by value, then text (ascending)."""
    if isinstance(value, (int, float)):
        return 1, float(value), ""
    return (0, 0.0, "") if value == "" else (2, 0.0, str(value))


NOT_RUN = "not run"  # the status of a file a cancelled run did not reach


class _Row:
    """One file: its path, its key in results.csv, what the first column shows, and its cells."""

    __slots__ = ("path", "key", "shown", "cells", "error", "status", "review")

    def __init__(self, path: Path, key: str, shown: str) -> None:
        self.path, self.key, self.shown = path, key, shown
        self.error, self.status, self.review = "", "…", False  # what set({"status": "…"}) gives, at once
        self.cells = (shown, "…", "", "", "", "")

    def set(self, info: dict) -> None:
        self.error = str(info.get("error", ""))
        self.status, self.review = str(info.get("status", "")), str(info.get("review", "")) == "1"
        self.cells = (self.shown, self.status, self.error.removeprefix(f"{self.path}: "),  # the file: 1st column
                      _number(info.get("area_px"), 0), _number(info.get("seconds"), 2),
                      _number(info.get("quality"), 3))


class ResultsModel(QAbstractTableModel):
    """The files of a run, one row each, in the order given until sorted; :meth:`update` sets a file's result."""

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self._rows: list[_Row] = []
        self._row_of: dict[str, int] = {}  # results.csv key → row

    def reset(self, files: list[Path], shown: list[str]) -> None:
        """One row per file ('…' until its result comes), ``shown`` in the first column."""
        self.beginResetModel()
        self._rows = [_Row(path, csv_text(str(path)), name) for path, name in zip(files, shown)]
        self._row_of = {row.key: i for i, row in enumerate(self._rows)}
        self.endResetModel()

    def keys(self) -> list[str]:
        return [row.key for row in self._rows]

    def update(self, key: str, info: dict) -> Optional[int]:
        """Show ``info`` (a results.csv row) for the file keyed ``key``; its row, or None when not listed."""
        row = self._row_of.get(key)
        if row is not None:
            self._rows[row].set(info)
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
        return row

    def mark_not_run(self) -> int:
        """A cancelled run: rows still '…' (which reads as "in progress") say "not run"; their count."""
        left = [i for i, row in enumerate(self._rows) if row.status == "…"]
        for i in left:
            self._rows[i].set({"status": NOT_RUN})
        if left:
            self.dataChanged.emit(self.index(left[0], 0), self.index(left[-1], len(COLUMNS) - 1))
        return len(left)

    def path(self, row: int) -> Path:
        return self._rows[row].path

    def shown(self, row: int) -> str:
        return self._rows[row].shown

    def statuses(self) -> list[str]:
        return [row.status for row in self._rows]

    def failures(self) -> list[tuple[str, str]]:
        """(shown name, error without the path) of each failed file, in the table's order."""
        return [(row.shown, str(row.cells[2])) for row in self._rows if row.status == "error"]

    def as_dicts(self) -> list[dict[str, str]]:
        """The rows as they read, keyed by column name."""
        return [{name: str(cell) for name, cell in zip(COLUMNS, row.cells)} for row in self._rows]

    # ----------------------------------------------------------- Qt's model
    def rowCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008 - Qt's names
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: QModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: QModelIndex, role: int = _ROLE.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, col = self._rows[index.row()], index.column()
        if role == _ROLE.DisplayRole:
            return row.cells[col]
        if role == _ROLE.ToolTipRole:
            return str(row.path) if col == 0 else row.error if col == 2 else QUALITY_TIP if col == 5 \
                else str(row.cells[col])
        if role == _ROLE.ForegroundRole:
            if col == 1:
                return _BRUSH.get(row.status)
            if col == 5 and row.review:
                return _BRUSH["error"]
        return None

    def headerData(self, section: int, orientation: Qt.Orientation,  # noqa: N802
                   role: int = _ROLE.DisplayRole) -> Any:
        if role == _ROLE.DisplayRole and orientation == Qt.Orientation.Horizontal and 0 <= section < len(COLUMNS):
            return COLUMNS[section]
        return None

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """Sort the rows by ``column`` (the view's header click); a selected row stays selected."""
        if not 0 <= column < len(COLUMNS):
            return
        self.layoutAboutToBeChanged.emit()
        before = self.persistentIndexList()
        held = [self._rows[index.row()] for index in before]
        self._rows.sort(key=lambda row: _sort_key(row.cells[column]), reverse=order == Qt.SortOrder.DescendingOrder)
        self._row_of = {row.key: i for i, row in enumerate(self._rows)}
        self.changePersistentIndexList(before, [self.index(self._row_of[row.key], index.column())
                                                for row, index in zip(held, before)])
        self.layoutChanged.emit()


class ResultsView(QTableView):
    """The view of a :class:`ResultsModel`: rows selected whole, read-only, columns of fixed widths (resizable by
    hand; sized to their contents, Qt would measure 1,000 rows again on every finished file); ``sortItems`` as
    ``QTableWidget`` names it, and ``rowCount`` (scripts and tests)."""

    def __init__(self, model: ResultsModel) -> None:
        super().__init__()
        self.setModel(model)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.verticalHeader().setVisible(False)
        header, metrics = self.horizontalHeader(), self.fontMetrics()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for col, name in enumerate(COLUMNS):  # the file and the error: wide enough to read in a narrow dock (it
            widest = max(metrics.horizontalAdvance(text) for text in (name, _WIDEST[col]))  # scrolls sideways)
            header.resizeSection(col, widest + 28)  # (+ the sort arrow; longer names are elided in the middle)
        header.setSortIndicator(0, Qt.SortOrder.AscendingOrder)  # Qt's default, descending, would list Z to A
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setWordWrap(False)
        self.setMinimumHeight(70)  # (header + a row; it takes the dock's height left. 200 made the window
        # taller than a 1080-px screen beside the Segment dock)
        self.setToolTip("double-click a row: open the image and its mask in the viewer")

    def sortItems(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:  # noqa: N802
        self.sortByColumn(column, order)

    def rowCount(self) -> int:  # noqa: N802 - as QTableWidget's
        return self.model().rowCount()
