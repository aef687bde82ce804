"""The Annotate dock remembers its folders for the next session (a QA walk's find: closing and reopening the dock
forgot both folders, so resuming meant typing them again).  Real napari viewer under Xvfb."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("napari")

from napari_adaqat.util.recent import recall, remember  # noqa: E402
from test_annotate_walkthrough import PLUGIN, WIDGET, open_dock, settle  # noqa: E402  (tests/ is on sys.path)

pytestmark = pytest.mark.gui


def test_a_dock_opened_again_shows_the_folders_of_last_time(make_napari_viewer, qtbot, films, tmp_path, user_config):
    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    dock_widget, widget = open_dock(viewer, qtbot, films, dataset)
    assert widget.accept(), widget.status.value
    settle(qtbot, widget)
    viewer.window.remove_dock_widget(dock_widget)
    assert json.loads((user_config / "recent.json").read_text())["annotate"] == {
        "images": str(films.resolve()), "dataset": str(dataset.resolve())}

    _dock, again = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)  # (a new napari session: the same)
    assert (again.images.line_edit.value, again.dataset.line_edit.value) == (str(films.resolve()),
                                                                            str(dataset.resolve()))
    assert again.status.value == "The folders of last time: Open folder [Ctrl+Shift+F] resumes there."
    assert again.folder is None  # shown, not opened: nothing is read or locked until the user asks
    assert again.open_folder()
    settle(qtbot, again)
    assert again.index == 1  # where the first dock left


def test_recent_folders_that_are_gone_or_unreadable_are_not_offered(tmp_path, user_config):
    remember("annotate", images=str(tmp_path), dataset=str(tmp_path / "gone"))
    assert recall("annotate") == {"images": str(tmp_path)}
    (user_config / "recent.json").write_text("{not json")
    assert recall("annotate") == {}
    remember("annotate", images=str(tmp_path), dataset=str(tmp_path))  # a damaged file is replaced, not raised
    assert recall("annotate") == {"images": str(tmp_path), "dataset": str(tmp_path)}
