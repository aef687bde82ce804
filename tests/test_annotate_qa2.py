"""A second clinician's walk through the Annotate dock's dataset folder: one dock per dataset (a second one, in
another window or process, is refused in one line and writes nothing; a killed one does not block), earlier
masks that cannot be used stop counting as accepted after a background check and stay so across a restart
(also those of a dataset made before annotate.json kept the `written` record), and hotkeys for Open folder
and Correct with clicks that clash with nothing."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from skimage.io import imsave

from napari_adaqat.data.annotation import AnnotationFolder
from napari_adaqat.inference.lock import FolderBusy, RunLock
from napari_adaqat.io.images import film_shape
from test_annotation_other_files import forbid_reads  # tests/ is on sys.path


def lungs(shape) -> np.ndarray:
    h, w = shape
    mask = np.zeros(shape, bool)
    mask[h // 5:4 * h // 5, w // 10:2 * w // 5] = mask[h // 5:4 * h // 5, 3 * w // 5:9 * w // 10] = True
    return mask


def hold(dataset: Path) -> RunLock:
    return RunLock(dataset, what="Annotate dock")


def earlier_masks(films: Path, dataset: Path, legacy: bool) -> AnnotationFolder:
    """Film 1 accepted here, then film 2's mask of another size, film 3's unreadable, film 4's empty (another
    tool's); ``legacy``: annotate.json as a release before the `written` record wrote it."""
    folder = AnnotationFolder(films, dataset)
    shapes = [film_shape(f.path) for f in folder.films]
    folder.accept(0, lungs(shapes[0]))
    imsave(folder.mask_path(1), lungs((100, 120)).astype(np.uint8) * 255, check_contrast=False)
    folder.mask_path(2).write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG any more")
    imsave(folder.mask_path(3), np.zeros(shapes[3], np.uint8), check_contrast=False)
    if legacy:
        state = json.loads(folder.state_path.read_text())
        del state["written"]
        folder.state_path.write_text(json.dumps(state))
    return folder


@pytest.mark.parametrize("legacy", [True, False])
def test_unusable_earlier_masks_are_found_kept_and_known_after_a_restart(films, tmp_path, monkeypatch, legacy):
    dataset = tmp_path / "dataset"
    earlier_masks(films, dataset, legacy)
    folder = AnnotationFolder(films, dataset)
    assert folder.progress_line() == "4 of 4 accepted, 0 skipped"  # opening reads no mask: presence counts
    found, following = folder.check_masks(0, budget_s=0.0)  # one film at least per call
    assert following == 1 and len(found) == 1
    found += folder.check_masks(following)[0]
    assert folder.take_checks(found) == [1, 2, 3]
    assert folder.progress_line() == "1 of 4 accepted, 0 skipped" and folder.resume_index() == 1
    assert [folder.describe(i) for i in range(4)] == ["accepted"] + ["to do, earlier mask not usable"] * 3
    state = json.loads(folder.state_path.read_text())
    assert sorted(state["written"]) == [f"masks/{folder.films[0].name}.png"] and state["legacy"] == []
    assert "its size is 120×100" in state["checked"][folder.mask_path(1).name][2]

    def no_read(*_args, **_kwargs):
        raise AssertionError("read on open")

    forbid_reads(monkeypatch, no_read)
    again = AnnotationFolder(films, dataset)  # a restart knows it all without reading a mask
    assert again.progress_line() == "1 of 4 accepted, 0 skipped" and again.resume_index() == 1
    assert "its size is 120×100" in again.mask_note(1) and "it is empty" in again.mask_note(3)
    assert "not usable" in again.describe(2) and again.mask_note(2)
    monkeypatch.undo()
    again.accept(0, lungs(film_shape(again.films[0].path)) & ~np.eye(*film_shape(again.films[0].path), dtype=bool))
    assert again.set_aside == []  # film 1's mask is the dock's own (adopted once checked): replaced, not kept aside
    again.accept(1, lungs(film_shape(again.films[1].path)))  # the unusable one is kept aside
    assert (dataset / "replaced" / "masks" / again.mask_path(1).name).is_file()
    assert again.progress_line() == "2 of 4 accepted, 0 skipped"


@pytest.mark.parametrize("text", ["[]", '{"checked": [1, 2], "legacy": "ab", "written": {}}',
                                  '{"checked": {"a.png": [1, "x", ""]}, "legacy": [3]}'])
def test_an_odd_annotate_json_opens_as_if_it_were_not_there(films, tmp_path, text):
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "annotate.json").write_text(text)
    folder = AnnotationFolder(films, dataset)
    assert folder.progress_line() == "0 of 4 accepted, 0 skipped" and folder.check_masks() == ([], 4)


