"""What napari's Plugins menu opens: a dock that shows at once and builds its widget when the widget's code is in.

The docks' code imports torch, scipy and pydicom: 2–4 s on a laptop's first opening. Imported on napari's GUI
thread (as napari does with a plugin's widget class), that froze the viewer. Here the import runs in a thread
while the dock says "Loading…"; the GUI thread only waits for the few moments the import holds Python's GIL
(loading torch's shared libraries). Once a dock's code is in, the next opening builds the widget directly.

This module imports only magicgui and Qt, never the docks' code.
"""
from __future__ import annotations

import importlib
import sys
import threading
from typing import Any, Optional

import napari
from magicgui.widgets import Container, Label
from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtWidgets import QSizePolicy, QSpacerItem, QWidget

from napari_adaqat.util.errors import first_line
from napari_adaqat.widgets._dock_tabs import tab_with_folder_docks

_ONE_IMPORT_AT_A_TIME = threading.Lock()  # docks opened together import one after the other (their code overlaps)
# (napari's QtViewerDockWidget._maybe_add_vertical_stretch: no stretch under a widget that wants height)
_WANTS_HEIGHT = (QSizePolicy.Policy.Expanding, QSizePolicy.Policy.MinimumExpanding, QSizePolicy.Policy.Ignored)


class _Imported(QObject):
    """Carries the end of a background import to the GUI thread (a queued signal: emitted from the import thread)."""

    done = Signal(object)  # the import's exception, or None


class _Placement(QObject):
    """Follows the shell in and out of napari's window. napari's × takes the shell out (without deleting it): a
    widget still to be built is then never built, and a built one is taken out too (the widgets watch their own
    parent to let go of their folder, run or model: ``on_removed``)."""

    def __init__(self, dock: "LoadingDock") -> None:
        super().__init__(dock.native)
        self._dock = dock
        dock.native.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ParentChange and isinstance(obj, QWidget):
            if obj.parentWidget() is not None:
                self._dock.docked = True
            elif self._dock.docked:
                self._dock.closed = True
                if self._dock.inner is not None:
                    try:
                        self._dock.inner.native.setParent(None)
                    except RuntimeError:  # already deleted with napari's window
                        pass
        return False


