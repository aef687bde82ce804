"""The Batch dock in a real napari viewer (Xvfb), with the bundled model: whole folders as ``adaqat segment``
does them (one mask per file, results.csv, error rows, Cancel and rerun), while the viewer stays responsive."""
from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from qt_probe import tick_probe  # noqa: E402

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat.data import mask_box  # noqa: E402
from napari_adaqat.io import read_mask  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets.batch import BatchWidget  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]
PLUGIN, WIDGET = "napari-adaqat", "Batch segment (AdaLoRA-QAT)"
WAIT_MS = 180_000


@pytest.fixture()
def inputs(tmp_path, cxr_dir) -> Path:
    """3 real radiographs and 1 corrupt file (sorted last)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for image in sorted((cxr_dir / "images").glob("*.png"))[:3]:
        shutil.copy(image, folder / image.name)
    (folder / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return folder


def dock(viewer) -> BatchWidget:
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, BatchWidget)
    assert getattr(widget.viewer, "__wrapped__", widget.viewer) is viewer
    return widget


def csv_rows(out: Path) -> list[dict]:
    with (out / "results.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_folder_with_a_corrupt_file_cancel_rerun_open_and_screenshot(make_napari_viewer, qtbot, inputs, tmp_path,
                                                                     screenshot_dir):
    names = sorted(p.name for p in inputs.iterdir())
    viewer = make_napari_viewer(show=True)
    widget = dock(viewer)
    widget.input_folder.value = str(inputs)
    widget.device.value = "cpu"

    widget.out.value = str(inputs / "masks")  # inside an input folder: refused, nothing written
    assert widget.run() is False and "inside the input folder" in widget.status.value
    assert not (inputs / "masks").exists() and not widget.busy

    out = tmp_path / "out"
    widget.out.value = str(out)
    (inputs / "scan.gif").write_bytes(b"GIF89a")  # skipped: listed in skipped.csv, a cancelled run too (review find)
    names = sorted([*names, "scan.gif"])
    assert widget.run()
    qtbot.waitUntil(lambda: widget.table.rowCount() == 4, timeout=WAIT_MS)  # the worker looked through the folder
    assert widget.busy and widget.progress.max == 4
    assert [r["status"] for r in widget.table_rows()] == ["…"] * 4
    qtbot.waitUntil(lambda: widget.progress.value >= 1, timeout=WAIT_MS)
    widget.cancel_button.native.click()  # stops after the file being segmented now
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    first = csv_rows(out)
    assert 1 <= len(first) < 4 and all(r["status"] == "ok" for r in first)  # valid CSV, only finished files
    assert "not run (cancelled" in widget.status.value
    assert "(all 1 listed in skipped.csv when the run ends)" in widget.status.value
    assert "scan.gif" in (out / "skipped.csv").read_text()
    statuses = [r["status"] for r in widget.table_rows()]  # the rows not reached say so ('…' read as in progress)
    assert "…" not in statuses and statuses.count("not run") == 4 - len(first) == \
        int(widget.status.value.split(" not run")[0].rsplit(", ", 1)[-1])

    probe, ticks = tick_probe()  # fires every 50 ms while the Qt event loop runs
    t0 = time.monotonic()
    assert widget.run()  # the rerun: finished files are skipped
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    seconds = time.monotonic() - t0
    probe.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert len(ticks) >= 0.3 * seconds / 0.05 and max(gaps) < 1.5, f"event loop stalled: {max(gaps):.2f} s"

    table = {Path(r["file"]).stem: r for r in widget.table_rows()}
    statuses = [r["status"] for r in table.values()]
    assert statuses.count("skipped") == len(first) and statuses.count("error") == 1
    assert statuses.count("ok") == 3 - len(first)
    assert table["zz_corrupt"]["status"] == "error" and table["zz_corrupt"]["error"]
    assert "zz_corrupt.png" in next(r["error"] for r in csv_rows(out) if r["status"] == "error")
    assert all(int(r["area (px)"]) > 1000 for r in table.values() if r["status"] in ("ok", "skipped"))
    rows = csv_rows(out)
    assert sorted(r["status"] for r in rows) == ["error", "ok", "ok", "ok"]
    assert len(list(out.glob("*_mask.png"))) == 3
    assert sorted(p.name for p in inputs.iterdir()) == names  # nothing was written into the input folder
    assert f"{len(first)} done before, 1 failed" in widget.status.value
    failed = next(line for line in widget.status.value.splitlines() if line.startswith("Failed: "))
    assert failed.startswith("Failed: zz_corrupt.png: ") and table["zz_corrupt"]["error"] in failed  # why, in view

    assert widget.open_button.enabled and widget.results_url().toLocalFile() == str(out.resolve())
    row = next(i for i, r in enumerate(widget.table_rows()) if r["status"] in ("ok", "skipped"))
    stem = widget.table_model.path(row).stem
    widget.table.doubleClicked.emit(widget.table_model.index(row, 1))
    image, mask = viewer.layers[stem], viewer.layers[f"{stem} lung mask"]
    assert image.data.shape == mask.data.shape and mask.data.any()
    count = len(viewer.layers)
    image.visible = False
    widget.table.doubleClicked.emit(widget.table_model.index(row, 1))  # again: shown and selected, not added twice
    assert len(viewer.layers) == count and image.visible and viewer.layers.selection.active is image
    assert "open already" in widget.status.value

    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtCore import Qt

    window = viewer.window._qt_window
    window.resize(1500, 860)
    for toast in window.findChildren(NapariQtNotification):
        toast.close()
    dock_widget, _ = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)  # the open one
    window.resizeDocks([dock_widget], [580], Qt.Orientation.Horizontal)
    qtbot.wait(300)
    viewer.reset_view()
    qtbot.wait(200)
    shot = screenshot_dir / "screenshot_batch.png"
    viewer.screenshot(str(shot), canvas_only=False)
    assert shot.stat().st_size > 10_000


def test_boxes_from_a_mask_folder_and_from_a_csv(make_napari_viewer, qtbot, inputs, tmp_path, cxr_dir):
    (inputs / "zz_corrupt.png").unlink()
    (inputs / "scan.gif").write_bytes(b"GIF89a")  # a kind it does not read: named, not silently dropped
    widget = dock(make_napari_viewer())
    widget.input_folder.value = str(inputs)
    widget.device.value = "cpu"
    widget.models.baseline.value = "none"
    widget.box_kind.value = "masks"
    assert not widget.boxes_masks.native.isHidden() and widget.boxes_csv.native.isHidden()
    widget.boxes_masks.value = str(cxr_dir / "masks")
    out = tmp_path / "by_masks"
    widget.out.value = str(out)
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None, widget.status.value
    assert "Skipped 1 file that is not an image adaqat reads (.gif;" in widget.status.value
    assert "(all 1 listed in skipped.csv when the run ends)" in widget.status.value
    with (out / "skipped.csv").open(newline="") as fh:  # as adaqat segment writes it (it was the CLI's alone)
        assert [(Path(r["file"]).name, r["what"]) for r in csv.DictReader(fh)] == [
            ("scan.gif", "not an image adaqat reads")]
    (out / "skipped.csv").write_text("my notes\n")  # the user's file of that name: left as it is, and said
    widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert (out / "skipped.csv").read_text() == "my notes\n"
    assert "skipped.csv is not adaqat's, so the list of what was skipped was not written there." in widget.status.value
    for row in csv_rows(out):
        expected = mask_box(read_mask(cxr_dir / "masks" / Path(row["file"]).name))
        np.testing.assert_allclose([float(v) for v in row["box"].split()], expected)

    boxes = tmp_path / "boxes.csv"
    boxes.write_text("file,x0,y0,x1,y1\n" + "".join(f"{p.name},10,20,300,400\n" for p in inputs.glob("*.png")))
    widget.box_kind.value = "csv"
    widget.boxes_csv.value = str(boxes)
    widget.out.value = str(tmp_path / "by_csv")
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert [r["box"] for r in csv_rows(tmp_path / "by_csv")] == ["10.0 20.0 300.0 400.0"] * 3

    gifs = tmp_path / "gifs"  # nothing it reads: one line that names what the folder holds
    gifs.mkdir()
    (gifs / "scan.gif").write_bytes(b"GIF89a")
    widget.input_folder.value = str(gifs)
    widget.out.value = str(tmp_path / "from_gifs")
    assert widget.run()  # (the worker looks through the inputs, then refuses)
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error and "No image files in the inputs: 1 file" in widget.status.value
    assert "scan.gif" in widget.status.value and not (tmp_path / "from_gifs").exists()
    widget.input_folder.value = str(inputs)

    widget.boxes_csv.value = str(tmp_path / "missing.csv")  # a bad source is refused before anything runs
    widget.out.value = str(tmp_path / "never")
    assert widget.run() is False and "boxes CSV not found" in widget.status.value
    assert not widget.busy and not (tmp_path / "never").exists()
