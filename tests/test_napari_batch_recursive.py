"""The Batch dock on archive folders as hospitals export them, in a real napari viewer (Xvfb) with the bundled
model: 'include subfolders' on a PACS tree (masks mirror it), missing inputs as the CLI treats them, a killed
run's lock taken over (said in the status), the time left on a rerun, and a film's ``_seg`` mask beside it in
the Annotate dock."""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("napari")

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat.data import mask_box  # noqa: E402
from napari_adaqat.inference.lock import LOCK_NAME  # noqa: E402
from napari_adaqat.io import read_mask  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets.annotate import AnnotateWidget  # noqa: E402
from napari_adaqat.widgets import _batch_boxes as B  # noqa: E402
from napari_adaqat.widgets.batch import BatchWidget  # noqa: E402
from test_segment_recursive import pacs_export  # noqa: E402  (tests/ is on sys.path)

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]
PLUGIN, WIDGET = "napari-adaqat", "Batch segment (AdaLoRA-QAT)"
WAIT_MS = 180_000
QA = Path("/tmp/qa")


def docked(viewer, inputs: Path, out: Path) -> BatchWidget:
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, BatchWidget)
    widget.input_folder.value, widget.out.value, widget.device.value = str(inputs), str(out), "cpu"
    return widget


def finish(qtbot, widget: BatchWidget) -> None:
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None, widget.status.value


def csv_rows(out: Path) -> dict[str, dict]:
    with (out / "results.csv").open(newline="", encoding="utf-8") as fh:
        return {r["file"]: r for r in csv.DictReader(fh)}


def small_films(folder: Path, cxr_dir: Path, names: list[str]) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    images = sorted((cxr_dir / "images").glob("*.png"))
    for i, name in enumerate(names):
        Image.open(images[i % 4]).convert("L").resize((96, 96)).save(folder / name)
    return folder


def test_include_subfolders_segments_a_pacs_tree_into_a_mirror_and_screenshot(make_napari_viewer, qtbot, tmp_path,
                                                                             cxr_dir):
    export = tmp_path / "export"
    films = pacs_export(export, cxr_dir)
    out = tmp_path / "out"
    viewer = make_napari_viewer(show=True)
    widget = docked(viewer, export, out)
    assert widget.run()  # the box is not ticked: the worker looks through the tree, then one line: tick it
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error == widget.status.value and widget.run_button.enabled
    assert "\n" not in widget.status.value and "tick 'include subfolders' to segment the films in them" in \
        widget.status.value and not out.exists()
    QA.mkdir(exist_ok=True)
    qtbot.wait(100)
    widget.native.grab().save(str(QA / "batch_dock_not_ticked.png"))
    widget.recursive.value = True
    assert widget.run()
    qtbot.waitUntil(lambda: widget.progress.max == 7, timeout=WAIT_MS)  # the bar counts every file of the tree
    finish(qtbot, widget)
    rows = csv_rows(out)
    assert list(rows) == [str(p) for p in films] and all(r["status"] == "ok" for r in rows.values())
    for path in films:
        relative = path.relative_to(export)
        assert Path(rows[str(path)]["mask"]) == out / relative.parent / f"{relative.stem}_mask.png"
        assert (out / relative.parent / f"{relative.stem}_mask.png").is_file()
    shown = [r["file"] for r in widget.table_rows()]  # six IM0001/IM0002: the table says which is which
    assert shown == [str(p.relative_to(export)) for p in films]
    assert "1 mask beside its film (NAME_seg beside NAME), not segmented: a_seg.png" in widget.status.value
    widget.open_row(0)
    assert [layer.name for layer in viewer.layers] == ["P001/ST1/SE1/IM0001", "P001/ST1/SE1/IM0001 lung mask"]
    qtbot.wait(200)
    widget.native.grab().save(str(QA / "batch_dock_recursive.png"))
    viewer.screenshot(str(QA / "batch_recursive_viewer.png"), canvas_only=False)

    widget.box_kind.value, widget.boxes_masks.value = B.MASKS, str(out)  # boxes from the mirrored masks
    widget.out.value = str(tmp_path / "out2")
    assert widget.run()
    finish(qtbot, widget)
    assert widget.box_notes == []  # every film found its mask in the same sub-folder
    again = csv_rows(tmp_path / "out2")
    for path in films:
        mask = read_mask(Path(rows[str(path)]["mask"]))
        x0, y0, x1, y1 = (float(v) for v in again[str(path)]["box"].split())
        assert (x0, y0, x1, y1) == tuple(float(v) for v in mask_box(mask)), path


