"""The Batch dock looks through a big PACS tree off the GUI thread, in a real napari viewer (Xvfb): the viewer
keeps running and the status counts the files while the scan goes on, and Cancel during the scan writes nothing.

Before, the dock scanned the input folder in ``run()``, on the GUI thread: with 'include subfolders' on a tree of
thousands of extension-less files (each opened to look for DICOM) the viewer froze until the scan ended."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat.data import folders  # noqa: E402
from napari_adaqat.model import loading  # noqa: E402
from napari_adaqat.widgets.batch import BatchWidget  # noqa: E402
from test_dicom import make_dicom  # noqa: E402  (tests/ is on sys.path)

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]
QA = Path("/tmp/qa")
GATE_AT = 150  # the scan's 150th file check waits until the test has seen the viewer run meanwhile
GATE_S = 15.0  # (at most this long: on the GUI thread nothing could release it, and run() took 15 s)


def pacs_tree(root: Path) -> int:
    """3 patients x 2 series x 50 extension-less files (45 not DICOM, 5 tiny DICOM films): 300 files."""
    film = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 16)
    for p in range(3):
        for s in range(2):
            series = root / f"P{p:03d}" / "ST1" / f"SE{s + 1}"
            series.mkdir(parents=True)
            for i in range(50):
                if i % 10 == 0:
                    make_dicom(series / f"IM{i:04d}", film, bits_stored=12)
                else:
                    (series / f"IM{i:04d}").write_bytes(b"\0" * 64 + b"not a DICOM file")
    return 300


def test_the_scan_of_a_big_tree_leaves_the_viewer_running_and_cancel_during_it_writes_nothing(
        make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from qtpy.QtCore import QTimer

    export, out = tmp_path / "export", tmp_path / "out"
    assert pacs_tree(export) == 300
    real, gate, checks, on_gui = folders.is_image_file, threading.Event(), [0], set()

    def slow_check(path) -> bool:  # the per-file look for DICOM, as on a slow share
        checks[0] += 1
        on_gui.add(threading.current_thread() is threading.main_thread())
        time.sleep(0.001)
        if checks[0] == GATE_AT:
            gate.wait(GATE_S)
        return real(path)

    monkeypatch.setattr(folders, "is_image_file", slow_check)
    viewer = make_napari_viewer(show=True)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-adaqat", "Batch segment (AdaLoRA-QAT)")
    assert isinstance(widget, BatchWidget)
    widget.input_folder.value, widget.out.value, widget.device.value = str(export), str(out), "cpu"
    widget.recursive.value = True
    ticks = [0]
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.__setitem__(0, ticks[0] + 1))
    timer.start(10)
    try:
        started = time.monotonic()
        assert widget.run()
        assert time.monotonic() - started < GATE_S / 3  # run() returns at once: the scan is the worker's
        assert widget.busy and widget.cancel_button.enabled and not widget.run_button.enabled
        qtbot.waitUntil(lambda: checks[0] >= GATE_AT and bool(re.search(r"[1-9]\d* files so far", widget.status.value)),
                        timeout=int(GATE_S * 1000 / 2))
        before = ticks[0]
        qtbot.wait(300)  # the scan is held at the gate: the GUI's event loop goes on all the same
        assert ticks[0] > before + 5 and not gate.is_set()
        seen = int(re.search(r"(\d+) files so far", widget.status.value).group(1))
        assert 0 < seen <= GATE_AT + 30 and widget.status.value.startswith("Looking through the inputs:")
        assert widget.progress.max == 0 and widget.progress.native.format() == f"looking through {seen} files…"
        QA.mkdir(exist_ok=True)
        widget.native.grab().save(str(QA / "batch_scan.png"))
        viewer.screenshot(str(QA / "batch_scan_viewer.png"), canvas_only=False)
        widget.cancel()
        gate.set()
        qtbot.waitUntil(lambda: not widget.busy, timeout=int(GATE_S * 1000))
    finally:
        gate.set()
        timer.stop()
    assert on_gui == {False}  # every file was looked at in the worker
    assert checks[0] < 300  # Cancel stopped the scan part way
    assert widget.status.value == "Cancelled while looking through the inputs; nothing was written."
    assert widget.last_error is None and widget.run_button.enabled and widget.table.rowCount() == 0
    assert not out.exists()  # nothing written: not even the folder


def test_a_tree_without_films_is_refused_by_the_worker_in_one_line_and_nothing_is_written(
        make_napari_viewer, qtbot, tmp_path):
    export, out = tmp_path / "export", tmp_path / "out"
    for name in ("P001/ST1/SE1/IM0001", "P001/ST1/SE1/IM0002", "P002/ST1/SE1/IM0001"):
        (export / name).parent.mkdir(parents=True, exist_ok=True)
        (export / name).write_bytes(b"\0" * 64)
    _dock, widget = make_napari_viewer().window.add_plugin_dock_widget("napari-adaqat", "Batch segment (AdaLoRA-QAT)")
    widget.input_folder.value, widget.out.value, widget.device.value = str(export), str(out), "cpu"
    widget.recursive.value = True
    assert widget.run()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.status.value.startswith("No image files in the inputs: 3 files that are not images adaqat reads")
    assert widget.last_error == widget.status.value and "\n" not in widget.status.value
    assert widget.run_button.enabled and not out.exists()
