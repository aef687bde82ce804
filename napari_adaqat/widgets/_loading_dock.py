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
from qtpy.QtCore import QEvent, QObject, Signal
from qtpy.QtWidgets import QWidget

from napari_adaqat.util.errors import first_line

_ONE_IMPORT_AT_A_TIME = threading.Lock()  # docks opened together import one after the other (their code overlaps)


class _Imported(QObject):
    """Carries the end of a background import to the GUI thread (a queued signal: emitted from the import thread)."""

    done = Signal(object)  # the import's exception, or None


class _ParentLost(QObject):
    """Takes the built widget out with its shell: napari's × removes the shell from the window (without deleting
    it), and the widgets watch their own parent to let go of their folder, run or model (``on_removed``)."""

    def __init__(self, shell: QWidget, inner: QWidget) -> None:
        super().__init__(shell)
        self._inner = inner
        shell.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ParentChange and isinstance(obj, QWidget) and obj.parentWidget() is None:
            try:
                self._inner.setParent(None)
            except RuntimeError:  # already deleted with napari's window
                pass
        return False


class LoadingDock(Container):
    """A dock whose widget (``MODULE:ATTR``, built as ``ATTR(viewer)``) is built once its module is imported.

    ``LoadingDock(viewer)`` returns the widget itself when its module is already imported (Python calls no
    ``__init__`` on an object of another class), so every dock after the first is the widget, as before."""

    MODULE = ""
    ATTR = ""

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
        self.status = Label(value="Loading the model code (the first time: a few seconds)…")
        self.status.native.setWordWrap(True)
        self.append(self.status)
        self._finished = threading.Event()
        self._import_error: Optional[BaseException] = None
        self._signal = _Imported()
        self._signal.done.connect(self._on_imported)
        threading.Thread(target=self._import, name=f"import {self.MODULE}", daemon=True).start()

    def _import(self) -> None:
        try:
            with _ONE_IMPORT_AT_A_TIME:
                importlib.import_module(self.MODULE)
        except BaseException as exc:  # noqa: BLE001 - shown in the dock, not lost in a thread
            self._import_error = exc
        self._finished.set()
        try:
            self._signal.done.emit(self._import_error)
        except RuntimeError:  # the dock was deleted while its code loaded
            pass

    def _on_imported(self, error: Optional[BaseException]) -> None:
        if self.inner is None and self.error is None:
            self._build(error)

    def _build(self, error: Optional[BaseException]) -> None:
        if error is not None:
            self.error = first_line(f"Could not load this dock's code: {type(error).__name__}: {error}")
            self.status.value = self.error
            return
        try:
            self.inner = getattr(sys.modules[self.MODULE], self.ATTR)(self._viewer)
        except Exception as exc:  # noqa: BLE001 - said in the dock, as a failed import is
            self.error = first_line(f"Could not open this dock: {type(exc).__name__}: {exc}")
            self.status.value = self.error
            return
        self.status.visible = False
        self.append(self.inner)
        _ParentLost(self.native, self.inner.native)

    def built(self) -> Any:
        """The dock's widget, built now when its code is still loading (waits for the import): for the docks
        that hand a model or a folder to this one."""
        if self.inner is None and self.error is None:
            self._finished.wait()
            self._build(self._import_error)
        if self.inner is None:
            raise RuntimeError(self.error)
        return self.inner


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

    MODULE, ATTR = "napari_adaqat.widgets.annotate", "AnnotateWidget"


class BatchDock(LoadingDock):
    """napari's "Batch segment (AdaLoRA-QAT)"."""

    MODULE, ATTR = "napari_adaqat.widgets.batch", "BatchWidget"


class TrainDock(LoadingDock):
    """napari's "Train (AdaLoRA-QAT)"."""

    MODULE, ATTR = "napari_adaqat.widgets.train", "TrainWidget"
