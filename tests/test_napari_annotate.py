"""The Annotate dock in a real napari viewer (Xvfb), with the bundled model: three films corrected with a
box and a brush stroke and accepted (Enter and the button), the dataset holds exactly what was on
screen, a new dock resumes on the 4th film, an accepted mask is only replaced by Accept, Back and Skip."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from qtpy.QtCore import Qt  # noqa: E402
from app_model.types import KeyCode  # noqa: E402

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat.data.boxes import default_box  # noqa: E402
from napari_adaqat.io import read_image, read_mask  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets.annotate import AnnotateWidget  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]
PLUGIN, WIDGET = "napari-adaqat", "Annotate folder (AdaLoRA-QAT)"
WAIT_MS = 120_000


def dock(viewer, qtbot, films: Path, dataset: Path):
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, AnnotateWidget)
    widget.images.value, widget.dataset.value = str(films), str(dataset)
    widget.open_button.native.click()
    wait(qtbot, widget)
    assert widget.last_error is None, widget.status.value
    return dock_widget, widget


def wait(qtbot, widget: AnnotateWidget) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)


def draw_box(qtbot, widget: AnnotateWidget, rows: tuple[float, float], cols: tuple[float, float]) -> None:
    widget.layers.boxes.add_rectangles(np.array([[rows[0], cols[0]], [rows[1], cols[1]]]))
    wait(qtbot, widget)
    assert widget.last_error is None, widget.status.value


def test_annotate_three_films_resume_review_back_and_skip(make_napari_viewer, qtbot, films, tmp_path,
                                                          screenshot_dir):
    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    names = sorted(p.name for p in films.iterdir())

    _, refused = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)  # bad input: one line, nothing written
    refused.images.value, refused.dataset.value = str(films), str(films / "dataset")
    assert refused.open_folder() is False and "inside the image folder" in refused.status.value
    assert not refused.accept_button.enabled and not refused.accept()
    assert sorted(p.name for p in films.iterdir()) == names
    viewer.window.remove_dock_widget("all")

    dock_widget, widget = dock(viewer, qtbot, films, dataset)
    assert widget.index == 0 and widget.progress.value == "0 of 4 accepted, 0 skipped"
    assert "Accept [Enter]" == widget.accept_button.text and "[PgDown]" in widget.skip_button.text
    image, mask, boxes = widget.layers.image, viewer.layers["lung mask"], viewer.layers["boxes"]
    np.testing.assert_array_equal(image.data, read_image(films / names[0]).pixels)
    assert mask.data.sum() > 10_000  # the model's mask for the default box, drawn as the box
    box = default_box(image.data.shape)  # (rows, cols) corners of the rectangle shown = the default box
    np.testing.assert_allclose([boxes.data[0].min(0), boxes.data[0].max(0)], [box[[1, 0]], box[[3, 2]]], atol=0.01)

    on_screen = []
    for k in range(3):
        before, width = np.array(mask.data), image.data.shape[1]
        draw_box(qtbot, widget, (30.0 + 10 * k, 470.0 - 5 * k), (20.0 + 8 * k, width - 20.0))
        assert len(boxes.data) == 1 and (np.array(mask.data) != before).any()  # the box re-segmented
        mask.paint((8, 8), 1)  # a brush stroke in a corner the model leaves empty
        assert mask.data[8, 8] == 1
        if k == 0:  # a new box after the stroke keeps the stroke, and says so
            draw_box(qtbot, widget, (35.0, 465.0), (25.0, width - 25.0))
            assert mask.data[8, 8] == 1 and "Kept your edits, brush or clicks" in widget.status.value
        if k == 1:  # unticked, a box replaces the stroke, says so, and Ctrl+Z on the mask brings it back
            widget.keep_edits.value = False
            draw_box(qtbot, widget, (45.0, 460.0), (30.0, width - 25.0))
            assert mask.data[8, 8] == 0 and "replaced your edits, brush or clicks" in widget.status.value
            mask.undo()
            assert mask.data[8, 8] == 1
            widget.keep_edits.value = True
        on_screen.append((names[k], np.array(mask.data) != 0))
        if k == 0:  # Enter while the canvas has the focus (Xvfb has no window manager to activate the window)
            window, canvas = viewer.window._qt_window, viewer.window._qt_viewer.canvas.native
            window.activateWindow()
            qtbot.waitUntil(window.isActiveWindow)
            field = widget.dataset.line_edit.native  # Enter typed into a text field is the field's
            pressed: list[int] = []
            field.returnPressed.connect(lambda: pressed.append(1))
            field.setFocus()
            qtbot.keyClick(field, Qt.Key.Key_Return)
            assert pressed == [1] and widget.index == 0 and not widget.busy and not (dataset / "masks").exists()
            canvas.setFocus()
            qtbot.keyClick(canvas, Qt.Key.Key_Return)
        else:
            widget.accept_button.native.click()
        wait(qtbot, widget)
        assert widget.index == k + 1, widget.status.value
        assert f"Saved {Path(names[k]).stem}.png" in widget.status.value and f"Film {k + 2} of 4" in widget.status.value

    # the dataset folder holds the 3 films and exactly the masks that were on screen
    assert sorted(p.name for p in (dataset / "images").iterdir()) == names[:3]
    assert sorted(p.name for p in (dataset / "masks").iterdir()) == names[:3]
    for name, shown in on_screen:
        np.testing.assert_array_equal(read_mask(dataset / "masks" / name), shown)
        assert (dataset / "images" / name).read_bytes() == (films / name).read_bytes()
        assert os.path.samefile(dataset / "images" / name, films / name)  # a hard link, not a copy
    assert json.loads((dataset / "annotate.json").read_text())["last_box"] is not None
    assert widget.progress.value == "3 of 4 accepted, 0 skipped"
    assert [r["state"] for r in widget.table.rows()] == ["accepted"] * 3 + ["to do"]
    # the 4th film opens with the last box (scaled to it: the 3rd and 4th films are both 512²)
    np.testing.assert_allclose([boxes.data[0].min(0), boxes.data[0].max(0)], [[50, 36], [460, 492]], atol=1.0)

    shot = screenshot(viewer, qtbot, dock_widget, screenshot_dir)
    assert shot.stat().st_size > 10_000

    # restart: a new dock resumes on the 4th film
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=WAIT_MS)
    viewer.window.remove_dock_widget("all")
    _, widget = dock(viewer, qtbot, films, dataset)
    mask, boxes = viewer.layers["lung mask"], viewer.layers["boxes"]
    assert widget.index == 3 and widget.progress.value == "3 of 4 accepted, 0 skipped"

    # the Train dock's "Use in Annotate dock": an untouched model mask is made again by the new model
    fp32 = loading.DEFAULT_MODEL.with_name("default_fp32.safetensors")
    widget.use_model(fp32, None)
    wait(qtbot, widget)
    assert widget.models.model.value == "file" and Path(widget.last_result.model_file).name == fp32.name
    widget.use_model(None, None)  # back to the bundled default
    wait(qtbot, widget)
    assert Path(widget.last_result.model_file) == loading.DEFAULT_MODEL.resolve()

    # Back opens the 3rd film's accepted mask for review; a new box changes the screen, not the file
    saved = dataset / "masks" / names[2]
    saved_bytes = saved.read_bytes()
    assert widget.back() and (wait(qtbot, widget) or widget.index == 2)
    assert "for review" in widget.status.value
    np.testing.assert_array_equal(np.array(mask.data) != 0, read_mask(saved))
    draw_box(qtbot, widget, (100.0, 400.0), (60.0, 450.0))
    changed = np.array(mask.data) != 0
    assert (changed != read_mask(saved)).any()
    widget.table.cellDoubleClicked.emit(3, 1)  # leave without Accept: the work is kept as a draft only
    wait(qtbot, widget)
    assert widget.index == 3 and saved.read_bytes() == saved_bytes and "kept as a draft" in widget.status.value
    np.testing.assert_array_equal(read_mask(dataset / ".drafts" / names[2]), changed)
    assert widget.table.rows()[2]["state"] == "accepted, edited (not saved)"
    assert widget.back() and (wait(qtbot, widget) or widget.index == 2)
    assert "your draft" in widget.status.value
    np.testing.assert_array_equal(np.array(mask.data) != 0, changed)
    assert widget.accept()  # now the file is replaced, and the draft is gone
    wait(qtbot, widget)
    np.testing.assert_array_equal(read_mask(saved), changed)
    assert not (dataset / ".drafts" / names[2]).exists() and widget.index == 3

    # Skip the 4th: nothing left; its state survives a restart
    assert widget.skip() and widget.progress.value == "3 of 4 accepted, 1 skipped"
    assert "Nothing left to do" in widget.status.value
    assert json.loads((dataset / "annotate.json").read_text())["skipped"] == [Path(names[3]).stem]
    assert not (dataset / "masks" / names[3]).exists()
    qtbot.waitUntil(lambda: not widget.jobs.busy, timeout=WAIT_MS)  # the prefetch too, before the viewer closes


def screenshot(viewer, qtbot, dock_widget, folder: Path) -> Path:
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    window = viewer.window._qt_window
    window.resize(1500, 900)
    for toast in window.findChildren(NapariQtNotification):
        toast.close()
    window.resizeDocks([dock_widget], [520], Qt.Orientation.Horizontal)
    qtbot.wait(300)
    viewer.reset_view()
    qtbot.wait(200)
    shot = folder / "screenshot_annotate.png"
    viewer.screenshot(str(shot), canvas_only=False)
    return shot



def test_clicks_from_the_segment_dock_correct_the_film_being_annotated(make_napari_viewer, qtbot, films, tmp_path,
                                                                       screenshot_dir):
    """With the Segment dock beside it, a click in 'points' corrects the Annotate dock's film: the click is
    prompted with the film's box and its mask on screen as the mask prompt (not a point alone), and Accept
    saves the corrected mask exactly as shown."""
    from napari_adaqat.widgets.segment import SegmentWidget

    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    dock_widget, widget = dock(viewer, qtbot, films, dataset)
    mask = viewer.layers["lung mask"]
    before = np.asarray(mask.data) != 0
    widget.clicks_button.native.click()  # "Correct with clicks…": the Segment dock beside, in Points mode
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment lungs (AdaLoRA-QAT)")  # the one opened
    assert isinstance(segment, SegmentWidget) and segment.image.value is widget.layers.image
    assert segment.model_ref() == widget._model_and_device()[0]  # clicks correct with the model that made it
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, before)  # opening it changes nothing
    points = viewer.layers["points"]
    assert viewer.layers.selection.active is points and points.mode == "add"
    assert "Ctrl+click" in widget.status.value
    centre = int(np.nonzero(before.any(axis=0))[0].mean())  # between the lungs (the film need not be centred)
    rows = np.nonzero(before[:, centre:].any(axis=1))[0]
    row = int(rows[0]) + 15  # just below the top of the lung on the film's right side: a "not lung" click there
    cols = centre + np.nonzero(before[row, centre:])[0]
    points.feature_defaults["positive"] = False
    points.add(np.array([[row, float(cols.mean())]]))
    assert len(points.data) == 1  # on the film (a point beside it is not added)
    qtbot.waitUntil(lambda: segment.last_result is not None and not segment.busy, timeout=WAIT_MS)
    result = segment.last_result
    assert result.box is not None  # the Annotate dock's box, not a point alone
    np.testing.assert_allclose(result.box, widget.layers.box(0))
    after = np.asarray(mask.data) != 0
    assert 0 < (before & ~after).sum() and after.sum() > 0.9 * before.sum()  # a local correction, both lungs kept
    assert "the mask in 'lung mask' was the mask prompt" in segment.status.value
    window = viewer.window._qt_window
    window.resize(1700, 1000)
    qtbot.wait(300)
    viewer.reset_view()
    qtbot.wait(200)
    viewer.screenshot(str(screenshot_dir / "screenshot_annotate_with_clicks.png"), canvas_only=False)
    assert widget.accept()
    wait(qtbot, widget)
    np.testing.assert_array_equal(read_mask(dataset / "masks" / sorted(p.name for p in films.iterdir())[0]) != 0, after)
    # the next film: the clicks and SSIM maps of the one before are gone, Undo does not bring its mask back,
    # and the Segment dock did not prompt on the Annotate dock's new box (the mask is the Annotate dock's)
    assert widget.index == 1 and len(points.data) == 0
    for name, clear in (("SSIM", 1.0), ("ΔSSIM", 0.0)):  # cleared at the new film's size, not removed and re-added
        assert viewer.layers[name].data.shape == mask.data.shape and (np.asarray(viewer.layers[name].data) == clear).all()
    assert not segment.legends.ssim.isVisibleTo(segment.native)  # (review find: they described the film before)
    assert not segment.legends.delta.isVisibleTo(segment.native)
    second = np.asarray(mask.data) != 0
    assert segment.last_result is result and not segment.undo_button.enabled
    segment.undo()
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, second)
    qtbot.waitUntil(lambda: not widget.jobs.busy and not segment.busy, timeout=WAIT_MS)  # before the viewer closes


def test_a_click_result_that_arrives_after_the_next_film_is_dropped(make_napari_viewer, qtbot, films, tmp_path,
                                                                   monkeypatch):
    """A click on film 1 whose result is still on its way when Accept moves to film 2 is dropped: film 2
    shows the Annotate dock's own mask, film 1 is saved as it was shown, and Undo has nothing of film 1."""
    from napari_adaqat.widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    dataset = tmp_path / "dataset"
    _, widget = dock(viewer, qtbot, films, dataset)
    mask = viewer.layers["lung mask"]
    first = np.asarray(mask.data) != 0
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment lungs (AdaLoRA-QAT)")
    assert isinstance(segment, SegmentWidget)
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    shown_before = segment.last_result
    started, gate, predict = threading.Event(), threading.Event(), segment._predict

    def held(*args):  # the click's prompt waits in the worker until film 2 is on screen
        started.set()
        assert gate.wait(WAIT_MS / 1000)
        return predict(*args)

    monkeypatch.setattr(segment, "_predict", held)
    monkeypatch.setattr(segment, "_quick_prompt", lambda *a: False)  # the worker, not inline
    segment.points_mode()
    points = viewer.layers["points"]
    points.feature_defaults["positive"] = False
    centre = int(np.nonzero(first.any(axis=0))[0].mean())  # between the lungs
    row = int(np.nonzero(first[:, centre:].any(axis=1))[0][0]) + 15
    points.add(np.array([[row, centre + float(np.nonzero(first[row, centre:])[0].mean())]]))
    assert len(points.data) == 1  # on the film
    qtbot.waitUntil(started.is_set, timeout=WAIT_MS)
    assert widget.accept()  # saves what is shown: the mask before the click
    wait(qtbot, widget)
    assert widget.index == 1
    second = np.asarray(mask.data) != 0
    gate.set()
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    qtbot.wait(100)  # any late result would be painted by now
    np.testing.assert_array_equal(np.asarray(mask.data) != 0, second)
    name = sorted(p.name for p in films.iterdir())[0]
    np.testing.assert_array_equal(read_mask(dataset / "masks" / name) != 0, first)
    assert segment.last_result is shown_before and not segment.undo_button.enabled
    assert segment.history is not None and len(segment.history) == 1  # film 2's history: only its start
    qtbot.waitUntil(lambda: not widget.jobs.busy and not segment.busy, timeout=WAIT_MS)


