"""The first opening of a dock from napari's Plugins menu shows a "Loading…" dock at once and builds the widget when
its code (torch, scipy) is imported in a thread (widgets/_loading_dock.py); real viewer under Xvfb. The docks'
code is already imported in this process, so the shell is forced by saying it is not."""
from __future__ import annotations

import pytest

pytest.importorskip("napari")

from qtpy.QtWidgets import QApplication  # noqa: E402

from napari_adaqat.widgets import _loading_dock as LD  # noqa: E402
from napari_adaqat.widgets._annotate_ui import on_removed  # noqa: E402
from napari_adaqat.widgets._shared import ANNOTATE_DOCK, BATCH_DOCK, PLUGIN, SEGMENT_DOCK, TRAIN_DOCK, show_dock  # noqa: E402
from napari_adaqat.widgets.segment import SegmentWidget  # noqa: E402
from napari_adaqat.widgets.train import TrainWidget  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def first_opening(monkeypatch):
    """Every dock opens as on a fresh napari: its code "not imported yet"."""
    monkeypatch.setattr(LD, "_imported", lambda module: False)


def test_the_plugin_menu_dock_shows_at_once_then_holds_the_widget(make_napari_viewer, qtbot, first_opening,
                                                                    screenshot_dir):
    viewer = make_napari_viewer(show=True)
    dock, shell = viewer.window.add_plugin_dock_widget(PLUGIN, SEGMENT_DOCK)
    assert isinstance(shell, LD.SegmentDock)
    assert "Loading the model code" in shell.status.value
    qtbot.waitUntil(lambda: shell.inner is not None, timeout=20_000)
    assert isinstance(shell.inner, SegmentWidget) and shell.error is None
    assert shell.inner.viewer is getattr(viewer, "__wrapped__", viewer)
    assert not shell.status.visible
    assert dock.isAncestorOf(shell.inner.native)  # inside napari's dock, not a window of its own
    assert show_dock(viewer, PLUGIN, SEGMENT_DOCK) is shell.inner  # what the other docks hand models to
    qtbot.waitUntil(shell.inner.native.isVisible, timeout=2_000)  # (Qt shows a new child on its next turn)
    viewer.screenshot(str(screenshot_dir / "loading_dock_built.png"), canvas_only=False)


def test_a_dock_still_loading_is_built_when_another_dock_needs_it(make_napari_viewer, qtbot, first_opening):
    viewer = make_napari_viewer()
    shell = LD.TrainDock(viewer)
    train = shell.built()  # waits for the import, builds now
    assert isinstance(train, TrainWidget)
    qtbot.wait(50)
    QApplication.processEvents()  # the thread's own "imported" signal arrives later: nothing is built twice
    assert shell.inner is train and len(shell) == 2  # the status line and the widget


def test_closing_the_dock_lets_go_of_the_widget(make_napari_viewer, qtbot, first_opening):
    viewer = make_napari_viewer(show=True)
    dock, shell = viewer.window.add_plugin_dock_widget(PLUGIN, ANNOTATE_DOCK)
    qtbot.waitUntil(lambda: shell.inner is not None, timeout=20_000)
    removed = []
    on_removed(shell.inner.native, lambda: removed.append(True))  # how the docks let go of folders and runs
    viewer.window.remove_dock_widget(dock)
    QApplication.processEvents()
    assert removed == [True]


def test_folder_docks_opened_for_the_first_time_still_share_one_tabbed_area(make_napari_viewer, qtbot,
                                                                             first_opening):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    annotate, first = viewer.window.add_plugin_dock_widget(PLUGIN, ANNOTATE_DOCK)
    train, second = viewer.window.add_plugin_dock_widget(PLUGIN, TRAIN_DOCK)
    qtbot.waitUntil(lambda: first.inner is not None and second.inner is not None, timeout=20_000)
    qtbot.wait(20)
    assert window.tabifiedDockWidgets(train) == [annotate]


