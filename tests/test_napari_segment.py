"""The Segment dock in a real napari viewer (Xvfb): boxes → lung mask, SSIM and ΔSSIM layers.

Tiny random ``vit_nano`` models stand in for the bundled ones, except in the Dice test, which
needs the bundled default model and is skipped until it is installed.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

import torch  # noqa: E402
from qtpy.QtCore import QEvent, QPointF, Qt  # noqa: E402
from qtpy.QtGui import QMouseEvent  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat._sample import chest_xray  # noqa: E402
from napari_adaqat.data.boxes import clip_rectangle  # noqa: E402
from napari_adaqat.inference.predictor import BoxPredictor  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets.segment import SegmentWidget  # noqa: E402

pytestmark = pytest.mark.gui
WAIT_MS = 120_000


def add_sample(viewer) -> tuple:
    """Add the sample radiograph and its true mask through the sample-data function."""
    layers = [getattr(viewer, f"add_{kind}")(data, **kw) for data, kw, kind in chest_xray()]
    return layers[0], layers[1]


def dock(viewer, qtbot, **kwargs) -> SegmentWidget:
    widget = SegmentWidget(viewer, **kwargs)
    viewer.window.add_dock_widget(widget, name="Segment lungs (AdaLoRA-QAT)")
    wait(qtbot, widget)
    return widget


def wait(qtbot, widget: SegmentWidget, timeout: int = WAIT_MS) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def draw_with_mouse(viewer, qtbot, start_rc, end_rc) -> None:
    """Drag a rectangle on the real canvas with Qt mouse events (press, moves, release)."""
    canvas = viewer.window._qt_viewer.canvas
    native = canvas.native

    def to_canvas(rc):
        return np.asarray(canvas.view.scene.transform.map([rc[1], rc[0]])[:2], dtype=float)

    def send(kind, xy, button, buttons):
        native.event(QMouseEvent(kind, QPointF(*xy), button, buttons, Qt.NoModifier))
        qtbot.wait(5)

    a, b = to_canvas(start_rc), to_canvas(end_rc)
    send(QEvent.MouseButtonPress, a, Qt.LeftButton, Qt.LeftButton)
    for t in np.linspace(0.25, 1.0, 4):
        send(QEvent.MouseMove, a + t * (b - a), Qt.NoButton, Qt.LeftButton)
    send(QEvent.MouseButtonRelease, b, Qt.LeftButton, Qt.NoButton)


def probs(model_path: Path, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    sam = loading.load_model(model_path, model_type="vit_nano")
    predictor = BoxPredictor(sam, "cpu")
    predictor.set_image(image)
    return predictor.predict(box).probs[0].astype(np.float64)


def test_boxes_from_api_and_mouse_give_mask_ssim_and_delta(make_napari_viewer, qtbot, nano_models):
    model, baseline = nano_models
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    image, truth = add_sample(viewer)
    widget = dock(viewer, qtbot, model_path=model, baseline_path=baseline, model_type="vit_nano")
    assert widget.image.value is image and "Embedded" in widget.status.value
    boxes = viewer.layers["boxes"]
    assert boxes.mode == "add_rectangle" and viewer.layers.selection.active is boxes

    # 1) a rectangle through the Shapes API, no reference: agreement map + signed mask difference
    boxes.add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    mask, ssim, delta = viewer.layers["lung mask"], viewer.layers["SSIM"], viewer.layers["ΔSSIM"]
    assert mask.data.shape == ssim.data.shape == delta.data.shape == (512, 512)
    assert set(np.unique(mask.data)) <= {0, 1}
    assert 0.0 <= ssim.data.min() and ssim.data.max() <= 1.0 + 1e-6
    assert set(np.unique(delta.data)) <= {-1.0, 0.0, 1.0}
    assert tuple(ssim.contrast_limits) == (0.0, 1.0) and tuple(delta.contrast_limits) == (-1.0, 1.0)
    np.testing.assert_allclose(widget.last_result.box, [30, 40, 480, 470])
    assert "latency" in widget.status.value and "SSIM" in widget.status.value
    # the prompt layers stay on top (points above boxes) and boxes stays selected, ready for the next box
    assert viewer.layers[-2] is boxes and viewer.layers[-1] is viewer.layers["points"]
    assert viewer.layers.selection.active is boxes

    # 2) choose the true mask as reference, then draw a second rectangle with the mouse
    widget.reference.value = truth
    wait(qtbot, widget)
    assert widget.last_result.has_reference
    draw_with_mouse(viewer, qtbot, (60.0, 50.0), (460.0, 470.0))
    assert len(boxes.data) == 1  # only the box in use stays (Undo brings the first back)
    wait(qtbot, widget)
    result = widget.last_result
    np.testing.assert_allclose(result.box, [50, 60, 470, 460], atol=1.5)
    assert "Dice vs reference" in widget.status.value and "ΔSSIM" in widget.status.value
    # the maps made, the probabilities behind them are freed: the undo state holds the mask and the maps
    assert result.p_model is None and result.p_baseline is None and result.baseline_mask is None
    held = result.mask.nbytes + result.ssim.nbytes + result.delta.nbytes
    assert held <= widget.history.current.nbytes() <= held + 64  # (+ the box, 4 floats)

    # ΔSSIM = SSIM(model, ref) − SSIM(baseline, ref), recomputed independently with skimage, of the probabilities
    # cleared outside the box plus its margin, as the masks are
    ref = (truth.data != 0).astype(np.float64)
    r0, r1, c0, c1 = clip_rectangle(ref.shape, result.box)
    inside = np.zeros(ref.shape)
    inside[r0:r1, c0:c1] = 1
    p_model, p_base = probs(model, image.data, result.box) * inside, probs(baseline, image.data, result.box) * inside
    _, s_model = structural_similarity(p_model, ref, full=True, data_range=1)
    _, s_base = structural_similarity(p_base, ref, full=True, data_range=1)
    delta = viewer.layers["ΔSSIM"].data
    assert delta.shape == (512, 512) and np.abs(delta).max() > 0
    np.testing.assert_allclose(delta, s_model - s_base, atol=1e-4)
    np.testing.assert_allclose(viewer.layers["SSIM"].data, s_model, atol=1e-4)
    from napari_adaqat.inference.postprocess import finish_mask

    expected = finish_mask(p_model > 0.5, result.box, clean=bool(widget.clean.value))  # clipped to the box, cleaned
    np.testing.assert_array_equal(viewer.layers["lung mask"].data, expected.astype(np.uint8))


def test_plugin_dock_with_model_files_chosen_in_the_ui(make_napari_viewer, qtbot, nano_models):
    """The dock as napari builds it (viewer proxy); model files picked through its widgets."""
    viewer = make_napari_viewer()
    viewer.open_sample("napari-adaqat", "chest_xray")
    _, widget = viewer.window.add_plugin_dock_widget("napari-adaqat", "Segment lungs (AdaLoRA-QAT)")
    if not loading.DEFAULT_MODEL.is_file():
        assert "Not installed" in widget.status.value
    widget.model_type.value = "vit_nano"
    widget.baseline.value = "none"
    widget.model.value = "file"
    widget.model_file.value = nano_models[0]
    wait(qtbot, widget)
    viewer.layers["boxes"].add_rectangles(np.array([[100.0, 80.0], [400.0, 420.0]]))
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert viewer.layers["lung mask"].data.shape == (512, 512)
    assert "SSIM" not in viewer.layers and "ΔSSIM" not in viewer.layers  # no baseline, no reference


def test_rgb_image_and_3d_stack(make_napari_viewer, qtbot, nano_models):
    model, baseline = nano_models
    viewer = make_napari_viewer()
    rgb = np.random.default_rng(0).integers(0, 255, (96, 80, 3), dtype=np.uint8)
    viewer.add_image(rgb, name="rgb", rgb=True)
    widget = dock(viewer, qtbot, model_path=model, baseline_path=baseline, model_type="vit_nano")
    viewer.layers["boxes"].add_rectangles(np.array([[10.0, 10.0], [80.0, 70.0]]))
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert viewer.layers["lung mask"].data.shape == (96, 80)

    stack = np.random.default_rng(1).random((3, 64, 72)).astype(np.float32)
    viewer.layers.clear()
    viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5))
    wait(qtbot, widget)
    assert widget.image.value.name == "stack" and viewer.layers["boxes"].ndim == 3
    viewer.dims.set_current_step(0, 1)
    corners = np.array([[1, 5, 5], [1, 5, 70], [1, 60, 70], [1, 60, 5]], dtype=float)
    viewer.layers["boxes"].add_rectangles(corners)
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    assert widget.last_result.slice_index == 1
    np.testing.assert_allclose(widget.last_result.box, [5, 5, 70, 60])
    labels = viewer.layers["lung mask"]
    assert labels.data.shape == (3, 64, 72) and tuple(labels.scale) == (2.0, 0.5, 0.5)
    assert not labels.data[0].any() and not labels.data[2].any()
    assert viewer.layers["ΔSSIM"].data.shape == (3, 64, 72)
    assert labels.data[1].any()

    # a second stack of the same shape: its results never mix with the first stack's planes
    viewer.add_image(stack[::-1].copy(), name="stack 2", scale=(2.0, 0.5, 0.5))
    widget.image.value = viewer.layers["stack 2"]
    wait(qtbot, widget)
    viewer.dims.set_current_step(0, 2)
    viewer.layers["boxes"].add_rectangles(corners + np.array([1.0, 0.0, 0.0]))
    wait(qtbot, widget)
    assert widget.last_error is None and widget.last_result.slice_index == 2
    labels = viewer.layers["lung mask"]
    assert labels.data[2].any() and not labels.data[1].any()

    # a reference with another number of planes is refused, not silently compared to the wrong plane
    viewer.add_labels(np.zeros((2, 64, 72), np.uint8), name="short ref")
    widget.reference.value = viewer.layers["short ref"]
    widget.segment_shape(len(viewer.layers["boxes"].data) - 1)
    assert "2 planes, the image 3" in (widget.last_error or "")


def test_errors_are_reported_and_the_viewer_stays_up(make_napari_viewer, qtbot, nano_models, tmp_path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    viewer = make_napari_viewer()
    add_sample(viewer)
    widget = dock(viewer, qtbot, model_path=bad, use_baseline=False)
    assert widget.last_error is not None and "Error" in widget.status.value  # raised in the worker
    widget.last_error = None
    widget.model_file.value = nano_models[0]
    widget.model_type.value = "vit_nano"
    if not torch.cuda.is_available():
        widget.device.value = "cuda"
        assert "Not ready" in widget.status.value
        viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
        assert "CUDA" in widget.last_error
        widget.device.value = "cpu"
    wait(qtbot, widget)
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    assert "lung mask" in viewer.layers and "latency" in widget.status.value


def test_screenshot_of_a_segmentation(make_napari_viewer, qtbot, nano_models, screenshot_dir):
    """Saves screenshot_segment.png (see the ``screenshot_dir`` fixture) (bundled model when installed, else the random nano model)."""
    from napari.settings import get_settings

    get_settings().application.gui_notification_level = "none"
    have_default = loading.DEFAULT_MODEL.is_file() and loading.DEFAULT_BASELINE.is_file()
    kwargs = {} if have_default else dict(model_path=nano_models[0], baseline_path=nano_models[1],
                                          model_type="vit_nano")
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    image, truth = add_sample(viewer)
    truth.visible = False
    widget = dock(viewer, qtbot, **kwargs)
    widget.reference.value = truth
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget, timeout=600_000)
    assert widget.last_error is None, widget.last_error
    viewer.reset_view()
    qtbot.wait(200)
    out = screenshot_dir / "screenshot_segment.png"
    shot = viewer.screenshot(str(out), canvas_only=False)
    assert out.is_file() and shot.shape[0] >= 600 and shot.shape[1] >= 1000


@pytest.mark.skipif(not (loading.DEFAULT_MODEL.is_file() and loading.DEFAULT_BASELINE.is_file()),
                    reason="bundled default model (napari_adaqat/assets/default_int8.safetensors) not installed yet")
def test_default_model_dice_on_the_sample(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, truth = add_sample(viewer)
    widget = dock(viewer, qtbot)  # bundled INT8 model + bundled FP32 baseline
    wait(qtbot, widget, timeout=600_000)
    widget.reference.value = truth
    rows, cols = np.nonzero(truth.data)
    box = np.array([[rows.min(), cols.min()], [rows.max(), cols.max()]], dtype=float)
    viewer.layers["boxes"].add_rectangles(box)
    wait(qtbot, widget, timeout=600_000)
    assert widget.last_error is None, widget.last_error
    assert widget.last_result.dice >= 0.85, widget.status.value
    assert viewer.layers["ΔSSIM"].data.shape == (512, 512)


def test_engine_reloads_a_rewritten_model_file_and_keeps_at_most_two(nano_models, tmp_path):
    from napari_adaqat.inference.engine import Engine, ModelRef

    engine = Engine()
    live = tmp_path / "live.pth"
    shutil.copy(nano_models[0], live)
    spec = ModelRef(path=live, model_type="vit_nano")
    first = engine.predictor(spec, "cpu")
    assert engine.predictor(spec, "cpu") is first  # cached
    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    first.set_image(image)
    before = first.predict(np.array([8, 8, 56, 56])).probs[0]
    time.sleep(0.01)
    shutil.copy(nano_models[1], live)  # e.g. a training run rewrote best.safetensors
    second = engine.predictor(spec, "cpu")
    assert second is not first
    second.set_image(image)
    assert not np.allclose(second.predict(np.array([8, 8, 56, 56])).probs[0], before)
    engine.predictor(ModelRef(path=nano_models[0], model_type="vit_nano"), "cpu")
    engine.predictor(ModelRef(path=nano_models[1], model_type="vit_nano"), "cpu")
    assert len(engine._segmenters) == Engine.MAX_LOADED


def test_closing_the_dock_while_a_job_runs_raises_nothing(make_napari_viewer, qtbot, nano_models):
    """A worker that finishes after the dock was closed must not touch its deleted Qt widgets."""
    viewer = make_napari_viewer()
    add_sample(viewer)
    widget = SegmentWidget(viewer, model_path=nano_models[0], baseline_path=nano_models[1], model_type="vit_nano")
    dock_widget = viewer.window.add_dock_widget(widget, name="Segment lungs (AdaLoRA-QAT)")
    assert widget.busy  # the embedding started as soon as the image was chosen
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))  # queued behind it
    viewer.window.remove_dock_widget(dock_widget)
    widget.native.deleteLater()
    qtbot.waitUntil(lambda: widget._closed and widget.jobs._worker is None, timeout=WAIT_MS)
    qtbot.wait(100)  # let queued signals arrive: pytest-qt fails the test on any exception in the loop
    assert not widget.jobs._queue


def test_engine_shows_the_mask_first_then_adds_the_maps(nano_models):
    """The dock shows phase 1 (mask, Dice) at once and phase 2 (baseline, SSIM, ΔSSIM) after it."""
    from napari_adaqat.inference.engine import Engine, ModelRef

    engine = Engine()
    model = ModelRef(path=nano_models[0], model_type="vit_nano")
    base = ModelRef(path=nano_models[1], model_type="vit_nano", baseline=True)
    image = np.random.default_rng(2).random((80, 96)).astype(np.float32)
    ref = np.zeros((80, 96), np.uint8)
    ref[10:70, 10:80] = 1
    box = np.array([5.0, 5.0, 90.0, 75.0])
    first = engine.predict(image, box, model, "cpu", ref)
    assert first.ssim is None and first.delta is None and first.p_baseline is None and first.dice is not None
    assert "SSIM" not in first.summary() and "Dice" in first.summary()
    full = engine.add_maps(first, image, base, "cpu", ref)
    assert full is first and full.ssim.shape == full.delta.shape == (80, 96)
    again = engine.segment(image, box, model, base, "cpu", ref)
    np.testing.assert_array_equal(again.mask, full.mask)
    np.testing.assert_allclose(again.delta, full.delta)


def test_maps_are_readable_with_legends(make_napari_viewer, qtbot, nano_models):
    """SSIM and ΔSSIM leave the film visible where the models agree, and the dock explains their colours."""
    from napari_adaqat.widgets import _layers as L

    model, baseline = nano_models
    viewer = make_napari_viewer()
    image, truth = add_sample(viewer)
    widget = dock(viewer, qtbot, model_path=model, baseline_path=baseline, model_type="vit_nano")
    assert not widget.legends.ssim.isVisibleTo(widget.native)  # no map yet, no legend
    widget.reference.value = truth
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    ssim, delta = viewer.layers["SSIM"], viewer.layers["ΔSSIM"]
    assert ssim.visible and ssim.opacity <= 0.6 and delta.opacity < 1.0
    # agreement is transparent: SSIM 1 and ΔSSIM 0 map to alpha 0; disagreement is opaque
    assert ssim.colormap.map(np.array([1.0]))[0, 3] == 0.0 and ssim.colormap.map(np.array([0.0]))[0, 3] == 1.0
    ends = delta.colormap.map(np.array([0.0, 0.5, 1.0]))  # normalised −1, 0, +1
    assert ends[1, 3] == 0.0 and ends[0, 3] == ends[2, 3] == 1.0
    assert not np.allclose(ends[0, :3], ends[2, :3])  # two different hues: a diverging map
    legends = widget.legends
    assert legends.ssim.isVisibleTo(widget.native) and legends.delta.isVisibleTo(widget.native)
    assert "vs reference" in legends.ssim.text() and "0 1" in legends.ssim.text() and "clear" in legends.ssim.text()
    assert "−1 0 +1" in legends.delta.text() and "model closer" in legends.delta.text()
    assert "this image:" in legends.delta.text()
    bar = legends.delta.bar.pixmap().toImage()
    mid, left = bar.pixelColor(bar.width() // 2, 2), bar.pixelColor(0, 2)
    assert abs(mid.red() - mid.green()) < 8 and left.red() > left.green()  # clear (grey) centre, coloured end
    assert L.OUTPUT_NAMES == ("lung mask", "SSIM", "ΔSSIM") and L.BOXES == "boxes"

    widget.reference.value = None  # without a reference the legends say what the maps compare then
    wait(qtbot, widget)
    assert "vs baseline" in legends.ssim.text() and "only the model" in legends.delta.text()


def test_engine_results_name_their_model_file_for_the_dicom_seg_writer(nano_models):
    from napari_adaqat.inference.engine import Engine, ModelRef

    image = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    result = Engine().predict(image, np.array([4.0, 4.0, 60.0, 60.0]), ModelRef(path=nano_models[0], model_type="vit_nano"))
    assert result.model_file == str(nano_models[0])
