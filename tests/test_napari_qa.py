"""The Segment dock used as a newcomer would, in a real napari viewer (Xvfb), with tiny random ``vit_nano``
models (plumbing, not mask quality): a second film chosen mid-session, a prompt layer deleted, a point
clicked beside the film, Reset with its maps' legends."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from test_napari_clicks import click, open_dock, press, spy_prompts, wait  # noqa: E402  (tests/ is on sys.path)

from napari_adaqat.widgets._clicks import RESET_KEY, UNDO_KEY  # noqa: E402

pytestmark = pytest.mark.gui


def _dock(viewer, qtbot, nano_models):
    return open_dock(viewer, qtbot, model_path=nano_models[0], baseline_path=nano_models[1], model_type="vit_nano")


def _paint(viewer, rows: slice, cols: slice) -> np.ndarray:
    """A brush stroke on 'lung mask' (napari's own painting call); returns the mask it leaves."""
    labels = viewer.layers["lung mask"]
    edited = np.array(labels.data, copy=True)
    edited[rows, cols] = 1
    labels.data_setitem(np.nonzero(edited != labels.data), 1)
    return edited


def _open_annotate(viewer, qtbot, films, dataset, model):
    """The Annotate dock from the Plugins menu, with a tiny model, on folder ``films``: its first film open."""
    _, annotate = viewer.window.add_plugin_dock_widget("napari-adaqat", "Annotate folder (AdaLoRA-QAT)")
    annotate.models.model_type.value = "vit_nano"
    annotate.use_model(model)
    annotate.images.value, annotate.dataset.value = str(films), str(dataset)
    annotate.open_button.native.click()
    qtbot.waitUntil(lambda: not annotate.busy, timeout=120_000)
    assert annotate.index == 0, annotate.status.value
    return annotate


def _legends_shown(widget) -> bool:
    return widget.legends.ssim.isVisibleTo(widget.native) or widget.legends.delta.isVisibleTo(widget.native)


def test_another_film_keeps_the_brush_edit_and_shows_its_own_mask(make_napari_viewer, qtbot, monkeypatch,
                                                                   nano_models):
    """Choosing a second film while the first is segmented: the first film's brush edit is not lost and
    comes back with it; 'lung mask' never shows one film's mask over another; each film's clicks use its box."""
    viewer = make_napari_viewer(show=True)
    widget, first, _truth = _dock(viewer, qtbot, nano_models)
    calls = spy_prompts(widget, monkeypatch)
    boxes, points = viewer.layers["boxes"], viewer.layers["points"]
    boxes.add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    edited = _paint(viewer, slice(100, 200), slice(100, 200))

    second = viewer.add_image(np.asarray(first.data)[::-1].copy(), name="second film")
    assert widget.image.value is first  # adding a film does not switch the dock
    widget.image.value = second
    wait(qtbot, widget)
    above = lambda name: viewer.layers.index(viewer.layers[name]) > viewer.layers.index(second)  # noqa: E731
    assert above("boxes") and above("points")  # the film opened last does not hide the box being drawn
    mask = viewer.layers["lung mask"]
    assert not np.asarray(mask.data).any()  # not the first film's mask over the second film
    assert mask.metadata["source_layer_id"] == str(second.unique_id)
    assert "SSIM" not in viewer.layers and not _legends_shown(widget)  # nor its maps
    assert len(boxes.data) == 0 and len(points.data) == 0  # nor its prompts
    boxes.add_rectangles(np.array([[60.0, 50.0], [450.0, 460.0]]))
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert above("lung mask") and above("SSIM") and above("ΔSSIM")  # nor its mask and maps
    second_mask = np.array(mask.data, copy=True)

    widget.image.value = first
    wait(qtbot, widget)
    np.testing.assert_array_equal(viewer.layers["lung mask"].data, edited)  # the brush edit is back
    assert widget.history.current.kind == "brush edit"
    for name in ("SSIM", "ΔSSIM"):  # with the first film's maps, not the second's over it
        assert viewer.layers[name].metadata["source_layer_id"] == str(first.unique_id)
    assert _legends_shown(widget)
    np.testing.assert_allclose(boxes.data[0].min(0), [40.0, 30.0])  # its own box, not the second film's
    points.add([[250.0, 250.0]])
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    np.testing.assert_allclose(calls[-1]["box"], [30, 40, 480, 470])  # the click is prompted with its box
    assert "brush edit of 'lung mask' was the mask prompt" in widget.status.value

    widget.image.value = second
    wait(qtbot, widget)
    np.testing.assert_array_equal(viewer.layers["lung mask"].data, second_mask)
    assert _legends_shown(widget)  # its maps and their legends are back with it
    third = viewer.add_image(np.asarray(first.data)[:, ::-1].copy(), name="third film")
    widget.image.value = third  # a film never segmented, then back
    wait(qtbot, widget)
    assert not np.asarray(viewer.layers["lung mask"].data).any()
    widget.image.value = second
    wait(qtbot, widget)
    np.testing.assert_array_equal(viewer.layers["lung mask"].data, second_mask)
    kept = set(widget._histories)
    viewer.layers.remove(first)  # a film closed: its masks and maps are not kept for the rest of the session
    assert str(first.unique_id) in kept and set(widget._histories) == kept - {str(first.unique_id)}


def test_a_deleted_prompt_layer_comes_back_with_its_button(make_napari_viewer, qtbot, nano_models):
    """Points [P] and Box [B] make their layer again when it was deleted, instead of doing nothing."""
    viewer = make_napari_viewer()
    widget, _image, _truth = _dock(viewer, qtbot, nano_models)
    viewer.layers.remove("points")
    widget.points_button.native.click()
    points = viewer.layers["points"]
    assert viewer.layers.selection.active is points and points.mode == "add"
    points.add([[250.0, 200.0]])
    wait(qtbot, widget)
    assert widget.last_error is None and viewer.layers["lung mask"].data.shape == (512, 512)

    viewer.layers.remove("boxes")
    widget.box_button.native.click()
    boxes = viewer.layers["boxes"]
    assert viewer.layers.selection.active is boxes and boxes.mode == "add_rectangle"
    boxes.add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert widget.history.current.prompt_text() == "box + 1 point"


def test_a_point_beside_the_film_is_not_added_and_says_so(make_napari_viewer, qtbot, monkeypatch, nano_models):
    viewer = make_napari_viewer()
    widget, _image, _truth = _dock(viewer, qtbot, nano_models)
    calls = spy_prompts(widget, monkeypatch)
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    points, n_calls, depth = viewer.layers["points"], len(calls), len(widget.history)
    points.add([[-30.0, 100.0]])  # above the film
    wait(qtbot, widget)
    assert len(points.data) == 0 and len(calls) == n_calls and len(widget.history) == depth
    assert "outside the image" in widget.status.value
    points.add([[250.0, 200.0]])
    wait(qtbot, widget)
    assert len(calls[-1]["point_coords"]) == 1 and "box + 1 point" in widget.status.value


def test_reset_twice_then_one_undo_and_no_stale_legends(make_napari_viewer, qtbot, nano_models):
    """Reset hides the legends of the maps it cleared; R pressed twice is still one Undo from the mask."""
    viewer = make_napari_viewer(show=True)
    widget, _image, _truth = _dock(viewer, qtbot, nano_models)
    boxes = viewer.layers["boxes"]
    boxes.add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    shown = np.array(viewer.layers["lung mask"].data, copy=True)
    assert _legends_shown(widget) and shown.any()
    press(viewer, RESET_KEY)
    assert not np.asarray(viewer.layers["SSIM"].data).min() < 1.0  # the cleared map (agreement everywhere) ...
    assert not _legends_shown(widget)  # ... has no legend with the old image's range
    press(viewer, RESET_KEY)  # twice, quickly
    assert "Already reset" in widget.status.value
    press(viewer, UNDO_KEY)
    np.testing.assert_array_equal(viewer.layers["lung mask"].data, shown)
    assert len(boxes.data) == 1 and _legends_shown(widget) and "this image:" in widget.legends.ssim.text()


CLOSE_WHILE_EMBEDDING = """
import sys, time
import numpy as np
import napari
from napari.settings import get_settings
from qtpy.QtWidgets import QApplication
from napari_adaqat.widgets._shared import shared_engine
from napari_adaqat.widgets.segment import SegmentWidget

get_settings().application.confirm_close_window = False
engine = shared_engine()
embed = engine.embed
engine.embed = lambda *a, **k: time.sleep(2.0) or embed(*a, **k)  # an embedding that is still running at exit
viewer = napari.Viewer(show=True)
viewer.add_image(np.random.default_rng(0).random((64, 64)).astype(np.float32), name="film")
widget = SegmentWidget(viewer, device="cpu", model_path=sys.argv[1], use_baseline=False, model_type="vit_nano")
viewer.window.add_dock_widget(widget)
QApplication.processEvents()
assert widget.busy
viewer.window._qt_window.close()  # the window's close button
print("closed", flush=True)
"""


def test_closing_napari_while_the_dock_embeds_exits_cleanly(tmp_path, nano_models):
    """Closing the window while a job runs, then quitting: the process ends normally, not with "Aborted"."""
    import os
    import subprocess
    import sys

    script = tmp_path / "close_while_embedding.py"
    script.write_text(CLOSE_WHILE_EMBEDDING)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, str(script), str(nano_models[0])], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0 and "closed" in proc.stdout, proc.stderr[-2000:]


