"""Qt parts of the Annotate dock: its controls, the list of films with their state, and the window-wide hotkeys."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from magicgui.widgets import CheckBox, Container, FileEdit, Label, PushButton

from qtpy.QtCore import QEvent, QObject, Qt
from qtpy.QtGui import QColor, QKeyEvent, QKeySequence, QShortcut
from qtpy.QtWidgets import (
    QAbstractItemView, QAbstractSpinBox, QApplication, QHeaderView, QLineEdit, QPlainTextEdit, QSizePolicy,
    QTableWidget, QTableWidgetItem, QTextEdit, QWidget,
)

from napari_adaqat.io.dicom import MultiFrameError
from napari_adaqat.util.recent import recall
from napari_adaqat.widgets._model_choice import ModelChoice

COLUMNS = ("#", "film", "state")
STATE_COLOR = {"accepted": "#5fbf4a", "skipped": "#9aa3ad", "error": "#e8505b", "draft": "#e0a030"}
STATE_CHARS = 28  # the longest state shown whole ("accepted, edited (not saved)"; a longer error is cut)
_TEXT_INPUTS = (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)
# free in napari's keymaps and menus and in the Segment dock (tests/test_annotate_qa2.py checks); with Ctrl they act
# from a text field too (type the dataset folder, then open it)
OPEN_KEY, CLICKS_KEY = "Ctrl+Shift+F", "Ctrl+K"


def dock_error(path: Path, exc: BaseException) -> BaseException:
    """Why a film cannot be opened, as the dock says it: a multi-frame DICOM's with what a dock user can do
    (:data:`~napari_adaqat.io.dicom.IN_NAPARI`), not the API's ``frame=N``."""
    return exc.hinted(path) if isinstance(exc, MultiFrameError) else exc


class FilmTable(QTableWidget):
    """One row per film: number, file name (full path as tooltip) and state; the current film is selected."""

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.verticalHeader().setVisible(False)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setWordWrap(False)
        self.setMinimumHeight(130)  # (it takes the height left; 130 keeps Segment + the folder tabs ≤ 1000 px)
        self.setToolTip("double-click a film to open it")

    def fill(self, names: list[str], paths: list[str]) -> None:
        self.setRowCount(len(names))
        for row, (name, path) in enumerate(zip(names, paths)):
            for col, text in enumerate((str(row + 1), name, "")):
                item = QTableWidgetItem(text)
                item.setToolTip(path if col == 1 else text)
                self.setItem(row, col, item)

    def set_state(self, row: int, text: str) -> None:
        """``text`` in the state column, cut to STATE_CHARS (a long error would squeeze the film names; the
        tooltip and :meth:`rows` keep it whole)."""
        item = QTableWidgetItem(text if len(text) <= STATE_CHARS else text[:STATE_CHARS - 1].rstrip() + "…")
        item.setData(Qt.ItemDataRole.UserRole, text)
        item.setToolTip(text)
        color = STATE_COLOR.get(text.split(",")[0].split(" ")[0].rstrip(":"))
        if color:
            item.setForeground(QColor(color))
        self.setItem(row, 2, item)

    def show_current(self, row: int) -> None:
        self.selectRow(row)
        self.scrollToItem(self.item(row, 0))

    def rows(self) -> list[dict[str, str]]:
        """The table as dicts keyed by column name (for tests and scripts)."""
        def text(r: int, c: int) -> str:
            item = self.item(r, c)
            return "" if item is None else str(item.data(Qt.ItemDataRole.UserRole) or item.text())
        return [{name: text(r, c) for c, name in enumerate(COLUMNS)} for r in range(self.rowCount())]


HELP = ("Correct the mask: draw a new box in 'boxes' (R), click with 'Correct with clicks…', or select "
        "'lung mask' and paint (P) or erase (E). Accept saves it and opens the next film.")


def folder_text(edit: FileEdit) -> str:
    """The path typed or chosen in ``edit`` ('' when none)."""
    return str(edit.line_edit.value or "").strip()


RECENT_KEY = "annotate"  # this dock's entry in the user's recent folders (util/recent.py)


class AnnotateControls(Container):
    """The Annotate dock's controls and their layout (the dock's behaviour is in ``annotate.py``); the hotkeys
    are written on the buttons."""

    def _build_controls(self, model_path: str | Path | None) -> None:
        self.images = FileEdit(label="image folder", mode="d", tooltip="the films to annotate (never written)")
        self.dataset = FileEdit(label="dataset folder", mode="d",
                                tooltip="accepted masks go to masks/<name>.png and the films to images/: "
                                        "a training set for adaqat train and the Train dock")
        self.open_button = PushButton(text=f"Open folder [{OPEN_KEY}] (resumes where you left)")
        self.models = ModelChoice(model_path=model_path, use_baseline=False)
        self.keep_edits = CheckBox(text="keep my brush edits when a new box re-segments", value=True)
        self.dicom_seg = CheckBox(text="also write a DICOM SEG for DICOM films", value=False,
                                  tooltip="into the dataset folder's dicom_seg folder, next to the PNG mask")
        self.back_button = PushButton(text="Back [PgUp]")
        self.skip_button = PushButton(text="Skip [PgDown]")
        self.accept_button = PushButton(text="Accept [Enter]")
        self.clicks_button = PushButton(text=f"Correct with clicks… [{CLICKS_KEY}]",
                                        tooltip="opens the Segment dock beside this one, on this film: click lung, "
                                                "Ctrl+click not lung, Undo [Ctrl+Z] there")
        self.progress = Label(value="")
        self.status = Label(value="Choose an image folder and a dataset folder, then Open folder.")
        if last := recall(RECENT_KEY):  # the folders opened last time (another napari session): shown, not opened
            self.images.line_edit.value, self.dataset.line_edit.value = last.get("images", ""), last.get("dataset", "")
            if folder_text(self.images) and folder_text(self.dataset):
                self.status.value = f"The folders of last time: Open folder [{OPEN_KEY}] resumes there."
        self._help = Label(value=HELP)
        form = Container(labels=True, widgets=[self.images, self.dataset, *self.models.widgets])
        buttons = Container(layout="horizontal", labels=False,
                            widgets=[self.back_button, self.skip_button, self.accept_button])
        for box in (form, buttons):
            box.margins = (0, 0, 0, 0)
        self.table = FilmTable()
        table_box = Container(labels=False)
        table_box.margins = (0, 0, 0, 0)
        table_box.native.layout().addWidget(self.table)
        self.extend([form, self.open_button, self.keep_edits, self.dicom_seg, buttons, self.clicks_button,
                     self.progress,
                     self.status, self._help, table_box])
        for w in (self.status, self._help, self.progress):
            w.native.setWordWrap(True)
            w.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.progress.native.setStyleSheet("font-weight: bold")


