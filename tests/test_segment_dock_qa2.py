"""The Segment dock as a clinician new to napari uses it, in a real viewer (Xvfb), second QA pass: the dock closed
with its ×, two films picked in the layer list, a stray click in 'boxes', a deleted 'boxes' layer, a click on
another plane of a stack, a renamed 'points' layer, the "Segment again" hotkey. Tiny random ``vit_nano`` models
(plumbing, not mask quality)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from test_napari_clicks import click, mask_of, open_dock, press, spy_prompts, wait  # noqa: E402  (tests/ on sys.path)

from napari_adaqat.widgets._clicks import AGAIN_KEY, BOX_KEY  # noqa: E402
from napari_adaqat.widgets.segment import SegmentWidget  # noqa: E402

pytestmark = pytest.mark.gui
BOX = np.array([[40.0, 30.0], [470.0, 480.0]])
DOCK = ("napari-adaqat", "Segment lungs (AdaLoRA-QAT)")


def _dock(viewer, qtbot, nano_models):
    return open_dock(viewer, qtbot, model_path=nano_models[0], baseline_path=nano_models[1], model_type="vit_nano")


def _nano(widget, model) -> None:
    """Point a dock opened from the Plugins menu at a tiny model."""
    widget.model_type.value = "vit_nano"
    widget.baseline.value = "none"
    widget.model.value = "file"
    widget.model_file.value = model



def stack_dock(make_napari_viewer, qtbot, nano_models):
    """A viewer with a 3-frame stack of the sample film and a Segment dock (nano model) on it, embedded."""
    from napari_adaqat._sample import chest_xray

    pixels = chest_xray()[0][0]
    viewer = make_napari_viewer()
    viewer.add_image(np.stack([pixels, pixels[:, ::-1], pixels[::-1]]), name="3 frames")
    widget = SegmentWidget(viewer, device="cpu", model_path=nano_models[0], use_baseline=False, model_type="vit_nano")
    viewer.window.add_dock_widget(widget)
    wait(qtbot, widget)
    return viewer, widget


def test_a_dock_closed_with_its_x_no_longer_segments(make_napari_viewer, qtbot, monkeypatch, nano_models):
    """napari's × takes the dock out of the window without deleting it: clicks made afterwards must not rewrite
    'lung mask' (nothing on screen says a dock is at work), and a reopened dock segments each click once."""
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-adaqat", "chest_xray")
    dock_widget, widget = viewer.window.add_plugin_dock_widget(*DOCK)
    _nano(widget, nano_models[0])
    wait(qtbot, widget)
    calls = spy_prompts(widget, monkeypatch)  # (the engine is shared: every dock's prompts)
    viewer.layers["boxes"].add_rectangles(BOX)
    wait(qtbot, widget)
    shown = mask_of(viewer)
    dock_widget.title.close_button.click()
    qtbot.wait(50)
    n = len(calls)
    viewer.layers["points"].add([[250.0, 250.0]])
    viewer.layers["boxes"].add_rectangles(BOX + 10)
    qtbot.wait(200)
    assert len(calls) == n and np.array_equal(mask_of(viewer), shown)

    _, again = viewer.window.add_plugin_dock_widget(*DOCK)
    assert again is not widget
    _nano(again, nano_models[0])
    wait(qtbot, again)
    n = len(calls)
    viewer.layers["points"].add([[260.0, 200.0]])
    wait(qtbot, again)
    assert len(calls) == n + 1 and again.last_error is None, again.last_error
    again.reset_prompts()
    viewer.layers["boxes"].add_rectangles(BOX)
    _, third = viewer.window.add_plugin_dock_widget(*DOCK)  # (napari's Plugins menu: shows the open dock)
    assert third is again
    viewer.window.remove_dock_widget(again.native)  # closed by code, then opened: the box left in 'boxes' ...
    _, fourth = viewer.window.add_plugin_dock_widget(*DOCK)
    _nano(fourth, nano_models[0])
    wait(qtbot, fourth)
    viewer.layers.selection.active = viewer.layers["boxes"]
    n = len(calls)
    press(viewer, AGAIN_KEY)  # ... is the last box that "Segment last box again" segments
    wait(qtbot, fourth)
    assert len(calls) == n + 1 and fourth.last_error is None, fourth.last_error
    np.testing.assert_allclose(calls[-1]["box"], [30, 40, 480, 470])


def test_the_film_selected_in_the_layer_list_is_the_one_segmented(make_napari_viewer, qtbot, nano_models):
    """Two films: the dock starts on the one on top (the one seen), follows the film picked in the layer list
    (which stays selected), and each film keeps its own mask; a film hidden under another is said so."""
    viewer = make_napari_viewer(show=True)
    from napari_adaqat._sample import chest_xray

    pixels = chest_xray()[0][0]
    first = viewer.add_image(pixels, name="first film")
    second = viewer.add_image(pixels[::-1].copy(), name="second film")
    widget = SegmentWidget(viewer, device="cpu", model_path=nano_models[0], use_baseline=False, model_type="vit_nano")
    viewer.window.add_dock_widget(widget)
    wait(qtbot, widget)
    assert widget.image.value is second  # the film on top, not the one hidden under it
    boxes = viewer.layers["boxes"]
    boxes.add_rectangles(BOX)
    wait(qtbot, widget)
    second_mask = mask_of(viewer)

    viewer.layers.selection.active = first  # a click on the first film in the layer list
    wait(qtbot, widget)
    assert widget.image.value is first and viewer.layers.selection.active is first
    assert "'second film' lies over 'first film'" in widget.status.value  # said at once, before any box
    mask = viewer.layers["lung mask"]
    assert mask.metadata["source_layer_id"] == str(first.unique_id) and not mask.data.any()
    assert len(boxes.data) == 0  # its own (no) box, not the second film's
    press(viewer, BOX_KEY)  # the dock's keys act with the film selected too
    assert viewer.layers.selection.active is boxes and boxes.mode == "add_rectangle"
    boxes.add_rectangles(BOX + 20)
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert mask.metadata["source_layer_id"] == str(first.unique_id)
    assert "'second film' lies over 'first film'" in widget.status.value  # what is seen is not what was segmented

    viewer.layers.selection.active = second
    wait(qtbot, widget)
    assert widget.image.value is second
    np.testing.assert_array_equal(mask_of(viewer), second_mask)
    viewer.layers.selection.active = viewer.layers["lung mask"]  # not a film: the dock stays on the second
    assert widget.image.value is second
    third = viewer.add_image(pixels[:, ::-1].copy(), name="third film")  # opened: selected by napari, not by hand
    assert viewer.layers.selection.active is third and widget.image.value is second


def test_a_stray_click_in_boxes_keeps_the_mask(make_napari_viewer, qtbot, monkeypatch, nano_models):
    """A click without a drag in 'boxes' (a 2-pixel box) or a box beside the film is taken back with a line;
    the mask stays."""
    viewer = make_napari_viewer(show=True)
    widget, _image, _truth = _dock(viewer, qtbot, nano_models)
    calls = spy_prompts(widget, monkeypatch)
    boxes = viewer.layers["boxes"]
    boxes.add_rectangles(BOX)
    wait(qtbot, widget)
    shown, n, depth = mask_of(viewer), len(calls), len(widget.history)
    click(viewer, qtbot, (200.0, 200.0))
    wait(qtbot, widget)
    assert len(calls) == n and np.array_equal(mask_of(viewer), shown) and len(widget.history) == depth
    assert len(boxes.data) == 1 and "drag" in widget.status.value
    boxes.add_rectangles(np.array([[-300.0, -300.0], [-100.0, -50.0]]))  # beside the film
    wait(qtbot, widget)
    assert len(calls) == n and len(boxes.data) == 1 and "outside the image" in widget.status.value
    widget.segment_last_box()  # the good box is still the last one
    wait(qtbot, widget)
    np.testing.assert_allclose(calls[-1]["box"], [30, 40, 480, 470])


def test_a_click_after_deleting_boxes_still_segments(make_napari_viewer, qtbot, monkeypatch, nano_models):
    viewer = make_napari_viewer()
    widget, _image, _truth = _dock(viewer, qtbot, nano_models)
    calls = spy_prompts(widget, monkeypatch)
    viewer.layers["boxes"].add_rectangles(BOX)
    wait(qtbot, widget)
    viewer.layers.remove("boxes")
    viewer.layers.selection.active = viewer.layers["points"]
    viewer.layers["points"].add([[250.0, 250.0]])
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert calls[-1]["box"] is None and len(calls[-1]["point_coords"]) == 1  # the points alone
    assert "boxes" in viewer.layers  # back, for the next box
    assert viewer.layers.selection.active is viewer.layers["points"]
    assert "default box" not in widget.status.value  # a lung point alone is prompt enough
    widget.negative.value = True
    viewer.layers["points"].data = np.empty((0, 2))
    viewer.layers["points"].add([[250.0, 250.0]])  # a 'not lung' point alone: said to be taken in the default box
    wait(qtbot, widget)
    assert "within the default box (the film less 2 %): 'not lung' points alone" in widget.status.value


def test_a_click_on_another_plane_of_a_stack_segments_that_plane(make_napari_viewer, qtbot, monkeypatch,
                                                                 nano_models):
    """A box on plane 1, then a click on plane 2 (napari's slider): plane 2 is segmented with that click (plane 1's
    box is no prompt there), and plane 1's mask stays."""
    viewer, widget = stack_dock(make_napari_viewer, qtbot, nano_models)
    calls = spy_prompts(widget, monkeypatch)
    viewer.dims.set_current_step(0, 1)
    viewer.layers["boxes"].add_rectangles(np.array([[1, 40, 30], [1, 40, 480], [1, 470, 480], [1, 470, 30]], float))
    wait(qtbot, widget)
    plane1 = np.array(viewer.layers["lung mask"].data[1], copy=True)
    viewer.dims.set_current_step(0, 2)
    viewer.layers["points"].add([[2, 200.0, 150.0]])
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert widget.last_result.slice_index == 2 and calls[-1]["box"] is None
    np.testing.assert_allclose(calls[-1]["point_coords"], [[150.0, 200.0]])
    np.testing.assert_array_equal(viewer.layers["lung mask"].data[1], plane1)
    viewer.dims.set_current_step(0, 1)
    viewer.layers["points"].add([[1, 250.0, 250.0]])  # back on plane 1: its box again
    wait(qtbot, widget)
    np.testing.assert_allclose(calls[-1]["box"], [30, 40, 480, 470])
    assert widget.last_result.slice_index == 1


