"""Closing only the Train dock's panel (its ×, napari goes on) while ``adaqat train`` runs loses nothing: the
run goes on, a note says so and where, and the Train dock opened again from the plugin's widget contribution
follows the same run (fields, curves, progress bar, Stop) to its end.  Closing the viewer stops a left run,
resumable, as it stops a shown one.  Real viewer (Xvfb), real subprocess, tiny ``vit_nano`` on 4 real films."""
from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("napari")

from napari.utils.notifications import notification_manager  # noqa: E402

from napari_adaqat.train.progress import read_progress  # noqa: E402
from napari_adaqat.widgets.train import TrainWidget  # noqa: E402

pytestmark = pytest.mark.gui
PLUGIN, WIDGET = "napari-adaqat", "Train (AdaLoRA-QAT)"
WAIT_MS = 180_000


def _open(viewer):
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, TrainWidget)
    return dock, widget


def _start(widget: TrainWidget, data: Path, out: Path, epochs: int) -> None:
    widget.stage.value = 1
    widget.preset.value = "paper"
    widget.checkpoint.line_edit.value = ""
    widget.data.value, widget.out.value = str(data), str(out)
    widget.model_type.value, widget.mode.value = "vit_nano", "full"
    widget.epochs.value, widget.batch_size.value, widget.device.value = epochs, 1, "cpu"  # 4 steps per epoch
    assert widget.start(), widget.status.value


def _kinds(run: Path) -> list[tuple]:
    return [(r["kind"], r.get("epoch")) for r in read_progress(run / "progress.jsonl")]


def _notes() -> list[str]:
    return [str(n.message) for n in notification_manager.records]


def test_closing_the_train_panel_keeps_the_run_and_reopening_follows_it(make_napari_viewer, qtbot, dataset,
                                                                        tmp_path):
    viewer = make_napari_viewer()
    dock, widget = _open(viewer)
    run = tmp_path / "run"
    _start(widget, dataset, run, epochs=3)
    proc = widget.process
    qtbot.waitUntil(lambda: len(widget.plot.loss_x) >= 2, timeout=WAIT_MS)  # the dock shows the first steps
    shown = len(widget.plot.loss_x)

    dock.title.close_button.click()  # the panel's ×: napari's remove_dock_widget
    assert PLUGIN not in " ".join(viewer.window._wrapped_dock_widgets)
    assert proc.running() and widget.process is None  # the run goes on; the closed panel lets it go
    note = [n for n in _notes() if n.startswith("Training goes on in the background")][-1]
    assert f"pid {proc.pid}" in note and str(run) in note and "Train (AdaLoRA-QAT) again" in note
    qtbot.waitUntil(lambda: ("step", 2) in _kinds(run), timeout=WAIT_MS)  # steps nobody shows

    _dock2, again = _open(viewer)  # Plugins › Train (AdaLoRA-QAT)
    assert again is not widget and again.busy and again.process is proc
    assert again.stop_button.enabled and not again.start_button.enabled and not again.data.enabled
    assert (again.data.value, again.out.value, again.epochs.value) == (dataset, run, 3)
    assert again.model_type.value == "vit_nano" and again.progress.max == 3
    assert again.tabs.currentIndex() == 1 and len(again.plot.loss_x) >= shown
    assert "_records" not in vars(widget) and "_records" not in vars(again)  # no copy: read again from the log
    assert again.plot.loss_x == [r["epoch"] - 1 + r["step"] / r["steps"] for r in read_progress(run / "progress.jsonl")
                                 if r["kind"] == "step"][:len(again.plot.loss_x)]
    assert str(run) in again.command.value
    qtbot.waitUntil(lambda: len(again.plot.dice_x) >= 1 and again.progress.value >= 1, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: not again.busy, timeout=WAIT_MS)
    assert again.last_error is None and again.status.value.startswith("Done"), again.status.value
    assert again.progress.value == 3 and again.plot.dice_x == [1.0, 2.0, 3.0]
    assert len(again.plot.loss_x) == 12  # every step of the 3 epochs: those shown before the close too
    assert (run / "checkpoints" / "best.safetensors").is_file()


