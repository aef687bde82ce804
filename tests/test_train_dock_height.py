"""The Train dock fits beside the Annotate dock on a laptop screen (real napari viewer under Xvfb): a QA walk found
its form 705 px tall at least, so that with the Annotate (505 px) and Segment (422 px) docks napari's window grew to
1715 px, its Start button below a 1080-px screen. Its tabs scroll instead."""
from __future__ import annotations

import pytest

pytest.importorskip("napari")

from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_adaqat.widgets.train import TrainWidget  # noqa: E402

pytestmark = pytest.mark.gui


def test_the_train_dock_fits_under_the_annotate_dock_on_a_1080_px_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1600, 900)
    viewer.window.add_plugin_dock_widget("napari-adaqat", "Annotate folder (AdaLoRA-QAT)")
    _dock, train = viewer.window.add_plugin_dock_widget("napari-adaqat", "Train (AdaLoRA-QAT)")
    assert isinstance(train, TrainWidget)
    qtbot.wait(50)
    QApplication.processEvents()
    assert train.native.minimumSizeHint().height() <= 420, train.native.minimumSizeHint()
    assert window.height() <= 1000, window.height()  # (the title bar and taskbar of a 1080-px screen)
    start = train.start_button.native
    assert start.isVisible() and start.mapTo(window, start.rect().bottomLeft()).y() <= window.height()
    train.tabs.setCurrentIndex(0)  # the whole form is still there, in a scroll area
    assert train.epochs.native.isVisibleTo(train.tabs.currentWidget())