def test_clicks_in_a_renamed_points_layer_keep_it_selected(make_napari_viewer, qtbot, nano_models):
    viewer = make_napari_viewer()
    widget, _image, _truth = _dock(viewer, qtbot, nano_models)
    viewer.layers["boxes"].add_rectangles(BOX)
    wait(qtbot, widget)
    viewer.layers["points"].name = "my clicks"  # the user's now (test_segment_dock_qa2_fixes): clicks go on in
    widget.points_mode()  # a new 'points', which stays selected after each click
    points = viewer.layers["points"]
    assert viewer.layers.selection.active is points
    points.add([[250.0, 250.0]])
    wait(qtbot, widget)
    assert widget.last_error is None and widget.history.current.prompt_text() == "box + 1 point"
    assert viewer.layers.selection.active is points  # the next click adds a point, not a box


def test_segment_again_has_a_free_hotkey_written_on_its_button(make_napari_viewer, qtbot, monkeypatch, nano_models):
    from napari.layers import Labels, Points, Shapes
    from napari.settings import get_settings

    viewer = make_napari_viewer()
    widget, _image, _truth = _dock(viewer, qtbot, nano_models)
    key = str(AGAIN_KEY)
    assert f"[{key}]" in widget.rerun.text
    taken = {str(k) for keys in get_settings().shortcuts.shortcuts.values() for k in keys}
    taken |= {str(k) for cls in (Shapes, Points, Labels) for k in cls.class_keymap} | {str(k) for k in viewer.keymap}
    assert key not in taken
    calls = spy_prompts(widget, monkeypatch)
    viewer.layers["boxes"].add_rectangles(BOX)
    wait(qtbot, widget)
    for layer in ("boxes", "points"):
        viewer.layers.selection.active = viewer.layers[layer]
        n = len(calls)
        press(viewer, AGAIN_KEY)
        wait(qtbot, widget)
        assert len(calls) == n + 1
        np.testing.assert_allclose(calls[-1]["box"], [30, 40, 480, 470])