def test_a_run_ending_while_the_panel_is_closed_says_so_and_shows_when_reopened(make_napari_viewer, qtbot, dataset,
                                                                                tmp_path):
    viewer = make_napari_viewer()
    dock, widget = _open(viewer)
    run = tmp_path / "run"
    _start(widget, dataset, run, epochs=1)
    proc = widget.process
    dock.title.close_button.click()
    qtbot.waitUntil(lambda: not proc.running(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: any("finished while the Train panel was closed" in n for n in _notes()), timeout=5_000)
    _dock2, again = _open(viewer)
    qtbot.waitUntil(lambda: not again.busy, timeout=5_000)
    assert again.status.value.startswith("Done") and again.progress.value == 1, again.status.value


def test_closing_the_viewer_stops_a_left_run_resumable(make_napari_viewer, qtbot, dataset, tmp_path):
    viewer = make_napari_viewer()
    dock, widget = _open(viewer)
    run = tmp_path / "run"
    _start(widget, dataset, run, epochs=500)  # minutes: only a stop ends it here
    proc = widget.process
    dock.title.close_button.click()
    assert proc.running()
    viewer.close()
    qtbot.waitUntil(lambda: not proc.running(), timeout=30_000)
    assert proc.stopping and proc.returncode() != 0


def test_a_chain_left_by_its_closed_panel_is_followed_to_its_model_files(make_napari_viewer, qtbot, dataset, tmp_path):
    viewer = make_napari_viewer()
    dock, widget = _open(viewer)
    run = tmp_path / "chain"
    widget.stage.value = "all"
    widget.preset.value = "paper"
    widget.checkpoint.line_edit.value = ""
    widget.data.value, widget.out.value = str(dataset), str(run)
    widget.model_type.value, widget.mode.value = "vit_nano", "full"
    widget.epochs.value, widget.qat_epochs.value, widget.batch_size.value, widget.device.value = 2, 1, 2, "cpu"
    assert widget.start(), widget.status.value
    qtbot.waitUntil(lambda: len(widget.plot.loss_x) >= 1, timeout=WAIT_MS)
    dock.title.close_button.click()
    _dock2, again = _open(viewer)
    assert again.busy and again.stage.value == "all" and again.qat_epochs.value == 1
    qtbot.waitUntil(lambda: not again.busy, timeout=WAIT_MS)
    assert again.last_error is None and again.exported is not None, again.status.value
    assert again.status.value.startswith("Model ready") and again.use_button.enabled
    assert again.plot.stage == 2 and again.plot.dice_x == [1.0, 2.0, 3.0]  # Stage 1's 2 epochs, then Stage 2's


def test_a_data_check_ending_after_napari_closed_is_ignored(make_napari_viewer, qtbot, dataset, monkeypatch):
    """Before: the check's result reached fields Qt had deleted (RuntimeError in the event loop, seen at a test's
    teardown when the viewer closed while the debounced check of the data folder ran)."""
    import threading

    from qtpy import sip

    from napari_adaqat.widgets import _train_data_check as train

    release, ended = threading.Event(), threading.Event()
    real_check = train.check_data

    def slow_check(*args, **kwargs):
        release.wait(30)
        try:
            return real_check(*args, **kwargs)
        finally:
            ended.set()

    monkeypatch.setattr(train, "check_data", slow_check)
    dock, widget = _open(make_napari_viewer())
    widget.data.value = str(dataset)
    widget.check_data()
    assert widget.checking
    sip.delete(dock)  # as Qt deletes a closed dock's widgets while the check runs
    assert sip.isdeleted(widget.data.line_edit.native)
    release.set()
    assert ended.wait(30)
    qtbot.wait(300)  # the worker's result arrives in the event loop: an exception there fails the test