def test_train_dock_eta_says_when_there_is_nothing_to_train_on(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    """A folder of films without masks, then a folder that is not there: the ETA line says there is nothing to
    train on (it said "after the data check" once the check was done), and Start refuses in one line."""
    import shutil

    from napari_adaqat.widgets.train import TrainWidget

    widget = TrainWidget(make_napari_viewer())
    (tmp_path / "films" / "images").mkdir(parents=True)
    for image in sorted((cxr_dir / "images").glob("*.png"))[:2]:
        shutil.copy(image, tmp_path / "films" / "images" / image.name)
    widget.out.value = str(tmp_path / "run")
    widget.data.value = str(tmp_path / "films")
    qtbot.waitUntil(lambda: widget.data_report is not None and not widget.checking, timeout=30_000)
    assert "no usable" in widget.eta.value
    assert widget.start() is False and "\n" not in widget.status.value and "missing mask" in widget.status.value
    widget.data.value = str(tmp_path / "not there")
    qtbot.waitUntil(lambda: not widget.checking and widget.data_check.value.startswith("✗"), timeout=30_000)
    assert "after the data check" not in widget.eta.value


def test_clicks_in_the_dock_opened_from_the_plugins_menu_stay_in_points(make_napari_viewer, qtbot, nano_models):
    """napari hands a plugin's dock a proxy of the viewer: after a click's mask the ``points`` layer must stay
    selected (the proxy's layers are other objects than the layers), so the next click adds a point again."""
    from napari_adaqat._sample import chest_xray
    from napari_adaqat.inference.engine import ModelRef

    viewer = make_napari_viewer(show=True)
    for data, kw, kind in chest_xray():
        getattr(viewer, f"add_{kind}")(data, **kw)
    _, widget = viewer.window.add_plugin_dock_widget("napari-adaqat", "Segment lungs (AdaLoRA-QAT)")
    widget.device.value = "cpu"
    widget.use_refs(ModelRef(nano_models[0], model_type="vit_nano"), None)
    wait(qtbot, widget)
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    points = viewer.layers["points"]
    widget.points_button.native.click()
    click(viewer, qtbot, (200.0, 150.0))
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert viewer.layers.selection.active is points and points.mode == "add"
    click(viewer, qtbot, (300.0, 350.0))  # the second click on the canvas is a point too
    wait(qtbot, widget)
    assert len(points.data) == 2 and "box + 2 points" in widget.status.value


def test_segmenting_another_image_leaves_the_annotated_films_mask(make_napari_viewer, qtbot, tmp_path, cxr_dir,
                                                                  nano_models, screenshot_dir):
    """Annotate and Segment docks both open, the Segment dock on another image: its click (and Reset) must not
    write that image's mask into 'lung mask', where the Annotate dock's film and its brush edit are (a draft
    1.5 s later, or Accept, would have saved it as the film's mask); the status line says why, and Accept
    saves the film's own mask."""
    import shutil

    from napari_adaqat.inference.engine import ModelRef
    from napari_adaqat.io import read_image, read_mask

    films = tmp_path / "films"
    films.mkdir()
    names = sorted(p.name for p in (cxr_dir / "images").glob("*.png"))[1:3]  # two 512² films
    for name in names:
        shutil.copy(cxr_dir / "images" / name, films / name)
    viewer = make_napari_viewer(show=True)
    annotate = _open_annotate(viewer, qtbot, films, tmp_path / "dataset", nano_models[0])
    painted = _paint(viewer, slice(150, 300), slice(100, 220)) != 0  # the clinician's brush edit of the film

    other = viewer.add_image(read_image(films / names[1]).pixels, name="another film")  # same size as the film
    _, segment = viewer.window.add_plugin_dock_widget("napari-adaqat", "Segment lungs (AdaLoRA-QAT)")
    segment.device.value = "cpu"
    segment.use_refs(ModelRef(nano_models[0], model_type="vit_nano"), None, quiet=True)
    segment.image.value = other
    wait(qtbot, segment)
    viewer.layers["points"].add(np.array([[256.0, 200.0]]))  # a click meant for the other film
    wait(qtbot, segment)
    mask = viewer.layers["lung mask"]
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, painted)  # the film's mask is untouched
    assert mask.metadata["source_layer_id"] == str(annotate.layers.image.unique_id)
    assert "Annotate dock" in segment.status.value and "\n" not in segment.status.value
    assert segment.status.value.count(annotate.layers.image.name) == 1  # (once: it was a 9-line paragraph)
    assert len(viewer.layers["points"].data) == 1  # the click is not thrown away either
    segment.reset_prompts()  # nor does Reset clear the film's mask
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, painted)
    from napari_adaqat.widgets import _layers as L  # the last guard, where every dock writes 'lung mask'

    assert L.show_mask(viewer, other, np.ones(painted.shape, bool), None) is None
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, painted)
    viewer.window._qt_window.resize(1600, 950)
    viewer.reset_view()
    qtbot.wait(300)
    viewer.screenshot(str(screenshot_dir / "screenshot_annotate_and_segment_another_image.png"), canvas_only=False)
    mask.metadata["source_layer_id"] = str(other.unique_id)  # were another image's mask there: never saved
    assert not annotate.accept() and "another image's mask" in annotate.status.value
    mask.metadata["source_layer_id"] = str(annotate.layers.image.unique_id)
    assert annotate.accept()
    np.testing.assert_array_equal(read_mask(tmp_path / "dataset" / "masks" / names[0]) != 0, painted)
    qtbot.waitUntil(lambda: not annotate.jobs.busy and not segment.busy, timeout=120_000)