def test_a_second_holder_of_the_dataset_is_refused_and_writes_nothing(films, tmp_path):
    dataset = tmp_path / "dataset"
    earlier_masks(films, dataset, legacy=True)  # opening it would write annotate.json (the masks to adopt)
    first = AnnotationFolder(films, dataset, hold=hold)
    state = first.state_path.read_bytes()
    first.state_path.write_bytes(b'{"skipped": ["x"]}')
    with pytest.raises(FolderBusy):
        AnnotationFolder(films, dataset, hold=hold)
    assert first.state_path.read_bytes() == b'{"skipped": ["x"]}'
    first.state_path.write_bytes(state)
    first.release()
    first.release()
    second = AnnotationFolder(films, dataset, hold=hold)
    assert second.lock is not None and second.lock.took_over is None
    second.release()


def test_another_process_holds_the_dataset_until_it_dies(films, tmp_path):
    from napari_adaqat.widgets._annotate_lock import busy_line, took_over

    dataset = tmp_path / "dataset"
    AnnotationFolder(films, dataset)
    code = ("import sys, time; from napari_adaqat.inference.lock import RunLock; "
            "lock = RunLock(sys.argv[1], what='Annotate dock'); print('held', flush=True); time.sleep(120)")
    other = subprocess.Popen([sys.executable, "-c", code, str(dataset)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy) as refused:
            AnnotationFolder(films, dataset, hold=hold)
        line = busy_line(dataset, refused.value)
        assert "\n" not in line and f"open in another Annotate dock (process {other.pid} on" in line
        assert "close that dock" in line
    finally:
        other.kill()  # killed: its lock file stays, the kernel drops its lock
        other.wait(30)
    start = time.monotonic()
    folder = AnnotationFolder(films, dataset, hold=hold)
    assert time.monotonic() - start < 2 and f"process {other.pid}" in took_over(folder.lock)
    folder.release()


# ---------------------------------------------------------------------------------------------- in napari
napari = pytest.importorskip("napari")

from qtpy.QtCore import Qt  # noqa: E402

from napari_adaqat.model import loading  # noqa: E402
# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat.widgets.annotate import AnnotateWidget  # noqa: E402

PLUGIN, WIDGET = "napari-adaqat", "Annotate folder (AdaLoRA-QAT)"
WAIT_MS = 120_000


def open_dock(viewer, qtbot, films: Path, dataset: Path, opened: bool = True):
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, AnnotateWidget)
    widget.images.value, widget.dataset.value = str(films), str(dataset)
    assert widget.open_folder() is opened, widget.status.value
    settle(qtbot, widget)
    return dock_widget, widget


def settle(qtbot, widget: AnnotateWidget) -> None:
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=WAIT_MS)
    qtbot.wait(20)


@pytest.mark.gui
@pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")
def test_a_second_dock_on_the_dataset_is_refused_until_the_first_closes(make_napari_viewer, qtbot, films, tmp_path):
    dataset = tmp_path / "dataset"
    first_viewer, second_viewer = make_napari_viewer(), make_napari_viewer()
    first_dock, first = open_dock(first_viewer, qtbot, films, dataset)
    first.skip()
    settle(qtbot, first)
    state = (dataset / "annotate.json").read_bytes()
    assert first.open_folder()  # its own dataset again: not refused by itself
    settle(qtbot, first)

    _, second = open_dock(second_viewer, qtbot, films, dataset, opened=False)
    assert "open in another Annotate dock" in second.last_error and "\n" not in second.status.value
    assert second.folder is None and second.table.rowCount() == 0 and not second.accept_button.enabled
    assert (dataset / "annotate.json").read_bytes() == state

    first_viewer.window.remove_dock_widget(first_dock)  # closed: the dataset is free
    assert second.open_folder(), second.status.value
    settle(qtbot, second)
    assert second.progress.value == "0 of 4 accepted, 1 skipped" and second.index == 1


@pytest.mark.gui
@pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")
def test_the_dock_checks_earlier_masks_after_opening(make_napari_viewer, qtbot, films, tmp_path):
    dataset = tmp_path / "dataset"
    earlier_masks(films, dataset, legacy=True)
    viewer = make_napari_viewer()
    _, widget = open_dock(viewer, qtbot, films, dataset)
    qtbot.waitUntil(lambda: widget.checked, timeout=WAIT_MS)
    assert widget.progress.value == "1 of 4 accepted, 0 skipped"
    assert [r["state"] for r in widget.table.rows()] == ["accepted"] + ["to do, earlier mask not usable"] * 3
    assert "3 earlier masks are not usable (films 2, 3, 4)" in widget.status.value
    assert widget.index == 0  # opened for review (all counted by presence then); Accept goes on to film 2
    assert widget.accept()
    settle(qtbot, widget)
    assert widget.index == 1 and "is not shown: its size is 120×100" in widget.status.value