def test_a_model_file_not_chosen_yet_is_said_plainly(make_napari_viewer, qtbot, nano_models, tmp_path):
    """"model file…" chosen, the field still empty: not "/current/folder is not a file" (magicgui's empty path)."""
    viewer = make_napari_viewer()
    widget, _image, _truth = _dock(viewer, qtbot, nano_models)
    widget.model_file.value = ""
    assert "choose a model file" in widget.status.value and "is not a file" not in widget.status.value
    assert "folder" not in widget.status.value
    widget.model_file.value = tmp_path
    assert f"{tmp_path} is a folder" in widget.status.value
    widget.model_file.value = tmp_path / "gone.safetensors"
    assert "gone.safetensors does not exist" in widget.status.value
    widget.model_file.value = nano_models[0]
    wait(qtbot, widget)
    assert "Embedded" in widget.status.value


def test_another_model_chosen_while_a_mask_is_shown_says_whose_mask_it_is(make_napari_viewer, qtbot, monkeypatch,
                                                                            nano_models):
    viewer = make_napari_viewer()
    widget, _image, _truth = _dock(viewer, qtbot, nano_models)
    calls = spy_prompts(widget, monkeypatch)
    viewer.layers["boxes"].add_rectangles(BOX)
    wait(qtbot, widget)
    shown = mask_of(viewer)
    widget.model_file.value = nano_models[1]  # another model: the mask on screen is still the first one's
    wait(qtbot, widget)
    assert np.array_equal(mask_of(viewer), shown)
    assert "made with another model" in widget.status.value and "[G]" in widget.status.value
    widget.viewer.layers.selection.active = viewer.layers["boxes"]
    press(viewer, AGAIN_KEY)
    wait(qtbot, widget)
    assert widget.last_result.model_file == str(nano_models[1]) and len(calls) == 2
    widget.model_file.value = nano_models[1]  # the same model again: nothing to say
    widget.start_embedding()
    wait(qtbot, widget)
    assert "another model" not in widget.status.value


