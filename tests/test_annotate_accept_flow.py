"""The Annotate dock (real napari viewer under Xvfb, bundled model): Accept pressed while a box is still being
segmented saves the box's mask; a finished folder opens a film for review instead of leaving a dead one on
screen; an earlier mask that cannot be used is not counted once its film has opened (saying why); a failed write
leaves the earlier files in place and says so."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.io import imread, imsave

pytest.importorskip("napari")

from napari_adaqat.io import read_mask  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets._annotate_accept import CLICK_WAITING, WAITING  # noqa: E402
from test_annotate_walkthrough import accept_films, open_dock, settle  # noqa: E402  (tests/ is on sys.path)

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]
SHOTS = Path("/tmp/qa")


def shoot(viewer, qtbot, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.resize(1500, 900)
    qtbot.wait(200)
    viewer.screenshot(str(SHOTS / f"ann2_{name}.png"), canvas_only=False)


def test_accept_right_after_a_box_saves_the_boxs_mask(make_napari_viewer, qtbot, films, tmp_path):
    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    _, widget = open_dock(viewer, qtbot, films, dataset)
    mask = viewer.layers["lung mask"]
    before = np.asarray(mask.data) != 0
    rows, cols = np.nonzero(before.any(axis=1))[0], np.nonzero(before.any(axis=0))[0]
    half = before.shape[1] // 2  # a box around one lung: its mask is clearly not the one before
    viewer.layers["boxes"].add_rectangles(np.array([[rows[0] - 5.0, cols[0] - 5.0], [rows[-1] + 5.0, half - 10.0]]))
    assert widget.accept()  # at once: the box's prompt is still running (or waiting for the prefetch)
    waiting = (widget.status.value, widget.index)
    shoot(viewer, qtbot, "accept_waits_for_box")
    settle(qtbot, widget)
    saved = read_mask(dataset / "masks" / f"{widget.folder.films[0].name}.png")
    assert (saved != before).sum() > 1000 and saved[:, :half].sum() > 10 * saved[:, half:].sum()  # one lung
    assert waiting == (WAITING, 0)  # said while it waited, on the same film
    assert widget.index == 1 and "Saved" in widget.status.value, widget.status.value


def test_accept_right_after_a_click_saves_the_clicks_mask(make_napari_viewer, qtbot, films, tmp_path):
    """A QA find: Enter ~70 ms after a click in the Segment dock ("Correct with clicks") saved the mask from before
    the click and the point vanished, without a word.  Accept now waits for the click's mask, says so, and saves
    it.  (The engine is held here, so that the click's job waits in the worker as it does behind an embedding.)"""
    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    _, widget = open_dock(viewer, qtbot, films, dataset)
    mask = viewer.layers["lung mask"]
    before = np.asarray(mask.data) != 0
    segment = widget.correct_with_clicks()
    qtbot.waitUntil(lambda: not segment.busy, timeout=180_000)
    centre = int(np.nonzero(before.any(axis=0))[0].mean())  # a "not lung" click on a lung: it must remove lung
    row = int(np.nonzero(before[:, centre:].any(axis=1))[0].mean())
    col = centre + float(np.nonzero(before[row, centre:])[0].mean())
    points = viewer.layers["points"]
    points.feature_defaults["positive"] = False
    with segment.engine.lock:  # the click's job cannot run yet
        points.add(np.array([[row, col]]))
        qtbot.wait(50)
        assert segment._pending is not None
        assert widget.accept() and (widget.status.value, widget.index) == (CLICK_WAITING, 0)
        qtbot.wait(200)
        assert widget.index == 0  # still waiting, nothing saved
        assert not (dataset / "masks" / f"{widget.folder.films[0].name}.png").exists()
    qtbot.waitUntil(lambda: widget.index == 1, timeout=180_000)
    saved = read_mask(dataset / "masks" / f"{widget.folder.films[0].name}.png")
    assert (saved != before).sum() > 100 and saved.sum() < before.sum()  # the click's mask, not the one before
    assert "Saved" in widget.status.value


def test_an_accept_waiting_for_a_box_that_fails_saves_nothing(make_napari_viewer, qtbot, films, tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    dataset = tmp_path / "dataset"
    _, widget = open_dock(viewer, qtbot, films, dataset)

    def broken(*_args, **_kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(widget.engine, "predict", broken)
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 400.0]]))
    assert widget.accept() and widget.status.value == WAITING
    settle(qtbot, widget)
    assert widget.status.value == "Error: out of memory (nothing saved: Accept again)" and widget.index == 0
    assert not (dataset / "masks").exists() and not widget._accept_waiting


def test_a_finished_folder_opens_the_film_on_screen_for_review(make_napari_viewer, qtbot, films, tmp_path):
    """A dock opened on a folder whose films are all done used to leave the last film on screen with its buttons
    off and its strokes dropped: it opens that film for review, a stroke is kept as a draft, Accept saves it."""
    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    dock_widget, widget = open_dock(viewer, qtbot, films, dataset)
    accept_films(qtbot, widget, 4)
    assert widget.index == 3 and "this one stays open" in widget.status.value
    viewer.window.remove_dock_widget(dock_widget)
    _, widget = open_dock(viewer, qtbot, films, dataset)
    assert widget.index == 3 and widget.accept_button.enabled and widget.clicks_button.enabled
    assert "Every film is accepted or skipped (4 of 4" in widget.status.value and "for review" in widget.status.value
    shoot(viewer, qtbot, "all_done_review")
    mask = viewer.layers["lung mask"]
    mask.paint((8, 8), 1)
    assert widget.keep_draft() and widget.table.rows()[3]["state"] == "accepted, edited (not saved)"
    assert widget.accept() and "Saved" in widget.status.value and widget.index == 3
    assert read_mask(dataset / "masks" / f"{widget.folder.films[3].name}.png")[8, 8]


