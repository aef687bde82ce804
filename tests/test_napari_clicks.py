"""Correcting a mask with clicks in the Segment dock, in a real napari viewer (Xvfb): box → mask, a negative
click, Ctrl+Z / Ctrl+Shift+Z / R through the viewer's key handling, Ctrl+click on the canvas, brush edits.

The first test uses the bundled default model (skipped when it is not installed); the others tiny random
``vit_nano`` models, which check the plumbing (what reaches the engine), not mask quality.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtCore import QEvent, QPointF, Qt  # noqa: E402
from qtpy.QtGui import QMouseEvent  # noqa: E402
from scipy import ndimage  # noqa: E402

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat._sample import chest_xray  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets._clicks import NEGATIVE_KEY, POINTS_KEY, REDO_KEY, RESET_KEY, UNDO_KEY  # noqa: E402
from napari_adaqat.widgets._points import NEGATIVE_COLOR, POSITIVE_COLOR  # noqa: E402
from napari_adaqat.widgets.segment import SegmentWidget  # noqa: E402

pytestmark = pytest.mark.gui
WAIT_MS = 120_000
HAVE_DEFAULT = loading.DEFAULT_MODEL.is_file() and loading.DEFAULT_BASELINE.is_file()


def open_dock(viewer, qtbot, **kwargs) -> tuple[SegmentWidget, object, object]:
    image, truth = [getattr(viewer, f"add_{kind}")(data, **kw) for data, kw, kind in chest_xray()]
    widget = SegmentWidget(viewer, device="cpu", **kwargs)
    viewer.window.add_dock_widget(widget, name="Segment lungs (AdaLoRA-QAT)")
    wait(qtbot, widget, 600_000)
    return widget, image, truth


def wait(qtbot, widget: SegmentWidget, timeout: int = WAIT_MS) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)
    qtbot.wait(10)


def press(viewer, key) -> None:
    """A key as the canvas hands it to napari (active layer's bindings first, then the viewer's)."""
    assert viewer.window._qt_viewer._key_map_handler.press_key(key)


def spy_prompts(widget, monkeypatch) -> list[dict]:
    """Record every prompt that reaches the engine (its keyword arguments, the box as ``box``)."""
    calls, real = [], widget.engine.predict

    def predict(image, box, *args, **kwargs):
        calls.append(dict(kwargs, box=box))
        return real(image, box, *args, **kwargs)

    monkeypatch.setattr(widget.engine, "predict", predict)
    return calls


def mask_of(viewer) -> np.ndarray:
    return np.array(viewer.layers["lung mask"].data, copy=True)


def deepest_false_pixel(mask: np.ndarray, truth: np.ndarray) -> tuple[int, int]:
    """(row, col) of the pixel of the largest false region farthest from its edge (the standard click)."""
    false = (mask != 0) & (truth == 0)
    labels, n = ndimage.label(false)
    assert n, "the box's mask has no false region to click in"
    biggest = 1 + int(np.argmax(ndimage.sum(false, labels, range(1, n + 1))))
    dist = ndimage.distance_transform_edt(labels == biggest)
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return int(r), int(c)


@pytest.mark.skipif(not HAVE_DEFAULT, reason="bundled default model not installed")
def test_negative_click_undo_redo_reset_and_screenshot(make_napari_viewer, qtbot, monkeypatch, screenshot_dir):
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "none"
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    widget, image, truth = open_dock(viewer, qtbot)
    truth.visible = False
    widget.reference.value = truth
    calls = spy_prompts(widget, monkeypatch)
    boxes, points = viewer.layers["boxes"], viewer.layers["points"]
    assert "Undo [Ctrl+Z]" in widget.undo_button.text and "Reset [R]" in widget.reset_button.text
    assert widget.negative.text == "Negative [N]" and not widget.undo_button.enabled

    # 1) a loose box: its mask spills over pixels that are not lung
    boxes.add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    before, ssim_before = mask_of(viewer), np.array(viewer.layers["SSIM"].data, copy=True)
    first = widget.last_result
    assert before.any() and "point" not in calls[-1] and widget.undo_button.enabled
    viewer.reset_view()
    shot_before = mask_shot(viewer, qtbot)

    # 2) one negative point (through the layer's feature_defaults) on the deepest false pixel
    r, c = deepest_false_pixel(before, truth.data)
    assert before[r, c]
    widget.points_mode()
    assert viewer.layers.selection.active is points and points.mode == "add"
    points.feature_defaults["positive"] = False
    points.add([[r, c]])
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    sent = calls[-1]
    np.testing.assert_allclose(sent["point_coords"], [[c, r]])  # napari (row, col) → SAM (x, y)
    np.testing.assert_array_equal(sent["point_labels"], [0])
    assert sent["mask_input"] is first.low_res_logits  # the previous logits are the mask prompt
    np.testing.assert_allclose(sent["box"], [30, 40, 480, 470])
    after = mask_of(viewer)
    assert not np.array_equal(after, before)  # the click re-segmented
    assert not np.array_equal(viewer.layers["SSIM"].data, ssim_before)  # the maps follow the corrected mask
    assert list(points.features["positive"]) == [False]
    np.testing.assert_allclose(points.face_color[0], _rgba(NEGATIVE_COLOR), atol=0.01)
    assert bool(points.feature_defaults["positive"].iloc[0])  # the next click is positive again
    assert viewer.layers.selection.active is points  # still clicking
    assert "1 point (1 not lung)" in widget.status.value
    # the maps compare the INT8 model and its FP32 baseline on their own probabilities: nearly equal (with the
    # shared vote's probabilities on one side only, this read -0.19)
    assert widget.last_result.delta_mean is not None and abs(widget.last_result.delta_mean) < 0.05
    assert "trained with boxes only" not in widget.status.value  # the bundled model learnt clicks
    points.selected_data = set()  # no selection highlight in the picture
    qtbot.wait(50)  # the dock's layout settles before the picture (a busy machine once caught the status cut)
    status = widget.status.native  # its lines shown whole
    assert status.height() >= status.heightForWidth(status.width()) - 2
    viewer.screenshot(str(screenshot_dir / "screenshot_clicks_dock.png"), canvas_only=False)
    _save_pair(shot_before, mask_shot(viewer, qtbot), screenshot_dir / "screenshot_clicks.png")
    obeyed = after.sum() < before.sum() and not after[r, c]

    # 3) Ctrl+Z (points layer selected) restores the previous mask exactly; Ctrl+Shift+Z redoes
    press(viewer, UNDO_KEY)
    np.testing.assert_array_equal(mask_of(viewer), before)
    np.testing.assert_array_equal(viewer.layers["SSIM"].data, ssim_before)
    assert len(points.data) == 0 and len(boxes.data) == 1 and widget.last_result is first
    n_calls = len(calls)
    press(viewer, REDO_KEY)
    np.testing.assert_array_equal(mask_of(viewer), after)
    assert len(points.data) == 1 and list(points.features["positive"]) == [False]
    assert len(calls) == n_calls  # undo and redo put states back; they do not prompt the model

    # 4) R clears points, box and mask; Undo brings them back
    press(viewer, RESET_KEY)
    assert not mask_of(viewer).any() and len(points.data) == 0 and len(boxes.data) == 0
    assert viewer.layers.selection.active is boxes and boxes.mode == "add_rectangle"
    assert "model_path" not in viewer.layers["lung mask"].metadata  # what is painted next is no model's mask
    press(viewer, UNDO_KEY)
    np.testing.assert_array_equal(mask_of(viewer), after)
    assert viewer.layers["lung mask"].metadata["model_path"] == widget.last_result.model_file
    assert len(points.data) == 1 and len(boxes.data) == 1
    assert obeyed, f"the negative click did not shrink the mask there: area {before.sum()} → {after.sum()}"


def test_clicks_modifiers_and_brush_edits_with_a_tiny_model(make_napari_viewer, qtbot, monkeypatch, nano_models):
    """Ctrl+click on the canvas adds a negative point, N toggles Negative; a brush edit becomes the next
    click's mask prompt (and one Undo away); Ctrl+Z on 'lung mask' stays napari's own undo."""
    model, baseline = nano_models
    viewer = make_napari_viewer(show=True)
    widget, image, _truth = open_dock(viewer, qtbot, model_path=model, baseline_path=baseline,
                                      model_type="vit_nano")
    calls = spy_prompts(widget, monkeypatch)
    boxes, points = viewer.layers["boxes"], viewer.layers["points"]
    boxes.add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)

    # a plain click and a Ctrl+click on the canvas (points layer in add mode)
    press(viewer, POINTS_KEY)  # Points [P] from the boxes layer
    assert viewer.layers.selection.active is points and points.mode == "add"
    click(viewer, qtbot, (200.0, 150.0))
    wait(qtbot, widget)
    click(viewer, qtbot, (300.0, 350.0), Qt.ControlModifier)
    wait(qtbot, widget)
    assert list(points.features["positive"]) == [True, False]
    np.testing.assert_allclose(points.face_color[0], _rgba(POSITIVE_COLOR), atol=0.01)
    np.testing.assert_allclose(calls[-1]["point_coords"], [[150, 200], [350, 300]], atol=0.6)
    np.testing.assert_array_equal(calls[-1]["point_labels"], [1, 0])
    press(viewer, NEGATIVE_KEY)  # Negative [N] on: a plain click is negative
    assert widget.negative.value
    points.add([[100.0, 100.0]])
    wait(qtbot, widget)
    assert list(points.features["positive"]) == [True, False, False]
    widget.negative.value = False

    # a brush edit: the next click uses it as the mask prompt, and Undo comes back to it exactly
    labels = viewer.layers["lung mask"]
    edited = mask_of(viewer)
    edited[10:60, 10:60] = 1
    labels.data_setitem(np.nonzero(edited != labels.data), 1)
    used = []
    segmenter = widget.engine.segmenter(widget._chosen()[0], "cpu")
    real_from = segmenter.mask_input_from
    monkeypatch.setattr(segmenter, "mask_input_from", lambda m: used.append(np.array(m)) or real_from(m))
    points.add([[250.0, 250.0]])
    wait(qtbot, widget)
    assert used and np.array_equal(used[0], edited != 0)
    assert calls[-1]["mask_input"] is not None
    assert "your brush edit of 'lung mask' was the mask prompt" in widget.status.value  # the dock alone: its edit
    viewer.layers.selection.active = points
    press(viewer, UNDO_KEY)
    np.testing.assert_array_equal(mask_of(viewer), edited)
    assert len(points.data) == 3
    used.clear()
    points.add([[260.0, 260.0]])  # a click after Undo back to the edit: the edit is still the mask prompt
    wait(qtbot, widget)
    assert used and np.array_equal(used[0], edited != 0) and calls[-1]["mask_input"] is not None

    # with 'lung mask' selected, Ctrl+Z is napari's undo of the last brush stroke, not the dock's
    viewer.layers.selection.active = labels
    history = widget.history
    depth = (len(history), history.can_redo)
    press(viewer, UNDO_KEY)
    assert (len(history), history.can_redo) == depth


def test_removing_points_and_stale_results(make_napari_viewer, qtbot, monkeypatch, nano_models):
    """Removing a point re-segments without it; a result that arrives after an Undo is dropped."""
    viewer = make_napari_viewer()
    widget, image, _truth = open_dock(viewer, qtbot, model_path=nano_models[0], use_baseline=False,
                                      model_type="vit_nano")
    calls = spy_prompts(widget, monkeypatch)
    points = viewer.layers["points"]
    points.add([[200.0, 150.0], [300.0, 350.0]])  # points alone, no box
    wait(qtbot, widget)
    assert calls[-1]["box"] is None and len(calls[-1]["point_coords"]) == 2
    points.selected_data = {0}
    points.remove_selected()
    wait(qtbot, widget)
    np.testing.assert_allclose(calls[-1]["point_coords"], [[350, 300]])
    assert "mask_input" not in calls[-1]  # a removal starts again from the remaining prompts
    shown = mask_of(viewer)
    monkeypatch.setattr(widget, "_quick_prompt", lambda *a: False)  # force the worker
    points.add([[100.0, 100.0]])
    assert widget.busy
    widget.undo()  # before the worker answers
    wait(qtbot, widget)
    np.testing.assert_array_equal(mask_of(viewer), shown)
    assert len(points.data) == 1

    # another image has its own points (none yet); back on the first one, its point is back
    other = viewer.add_image(np.asarray(image.data)[::-1].copy(), name="flipped")
    widget.image.value = other
    wait(qtbot, widget)
    assert len(points.data) == 0
    assert "Draw a box in 'boxes'." in widget.status.value  # nothing done on it yet
    widget.image.value = image
    wait(qtbot, widget)
    np.testing.assert_allclose(points.data, [[300.0, 350.0]])
    assert "Shown as you left it: " in widget.status.value  # not "draw a box" over its mask (a QA find)

    # another model: the last model's logits are no mask prompt for it
    widget.use_models(nano_models[1], None)
    wait(qtbot, widget)
    points.add([[120.0, 140.0]])
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert len(calls[-1]["point_coords"]) == 2 and "mask_input" not in calls[-1]


def test_points_on_a_stack_prompt_their_own_plane(make_napari_viewer, qtbot, monkeypatch, nano_models):
    viewer = make_napari_viewer()
    stack = np.random.default_rng(1).random((3, 64, 72)).astype(np.float32)
    viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5))
    widget = SegmentWidget(viewer, device="cpu", model_path=nano_models[0], use_baseline=False,
                           model_type="vit_nano")
    viewer.window.add_dock_widget(widget)
    wait(qtbot, widget)
    calls = spy_prompts(widget, monkeypatch)
    points = viewer.layers["points"]
    assert points.ndim == 3
    points.add([[1, 20.0, 30.0], [2, 5.0, 5.0]])  # plane 1 (the first point's plane) and plane 2
    wait(qtbot, widget)
    viewer.dims.set_current_step(0, 1)
    widget.segment_last_box()  # no box: the points on the plane shown
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    np.testing.assert_allclose(calls[-1]["point_coords"], [[30.0, 20.0]])
    assert widget.last_result.slice_index == 1 and viewer.layers["lung mask"].data.shape == (3, 64, 72)
    viewer.dims.set_current_step(0, 2)
    points.add([[2, 40.0, 50.0]])  # a click on plane 2: plane 1's logits are no mask prompt for it
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert widget.last_result.slice_index == 2 and "mask_input" not in calls[-1]
    np.testing.assert_allclose(calls[-1]["point_coords"], [[5.0, 5.0], [50.0, 40.0]])


def click(viewer, qtbot, rc, modifiers=Qt.NoModifier) -> None:
    """A left click on the canvas at data (row, col), with Qt ``modifiers`` held."""
    canvas = viewer.window._qt_viewer.canvas
    xy = np.asarray(canvas.view.scene.transform.map([rc[1], rc[0]])[:2], dtype=float)
    for kind, button, buttons in ((QEvent.MouseButtonPress, Qt.LeftButton, Qt.LeftButton),
                                  (QEvent.MouseButtonRelease, Qt.LeftButton, Qt.NoButton)):
        canvas.native.event(QMouseEvent(kind, QPointF(*xy), button, buttons, modifiers))
        qtbot.wait(5)


def _rgba(color: str) -> np.ndarray:
    from napari.utils.colormaps.standardize_color import transform_color

    return transform_color(color)[0]


def mask_shot(viewer, qtbot) -> np.ndarray:
    """The canvas with the film, mask and prompts (the SSIM maps hidden for a moment), cropped to the film."""
    maps = [viewer.layers[name] for name in ("SSIM", "ΔSSIM") if name in viewer.layers]
    for layer in maps:
        layer.visible = False
    qtbot.wait(100)
    shot = viewer.screenshot(canvas_only=True)
    for layer in maps:
        layer.visible = True
    rows, cols = np.nonzero(shot[..., :3].max(axis=2) > 8)  # the canvas around the film is black
    return shot[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def _save_pair(left: np.ndarray, right: np.ndarray, path: Path) -> None:
    """Before | after, side by side, as one PNG."""
    from PIL import Image as PILImage

    h = min(left.shape[0], right.shape[0])
    gap = np.full((h, 12, left.shape[2]), 255, dtype=left.dtype)
    PILImage.fromarray(np.concatenate([left[:h], gap, right[:h]], axis=1)).save(path)


def test_clicks_made_while_the_model_is_busy_are_each_one_undo_step(make_napari_viewer, qtbot, monkeypatch,
                                                                    nano_models):
    """Three clicks while the first one's mask is on its way (an embedding of a native film takes seconds): the
    second click's job is replaced by the third's, and all three used to come back in one Undo step. Now each is
    its own step: Undo comes back to the second click with its points, and its mask is made then; Undo while a
    click is on its way takes back that click alone."""
    viewer = make_napari_viewer()
    widget, _image, _truth = open_dock(viewer, qtbot, model_path=nano_models[0], use_baseline=False,
                                       model_type="vit_nano")
    calls = spy_prompts(widget, monkeypatch)
    boxes, points = viewer.layers["boxes"], viewer.layers["points"]
    boxes.add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    monkeypatch.setattr(widget, "_quick_prompt", lambda *a: False)  # every click through the worker
    clicks = [[200.0, 150.0], [300.0, 350.0], [260.0, 120.0]]
    for xy in clicks:  # no event loop between them: the first runs, the second waits, the third replaces it
        points.add([xy])
    wait(qtbot, widget)
    assert [len(c.get("point_coords", ())) for c in calls] == [0, 1, 3]  # the box, click 1, clicks 1-3
    assert len(widget.history) == 5  # start, box, click 1, click 2 (not answered yet), click 3
    after_three = mask_of(viewer)
    widget.undo()
    assert len(points.data) == 2
    wait(qtbot, widget)
    assert len(calls[-1]["point_coords"]) == 2 and widget.last_error is None  # the second click's mask, made now
    second = mask_of(viewer)
    widget.undo()
    wait(qtbot, widget)
    np.testing.assert_array_equal(mask_of(viewer), widget.history.current.mask)  # the first click's mask
    assert len(points.data) == 1 and len(calls) == 4
    widget.redo()
    wait(qtbot, widget)
    np.testing.assert_array_equal(mask_of(viewer), second)  # exactly, without asking the model again
    widget.redo()
    wait(qtbot, widget)
    np.testing.assert_array_equal(mask_of(viewer), after_three)
    assert len(calls) == 4 and len(points.data) == 3

    for xy in ([100.0, 100.0], [400.0, 380.0]):  # two clicks on their way, then Ctrl+Z at once
        points.add([xy])
    widget.undo()
    wait(qtbot, widget)
    np.testing.assert_allclose(points.data[-1], [100.0, 100.0])  # the last click alone is taken back
    assert len(points.data) == 4 and len(widget.history) == 6 and widget.history.current.mask is not None