@pytest.fixture
def held_import(monkeypatch):
    """The dock's code "loads" until the test lets it go (a real first import takes seconds)."""
    import threading

    release = threading.Event()
    real = LD._load

    def slow(name):
        release.wait(20)
        real(name)

    monkeypatch.setattr(LD, "_load", slow)
    yield release
    release.set()


def test_a_dock_closed_while_loading_never_builds_its_widget(make_napari_viewer, qtbot, first_opening, held_import,
                                                             films):
    """(A review find: the widget was built unseen after the ×, added 'boxes' and 'points', embedded the film, and
    a reopened dock then ran every box twice.)"""
    from skimage.io import imread

    viewer = make_napari_viewer(show=True)
    viewer.add_image(imread(sorted(films.glob("*.png"))[0]), name="film")
    dock, shell = viewer.window.add_plugin_dock_widget(PLUGIN, SEGMENT_DOCK)
    qtbot.wait(20)
    viewer.window.remove_dock_widget(dock)
    held_import.set()
    qtbot.wait(300)
    assert shell.inner is None and shell.closed
    assert [layer.name for layer in viewer.layers] == ["film"]
    with pytest.raises(RuntimeError, match="closed before its code had loaded"):
        shell.built()


def test_closing_napari_while_a_dock_loads_is_quiet(make_napari_viewer, qtbot, first_opening, held_import):
    viewer = make_napari_viewer(show=True)
    _dock, shell = viewer.window.add_plugin_dock_widget(PLUGIN, TRAIN_DOCK)
    viewer.close()
    held_import.set()
    qtbot.wait(300)  # (the import's signal arrives after the window is gone: no error in a Qt slot)
    assert shell.inner is None


def test_the_built_widget_gets_the_height_napari_would_give_it(make_napari_viewer, qtbot, first_opening,
                                                               monkeypatch):
    """The Batch dock's results table takes the dock's height (a review find: 192 px under the shell against 263 px
    opened directly as napari's first dock)."""
    from qtpy.QtWidgets import QSpacerItem

    heights = {}
    for way in ("shell", "direct"):
        viewer = make_napari_viewer(show=True)
        viewer.window._qt_window.resize(1200, 900)
        if way == "direct":
            monkeypatch.setattr(LD, "_imported", lambda module: True)
        _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, BATCH_DOCK)
        batch = widget if way == "direct" else (qtbot.waitUntil(lambda: widget.inner is not None, timeout=20_000)
                                               or widget.inner)
        qtbot.wait(50)
        heights[way] = batch.table.height()
        if way == "shell":
            layout = widget.native.layout()
            assert not any(isinstance(layout.itemAt(i), QSpacerItem) for i in range(layout.count()))
    assert heights["shell"] >= heights["direct"] - 2, heights


def test_a_dock_whose_code_does_not_import_says_why(make_napari_viewer, qtbot):
    class Broken(LD.LoadingDock):
        MODULE, ATTR = "napari_adaqat.widgets._no_such_dock", "Widget"

    shell = Broken(make_napari_viewer())
    qtbot.waitUntil(lambda: shell.error is not None, timeout=20_000)
    assert shell.status.value == shell.error
    assert shell.error.startswith("Could not load this dock's code: ModuleNotFoundError:")
    assert "_no_such_dock" in shell.error and "\n" not in shell.error
    with pytest.raises(RuntimeError, match="Could not load"):
        shell.built()


def test_once_the_code_is_in_the_plugin_menu_gets_the_widget_itself(make_napari_viewer):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, SEGMENT_DOCK)
    assert type(widget) is SegmentWidget


def test_a_fresh_napari_opens_a_dock_whose_code_loads_in_a_thread():
    """The real first opening: a new Python (torch not imported), the Segment dock from the Plugins menu; the dock is
    there before its code is in, and the widget is built from the thread's import (benchmarks/dock_open_stall.py's
    run, which also says how long the GUI thread stalled)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "dock_open_stall.py"
    done = subprocess.run([sys.executable, str(script), "--dock", "segment", "--one", "shell"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])
    assert run["way"] == "shell" and run["dock_shown_s"] < run["widget_built_s"], run
