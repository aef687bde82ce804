"""The folder docks (Annotate, Train, Batch) share one tabbed area beside the Segment dock (real napari viewer
under Xvfb, the docks opened as the Plugins menu opens them): stacked, the four needed a 1891-px window and three
1250 px, so a 1080-px screen cut their buttons off."""
from __future__ import annotations

import pytest

pytest.importorskip("napari")

from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_adaqat.widgets._shared import ANNOTATE_DOCK, BATCH_DOCK, PLUGIN, SEGMENT_DOCK, TRAIN_DOCK  # noqa: E402

pytestmark = pytest.mark.gui


def _open(viewer, qtbot, title):
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, title)
    qtbot.wait(20)  # (the dock joins the tabs once napari has docked it)
    QApplication.processEvents()
    return dock, widget


def test_segment_and_the_three_folder_docks_fit_a_1080_px_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1600, 900)
    segment, _ = _open(viewer, qtbot, SEGMENT_DOCK)
    annotate, _ = _open(viewer, qtbot, ANNOTATE_DOCK)
    assert window.tabifiedDockWidgets(annotate) == []  # the first folder dock stands under Segment
    train, train_widget = _open(viewer, qtbot, TRAIN_DOCK)
    batch, batch_widget = _open(viewer, qtbot, BATCH_DOCK)
    assert set(window.tabifiedDockWidgets(batch)) == {annotate, train}
    assert window.tabifiedDockWidgets(segment) == []  # Segment stays beside them, never a hidden tab
    assert segment.isVisible() and not segment.visibleRegion().isEmpty()
    assert window.height() <= 1000, window.height()  # (the title bar and taskbar of a 1080-px screen)
    run = batch_widget.run_button.native  # the dock opened last is the tab shown, its button on screen
    assert not batch.visibleRegion().isEmpty() and annotate.visibleRegion().isEmpty()
    assert run.isVisible() and run.mapTo(window, run.rect().bottomLeft()).y() <= window.height()
    train.raise_()  # a click on its tab
    qtbot.wait(20)
    start = train_widget.start_button.native
    assert start.isVisible() and start.mapTo(window, start.rect().bottomLeft()).y() <= window.height()


def test_a_floating_dock_is_left_where_the_user_put_it(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    annotate, _ = _open(viewer, qtbot, ANNOTATE_DOCK)
    annotate.setFloating(True)
    train, _ = _open(viewer, qtbot, TRAIN_DOCK)
    assert annotate.isFloating() and window.tabifiedDockWidgets(train) == []


def test_the_map_legends_do_not_push_the_window_past_the_screen(make_napari_viewer, qtbot):
    """A QA find: the SSIM and ΔSSIM legends that come with the first maps grew the window's minimum height from 1010
    to 1212 px with the Annotate dock open ("Correct with clicks"), past a 1080-px screen.  They now scroll where the
    dock is short, and show whole where it has room."""
    from types import SimpleNamespace

    import numpy as np

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1600, 900)
    _, segment = _open(viewer, qtbot, SEGMENT_DOCK)
    _open(viewer, qtbot, ANNOTATE_DOCK)
    qtbot.waitUntil(lambda: getattr(segment, "inner", segment) is not None, timeout=60_000)
    segment = getattr(segment, "inner", segment)
    QApplication.processEvents()
    before = window.minimumSizeHint().height()
    maps = np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(64, 64)
    segment.legends.show_for(SimpleNamespace(ssim=maps, delta=maps - 0.5, has_reference=False))
    qtbot.wait(50)
    assert segment.legends.ssim.isVisibleTo(segment.native) and segment.legends.delta.isVisibleTo(segment.native)
    assert window.minimumSizeHint().height() <= before + 10, (before, window.minimumSizeHint().height())
    window.resize(1600, 1900)  # a tall screen: the legends are shown whole, not in a sliver
    qtbot.wait(100)
    area = segment.legends.parentWidget().parentWidget()  # (the scroll area's viewport, then the area)
    assert area.height() >= segment.legends.sizeHint().height() - 2


def test_the_annotate_keys_do_nothing_while_its_tab_is_behind_another(make_napari_viewer, qtbot, films, tmp_path):
    """A QA find: with the Train tab in front, Enter on the canvas accepted the Annotate dock's film (its model mask,
    never reviewed, saved into the dataset) and PgDown skipped one. Its keys act only while its tab is shown."""
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    annotate, widget = _open(viewer, qtbot, ANNOTATE_DOCK)
    widget.images.value, widget.dataset.value = str(films), str(tmp_path / "dataset")
    widget.open_button.native.click()
    qtbot.waitUntil(lambda: widget.status.value.startswith("Film 1 of") and not widget.jobs.busy, timeout=120_000)
    train, _ = _open(viewer, qtbot, TRAIN_DOCK)
    assert set(window.tabifiedDockWidgets(train)) == {annotate}
    train.raise_()  # a click on its tab
    qtbot.wait(50)
    assert annotate.visibleRegion().isEmpty()
    canvas = viewer.window._qt_viewer.canvas.native
    window.activateWindow()
    canvas.setFocus()
    for key in (Qt.Key.Key_Return, Qt.Key.Key_PageDown):
        QTest.keyClick(canvas, key)
        qtbot.wait(100)
    assert widget.index == 0 and not (tmp_path / "dataset" / "masks").exists(), widget.status.value
    assert viewer.status == "PgDown is the Annotate dock's key: show its tab first (nothing was done)."
    annotate.raise_()  # its tab in front again: Enter accepts
    qtbot.wait(50)
    canvas.setFocus()
    QTest.keyClick(canvas, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: widget.index == 1 and not widget.jobs.busy, timeout=120_000)
    assert len(list((tmp_path / "dataset" / "masks").iterdir())) == 1, widget.status.value
