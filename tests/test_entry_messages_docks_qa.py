"""QA pass 2, in the docks (Xvfb, bundled model): the Batch dock names a FIFO in its folder and lists it in
skipped.csv, and the Batch and Annotate docks say what a dock user can do with a multi-frame DICOM (they have no
frame option), not ``--frame N`` or ``read_dicom(path, frame=N)``."""
from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

pytest.importorskip("napari")

from napari_adaqat.io import ImageReadError, read_image  # noqa: E402
from napari_adaqat.io.dicom import IN_NAPARI, MultiFrameError  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets._annotate_ui import dock_error  # noqa: E402
from napari_adaqat.widgets.annotate import AnnotateWidget  # noqa: E402
from napari_adaqat.widgets.batch import BatchWidget  # noqa: E402
from test_dicom import ramp  # noqa: E402 - tests/ is on sys.path
from test_dicom_errors import multiframe  # noqa: E402

bundled = pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")
WAIT_MS = 180_000


def stack(path: Path) -> Path:
    return multiframe(path, np.stack([ramp(0, 1000 * (i + 1), shape=(64, 64)) for i in range(2)]),
                      StudyInstanceUID=generate_uid(), SeriesInstanceUID=generate_uid())


def test_dock_error_gives_a_multi_frame_dicom_the_docks_hint(tmp_path):
    path = stack(tmp_path / "cine.dcm")
    with pytest.raises(MultiFrameError) as err:
        read_image(path)
    assert "frame=N" in str(err.value)  # (the API's line)
    assert str(dock_error(path, err.value)) == f"{path}: multi-frame DICOM with 2 frames; {IN_NAPARI}"
    other = ImageReadError("x")
    assert dock_error(path, other) is other


@pytest.mark.gui
@bundled
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_batch_dock_names_a_fifo_and_gives_a_multi_frame_dicom_a_docks_hint(make_napari_viewer, qtbot, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    cine = stack(folder / "cine.dcm")
    os.mkfifo(folder / "fifo.png")
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-adaqat", "Batch segment (AdaLoRA-QAT)")
    assert isinstance(widget, BatchWidget)
    widget.input_folder.value, widget.out.value, widget.device.value = str(folder), str(tmp_path / "out"), "cpu"
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    status = widget.status.value
    assert "Skipped 1 entry that is not a regular file (a FIFO), not read: fifo.png" in status, status
    [row] = widget.table_model.as_dicts()
    assert row["status"] == "error" and row["error"] == f"multi-frame DICOM with 2 frames; {IN_NAPARI}"
    with (tmp_path / "out" / "skipped.csv").open(newline="") as fh:
        assert list(csv.reader(fh))[1:] == [[str(folder / "fifo.png"), "not a regular file (a FIFO): not read"]]
    with (tmp_path / "out" / "results.csv").open(newline="") as fh:
        assert [r["error"] for r in csv.DictReader(fh)] == [f"{cine}: multi-frame DICOM with 2 frames; {IN_NAPARI}"]
    widget.open_row(0)  # a double-click on its row
    assert widget.status.value == f"Cannot open cine.dcm: multi-frame DICOM with 2 frames; {IN_NAPARI}"


@pytest.mark.gui
@bundled
def test_annotate_dock_gives_a_multi_frame_dicom_a_docks_hint(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    folder = tmp_path / "films"
    folder.mkdir()
    stack(folder / "a_cine.dcm")  # the first film
    shutil.copy(sorted((cxr_dir / "images").glob("*.png"))[0], folder / "b.png")
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-adaqat", "Annotate folder (AdaLoRA-QAT)")
    assert isinstance(widget, AnnotateWidget)
    widget.images.value, widget.dataset.value = str(folder), str(tmp_path / "dataset")
    assert widget.open_folder(), widget.status.value
    qtbot.waitUntil(lambda: not widget.jobs.busy and widget.index == 1, timeout=WAIT_MS)
    assert widget.table.rows()[0]["state"] == f"error: multi-frame DICOM with 2 frames; {IN_NAPARI}"
    assert f"Cannot open a_cine.dcm: multi-frame DICOM with 2 frames; {IN_NAPARI}" in widget.status.value
    assert "frame=N" not in widget.status.value