def test_correct_with_clicks_uses_the_annotate_docks_model_file(make_napari_viewer, qtbot, films, tmp_path,
                                                                nano_models):
    """A Segment dock already open on another image with another model: 'Correct with clicks…' puts it on the
    film with the Annotate dock's model file and its architecture (the bundled FP32 model for the maps), a
    click segments, it follows the Annotate dock's next model, and R on 'boxes' draws, never clears the film."""
    from napari_adaqat.inference.engine import ModelRef

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64), dtype=np.float32), name="another image")
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment lungs (AdaLoRA-QAT)")
    segment.use_models(nano_models[0], nano_models[1])
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert not widget.clicks_button.enabled  # no film yet
    widget.models.model_type.value = "vit_nano"
    widget.use_model(nano_models[0])
    widget.images.value, widget.dataset.value = str(films), str(tmp_path / "dataset")
    widget.open_button.native.click()
    wait(qtbot, widget)
    assert widget.last_error is None, widget.status.value
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    widget.clicks_button.native.click()
    assert segment.image.value is widget.layers.image
    ref = segment.model_ref()
    assert ref.path == nano_models[0] and ref.model_type == "vit_nano" and ref == widget._model_and_device()[0]
    assert segment.baseline_ref() == ModelRef(None, baseline=True)  # the bundled FP32 model, not nano's twin
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    mask = viewer.layers["lung mask"]
    viewer.layers["points"].add(np.array([[256.0, 150.0]]))
    qtbot.waitUntil(lambda: segment.last_result is not None and not segment.busy, timeout=WAIT_MS)
    assert "Error" not in segment.status.value and segment.last_result.box is not None
    shown = np.asarray(mask.data).copy()
    boxes = viewer.layers["boxes"]
    viewer.layers.selection.active = boxes
    boxes.mode = "pan_zoom"
    assert viewer.window._qt_viewer._key_map_handler.press_key(KeyCode.KeyR)  # as the canvas hands it to napari
    assert boxes.mode == "add_rectangle"  # napari's R, as the Annotate dock's help says: nothing cleared
    np.testing.assert_array_equal(np.asarray(mask.data), shown)
    widget.use_model(None)  # the Annotate dock back on the bundled model: the Segment dock follows
    assert segment.model_ref() == ModelRef(None) and segment.baseline_ref() == ModelRef(None, baseline=True)
    qtbot.waitUntil(lambda: not widget.jobs.busy and not segment.busy, timeout=WAIT_MS)


def test_clicks_dock_follows_only_while_open_and_only_on_change():
    """The Segment dock that 'Correct with clicks…' opened follows the Annotate dock's model while it is open
    (a closed one is left alone), and is not re-chosen (nor re-embedded) when it already has that pair."""
    from types import SimpleNamespace

    from napari_adaqat.inference.engine import ModelRef
    from napari_adaqat.widgets._annotate_clicks import BUNDLED_BASELINE, ClicksDock

    calls = []
    segment = SimpleNamespace(_closed=False, model_ref=lambda: ModelRef(None), baseline_ref=lambda: BUNDLED_BASELINE,
                              use_refs=lambda *a, **k: calls.append(a))
    clicks = ClicksDock()
    clicks.follow(ModelRef(Path("m.safetensors")), None)  # nothing opened yet
    clicks._segment = lambda: segment
    clicks.follow(ModelRef(None), None)  # the pair it has already
    assert calls == []
    clicks.follow(ModelRef(Path("m.safetensors")), ModelRef(Path("b.safetensors"), baseline=True))
    assert calls == [(ModelRef(Path("m.safetensors")), ModelRef(Path("b.safetensors"), baseline=True))]
    segment._closed = True
    clicks.follow(ModelRef(None), None)
    assert len(calls) == 1
