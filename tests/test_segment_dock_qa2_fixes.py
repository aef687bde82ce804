"""The Segment dock's fixes of the second QA pass, in a real napari viewer (Xvfb): the SSIM / ΔSSIM maps clipped to the
box as the masks are, and an empty mask said in one line (finding 2); the "lies over" line dropped with the film
that hid (6); only the box in use left in 'boxes', the others one Undo away (8); going back to an image embedded a
moment ago costs nothing (9).  Tiny random ``vit_nano`` models, except the corner box of the bundled model."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from test_napari_clicks import HAVE_DEFAULT, open_dock, spy_prompts, wait  # noqa: E402  (tests/ on sys.path)
from test_napari_segment import draw_with_mouse  # noqa: E402

import napari_adaqat.inference.predictor as predictor_module  # noqa: E402
from napari_adaqat._sample import chest_xray  # noqa: E402
from napari_adaqat.data.boxes import clip_rectangle  # noqa: E402
from napari_adaqat.inference.engine import Engine, model_ref  # noqa: E402
from napari_adaqat.inference.segmenter import open_model  # noqa: E402
from napari_adaqat.widgets.segment import SegmentWidget  # noqa: E402

pytestmark = pytest.mark.gui
CORNER = np.array([[5.0, 5.0], [45.0, 45.0]])  # (row, col) corners: no lung in there
UPPER_LEFT = np.array([[40.0, 30.0], [230.0, 220.0]])
SSIM_REACH = 3  # an SSIM map's 7-px window reaches this far past the clip rectangle


def _outside(shape: tuple[int, int], rect: tuple[int, int, int, int], reach: int = 0) -> np.ndarray:
    """(H, W) bool: the pixels farther than ``reach`` from the clip rectangle (r0, r1, c0, c1)."""
    r0, r1, c0, c1 = rect
    out = np.ones(shape, dtype=bool)
    out[max(0, r0 - reach):r1 + reach, max(0, c0 - reach):c1 + reach] = False
    return out


@pytest.mark.skipif(not HAVE_DEFAULT, reason="bundled default model not installed")
def test_a_box_in_an_empty_corner_gives_clear_maps_and_says_so(make_napari_viewer, qtbot, screenshot_dir):
    """The bundled model and its FP32 baseline: the mask of a corner box is empty, so are its ΔSSIM map (the
    baseline's lung outside the box showed as magenta) and its SSIM map's departures, and the status says why."""
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "none"
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1900, 1000)
    widget, _image, truth = open_dock(viewer, qtbot)
    truth.visible = False
    viewer.layers["boxes"].add_rectangles(CORNER)
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert not viewer.layers["lung mask"].data.any()
    assert not np.asarray(viewer.layers["ΔSSIM"].data).any()
    assert np.asarray(viewer.layers["SSIM"].data).min() > 0.99  # model and baseline agree: clear everywhere
    first_line = widget.status.value.splitlines()[0]
    assert first_line == "The box holds no lung: draw it around both lungs (or around one lung)."
    viewer.reset_view()
    qtbot.wait(200)
    viewer.screenshot(str(screenshot_dir / "segment_corner_box.png"), canvas_only=False)


def test_the_maps_leave_out_what_the_box_clips(make_napari_viewer, qtbot, nano_models):
    """Two random models differ everywhere; with a box, the maps compare them only where the masks can be (the box plus
    its margin), with and without a reference, and the mask is the API's for the same box."""
    viewer = make_napari_viewer(show=True)
    widget, image, truth = open_dock(viewer, qtbot, model_path=nano_models[0], baseline_path=nano_models[1],
                                     model_type="vit_nano")
    boxes = viewer.layers["boxes"]
    rect = clip_rectangle((512, 512), np.array([30.0, 40.0, 220.0, 230.0]))
    for reference in (None, truth):
        widget.reference.value = reference
        boxes.add_rectangles(UPPER_LEFT)
        wait(qtbot, widget)
        assert widget.last_error is None, widget.last_error
        delta = np.asarray(viewer.layers["ΔSSIM"].data)
        assert delta[~_outside(delta.shape, rect)].any()  # the models differ inside the box ...
        assert not delta[_outside(delta.shape, rect, SSIM_REACH)].any()  # ... and nothing counts outside it
    api = open_model(nano_models[0], model_type="vit_nano", device="cpu").segment(image.data, [30, 40, 220, 230])
    np.testing.assert_array_equal(viewer.layers["lung mask"].data != 0, api)


def test_the_engine_maps_of_adaqat_evaluate_are_clipped_too(nano_models):
    """``adaqat evaluate`` and the docks share :meth:`Engine.add_maps`: its maps are clipped (``clip=False``: not), the
    probabilities it keeps are the model's, and the mask is the API's."""
    pixels = chest_xray()[0][0]
    engine = Engine()
    model, base = model_ref(nano_models[0], model_type="vit_nano"), model_ref(nano_models[1], model_type="vit_nano")
    box = np.array([30.0, 40.0, 220.0, 230.0])
    result = engine.segment(pixels, box, model, base)
    assert not result.delta[_outside(pixels.shape, clip_rectangle(pixels.shape, box))].any()
    assert result.p_baseline[_outside(pixels.shape, clip_rectangle(pixels.shape, box))].max() > 0  # (kept raw)
    unclipped = engine.segment(pixels, box, model, base, clip=False)
    assert unclipped.delta[_outside(pixels.shape, clip_rectangle(pixels.shape, box))].any()
    np.testing.assert_array_equal(result.mask, open_model(nano_models[0], model_type="vit_nano",
                                                          device="cpu").segment(pixels, box))


def test_the_line_on_a_hiding_film_goes_with_that_film(make_napari_viewer, qtbot, nano_models):
    """'second' lies over 'first' and hides it: the status says so, after a box too; once 'second' is deleted the
    line is gone (it stayed), and the rest of the status stays."""
    viewer = make_napari_viewer(show=True)
    pixels = chest_xray()[0][0]
    first = viewer.add_image(pixels, name="first")
    second = viewer.add_image(pixels[::-1].copy(), name="second")
    widget = SegmentWidget(viewer, device="cpu", model_path=nano_models[0], use_baseline=False, model_type="vit_nano")
    viewer.window.add_dock_widget(widget)
    wait(qtbot, widget)
    viewer.layers.selection.active = first
    wait(qtbot, widget)
    assert widget.image.value is first and "'second' lies over 'first'" in widget.status.value
    viewer.layers["boxes"].add_rectangles(UPPER_LEFT)
    wait(qtbot, widget)
    assert "'second' lies over 'first'" in widget.status.value and "latency" in widget.status.value
    viewer.layers.remove(second)
    qtbot.wait(50)
    assert "lies over" not in widget.status.value and "latency" in widget.status.value
    viewer.layers["points"].add([[150.0, 120.0]])  # and the next prompt's line does not bring it back
    wait(qtbot, widget)
    assert "lies over" not in widget.status.value and "1 point" in widget.status.value


def test_only_the_box_in_use_stays_and_undo_brings_back_the_others(make_napari_viewer, qtbot, monkeypatch,
                                                                   nano_models):
    """Each new box (drawn with the mouse too) replaces the one before on the canvas; Undo puts the one before back,
    Redo the new one; boxes there before the dock's first prompt come back with the first Undo."""
    viewer = make_napari_viewer(show=True)
    widget, _image, _truth = open_dock(viewer, qtbot, model_path=nano_models[0], use_baseline=False,
                                       model_type="vit_nano")
    calls = spy_prompts(widget, monkeypatch)
    boxes = viewer.layers["boxes"]
    earlier = [np.array([[60.0, 60.0], [300.0, 300.0]]), np.array([[100.0, 250.0], [400.0, 480.0]])]
    with _quiet(widget):
        boxes.add_rectangles(earlier)  # (drawn before the dock prompted anything: no state holds them)
    boxes.add_rectangles(UPPER_LEFT)
    wait(qtbot, widget)
    assert len(boxes.data) == 1 and np.allclose(boxes.data[0][[0, 2]], UPPER_LEFT)
    viewer.reset_view()
    draw_with_mouse(viewer, qtbot, (60.0, 50.0), (460.0, 470.0))
    wait(qtbot, widget)
    assert len(boxes.data) == 1 and len(calls) == 2
    np.testing.assert_allclose(calls[-1]["box"], [50, 60, 470, 460], atol=3)
    drawn = np.array(boxes.data[0], copy=True)
    widget.undo()
    assert len(boxes.data) == 1 and np.allclose(boxes.data[0][[0, 2]], UPPER_LEFT)
    widget.undo()  # the start: the boxes that were there
    assert sorted(np.asarray(b)[0].tolist() for b in boxes.data) == sorted(e[0].tolist() for e in earlier)
    widget.redo()
    widget.redo()
    assert len(boxes.data) == 1 and np.allclose(boxes.data[0], drawn)
    mask = viewer.layers["lung mask"]  # a brush edit, then a new box: Undo shows the edit with the box it was made on
    mask.data_setitem((np.arange(200, 220), np.arange(200, 220)), np.ones(20, dtype=mask.data.dtype))
    edited = np.array(mask.data, copy=True)
    boxes.add_rectangles(UPPER_LEFT + 10)
    wait(qtbot, widget)
    assert len(boxes.data) == 1
    widget.undo()
    assert widget.history.current.kind == "brush edit" and np.array_equal(mask.data, edited)
    assert len(boxes.data) == 1 and np.allclose(boxes.data[0], drawn)


class _quiet:
    """Add shapes to 'boxes' without the dock prompting (as if drawn before it was opened)."""

    def __init__(self, widget: SegmentWidget) -> None:
        self.widget = widget

    def __enter__(self) -> None:
        self.widget._restoring = True

    def __exit__(self, *_exc: object) -> None:
        self.widget._restoring = False


def test_going_back_to_an_image_embedded_a_moment_ago_computes_nothing(make_napari_viewer, qtbot, monkeypatch,
                                                                       nano_models):
    """A → B → A → B: each image is embedded once (encoder and per-image decoder parts); new pixels in a layer are
    embedded again."""
    viewer = make_napari_viewer(show=True)
    pixels = chest_xray()[0][0]  # (films no other test embeds: the engine, and its caches, are the session's)
    a = viewer.add_image(np.roll(pixels, 17, axis=1), name="A")
    b = viewer.add_image(np.roll(pixels, 17, axis=0), name="B")
    widget = SegmentWidget(viewer, device="cpu", model_path=nano_models[0], baseline_path=nano_models[1],
                           model_type="vit_nano")
    viewer.window.add_dock_widget(widget)
    wait(qtbot, widget)
    encoder, parts = [], []
    real_embed, real_vote = predictor_module.BoxPredictor._embed_batch, predictor_module.film_vote
    monkeypatch.setattr(predictor_module.BoxPredictor, "_embed_batch",
                        lambda self, *args, **kw: encoder.append(1) or real_embed(self, *args, **kw))
    monkeypatch.setattr(predictor_module, "film_vote", lambda *args, **kw: parts.append(1) or real_vote(*args, **kw))
    for layer in (a, b, a, b):
        widget.image.value = layer
        wait(qtbot, widget)
        assert widget.last_error is None, widget.last_error
    assert len(encoder) == 2 and len(parts) == 2  # A, with the model and its baseline; B was embedded at the start
    a.data = np.roll(pixels, 31, axis=1)  # other pixels in A: embedded anew
    widget.image.value = a
    wait(qtbot, widget)
    assert len(encoder) == 4 and len(parts) == 4


def test_a_renamed_lung_mask_is_said_to_be_left_as_it_was(make_napari_viewer, qtbot, nano_models):
    """A QA find: after 'lung mask' was renamed ("my lungs"), the next box made a new 'lung mask' and left the renamed
    copy beside it without a word. The status line says which layer is the dock's now."""
    viewer = make_napari_viewer()
    widget, _image, _truth = open_dock(viewer, qtbot, model_path=nano_models[0], use_baseline=False,
                                       model_type="vit_nano")
    viewer.layers["boxes"].add_rectangles(UPPER_LEFT)
    wait(qtbot, widget)
    assert "renamed" not in widget.status.value
    viewer.layers["lung mask"].name = "my lungs"
    viewer.layers["boxes"].add_rectangles(UPPER_LEFT + 10)
    wait(qtbot, widget)
    assert "lung mask" in viewer.layers and "my lungs" in viewer.layers
    assert widget.status.value.endswith("'my lungs' (a renamed 'lung mask' of this image) is left as it was; this "
                                        "dock's mask is in 'lung mask'"), widget.status.value


def test_a_renamed_points_layer_is_the_users_and_the_clicks_go_on_in_a_new_one(make_napari_viewer, qtbot,
                                                                              nano_models, monkeypatch):
    """A renamed 'points' was read by the dock until the next image, which then made a second 'points' holding the
    same points beside it, without a word. Now, as a renamed 'lung mask', it is the user's at once: left as it is,
    and the dock's clicks go on in a new 'points' that starts with the same points (nothing segmented again)."""
    viewer = make_napari_viewer()
    widget, image, _truth = open_dock(viewer, qtbot, model_path=nano_models[0], use_baseline=False,
                                      model_type="vit_nano")
    calls = spy_prompts(widget, monkeypatch)
    widget.points_mode()
    viewer.layers["points"].add([[200.0, 150.0]])
    wait(qtbot, widget)
    asked = len(calls)
    mine = viewer.layers["points"]
    mine.name = "my points"
    assert len(calls) == asked  # the copy is the prompt on screen: not segmented again
    assert "'my points' (the renamed 'points') is yours now" in widget.status.value, widget.status.value
    dock_points = viewer.layers["points"]
    assert dock_points is not mine and viewer.layers.selection.active is dock_points and dock_points.mode == "add"
    np.testing.assert_allclose(dock_points.data, [[200.0, 150.0]])
    assert mine.mode == "pan_zoom"
    viewer.layers.selection.active = mine
    viewer.window._qt_viewer._key_map_handler.press_key("R")  # the dock's keys are gone from the user's layer
    assert len(calls) == asked and widget.history.current.kind != "reset"
    dock_points.add([[300.0, 350.0]])
    wait(qtbot, widget)
    assert len(calls[-1]["point_coords"]) == 2 and len(mine.data) == 1  # the user's layer is left as it was
    mine.add([[100.0, 100.0]])  # points added to the user's layer prompt nothing
    qtbot.wait(50)
    assert len(calls) == asked + 1 and not widget.busy
    widget.undo()
    wait(qtbot, widget)
    other = viewer.add_image(np.asarray(image.data)[::-1].copy(), name="flipped")
    widget.image.value = other
    wait(qtbot, widget)
    widget.image.value = image
    wait(qtbot, widget)
    names = [layer.name for layer in viewer.layers if type(layer).__name__ == "Points"]
    assert sorted(names) == ["my points", "points"], names  # no second dock layer
    np.testing.assert_allclose(viewer.layers["points"].data, [[200.0, 150.0]])
    assert len(mine.data) == 2


def test_a_renamed_boxes_layer_keeps_its_box_and_the_dock_goes_on_in_a_new_one(make_napari_viewer, qtbot,
                                                                             nano_models, monkeypatch):
    """A renamed 'boxes' was read by the dock until the next image, which then emptied it (the user's box lost)
    and made a new 'boxes'. Now it is the user's at once, its box kept; the dock's boxes go on in a new 'boxes'."""
    viewer, widget, image, calls = _boxed_nano(make_napari_viewer, qtbot, nano_models, monkeypatch)
    asked, mine = len(calls), viewer.layers["boxes"]
    mine.name = "my box"
    assert len(calls) == asked and "'my box' (the renamed 'boxes') is yours now" in widget.status.value
    dock_boxes = viewer.layers["boxes"]
    assert dock_boxes is not mine and viewer.layers.selection.active is dock_boxes  # (it was selected: drawing)
    assert dock_boxes.mode == "add_rectangle" and mine.mode == "pan_zoom"
    np.testing.assert_allclose(dock_boxes.data[0], mine.data[0])
    dock_boxes.add_rectangles(UPPER_LEFT + 10)
    wait(qtbot, widget)
    assert len(calls) == asked + 1 and len(mine.data) == 1
    other = viewer.add_image(np.asarray(image.data)[::-1].copy(), name="flipped")
    widget.image.value = other
    wait(qtbot, widget)
    widget.image.value = image
    wait(qtbot, widget)
    shapes = {layer.name: len(layer.data) for layer in viewer.layers if type(layer).__name__ == "Shapes"}
    assert shapes == {"my box": 1, "boxes": 1}, shapes  # the user's box kept; one dock layer


def test_points_made_again_after_their_layer_was_deleted_hold_the_prompt_on_screen(make_napari_viewer, qtbot,
                                                                                   nano_models, monkeypatch):
    """A QA find: 'points' deleted, then Points [P] made an empty 'points' while the mask on screen was a click's:
    the point was gone from view and the next click was prompted without it."""
    viewer, widget, _image, calls = _boxed_nano(make_napari_viewer, qtbot, nano_models, monkeypatch)
    viewer.layers["points"].add([[120.0, 100.0]])
    wait(qtbot, widget)
    viewer.layers.remove("points")
    widget.points_mode()
    np.testing.assert_allclose(viewer.layers["points"].data, [[120.0, 100.0]])
    viewer.layers["points"].add([[150.0, 110.0]])
    wait(qtbot, widget)
    np.testing.assert_allclose(calls[-1]["point_coords"], [[100.0, 120.0], [110.0, 150.0]])


def _boxed_nano(make_napari_viewer, qtbot, nano_models, monkeypatch) -> tuple:
    """A viewer, the Segment dock on a tiny random model, its film, and the prompts it sends after a first box."""
    viewer = make_napari_viewer()
    widget, image, _truth = open_dock(viewer, qtbot, model_path=nano_models[0], use_baseline=False,
                                      model_type="vit_nano")
    calls = spy_prompts(widget, monkeypatch)
    viewer.layers["boxes"].add_rectangles(UPPER_LEFT)
    wait(qtbot, widget)
    return viewer, widget, image, calls


def test_a_prompt_layer_renamed_with_no_image_chosen_is_said(make_napari_viewer, qtbot, nano_models, monkeypatch):
    """A review find: with no image chosen (the film deleted), renaming 'points' said nothing."""
    viewer, widget, image, _calls = _boxed_nano(make_napari_viewer, qtbot, nano_models, monkeypatch)
    points = viewer.layers["points"]
    viewer.layers.remove(image)
    viewer.layers.remove("true lung mask (CC BY 4.0)")
    qtbot.wait(50)
    assert widget.image.value is None
    points.name = "kept clicks"
    assert widget.status.value == ("'kept clicks' (the renamed 'points') is yours now and is left as it is; this "
                                   "dock makes a new 'points' when an image is chosen."), widget.status.value
