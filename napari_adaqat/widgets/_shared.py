"""State the docks of one napari session share (micro-sam's ``AnnotatorState`` is the anchor): one
:class:`~napari_adaqat.inference.engine.Engine`, so a model file opened by the Segment, Batch and
Annotate docks is loaded once, and the model files a training run produced, offered to every dock."""
from __future__ import annotations

from typing import Any, Optional

from napari_adaqat.inference.engine import Engine
from napari_adaqat.widgets._loading_dock import dock_content

# the plugin and dock names of napari.yaml, for docks that open or hand models to each other
PLUGIN, SEGMENT_DOCK, ANNOTATE_DOCK = "napari-adaqat", "Segment lungs (AdaLoRA-QAT)", "Annotate folder (AdaLoRA-QAT)"
BATCH_DOCK, TRAIN_DOCK = "Batch segment (AdaLoRA-QAT)", "Train (AdaLoRA-QAT)"
# the docks that work on a folder (those that call tab_with_folder_docks) share one tabbed area, so that with the
# Segment dock beside them the window fits a 1080-px screen (stacked, Segment + Annotate + Train need about
# 1250 px; with Batch, 1890); their QDockWidgets carry this Qt property
FOLDER_DOCK_PROPERTY = "adaqat_folder_dock"
_ENGINE: Optional[Engine] = None
FILE_RECHECK_S = 1.0  # a model file rewritten in place (a training run) is seen within this; prompts do not stat it


def shared_engine() -> Engine:
    """The process-wide engine every dock prompts through (created on first use).

    It keeps up to four loaded models (a model and its baseline for two docks) in LRU order, and looks
    at a model file's identity at most every :data:`FILE_RECHECK_S` seconds."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Engine(max_loaded=4, recheck_seconds=FILE_RECHECK_S)
    return _ENGINE


def show_dock(viewer: Any, plugin: str, title: str) -> Any:
    """Open (or, when open, show and raise) ``plugin``'s dock ``title`` in ``viewer``; returns its widget."""
    dock, widget = viewer.window.add_plugin_dock_widget(plugin, title)
    dock.show()
    dock.raise_()
    return dock_content(widget)


def tab_with_folder_docks(native: Any) -> None:
    """Once napari has docked ``native`` (a folder dock's Qt widget; call from its ``__init__``): see
    :func:`join_folder_tabs`."""
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, lambda: join_folder_tabs(native))


def join_folder_tabs(native: Any) -> None:
    """Mark the dock holding ``native`` as a folder dock (:data:`FOLDER_DOCK_PROPERTY`) and put it as a tab onto
    another open folder dock in the same area, and show it; nothing when it is not docked or no other is open.
    (napari stacks plugin docks one below the other when the Plugins menu opens them.)"""
    from qtpy.QtWidgets import QDockWidget, QMainWindow

    dock = native
    try:
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
    except RuntimeError:  # the widget was closed before the call
        return
    window = dock.parentWidget() if dock is not None else None
    if not isinstance(window, QMainWindow) or dock.isFloating():
        return
    dock.setProperty(FOLDER_DOCK_PROPERTY, True)
    area = window.dockWidgetArea(dock)
    others = [d for d in window.findChildren(QDockWidget) if d is not dock and not d.isFloating()
              and d.isVisible() and window.dockWidgetArea(d) == area and d.property(FOLDER_DOCK_PROPERTY)]
    if others:
        window.tabifyDockWidget(others[-1], dock)
        dock.show()
        dock.raise_()