def test_missing_inputs_in_the_dock_are_error_rows_as_in_the_cli(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    """Before: one missing file refused the whole run (the CLI wrote an error row and went on)."""
    folder = small_films(tmp_path / "films", cxr_dir, ["a.png", "b.png"])
    gone = tmp_path / "moved_away.png"
    out = tmp_path / "out"
    widget = docked(make_napari_viewer(), folder, out)
    widget.input_files.value = [str(gone)]
    assert widget.run()
    assert f"Not found, an error row each (the others are segmented): {gone}" in widget.status.value
    finish(qtbot, widget)
    rows = csv_rows(out)
    assert {k: r["status"] for k, r in rows.items()} == {str(folder / "a.png"): "ok", str(folder / "b.png"): "ok",
                                                        str(gone): "error"}
    assert "2 segmented, 0 done before, 1 failed" in widget.status.value and str(gone) in widget.status.value
    widget.input_folder.value = str(tmp_path / "typo")  # nothing there at all: refused, nothing written
    widget.out.value = str(tmp_path / "o2")
    assert widget.run() is False and widget.status.value.endswith("(and 1 more inputs); nothing was written")
    assert not (tmp_path / "o2").exists()


def test_a_killed_runs_lock_taken_over_is_said_in_the_status(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    folder = small_films(tmp_path / "films", cxr_dir, ["a.png"])
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}) + "\n")
    widget = docked(make_napari_viewer(), folder, out)
    assert widget.run()
    finish(qtbot, widget)
    assert f"Note: Took over {out} from a run that stopped without finishing (pid {int(dead.stdout)} on " \
           f"{socket.gethostname()})." in widget.status.value
    assert widget.status.value.startswith("1 segmented") and not (out / LOCK_NAME).exists()


def test_the_time_left_on_a_rerun_counts_only_the_files_still_to_segment(make_napari_viewer, qtbot, tmp_path,
                                                                        cxr_dir):
    """A rerun of 4 films of which 3 are done: after the one new film (sorted first) nothing is left to segment;
    before, its time was multiplied by the 3 files still to skip ('about 3 s left' for a thing of an instant)."""
    folder = small_films(tmp_path / "films", cxr_dir, ["b.png", "c.png", "d.png"])
    out = tmp_path / "out"
    widget = docked(make_napari_viewer(), folder, out)
    assert widget.run()
    finish(qtbot, widget)
    small_films(folder, cxr_dir, ["a.png"])
    bars: list[str] = []
    widget._row_signal.row.connect(lambda *_: bars.append(widget.progress.native.text()))  # after each row
    assert widget.run()
    finish(qtbot, widget)
    assert [r["status"] for r in widget.table_rows()] == ["ok", "skipped", "skipped", "skipped"]
    # (the 3 files done before come in one list, or a few when the machine is slow: no time left after the new one)
    assert bars[0] == "1 / 4" and bars[-1] == "4 / 4" and not any("left" in bar for bar in bars), bars
    widget._to_segment, widget._segmented, widget._segment_s = 10, 2, 3.0  # 2 files took 3 s: 8 more take 12 s
    assert widget.progress_format() == "4 / 4 · about 12 s left"


def test_the_annotate_dock_does_not_open_a_films_seg_mask_as_a_film(make_napari_viewer, qtbot, tmp_path, cxr_dir):
    folder = small_films(tmp_path / "films", cxr_dir, ["a.png", "b.png"])
    shutil.copy(sorted((cxr_dir / "masks").glob("*.png"))[0], folder / "a_seg.png")
    _dock, widget = make_napari_viewer().window.add_plugin_dock_widget(PLUGIN, "Annotate folder (AdaLoRA-QAT)")
    assert isinstance(widget, AnnotateWidget)
    widget.images.value, widget.dataset.value = str(folder), str(tmp_path / "dataset")
    widget.open_button.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None, widget.status.value
    assert [film.name for film in widget.folder.films] == ["a", "b"]
    assert os.path.basename(widget.folder.films[0].path) == "a.png"
