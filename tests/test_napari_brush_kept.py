"""Brush edits of ``lung mask`` are kept through the clicks after them and through Undo / Redo (a clinician QA
pass: the pixels a user erased came back with the next click, and Undo or Redo right after a brush edit threw
the edit away for good). The bundled model, the sample film, a real viewer."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_adaqat._sample import chest_xray  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets._clicks import REDO_KEY, UNDO_KEY  # noqa: E402
from napari_adaqat.widgets.segment import SegmentWidget  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]


def _wait(qtbot, widget: SegmentWidget, timeout: int = 600_000) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
    qtbot.wait(10)


def _press(viewer, key) -> None:
    assert viewer.window._qt_viewer._key_map_handler.press_key(key)


def _mask(viewer) -> np.ndarray:
    return np.asarray(viewer.layers["lung mask"].data) != 0


def _paint(viewer, where: np.ndarray, value: int) -> None:
    """A brush stroke: ``where`` (H, W) bool set to ``value`` in 'lung mask'."""
    viewer.layers["lung mask"].data_setitem(np.nonzero(where), value)


def _boxed(make_napari_viewer, qtbot) -> tuple:
    """A viewer with the sample film, the Segment dock (bundled model) and its mask for a box around both lungs."""
    viewer = make_napari_viewer(show=True)
    for data, kwargs, kind in chest_xray():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget = SegmentWidget(viewer, device="cpu")
    viewer.window.add_dock_widget(widget)
    _wait(qtbot, widget)
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    _wait(qtbot, widget)
    return viewer, widget, _mask(viewer)


def test_an_erase_survives_the_next_click_and_undo_redo_keep_every_edit(make_napari_viewer, qtbot):
    viewer, widget, boxed = _boxed(make_napari_viewer, qtbot)
    rows = np.nonzero(boxed.any(axis=1))[0]
    erased = boxed & (np.arange(boxed.shape[0])[:, None] < rows[0] + 40)  # the lung tops, erased by hand
    _paint(viewer, erased, 0)
    edited = _mask(viewer)
    assert erased.sum() > 500 and not (edited & erased).any()

    bottom = rows[-1] - 25
    col = int(np.nonzero(boxed[bottom])[0].mean())
    points = viewer.layers["points"]
    viewer.layers.selection.active = points
    points.add([[float(bottom), float(col)]])  # a lung click far from the erased tops
    _wait(qtbot, widget)
    clicked = _mask(viewer)
    assert not (clicked & erased).any(), "the click brought back what the user erased"
    assert f"kept your brush edits (0 px painted, {int(erased.sum())} px erased" in widget.status.value
    assert f"area {int(clicked.sum())} px" in widget.status.value  # of the mask shown, edits included

    _press(viewer, UNDO_KEY)  # back to the edit, then to the box's mask, then forward again: exactly each
    np.testing.assert_array_equal(_mask(viewer), edited)
    _press(viewer, UNDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), boxed)
    _press(viewer, REDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), edited)

    square = np.zeros_like(edited)  # a new stroke, then Redo at once: the stroke is the newest state, not lost
    square[200:230, 200:230] = True
    _paint(viewer, square & ~edited, 1)
    stroked = _mask(viewer)
    _press(viewer, REDO_KEY)
    assert widget.status.value == "Nothing to redo."
    np.testing.assert_array_equal(_mask(viewer), stroked)
    _press(viewer, UNDO_KEY)  # Undo right after a stroke: the mask before it, and Redo brings the stroke back
    np.testing.assert_array_equal(_mask(viewer), edited)
    _press(viewer, REDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), stroked)

    points.add([[float(bottom - 10), float(col)]])  # a click after Undo / Redo: every edit is still kept
    _wait(qtbot, widget)
    after = _mask(viewer)
    assert not (after & erased).any() and after[square].all()

    top = int(rows[0] + 10)
    inside = int(np.nonzero(erased[top])[0].mean())
    points.add([[float(top), float(inside)]])  # a click on the erased tops hands them back to the model
    _wait(qtbot, widget)
    kept = widget.history.current.kept
    assert kept is None or not kept[1][top, inside]


def test_the_docks_undo_after_naparis_own_undo_goes_on_backwards(make_napari_viewer, qtbot):
    """A QA find: box → mask A, click → mask B, then napari's own Ctrl+Z on 'lung mask' (A again), then the dock's
    Ctrl+Z showed B again ("Undone: brush edit → click"): it took napari's undo for a brush edit. Two Ctrl+Z now
    keep going backwards: the dock's goes on from A, to before the box."""
    viewer, widget, boxed = _boxed(make_napari_viewer, qtbot)
    rows, cols = np.nonzero(boxed)
    points = viewer.layers["points"]
    points.feature_defaults["positive"] = False
    points.add([[float(rows.mean()), float(cols[cols < boxed.shape[1] // 2].mean())]])  # 'not lung' in a lung
    _wait(qtbot, widget)
    clicked = _mask(viewer)
    assert (clicked != boxed).sum() > 100
    viewer.layers.selection.active = viewer.layers["lung mask"]
    _press(viewer, UNDO_KEY)  # napari's undo of the layer
    np.testing.assert_array_equal(_mask(viewer), boxed)
    viewer.layers.selection.active = points
    _press(viewer, UNDO_KEY)  # the dock's
    _wait(qtbot, widget)
    assert not _mask(viewer).any() and len(points.data) == 0, widget.status.value
    assert widget.status.value.startswith("Undone: box → start"), widget.status.value
    _press(viewer, REDO_KEY)  # and forward again: the box's mask, then the click's, exactly
    np.testing.assert_array_equal(_mask(viewer), boxed)
    _press(viewer, REDO_KEY)
    _wait(qtbot, widget)
    np.testing.assert_array_equal(_mask(viewer), clicked)
    assert len(points.data) == 1


def test_two_napari_undos_and_a_stroke_that_restores_an_earlier_mask(make_napari_viewer, qtbot):
    """Review finds: two napari undos in a row (box, click, click: back to the box's mask) and then the dock's Undo
    went forwards; a brush stroke that happens to restore the previous mask exactly must stay a brush edit (its
    Undo brings the click's mask back), not be taken for napari's undo."""
    viewer, widget, boxed = _boxed(make_napari_viewer, qtbot)
    rows, cols = np.nonzero(boxed)
    points = viewer.layers["points"]
    points.feature_defaults["positive"] = False
    for col in (cols[cols < boxed.shape[1] // 2].mean(), cols[cols > boxed.shape[1] // 2].mean()):
        points.add([[float(rows.mean()), float(col)]])  # 'not lung' in each lung
        _wait(qtbot, widget)
    clicked = _mask(viewer)
    labels = viewer.layers["lung mask"]
    viewer.layers.selection.active = labels
    _press(viewer, UNDO_KEY)  # napari's undo, twice
    _press(viewer, UNDO_KEY)
    np.testing.assert_array_equal(_mask(viewer), boxed)
    viewer.layers.selection.active = points
    _press(viewer, UNDO_KEY)  # the dock's: on backwards, before the box
    _wait(qtbot, widget)
    assert not _mask(viewer).any() and widget.status.value.startswith("Undone: box → start"), widget.status.value
    for _ in range(3):
        _press(viewer, REDO_KEY)
        _wait(qtbot, widget)
    np.testing.assert_array_equal(_mask(viewer), clicked)

    before = np.asarray(widget.history.current.mask)  # a stroke that paints the box's mask back exactly
    differ = np.nonzero(before != boxed)
    labels.data_setitem(differ, boxed[differ].astype(labels.data.dtype))
    np.testing.assert_array_equal(_mask(viewer), boxed)
    _press(viewer, UNDO_KEY)
    _wait(qtbot, widget)
    np.testing.assert_array_equal(_mask(viewer), clicked)  # the stroke undone, not two steps back
    assert widget.status.value.startswith("Undone: brush edit → click"), widget.status.value