@pytest.mark.gui
@pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")
def test_the_dock_adds_the_films_of_another_tools_usable_masks(make_napari_viewer, qtbot, films, tmp_path):
    dataset = tmp_path / "dataset"
    probe = AnnotationFolder(films, dataset)
    (dataset / "masks").mkdir(parents=True)
    for film in probe.films[1:3]:  # another tool's masks of films 2 and 3, no film in images/
        imsave(probe.mask_path(probe.films.index(film)), lungs(film_shape(film.path)).astype(np.uint8) * 255,
               check_contrast=False)
    probe.release()
    viewer = make_napari_viewer()
    _, widget = open_dock(viewer, qtbot, films, dataset)
    assert "2 accepted mask(s) have no film in" in widget.status.value
    qtbot.waitUntil(lambda: "film(s) of accepted masks added" in widget.status.value, timeout=WAIT_MS)
    assert f"2 film(s) of accepted masks added to {dataset / 'images'}, so training uses them" in widget.status.value
    assert widget.folder.without_film() == [] and len(list((dataset / "images").iterdir())) == 2


def napari_keys(viewer) -> set[str]:
    """Every key napari binds by default: menus and commands, viewer and layer keymaps."""
    from napari._app_model import get_app_model
    from napari.layers import Image, Labels, Points, Shapes, Surface, Tracks, Vectors
    from napari.utils.shortcuts import default_shortcuts
    from qtpy.QtGui import QKeySequence
    from qtpy.QtWidgets import QAction

    keys = {str(k.keybinding) for k in get_app_model().keybindings}
    keys |= {str(k) for ks in default_shortcuts.values() for k in ks}
    keys |= {str(k) for layer in (Image, Labels, Points, Shapes, Surface, Tracks, Vectors) for k in layer.class_keymap}
    keys |= {str(k) for k in viewer.keymap}
    actions = viewer.window._qt_window.findChildren(QAction)
    keys |= {a.shortcut().toString() for a in actions if not a.shortcut().isEmpty()}
    return {QKeySequence(k).toString() for k in keys}


@pytest.mark.gui
@pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")
def test_open_folder_and_clicks_hotkeys(make_napari_viewer, qtbot, films, tmp_path):
    from app_model.types import KeyBinding
    from qtpy.QtGui import QKeySequence

    from napari_adaqat.widgets import _clicks
    from napari_adaqat.widgets._annotate_ui import CLICKS_KEY, OPEN_KEY

    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert widget.open_button.text.startswith(f"Open folder [{OPEN_KEY}]")
    assert widget.clicks_button.text == f"Correct with clicks… [{CLICKS_KEY}]"
    segment_keys = {QKeySequence(str(KeyBinding.from_int(k))).toString()  # UNDO_KEY, RESET_KEY, …
                    for name, k in vars(_clicks).items() if name.endswith("_KEY")}
    assert {"Ctrl+Z", "R", "N"} <= segment_keys
    taken = napari_keys(viewer) | segment_keys | {"Return", "Enter", "PgUp", "PgDown"}
    assert {"Ctrl+O", "Ctrl+Alt+O", "Ctrl+Z", "R", "Ctrl+Shift+Z"} <= taken  # (the list is the real one)
    for key in (OPEN_KEY, CLICKS_KEY):
        assert QKeySequence(key).toString() not in taken

    window = viewer.window._qt_window
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    widget.images.value = str(films)
    field = widget.dataset.line_edit.native  # typed the dataset folder, then the key, still in the field
    field.setFocus()
    qtbot.keyClicks(field, str(tmp_path / "dataset"))
    qtbot.keyClick(field, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    settle(qtbot, widget)
    assert widget.folder is not None and widget.index == 0, widget.status.value
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier)
    settle(qtbot, widget)
    assert "Click in 'points'" in widget.status.value and "points" in viewer.layers
    assert viewer.layers.selection.active is viewer.layers["points"]


@pytest.mark.gui
@pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")
def test_a_corrupt_film_is_said_once_without_its_path_and_its_row_leaves_room_for_names(make_napari_viewer, qtbot,
                                                                                      films, tmp_path):
    broken = films / "a_broken.png"  # the first film
    broken.write_bytes(sorted(films.glob("*.png"))[1].read_bytes()[:300])
    viewer = make_napari_viewer()
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    assert widget.index == 1 and f"Cannot open {broken.name}: truncated or corrupt PNG" in widget.status.value
    assert str(broken) not in widget.status.value  # the name says which film; the full path only made it long
    row = widget.table.rows()[0]["state"]
    assert row.startswith("error: truncated or corrupt PNG data") and len(row) > 40  # whole in rows() / tooltip
    shown = widget.table.item(0, 2).text()
    assert len(shown) <= 34 and shown.endswith("…") and widget.table.item(0, 2).toolTip() == row