def test_an_unusable_earlier_mask_is_not_counted_and_the_film_says_why(make_napari_viewer, qtbot, films, tmp_path):
    dataset = tmp_path / "dataset"
    names = sorted(p.stem for p in films.iterdir())
    (dataset / "masks").mkdir(parents=True)
    label_map = np.zeros((512, 426), np.uint8)  # the first film's size, lungs labelled 1 and 2
    label_map[100:400, 50:180], label_map[100:400, 250:380] = 1, 2
    imsave(dataset / "masks" / f"{names[0]}.png", label_map, check_contrast=False)
    viewer = make_napari_viewer(show=True)
    _, widget = open_dock(viewer, qtbot, films, dataset)  # no mask is read to open a dataset: present counts
    assert widget.index == 1  # ... until the check after opening finds it unusable: the film is to do
    assert widget.progress.value == "0 of 4 accepted, 0 skipped"
    assert f"1 earlier mask is not usable (film 1, {names[0]}.png)" in widget.status.value
    widget.open_film(0)  # (a double-click on its row) it says why
    settle(qtbot, widget)
    assert widget.index == 0 and widget.progress.value == "0 of 4 accepted, 0 skipped"
    assert "the model's mask" in widget.status.value and "is not shown" in widget.status.value
    assert "label map" in widget.status.value and "Accept moves it to replaced/masks/" in widget.status.value
    assert widget.table.rows()[0]["state"] == "to do, earlier mask not usable"
    shoot(viewer, qtbot, "unusable_mask")
    assert widget.accept()
    settle(qtbot, widget)
    assert "is kept as replaced/masks" in widget.status.value and widget.progress.value == "1 of 4 accepted, 0 skipped"
    shoot(viewer, qtbot, "label_map_kept_aside")
    np.testing.assert_array_equal(imread(dataset / "replaced" / "masks" / f"{names[0]}.png"), label_map)  # kept as it was


def test_an_accept_that_cannot_write_leaves_the_earlier_mask_in_place(make_napari_viewer, qtbot, films, tmp_path,
                                                                      monkeypatch):
    import napari_adaqat.data.annotation as annotation

    dataset = tmp_path / "dataset"
    names = sorted(p.stem for p in films.iterdir())
    (dataset / "masks").mkdir(parents=True)
    other = np.zeros((512, 426), np.uint8)  # the first film's size: another tool's usable mask
    other[100:400, 50:380] = 255
    imsave(dataset / "masks" / f"{names[0]}.png", other, check_contrast=False)
    before = (dataset / "masks" / f"{names[0]}.png").read_bytes()
    viewer = make_napari_viewer(show=True)
    _, widget = open_dock(viewer, qtbot, films, dataset)
    widget.open_film(0)
    settle(qtbot, widget)

    def disk_full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(annotation, "write_mask", disk_full)
    assert not widget.accept()
    assert "not saved: [Errno 28] No space left on device" in widget.status.value
    assert "left as they were" in widget.status.value and widget.index == 0
    assert (dataset / "masks" / f"{names[0]}.png").read_bytes() == before and not (dataset / "replaced").exists()
    shoot(viewer, qtbot, "disk_full")


def test_a_box_s_mask_keeps_the_film_s_place_in_the_status(make_napari_viewer, qtbot, films, tmp_path):
    """A QA find: after a new box (or a model switch, which redoes the box) the status said only
    'latency 70 ms · area 66545 px', and the film's place in the folder was gone."""
    viewer = make_napari_viewer()
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    settle(qtbot, widget)
    name = widget.folder.films[0].path.name
    assert widget.status.value.startswith(f"Film 1 of {len(widget.folder.films)}: {name} · "), widget.status.value


def test_reset_in_the_clicks_dock_then_skip_keeps_no_empty_draft(make_napari_viewer, qtbot, films, tmp_path):
    """A QA find: Reset [R] in the Segment dock that "Correct with clicks" opened, then Skip, kept an empty draft, so
    the film came back empty.  The Annotate status says the mask is empty; leaving the film keeps no draft, and the
    film opens again with the model's mask."""
    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    _, widget = open_dock(viewer, qtbot, films, dataset)
    model_mask = np.asarray(viewer.layers["lung mask"].data) != 0
    segment = widget.correct_with_clicks()
    qtbot.waitUntil(lambda: not segment.busy, timeout=180_000)
    segment.reset_prompts()
    qtbot.waitUntil(lambda: not segment.busy, timeout=180_000)
    assert not np.asarray(viewer.layers["lung mask"].data).any()
    qtbot.wait(50)
    assert "the mask is empty" in widget.status.value, widget.status.value
    segment.undo()  # the mask is back: the line about an empty mask goes
    qtbot.waitUntil(lambda: "the mask is empty" not in widget.status.value, timeout=5_000)
    assert "edited" in widget.status.value
    segment.reset_prompts()
    qtbot.waitUntil(lambda: "the mask is empty" in widget.status.value, timeout=5_000)
    assert widget.skip()
    settle(qtbot, widget)
    assert widget.index == 1
    assert not widget.folder.has_draft(0)
    widget.open_film(0)
    settle(qtbot, widget)
    np.testing.assert_array_equal(np.asarray(viewer.layers["lung mask"].data) != 0, model_mask)