def test_reset_on_one_plane_of_a_stack_keeps_the_other_planes_prompts(make_napari_viewer, qtbot, monkeypatch,
                                                                      nano_models):
    """R on plane 2 clears plane 2's box, points and mask; plane 1's box and points (which made its mask, still
    shown) stay, so a click there later is prompted with its box as before."""
    viewer, widget = stack_dock(make_napari_viewer, qtbot, nano_models)
    calls = spy_prompts(widget, monkeypatch)
    boxes, points = viewer.layers["boxes"], viewer.layers["points"]
    corners = np.array([[0, 40, 30], [0, 40, 480], [0, 470, 480], [0, 470, 30]], float)
    for plane in (1, 2):
        viewer.dims.set_current_step(0, plane)
        boxes.add_rectangles(corners + [plane, 0, 0])
        wait(qtbot, widget)
        points.add([[plane, 250.0, 250.0]])
        wait(qtbot, widget)
    plane1 = np.array(viewer.layers["lung mask"].data[1], copy=True)
    widget.reset_prompts()  # on plane 2
    assert not viewer.layers["lung mask"].data[2].any()
    np.testing.assert_array_equal(viewer.layers["lung mask"].data[1], plane1)
    assert len(boxes.data) == 1 and np.allclose(np.asarray(boxes.data[0])[:, 0], 1)
    np.testing.assert_allclose(points.data, [[1, 250.0, 250.0]])
    widget.reset_prompts()  # again: nothing more to clear, no new undo step
    assert "Already reset" in widget.status.value and len(boxes.data) == 1
    viewer.dims.set_current_step(0, 1)
    points.add([[1, 200.0, 150.0]])
    wait(qtbot, widget)
    np.testing.assert_allclose(calls[-1]["box"], [30, 40, 480, 470])
    assert len(calls[-1]["point_coords"]) == 2
