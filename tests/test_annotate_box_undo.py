"""Ctrl+Z / Ctrl+Shift+Z on a box in the Annotate dock alone (no Segment dock): a QA find, "Ctrl+Z after a new box
does nothing and says nothing". A real viewer under Xvfb, the bundled model, the shipped films."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets._annotate_box_undo import REDO_KEY, UNDO_KEY  # noqa: E402
from test_annotate_walkthrough import open_dock, settle  # noqa: E402  (tests/ is on sys.path)

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]


def _mask(viewer) -> np.ndarray:
    return np.asarray(viewer.layers["lung mask"].data) != 0


def _press(viewer, key) -> None:
    assert viewer.window._qt_viewer._key_map_handler.press_key(key)


def test_undo_and_redo_of_a_box_and_never_over_brush_strokes(make_napari_viewer, qtbot, films, tmp_path):
    viewer = make_napari_viewer(show=True)
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    first, boxes = _mask(viewer), viewer.layers["boxes"]
    first_box = np.array(boxes.data[0], copy=True)
    h, w = first.shape
    remembered = widget.folder.last_box
    boxes.add_rectangles(np.array([[0.05 * h, 0.02 * w], [0.95 * h, 0.98 * w]]))  # a wide box: the next films' box
    settle(qtbot, widget)
    assert widget.folder.last_box != remembered
    _press(viewer, UNDO_KEY)
    assert widget.folder.last_box == remembered  # (a review find: the undone box shaped the next films)
    boxes.add_rectangles(np.array([[0.1 * h, 0.05 * w], [0.9 * h, 0.5 * w]]))  # around one lung: a new mask
    settle(qtbot, widget)
    one_lung = _mask(viewer)
    assert not np.array_equal(one_lung, first) and len(boxes.data) == 1
    assert viewer.layers.selection.active is boxes
    _press(viewer, UNDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), first)
    assert len(boxes.data) == 1 and np.allclose(boxes.data[0], first_box)
    assert "Undone: the box (Redo [Ctrl+Shift+Z] brings it back)." in widget.status.value, widget.status.value
    assert not widget.jobs.busy  # nothing segmented again
    _press(viewer, REDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), one_lung)

    stroke = np.zeros_like(one_lung)  # a brush stroke after the box: Undo must not throw it away
    stroke[h // 2:h // 2 + 9, int(0.75 * w):int(0.75 * w) + 9] = True
    viewer.layers["lung mask"].data_setitem(np.nonzero(stroke), 1)
    stroked = _mask(viewer)
    _press(viewer, UNDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), stroked)
    assert "Your brush strokes since that box would be lost" in widget.status.value, widget.status.value

    widget.open_film(1)  # the next film: no step of the film before
    settle(qtbot, widget)
    viewer.layers.selection.active = viewer.layers["boxes"]
    shown = _mask(viewer)
    _press(viewer, UNDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), shown)
    assert widget.status.value.startswith("Nothing to undo here"), widget.status.value


def test_a_stroke_before_the_first_click_is_one_undo_step_of_its_own(make_napari_viewer, qtbot, films, tmp_path):
    """A QA find: a brush stroke on the film's mask, then a click, then Ctrl+Z twice: the second said "Nothing to
    undo" with the stroke still shown (it was folded into the film's mask), and the stroke was called "the Annotate
    dock's mask". Now Undo goes click → brush edit → the film's mask, each named as what it is."""
    from napari_adaqat.widgets._clicks import UNDO_KEY as SEGMENT_UNDO

    viewer = make_napari_viewer(show=True)
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    film_mask = _mask(viewer)
    segment = widget.correct_with_clicks()
    qtbot.waitUntil(lambda: not segment.busy, timeout=120_000)
    h, w = film_mask.shape
    stroke = np.zeros_like(film_mask)
    stroke[20:40, 20:40] = True  # lung painted in a corner, far from the click
    viewer.layers["lung mask"].data_setitem(np.nonzero(stroke & ~film_mask), 1)
    stroked = _mask(viewer)
    rows, cols = np.nonzero(film_mask[:, : w // 2])
    points = viewer.layers["points"]
    points.add([[float(rows.mean()), float(cols.mean())]])
    qtbot.waitUntil(lambda: segment.last_result is not None and not segment.busy, timeout=120_000)
    viewer.layers.selection.active = points
    _press(viewer, SEGMENT_UNDO)
    np.testing.assert_array_equal(_mask(viewer), stroked)
    assert segment.status.value.startswith("Undone: click → brush edit"), segment.status.value
    _press(viewer, SEGMENT_UNDO)
    np.testing.assert_array_equal(_mask(viewer), film_mask)
    assert segment.status.value.startswith("Undone: brush edit → the Annotate dock's mask"), segment.status.value
    _press(viewer, SEGMENT_UNDO)
    assert segment.status.value == "Nothing to undo."
    qtbot.waitUntil(lambda: not widget.jobs.busy and not segment.busy, timeout=120_000)


def test_box_undo_keys_after_the_segment_dock_closed_and_none_once_this_dock_closed(make_napari_viewer, qtbot, films,
                                                                                   tmp_path):
    """Review finds: after "Correct with clicks" opened the Segment dock and it was closed, its (now idle) key
    bindings kept Ctrl+Z from this dock's Undo; and a closed Annotate dock still undid boxes on Ctrl+Z."""
    viewer = make_napari_viewer(show=True)
    dock_widget, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    first = _mask(viewer)
    segment = widget.correct_with_clicks()
    qtbot.waitUntil(lambda: not segment.busy, timeout=120_000)
    inner = next(w for w in viewer.window.dock_widgets.values()
                 if getattr(w, "native", w) is segment.native or getattr(w, "native", w).isAncestorOf(segment.native))
    viewer.window.remove_dock_widget(getattr(inner, "native", inner).parent())  # its × (the dock wrapper)
    qtbot.wait(50)
    assert segment._closed
    h, w = first.shape
    boxes = viewer.layers["boxes"]
    boxes.add_rectangles(np.array([[0.1 * h, 0.05 * w], [0.9 * h, 0.5 * w]]))
    settle(qtbot, widget)
    one_lung = _mask(viewer)
    viewer.layers.selection.active = boxes
    _press(viewer, UNDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), first)
    _press(viewer, REDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), one_lung)
    viewer.window.remove_dock_widget(dock_widget)  # the Annotate dock closes
    qtbot.wait(50)
    viewer.window._qt_viewer._key_map_handler.press_key(UNDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), one_lung)  # nothing undone by a closed dock
