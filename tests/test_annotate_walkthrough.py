"""An annotator's walk through a folder in the Annotate dock (real napari viewer under Xvfb, bundled model):
a broken film next in the list, closing the dock or napari with a fresh brush stroke, Undo / Redo of a
click on the dock's film, and a box around one lung."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from app_model.types import KeyCode, KeyMod  # noqa: E402

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat.data.boxes import default_box  # noqa: E402
from napari_adaqat.io import read_mask  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets import _layers as L  # noqa: E402
from napari_adaqat.widgets.annotate import AnnotateWidget  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]
PLUGIN, WIDGET, SEGMENT = "napari-adaqat", "Annotate folder (AdaLoRA-QAT)", "Segment lungs (AdaLoRA-QAT)"
WAIT_MS = 120_000
UNDO, REDO = KeyMod.CtrlCmd | KeyCode.KeyZ, KeyMod.CtrlCmd | KeyMod.Shift | KeyCode.KeyZ


def open_dock(viewer, qtbot, films: Path, dataset: Path):
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, AnnotateWidget)
    widget.images.value, widget.dataset.value = str(films), str(dataset)
    widget.open_button.native.click()
    settle(qtbot, widget)
    return dock_widget, widget


def settle(qtbot, widget: AnnotateWidget) -> None:
    """Wait for the film and the prefetch of the next one (a late error would land in the status line)."""
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=WAIT_MS)
    qtbot.wait(20)


def accept_films(qtbot, widget: AnnotateWidget, count: int) -> None:
    """Accept [Enter] ``count`` films one after the other, each accepted and the next one settled."""
    for _ in range(count):
        assert widget.accept(), widget.status.value
        settle(qtbot, widget)


def test_a_broken_next_film_is_not_reported_over_the_film_shown(make_napari_viewer, qtbot, films, tmp_path):
    """The next film is read ahead while the user works; when it is broken, that is said when it is opened (its row
    and the line then), not as an 'Error' over the film on screen."""
    names = sorted(p.name for p in films.iterdir())
    broken = films / (names[0][:-4] + "_broken.png")  # sorts right after the first film
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a film" * 20)
    viewer = make_napari_viewer()
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    assert widget.index == 0 and widget.folder.films[1].path == broken
    assert widget.last_error is None and widget.status.value.startswith("Film 1 of 5"), widget.status.value
    assert widget.skip()  # opening it says why, and goes on to the next film
    settle(qtbot, widget)
    assert widget.index == 2 and f"Cannot open {broken.name}" in widget.status.value
    assert widget.table.rows()[1]["state"].startswith("error")


def test_closing_the_dock_keeps_a_fresh_stroke_and_a_new_dock_shows_it(make_napari_viewer, qtbot, films, tmp_path):
    """napari's close button takes the dock out without deleting it: the stroke just painted (before the draft
    timer) is kept as a draft at once, and a new dock shows it on the same film layer (no second film, its box
    on top); the closed dock no longer reacts to boxes."""
    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    dock_widget, widget = open_dock(viewer, qtbot, films, dataset)
    mask = viewer.layers["lung mask"]
    mask.paint((8, 8), 1)
    shown = np.asarray(mask.data) != 0
    viewer.window.remove_dock_widget(dock_widget)  # what the dock's "x" does
    draft = dataset / ".drafts" / sorted(p.name for p in films.iterdir())[0]
    assert draft.is_file()
    np.testing.assert_array_equal(read_mask(draft), shown)
    assert L.ANNOTATE_OWNER not in widget.layers.boxes.metadata  # the closed dock let go of 'boxes'

    _, again = open_dock(viewer, qtbot, films, dataset)
    assert again.index == 0 and "your draft" in again.status.value
    np.testing.assert_array_equal(np.asarray(viewer.layers["lung mask"].data) != 0, shown)
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image", "Labels", "Shapes"]
    assert again.layers.image is widget.layers.image
    calls = []
    widget.segment_box = lambda *a, **k: calls.append(a)  # the closed dock must not segment the new box
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    settle(qtbot, again)
    assert calls == [] and again.last_error is None


def test_closing_napari_keeps_a_fresh_stroke(make_napari_viewer, qtbot, films, tmp_path):
    """Closing napari right after a stroke (the layers go before the dock) keeps it as a draft, shown next time."""
    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    _, widget = open_dock(viewer, qtbot, films, dataset)
    mask = viewer.layers["lung mask"]
    mask.paint((8, 8), 1)
    shown = np.asarray(mask.data) != 0
    viewer.close()
    draft = dataset / ".drafts" / sorted(p.name for p in films.iterdir())[0]
    assert draft.is_file()
    np.testing.assert_array_equal(read_mask(draft), shown)

    viewer = make_napari_viewer()
    _, widget = open_dock(viewer, qtbot, films, dataset)
    assert widget.index == 0 and "your draft" in widget.status.value
    np.testing.assert_array_equal(np.asarray(viewer.layers["lung mask"].data) != 0, shown)


def test_undo_redo_of_a_click_keep_the_films_box_and_mask(make_napari_viewer, qtbot, films, tmp_path, monkeypatch):
    """Ctrl+Z after a click on the dock's film puts back its mask with its box (not an empty 'boxes'), Ctrl+Shift+Z
    the click's mask without the Annotate dock segmenting the box again, and Undo stops at the film's mask."""
    viewer = make_napari_viewer()
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    mask, boxes = viewer.layers["lung mask"], viewer.layers["boxes"]
    before, box = np.asarray(mask.data) != 0, np.array(boxes.data[0])
    segment = widget.correct_with_clicks()
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    assert "The Annotate dock's box is in 'boxes': click in 'points' [P]" in segment.status.value  # not "Draw a box"
    calls = []
    monkeypatch.setattr(widget, "segment_box", lambda *a, **k: calls.append(a))
    centre = int(np.nonzero(before.any(axis=0))[0].mean())  # between the lungs
    row = int(np.nonzero(before[:, centre:].any(axis=1))[0][0]) + 15
    points = viewer.layers["points"]
    points.feature_defaults["positive"] = False
    points.add(np.array([[row, centre + float(np.nonzero(before[row, centre:])[0].mean())]]))
    qtbot.waitUntil(lambda: segment.last_result is not None and not segment.busy, timeout=WAIT_MS)
    clicked = np.asarray(mask.data) != 0
    assert (clicked != before).any()
    key_map = viewer.window._qt_viewer._key_map_handler
    assert viewer.layers.selection.active is points

    assert key_map.press_key(UNDO)
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, before)
    assert len(boxes.data) == 1 and np.allclose(boxes.data[0], box) and len(points.data) == 0
    assert "brush edit" not in segment.status.value and "the Annotate dock's mask" in segment.status.value
    assert key_map.press_key(REDO)
    settle(qtbot, widget)
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, clicked)
    assert calls == [] and len(points.data) == 1
    assert key_map.press_key(UNDO) and key_map.press_key(UNDO)
    assert segment.status.value == "Nothing to undo."
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, before)
    assert len(boxes.data) == 1
    qtbot.waitUntil(lambda: not widget.jobs.busy and not segment.busy, timeout=WAIT_MS)


def test_a_box_around_one_lung_is_not_the_next_films_box(make_napari_viewer, qtbot, films, tmp_path):
    """A box drawn around one lung segments that lung on this film, says that the next films keep the box before,
    and the next film opens with both lungs (the default box), not one."""
    viewer = make_napari_viewer()
    dataset = tmp_path / "dataset"
    _, widget = open_dock(viewer, qtbot, films, dataset)
    mask, boxes = viewer.layers["lung mask"], viewer.layers["boxes"]
    both = np.asarray(mask.data) != 0
    rows, cols = np.nonzero(both.any(axis=1))[0], np.nonzero(both.any(axis=0))[0]
    half = both.shape[1] // 2
    boxes.add_rectangles(np.array([[rows[0] - 5.0, cols[0] - 5.0], [rows[-1] + 5.0, half - 10.0]]))
    settle(qtbot, widget)
    one = np.asarray(mask.data) != 0
    assert one[:, :half].sum() > 10 * one[:, half:].sum()  # one lung
    assert "one lung?" in widget.status.value
    assert widget.accept()
    settle(qtbot, widget)
    state = dataset / "annotate.json"
    assert widget.index == 1 and (not state.exists() or json.loads(state.read_text())["last_box"] is None)
    shape = widget.layers.image.data.shape
    expected = default_box(shape)
    np.testing.assert_allclose([boxes.data[0].min(0), boxes.data[0].max(0)], [expected[[1, 0]], expected[[3, 2]]],
                               atol=0.01)
    second = np.asarray(mask.data) != 0
    assert second[:, shape[1] // 2:].sum() > 0.3 * second.sum()  # both lungs


def test_deleting_lung_mask_keeps_the_work_and_says_how_to_get_it_back(make_napari_viewer, qtbot, films, tmp_path):
    """'lung mask' deleted by hand: the stroke is kept as a draft, and Accept says what works (opening the film
    again brings it back), not 'draw a box', which cannot show a mask without the layer."""
    viewer = make_napari_viewer()
    dataset = tmp_path / "dataset"
    _, widget = open_dock(viewer, qtbot, films, dataset)
    mask = viewer.layers["lung mask"]
    mask.paint((8, 8), 1)
    shown = np.asarray(mask.data) != 0
    viewer.layers.remove("lung mask")
    assert "kept as a draft" in widget.status.value and "double-click" in widget.status.value
    assert not widget.accept() and "double-click" in widget.status.value and "draw a box" not in widget.status.value
    h, w = shown.shape  # a box drawn now has no mask layer to go to: said, not "Segmenting…" for good (a QA find)
    viewer.layers["boxes"].add_rectangles(np.array([[0.1 * h, 0.1 * w], [0.9 * h, 0.9 * w]]))
    settle(qtbot, widget)
    assert "The box's mask is not shown" in widget.status.value and "kept as its draft" in widget.status.value, \
        widget.status.value
    widget.table.cellDoubleClicked.emit(0, 1)
    settle(qtbot, widget)
    assert "your draft" in widget.status.value
    np.testing.assert_array_equal(np.asarray(viewer.layers["lung mask"].data) != 0, shown)


def test_back_goes_past_a_film_that_cannot_be_opened(make_napari_viewer, qtbot, films, tmp_path):
    """Back [PgUp] from the film after a broken one opens the film before it (it used to try the broken film
    again, fail, and come back to the same film)."""
    names = sorted(p.name for p in films.iterdir())
    (films / (names[0][:-4] + "_broken.png")).write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a film" * 20)
    viewer = make_napari_viewer()
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    assert widget.accept()  # film 1; the broken film 2 is said and passed; film 3 opens
    settle(qtbot, widget)
    assert widget.index == 2 and "Cannot open" in widget.status.value
    assert widget.back()
    settle(qtbot, widget)
    assert widget.index == 0 and "Film 1 of 5" in widget.status.value


def test_keys_work_in_a_dock_opened_after_closing_one(make_napari_viewer, qtbot, films, tmp_path):
    """The closed dock's window-wide keys go with it: left behind, they made PgDown and Enter ambiguous in the
    window, and Qt then runs neither (the new dock's keys did nothing)."""
    from qtpy.QtCore import Qt

    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    dock_widget, widget = open_dock(viewer, qtbot, films, dataset)
    window, canvas = viewer.window._qt_window, viewer.window._qt_viewer.canvas.native
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    viewer.window.remove_dock_widget(dock_widget)
    _, widget = open_dock(viewer, qtbot, films, dataset)
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key.Key_PageDown)
    settle(qtbot, widget)
    assert widget.index == 1 and widget.progress.value == "0 of 4 accepted, 1 skipped"
    qtbot.keyClick(canvas, Qt.Key.Key_Return)
    settle(qtbot, widget)
    assert widget.index == 2 and widget.progress.value == "1 of 4 accepted, 1 skipped"