def test_a_box_still_segmenting_when_another_image_is_chosen_comes_back_with_it(make_napari_viewer, qtbot,
                                                                              monkeypatch, nano_models):
    """A box whose prompt is still running when the user chooses another image is not lost: coming back to the
    first image shows the box again and its mask (the prompt runs again)."""
    import threading

    viewer = make_napari_viewer()
    widget, first, _truth = _dock(viewer, qtbot, nano_models)
    second = viewer.add_image(np.asarray(first.data)[::-1].copy(), name="second film")
    started, gate, predict = threading.Event(), threading.Event(), widget._predict

    def held(*args):  # the box's prompt waits in the worker until the other image is chosen
        started.set()
        assert gate.wait(120)
        return predict(*args)

    monkeypatch.setattr(widget, "_predict", held)
    monkeypatch.setattr(widget, "_quick_prompt", lambda *a: False)  # the worker, not inline
    boxes = viewer.layers["boxes"]
    boxes.add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    qtbot.waitUntil(started.is_set, timeout=120_000)
    widget.image.value = second
    gate.set()
    wait(qtbot, widget)
    assert len(boxes.data) == 0  # the second image's own (no) boxes
    shown = viewer.layers["lung mask"] if "lung mask" in viewer.layers else None
    assert shown is None or shown.metadata["source_layer_id"] == str(second.unique_id)  # no mask of the first
    widget.image.value = first
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert len(boxes.data) == 1  # the box the user drew is back ...
    np.testing.assert_allclose(boxes.data[0].min(0), [40.0, 30.0])
    state = widget.history.current  # ... with its mask, one Undo away from the start
    assert state.kind == "box" and state.box_index == 0 and state.mask is not None
    mask = viewer.layers["lung mask"]
    assert mask.metadata["source_layer_id"] == str(first.unique_id)
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, state.mask)
    np.testing.assert_allclose(mask.metadata["box_xyxy"], [30, 40, 480, 470])


