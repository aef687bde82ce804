"""The Batch dock used as a clinician would, in a real napari viewer (Xvfb), with the bundled model: an output
folder holding another tool's results.csv, the table after a run (A to Z, sorted by quality, a film opened from
it), closing the panel or napari in the middle of a run (the run ends after its current file and closes its
folder: no lock or journal left behind)."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat.io import read_image  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets.batch import BatchWidget  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]
PLUGIN, WIDGET = "napari-adaqat", "Batch segment (AdaLoRA-QAT)"
WAIT_MS = 120_000


def films(folder: Path, cxr_dir: Path, copies: int = 1) -> Path:
    """The shipped radiographs (``copies`` of each) in ``folder``."""
    folder.mkdir()
    for image in sorted((cxr_dir / "images").glob("*.png")):
        for k in range(copies):
            shutil.copy(image, folder / f"{k}_{image.name}")
    return folder


def docked(viewer, inputs: Path, out: Path) -> tuple[object, BatchWidget]:
    dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    widget.input_folder.value, widget.out.value, widget.device.value = str(inputs), str(out), "cpu"
    widget.models.baseline.value = "none"  # one model: faster
    return dock_widget, widget


def released(out: Path) -> bool:
    """The run closed its output folder: results.csv valid, no lock or journal left."""
    with (out / "results.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return bool(rows) and not (out / ".adaqat-run.lock").exists() and not (out / ".adaqat-journal").exists()


def test_an_output_folder_with_another_tools_results_csv_is_refused_in_one_line(make_napari_viewer, tmp_path,
                                                                               cxr_dir):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "results.csv").write_text("patient,age\n1,71\n")
    _, widget = docked(make_napari_viewer(), films(tmp_path / "in", cxr_dir), out)
    assert widget.run() is False and not widget.busy
    assert "results.csv is not an adaqat results file; choose another output folder" in widget.status.value
    assert "\n" not in widget.status.value and widget.last_error == widget.status.value
    assert sorted(p.name for p in out.iterdir()) == ["results.csv"]
    assert (out / "results.csv").read_text() == "patient,age\n1,71\n"


def test_table_is_a_to_z_readable_and_a_film_opens_from_it_after_sorting(make_napari_viewer, qtbot, tmp_path,
                                                                        cxr_dir):
    from qtpy.QtCore import Qt

    inputs = films(tmp_path / "in", cxr_dir)
    (inputs / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    viewer = make_napari_viewer(show=True)
    _, widget = docked(viewer, inputs, tmp_path / "out")
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    names = [r["file"] for r in widget.table_rows()]
    assert names == sorted(p.name for p in inputs.iterdir())  # A to Z, as the files were run (not Z to A)
    assert widget.table.columnWidth(0) >= 150  # the file names can be read in a narrow dock

    widget.table.sortByColumn(5, Qt.SortOrder.DescendingOrder)  # the header click: best quality first
    rows = widget.table_rows()
    assert rows[0]["status"] == "ok" and rows[-1]["file"] == "zz_corrupt.png"
    widget.table.doubleClicked.emit(widget.table_model.index(1, 0))
    stem = Path(rows[1]["file"]).stem
    image, mask = viewer.layers[stem], viewer.layers[f"{stem} lung mask"]
    np.testing.assert_array_equal(image.data, read_image(inputs / rows[1]["file"]).pixels)  # the row's own film
    assert mask.data.shape == image.data.shape[:2] and mask.data.any()

    widget.table.doubleClicked.emit(widget.table_model.index(len(rows) - 1, 0))
    assert widget.status.value.startswith("Cannot open zz_corrupt.png: ")
    assert str(inputs) not in widget.status.value and "\n" not in widget.status.value  # the name once


def test_closing_the_panel_mid_run_stops_it_after_the_current_file(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    inputs = films(tmp_path / "in", cxr_dir, copies=4)
    out = tmp_path / "out"
    viewer = make_napari_viewer(show=True)
    dock_widget, widget = docked(viewer, inputs, out)
    assert widget.run()
    qtbot.waitUntil(lambda: widget.progress.value >= 1, timeout=WAIT_MS)
    viewer.window.remove_dock_widget(dock_widget)  # what the panel's ✕ does
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert released(out)
    assert 1 <= len(list(out.glob("*_mask.png"))) < 16, "the run went on after its panel was closed"


def test_napari_closing_mid_run_lets_the_run_close_its_folder(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    inputs = films(tmp_path / "in", cxr_dir, copies=4)
    out = tmp_path / "out"
    _, widget = docked(make_napari_viewer(show=True), inputs, out)
    assert widget.run()
    qtbot.waitUntil(lambda: widget.progress.value >= 1, timeout=WAIT_MS)
    widget.native.deleteLater()  # napari closing destroys its docks
    qtbot.waitUntil(lambda: widget._closed, timeout=10_000)
    assert released(out)  # at once: the dock waited for the file being segmented, then the run closed
    assert len(list(out.glob("*_mask.png"))) < 16


def test_the_train_docks_new_model_goes_to_the_batch_dock(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    """After training, 'Use in Batch dock' opens the Batch dock on the exported pair: whole folders next."""
    exported = tmp_path / "mine"
    exported.mkdir()
    int8 = Path(shutil.copy(loading.DEFAULT_MODEL, exported / "model_int8.safetensors"))
    fp32 = Path(shutil.copy(loading.DEFAULT_BASELINE, exported / "baseline_fp32.safetensors"))
    viewer = make_napari_viewer()
    _, train = viewer.window.add_plugin_dock_widget(PLUGIN, "Train (AdaLoRA-QAT)")
    assert not train.batch_button.enabled  # nothing exported yet
    train.exported = (int8, fp32)  # what the end of the chain (or Continue) sets
    train._update_buttons()
    assert train.batch_button.enabled
    train.batch_button.native.click()
    batch = next(w for name, w in viewer.window.dock_widgets.items() if WIDGET in name)
    assert "Batch dock now segments folders with model_int8.safetensors" in train.status.value
    assert (batch.models.model.value, Path(batch.models.model_file.value)) == ("file", int8)
    assert Path(batch.models.baseline_file.value) == fp32 and not batch.models.model_file.native.isHidden()
    assert batch.status.value.startswith("Model: model_int8.safetensors.")

    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(sorted((cxr_dir / "images").glob("*.png"))[0], inputs)
    batch.input_folder.value, batch.out.value, batch.device.value = str(inputs), str(tmp_path / "out"), "cpu"
    assert batch.run() and "with model_int8.safetensors" in batch.status.value
    qtbot.waitUntil(lambda: not batch.busy, timeout=WAIT_MS)
    assert batch.last_error is None and [r["status"] for r in batch.table_rows()] == ["ok"]


def test_the_progress_bar_says_how_long_the_rest_takes(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    _, widget = docked(make_napari_viewer(), films(tmp_path / "in", cxr_dir), tmp_path / "out")
    bars: list[str] = []
    widget._row_signal.row.connect(lambda *_: bars.append(widget.progress.native.text()))  # after each row
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert len(bars) == 4 and all(" left" in bar for bar in bars[:3]), bars
    assert bars[0].startswith("1 / 4 · about ") and bars[-1] == "4 / 4"
    assert widget.progress.native.text() == "4 / 4"  # done: no time left shown


def test_the_pth_architecture_field_follows_the_chosen_files_in_the_batch_dock(make_napari_viewer, tmp_path):
    """As in the Segment dock: asked for a .pth (or before a file is chosen), not for a .safetensors file."""
    viewer = make_napari_viewer()
    _, widget = docked(viewer, tmp_path, tmp_path / "out")
    models = widget.models
    shown = lambda field: not field.native.isHidden()  # noqa: E731  (the viewer is not on screen)
    models.model.value = "file"
    assert shown(models.model_type)  # no file chosen yet
    models.model_file.value = str(loading.DEFAULT_MODEL)
    assert not shown(models.model_type)
    (tmp_path / "sam_vit_b.pth").touch()
    models.model_file.value = str(tmp_path / "sam_vit_b.pth")
    assert shown(models.model_type)


def test_cancel_while_the_model_loads_writes_nothing(make_napari_viewer, qtbot, tmp_path, cxr_dir, monkeypatch):
    """Cancel pressed while the model is still loading (seconds for a large model): no mask, no results.csv."""
    import threading

    out = tmp_path / "out"
    _, widget = docked(make_napari_viewer(), films(tmp_path / "in", cxr_dir), out)
    loading_model, go_on, predictor = threading.Event(), threading.Event(), widget.engine.predictor

    def slow_predictor(*args, **kwargs):  # the worker loads the model: held until the test has cancelled
        loading_model.set()
        assert go_on.wait(60)
        return predictor(*args, **kwargs)

    monkeypatch.setattr(widget.engine, "predictor", slow_predictor)
    assert widget.run()
    qtbot.waitUntil(loading_model.is_set, timeout=WAIT_MS)
    widget.cancel()
    go_on.set()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert not out.exists() or not [p for p in out.iterdir() if not p.name.startswith(".")], list(out.iterdir())