def test_strokes_painted_after_the_dock_closed_survive_a_new_dock_on_another_folder(make_napari_viewer, qtbot, films,
                                                                                    tmp_path):
    """A reviewer's find: a new dock reuses the closed dock's film layer, so 'lung mask' looked like that film's
    own mask and was overwritten by the next folder's first film, with the strokes painted meanwhile."""
    viewer = make_napari_viewer(show=True)
    dock_widget, _widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    viewer.window.remove_dock_widget(dock_widget)
    mask = viewer.layers["lung mask"]
    mask.paint((20, 20), 5)  # the user goes on with the brush, the dock closed
    painted = np.asarray(mask.data).copy()
    other = tmp_path / "other"
    other.mkdir()
    (other / "z.png").write_bytes(sorted(films.iterdir())[2].read_bytes())
    _dock, again = open_dock(viewer, qtbot, other, tmp_path / "dataset2")
    kept = [ly for ly in viewer.layers if type(ly).__name__ == "Labels" and np.array_equal(np.asarray(ly.data), painted)]
    assert kept and kept[0].name.startswith("lung mask of "), [ly.name for ly in viewer.layers]
    assert "kept as the layer" in again.status.value


def test_undo_names_a_new_annotate_box_mask_as_the_annotate_docks_not_a_brush_edit(make_napari_viewer, qtbot, films,
                                                                                      tmp_path):
    """A click in the Segment dock, then a new rectangle that the Annotate dock segments, then another click:
    Undo of that click goes back to the Annotate dock's new mask and names it so (no "brush edit": nothing was
    painted)."""
    viewer = make_napari_viewer()
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    mask, boxes = viewer.layers["lung mask"], viewer.layers["boxes"]
    segment = widget.correct_with_clicks()
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    points = viewer.layers["points"]

    def click(yx, positive):
        points.feature_defaults["positive"] = positive
        before = segment.history.current
        points.add(np.array([yx], dtype=float))
        qtbot.waitUntil(lambda: segment.history.current is not before and segment.history.current.mask is not None
                        and not segment.busy, timeout=WAIT_MS)

    click((250.0, 120.0), True)
    h, w = mask.data.shape
    boxes.add_rectangles(np.array([[0.1 * h, 0.05 * w], [0.9 * h, 0.55 * w]]))  # around one lung: a new mask
    settle(qtbot, widget)
    annotated = np.asarray(mask.data) != 0
    click((300.0, 150.0), False)
    assert not np.array_equal(np.asarray(mask.data) != 0, annotated)
    assert viewer.window._qt_viewer._key_map_handler.press_key(UNDO)
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, annotated)
    assert "brush edit" not in segment.status.value and "the Annotate dock's mask" in segment.status.value, \
        segment.status.value
    qtbot.waitUntil(lambda: not widget.jobs.busy and not segment.busy, timeout=WAIT_MS)


def test_a_film_opened_again_after_its_layer_was_deleted_lies_under_its_mask_and_box(make_napari_viewer, qtbot, films,
                                                                                      tmp_path):
    """A QA find: the line after deleting the film layer says "double-click it in the list"; the film then came
    back on top of 'lung mask' and 'boxes' (napari adds a layer on top), so Accept saved a mask nobody saw."""
    viewer = make_napari_viewer(show=True)
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    viewer.layers.remove(widget.layers.image.name)
    widget.table.cellDoubleClicked.emit(widget.index, 1)  # (a real double-click emits this: QA-checked by hand)
    settle(qtbot, widget)
    names = [layer.name for layer in viewer.layers]
    film = widget.layers.image.name
    assert names.index(film) < names.index("lung mask") and names.index(film) < names.index("boxes"), names
    h, w = widget.layers.image.data.shape
    assert np.allclose(viewer.camera.center[-2:], ((h - 1) / 2, (w - 1) / 2), atol=max(h, w) * 0.05)
