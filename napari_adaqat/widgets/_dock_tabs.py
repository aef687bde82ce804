"""The folder docks (Annotate, Batch, Train) share one tabbed area beside the Segment dock. Qt only: the
"Loading…" docks (_loading_dock.py) place themselves before their code is in."""
from __future__ import annotations

from typing import Any

# the docks that work on a folder (those that call tab_with_folder_docks) share one tabbed area, so that with the
# Segment dock beside them the window fits a 1080-px screen (stacked, Segment + Annotate + Train need about
# 1250 px; with Batch, 1890); their QDockWidgets carry this Qt property
FOLDER_DOCK_PROPERTY = "adaqat_folder_dock"


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
    if dock.property(FOLDER_DOCK_PROPERTY):  # placed once already (a "Loading…" dock, then its widget)
        return
    dock.setProperty(FOLDER_DOCK_PROPERTY, True)
    area = window.dockWidgetArea(dock)
    others = [d for d in window.findChildren(QDockWidget) if d is not dock and not d.isFloating()
              and d.isVisible() and window.dockWidgetArea(d) == area and d.property(FOLDER_DOCK_PROPERTY)]
    if others:
        window.tabifyDockWidget(others[-1], dock)
        dock.show()
        dock.raise_()