def test_opening_the_annotate_dock_keeps_the_segment_docks_brush_edit(make_napari_viewer, qtbot, tmp_path, cxr_dir,
                                                                      nano_models, screenshot_dir):
    """The Segment dock's mask, brush-edited and not saved anywhere, is in 'lung mask' when the user opens a folder
    in the Annotate dock: the film's mask must not overwrite it. It is kept as its own layer, and the status
    line says where; the film gets a fresh 'lung mask'."""
    import shutil

    viewer = make_napari_viewer(show=True)
    widget, first, _truth = _dock(viewer, qtbot, nano_models)
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    edited = _paint(viewer, slice(100, 200), slice(100, 200)) != 0  # the user's correction, never saved

    films = tmp_path / "films"
    films.mkdir()
    name = sorted(p.name for p in (cxr_dir / "images").glob("*.png"))[1]
    shutil.copy(cxr_dir / "images" / name, films / name)
    annotate = _open_annotate(viewer, qtbot, films, tmp_path / "dataset", nano_models[0])

    kept = viewer.layers[f"lung mask of {first.name}"]
    np.testing.assert_array_equal(np.asarray(kept.data) != 0, edited)  # the edit is still there, pixel for pixel
    assert kept.metadata["source_layer_id"] == str(first.unique_id)
    film_mask = viewer.layers["lung mask"]
    assert film_mask is not kept and film_mask.metadata["source_layer_id"] == str(annotate.layers.image.unique_id)
    assert f"kept as the layer 'lung mask of {first.name}'" in annotate.status.value
    assert "SSIM" not in viewer.layers and not _legends_shown(widget)  # no legend of maps no longer shown
    viewer.window._qt_window.resize(1600, 950)
    viewer.reset_view()
    qtbot.wait(300)
    viewer.screenshot(str(screenshot_dir / "screenshot_annotate_keeps_segment_mask.png"), canvas_only=False)
    annotate.skip()  # the next film (none left) reuses the film's own layer: nothing else is renamed
    assert [ly.name for ly in viewer.layers].count(f"lung mask of {first.name}") == 1
    qtbot.waitUntil(lambda: not annotate.jobs.busy and not widget.busy, timeout=120_000)


def test_the_pth_architecture_field_shows_only_for_pth_files(make_napari_viewer, qtbot, nano_models):
    """'.pth architecture' is a question about official SAM .pth files; our .safetensors files carry theirs."""
    from napari_adaqat.model.loading import DEFAULT_BASELINE, DEFAULT_MODEL

    viewer = make_napari_viewer()
    widget, _first, _truth = _dock(viewer, qtbot, nano_models)
    models = widget.models
    shown = lambda field: not field.native.isHidden()  # noqa: E731  (the viewer is not on screen)
    assert shown(models.model_type)  # the tiny .pth models: their architecture is asked
    models.set_files(DEFAULT_MODEL, DEFAULT_BASELINE)
    wait(qtbot, widget)
    assert shown(models.model_file) and not shown(models.model_type)
    models.baseline_file.value = str(nano_models[1])  # one .pth among them: asked again
    assert shown(models.model_type)
