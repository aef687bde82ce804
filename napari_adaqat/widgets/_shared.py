"""State the docks of one napari session share (micro-sam's ``AnnotatorState`` is the anchor): one
:class:`~napari_adaqat.inference.engine.Engine`, so a model file opened by the Segment, Batch and
Annotate docks is loaded once, and the model files a training run produced, offered to every dock."""
from __future__ import annotations

from typing import Any, Optional

from napari_adaqat.inference.engine import Engine
from napari_adaqat.widgets._dock_tabs import FOLDER_DOCK_PROPERTY, join_folder_tabs, tab_with_folder_docks  # noqa: F401
from napari_adaqat.widgets._loading_dock import dock_content

# the plugin and dock names of napari.yaml, for docks that open or hand models to each other
PLUGIN, SEGMENT_DOCK, ANNOTATE_DOCK = "napari-adaqat", "Segment lungs (AdaLoRA-QAT)", "Annotate folder (AdaLoRA-QAT)"
BATCH_DOCK, TRAIN_DOCK = "Batch segment (AdaLoRA-QAT)", "Train (AdaLoRA-QAT)"
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