def _enter_for_napari(viewer: Any) -> Callable[[], None] | None:
    """What Enter means to napari now, if anything: finish a polygon being drawn (Shapes, Labels)."""
    layer = viewer.layers.selection.active if viewer is not None else None
    if layer is None:
        return None
    if type(layer).__name__ == "Shapes" and getattr(layer, "_is_creating", False):
        return layer._finish_drawing
    if type(layer).__name__ == "Labels" and str(layer.mode) == "polygon":
        from napari.layers.labels._labels_key_bindings import complete_polygon

        return lambda: complete_polygon(layer)
    return None


def install_hotkeys(dock: QWidget, viewer: Any, bindings: Iterable[tuple[str, Callable[[], None]]]) -> None:
    """Shortcuts for the whole napari window (e.g. ``("Return", accept)``) that act while ``dock`` is shown,
    installed when the dock is first shown in it and deleted with the dock or when it is closed.

    A key without Ctrl typed into a text field goes to the field, and Enter still finishes a polygon being
    drawn in napari."""
    bindings = list(bindings)
    shortcuts: list[QShortcut] = []

    def install() -> None:
        window = dock.window()
        if shortcuts or window is dock:
            return
        for keys, action in bindings:
            shortcut = QShortcut(QKeySequence(keys), window)
            shortcut.setContext(Qt.ShortcutContext.WindowShortcut)
            shortcut.activated.connect(lambda keys=keys, action=action: _dispatch(keys, action, dock, viewer,
                                                                                  shortcuts))
            shortcuts.append(shortcut)

    def remove(*_: Any) -> None:
        for shortcut in shortcuts:
            try:
                shortcut.setEnabled(False)
                shortcut.deleteLater()
            except RuntimeError:  # the window, and its shortcuts, went first
                pass
        shortcuts.clear()  # (shown in a window again: installed again)

    watcher = _ShowWatcher(dock, install)
    dock.installEventFilter(watcher)
    dock.destroyed.connect(remove)
    on_removed(dock, remove)  # a closed dock's keys would make the next dock's ambiguous (Qt fires neither)


class _ShowWatcher(QObject):
    """Calls ``on_show`` when ``widget`` is shown (its window is known only then)."""

    def __init__(self, widget: QWidget, on_show: Callable[[], None]) -> None:
        super().__init__(widget)
        self._on_show = on_show

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Show:
            self._on_show()
        return False


class _RemovalWatcher(QObject):
    """Calls ``on_removed`` when ``widget`` loses its parent: napari's close button (``remove_dock_widget``)
    takes a dock's widget out of the window without deleting it, so ``destroyed`` may never come."""

    def __init__(self, widget: QWidget, on_removed: Callable[[], None]) -> None:
        super().__init__(widget)
        self._on_removed = on_removed

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ParentChange and isinstance(obj, QWidget) and obj.parentWidget() is None:
            self._on_removed()
        return False


def on_removed(widget: QWidget, action: Callable[[], None]) -> None:
    """Call ``action`` when ``widget`` is taken out of its window (its dock closed)."""
    widget.installEventFilter(_RemovalWatcher(widget, action))


def _dispatch(keys: str, action: Callable[[], None], dock: QWidget, viewer: Any,
              shortcuts: list[QShortcut]) -> None:
    focus = QApplication.focusWidget()
    sequence = QKeySequence(keys)[0]
    key, modifiers = sequence.key(), sequence.keyboardModifiers()
    typing = not modifiers & Qt.KeyboardModifier.ControlModifier  # (a text field does not take our Ctrl keys)
    if isinstance(focus, _TEXT_INPUTS) and typing:  # the key is the field's (resent with the shortcuts off)
        for shortcut in shortcuts:
            shortcut.setEnabled(False)
        try:
            for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
                QApplication.sendEvent(focus, QKeyEvent(kind, key, modifiers))
        finally:
            for shortcut in shortcuts:
                shortcut.setEnabled(True)
        return
    napari_enter = _enter_for_napari(viewer) if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) else None
    if napari_enter is not None:
        napari_enter()
    elif dock.isVisible() and not dock.visibleRegion().isEmpty():  # (a tab behind another is "visible" to Qt)
        action()
    elif dock.isVisible():  # its tab behind another: nothing done, and said where the user looks (napari's bar)
        viewer.status = f"{keys} is the Annotate dock's key: show its tab first (nothing was done)."