class LoadingDock(Container):
    """A dock whose widget (``MODULE:ATTR``, built as ``ATTR(viewer)``) is built once its module is imported.

    ``LoadingDock(viewer)`` returns the widget itself when its module is already imported (Python calls no
    ``__init__`` on an object of another class), so every dock after the first is the widget, as before."""

    MODULE = ""
    ATTR = ""
    FOLDER = False  # a folder dock: a tab beside the other folder docks (_dock_tabs.py)

    def __new__(cls, viewer: napari.viewer.Viewer = None) -> Any:  # type: ignore[assignment]
        if _imported(cls.MODULE):
            return getattr(sys.modules[cls.MODULE], cls.ATTR)(viewer)
        return super().__new__(cls)

    def __init__(self, viewer: napari.viewer.Viewer = None) -> None:  # type: ignore[assignment]
        super().__init__(labels=False)
        self.margins = (0, 0, 0, 0)
        self._viewer = viewer
        self.inner: Optional[Any] = None  # the built widget
        self.error: Optional[str] = None  # the import's failure, one line
        self.docked = self.closed = False  # in napari's window; taken out of it (_Placement)
        self.status = Label(value="Loading the model code (the first time: a few seconds)…")
        self.status.native.setWordWrap(True)
        self.append(self.status)
        # napari adds no stretch under the shell; the built widget gets one where napari would give it one (_build)
        policy = self.native.sizePolicy()
        self.native.setSizePolicy(policy.horizontalPolicy(), QSizePolicy.Policy.Expanding)
        self.native.layout().addStretch()
        _Placement(self)
        deleted = self._deleted = threading.Event()  # napari's window closed: Qt deleted the shell
        self.native.destroyed.connect(lambda *_: deleted.set())
        if self.FOLDER:
            tab_with_folder_docks(self.native)  # placed now, not seconds later when the widget is in
        self._finished = threading.Event()
        self._import_error: Optional[BaseException] = None
        self._signal = _Imported()
        self._signal.done.connect(self._on_imported)
        threading.Thread(target=self._import, name=f"import {self.MODULE}", daemon=True).start()

    def _import(self) -> None:
        try:
            with _ONE_IMPORT_AT_A_TIME:
                _load(self.MODULE)
        except BaseException as exc:  # noqa: BLE001 - shown in the dock, not lost in a thread
            self._import_error = exc
        self._finished.set()
        try:
            self._signal.done.emit(self._import_error)
        except RuntimeError:  # the dock was deleted while its code loaded
            pass

    def _on_imported(self, error: Optional[BaseException]) -> None:
        if self.inner is None and self.error is None and not self._gone():
            try:
                self._build(error)
            except RuntimeError:  # (a Qt object deleted under it: napari closing)
                if not self._gone():
                    raise

    def _gone(self) -> bool:
        return self.closed or self._deleted.is_set()

    def _build(self, error: Optional[BaseException]) -> None:
        if error is not None:
            self._fail(f"Could not load this dock's code: {type(error).__name__}: {error}")
            return
        try:
            self.inner = getattr(sys.modules[self.MODULE], self.ATTR)(self._viewer)
        except Exception as exc:  # noqa: BLE001 - said in the dock, as a failed import is
            self._fail(f"Could not open this dock: {type(exc).__name__}: {exc}")
            return
        self.status.visible = False
        self.append(self.inner)
        layout = self.native.layout()
        for index in reversed(range(layout.count())):
            if isinstance(layout.itemAt(index), QSpacerItem):
                layout.takeAt(index)
        if not _wants_height(self.inner.native):
            layout.addStretch(1)

    def _fail(self, message: str) -> None:
        self.error = first_line(message)
        self.status.value = self.error

    def built(self) -> Any:
        """The dock's widget, built now when its code is still loading (waits for the import): for the docks
        that hand a model or a folder to this one."""
        if self.inner is None and self.error is None:
            if self._gone():
                raise RuntimeError("This dock was closed before its code had loaded.")
            self._finished.wait()
            self._build(self._import_error)
        if self.inner is None:
            raise RuntimeError(self.error)
        return self.inner


def _wants_height(widget: QWidget) -> bool:
    """Whether ``widget`` takes the dock's height itself: it, or a widget in its layout (a table, a list, a scroll
    area, however deep), grows vertically. napari's rule looks at the first level only, and adds a stretch
    whose factor depends on how many docks it made before: the Batch dock's results table got 263 px as
    napari's first dock of a session and 192 px later (a review find)."""
    if widget.sizePolicy().verticalPolicy() in _WANTS_HEIGHT:
        return True
    layout = widget.layout()
    return layout is not None and bool(layout.expandingDirections() & Qt.Orientation.Vertical)


def _load(module: str) -> None:
    """Import ``module`` (in the loading thread)."""
    importlib.import_module(module)


def _imported(module: str) -> bool:
    """Whether ``module`` is fully imported (a module still being imported in the thread is in ``sys.modules``
    too, with its ``__spec__._initializing`` set)."""
    found = sys.modules.get(module)
    return found is not None and not getattr(getattr(found, "__spec__", None), "_initializing", False)


def dock_content(widget: Any) -> Any:
    """The widget inside a napari dock of this plugin (built now if it is still a :class:`LoadingDock`)."""
    return widget.built() if isinstance(widget, LoadingDock) else widget


class SegmentDock(LoadingDock):
    """napari's "Segment lungs (AdaLoRA-QAT)"."""

    MODULE, ATTR = "napari_adaqat.widgets.segment", "SegmentWidget"


class AnnotateDock(LoadingDock):
    """napari's "Annotate folder (AdaLoRA-QAT)"."""

    MODULE, ATTR, FOLDER = "napari_adaqat.widgets.annotate", "AnnotateWidget", True


class BatchDock(LoadingDock):
    """napari's "Batch segment (AdaLoRA-QAT)"."""

    MODULE, ATTR, FOLDER = "napari_adaqat.widgets.batch", "BatchWidget", True


class TrainDock(LoadingDock):
    """napari's "Train (AdaLoRA-QAT)"."""

    MODULE, ATTR, FOLDER = "napari_adaqat.widgets.train", "TrainWidget", True
