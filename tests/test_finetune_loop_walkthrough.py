"""A clinician's fine-tune loop in a real napari viewer (Xvfb, bundled model): films accepted in the Annotate dock,
the Train dock opened next starts from that dataset, the whole chain runs (1 + 1 epochs), and "Use in Annotate
dock" pre-segments the next film with the new model; a second run into a used run folder is refused in the dock's
own words (its fields, not command-line options), its files untouched."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("napari")

from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets.train import TrainWidget  # noqa: E402
from test_annotate_walkthrough import accept_films, open_dock, settle  # noqa: E402  (tests/ is on sys.path)

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]
PLUGIN, TRAIN = "napari-adaqat", "Train (AdaLoRA-QAT)"
SHOTS = Path("/tmp/qa")
WAIT_MS = 300_000


def shoot(viewer, qtbot, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.resize(1600, 1000)
    qtbot.wait(200)
    viewer.screenshot(str(SHOTS / f"ft_{name}.png"), canvas_only=False)


def train_dock(viewer) -> TrainWidget:
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, TRAIN)
    assert isinstance(widget, TrainWidget)
    return widget


def test_accepted_films_fine_tune_and_pre_segment_the_next_film(make_napari_viewer, qtbot, films, tmp_path):
    viewer = make_napari_viewer(show=True)
    dataset = tmp_path / "dataset"
    _, annotate = open_dock(viewer, qtbot, films, dataset)
    accept_films(qtbot, annotate, 3)
    train = train_dock(viewer)
    assert train.data.line_edit.value == str(dataset)  # the films just accepted, not an empty field
    qtbot.waitUntil(lambda: not train.checking, timeout=30_000)
    assert train.data_check.value.startswith("3 images · 3 masks · 0 bad pairs"), train.data_check.value
    train.out.value = str(tmp_path / "run")
    train.epochs.value, train.qat_epochs.value = 1, 1
    shoot(viewer, qtbot, "loop_train_prefilled")
    assert train.start(), train.status.value
    qtbot.waitUntil(lambda: not train.busy, timeout=WAIT_MS)
    assert train.last_error is None and train.exported is not None, train.status.value
    train.annotate_button.native.click()
    settle(qtbot, annotate)
    assert train.status.value == "The Annotate dock now pre-segments with model_int8.safetensors."
    assert Path(str(annotate.models.model_file.value)) == train.exported[0] and annotate.models.model.value == "file"
    assert annotate.accept(), annotate.status.value
    settle(qtbot, annotate)
    assert annotate.index == 3 and annotate.last_error is None, annotate.status.value
    assert annotate._model_and_device()[0].path == train.exported[0]  # the 4th film's mask came from the new model
    shoot(viewer, qtbot, "loop_next_film_new_model")


def test_a_second_run_into_a_used_run_folder_is_refused_in_the_docks_words(make_napari_viewer, dataset, tmp_path):
    viewer = make_napari_viewer()
    train = train_dock(viewer)
    run = tmp_path / "run"
    run.mkdir()
    (run / "chain.json").write_text('{"mine": 1}')  # an earlier chain run
    train.data.value, train.out.value = str(dataset), str(run)
    assert not train.start() and not train.busy
    assert train.status.value == f"{run} already holds a chain run; tick Resume to continue it or choose another " \
                                 "run folder", train.status.value
    assert (run / "chain.json").read_text() == '{"mine": 1}' and sorted(p.name for p in run.iterdir()) == ["chain.json"]


def test_a_restarted_annotate_dock_pre_segments_with_the_model_handed_over(make_napari_viewer, qtbot, films, tmp_path):
    """napari closed after "Use in Annotate dock": the dock opened again on that dataset uses the fine-tuned file
    (not silently the bundled model again), says so, and goes back to the bundled model once chosen there."""
    dataset, fine_tuned = tmp_path / "dataset", tmp_path / "run" / "model_int8.safetensors"
    fine_tuned.parent.mkdir()
    fine_tuned.write_bytes(loading.DEFAULT_MODEL.read_bytes())  # stands for the Train dock's exported file
    viewer = make_napari_viewer()
    _, annotate = open_dock(viewer, qtbot, films, dataset)
    annotate.use_model(fine_tuned, None)  # what "Use in Annotate dock" does
    settle(qtbot, annotate)
    viewer.close()
    viewer = make_napari_viewer(show=True)
    _, again = open_dock(viewer, qtbot, films, dataset)
    assert again.models.model.value == "file" and Path(str(again.models.model_file.value)) == fine_tuned
    assert again._model_and_device()[0].path == fine_tuned and again.last_error is None, again.status.value
    assert "Pre-segmenting with model_int8.safetensors, as last time in this dataset" in again.status.value
    shoot(viewer, qtbot, "restart_remembers_model")
    again.models.model.value = "default"  # the user goes back to the bundled model: that is remembered too
    settle(qtbot, again)
    viewer.close()
    viewer = make_napari_viewer()
    _, third = open_dock(viewer, qtbot, films, dataset)
    assert third.models.model.value == "default" and "Pre-segmenting with" not in third.status.value
