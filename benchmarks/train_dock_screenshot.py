"""The README's Train dock screenshot (docs/screenshot_train.png), from a real run through the real dock.

24 radiographs of the shared development set (``../shared/data/cxr/permissive_512``), ``vit_tiny`` trained
from scratch (mode ``full``) for 20 epochs on the CPU, then "Continue: Stage 2 + export" (2 QAT epochs, INT8
``deploy`` + FP32 baseline). The script fills the dock's fields, clicks its buttons and processes Qt events
until each step is done, exactly as a person would wait; then it saves the window.

    xvfb-run -a python benchmarks/train_dock_screenshot.py [--epochs 20] [--images 24] [--out docs/screenshot_train.png]

About 10-15 minutes on 2 CPU cores.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV_SET = ROOT.parent / "shared" / "data" / "cxr" / "permissive_512"


def wait(app, until, timeout_s: float, what: str) -> None:
    """Process Qt events until ``until()`` is true."""
    t0 = time.monotonic()
    while not until():
        app.processEvents()
        time.sleep(0.05)
        if time.monotonic() - t0 > timeout_s:
            sys.exit(f"timed out waiting for {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--data", type=Path, default=DEV_SET)
    ap.add_argument("--work", type=Path, default=None, help="where the data copy and the runs go (default: temp)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot_train.png")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="adaqat_train_dock_"))
    data = work / "data"
    for sub in ("images", "masks"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    for image in sorted((args.data / "images").glob("*.png"))[: args.images]:
        shutil.copy(image, data / "images" / image.name)
        shutil.copy(args.data / "masks" / image.name, data / "masks" / image.name)
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(work / "run_stage2", ignore_errors=True)

    from napari_adaqat.widgets.train import TrainWidget  # before the viewer's OpenGL context (widgets/_compat.py)

    import napari
    from napari.settings import get_settings
    from qtpy.QtWidgets import QApplication

    get_settings().application.gui_notification_level = "none"
    viewer = napari.Viewer()
    viewer.open_sample("napari-adaqat", "chest_xray")
    viewer.window._qt_window.resize(1400, 860)
    app = QApplication.instance()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-adaqat", "Train (AdaLoRA-QAT)")
    assert isinstance(widget, TrainWidget)

    widget.data.value = str(data)
    wait(app, lambda: widget.data_report is not None and not widget.checking, 120, "the data check")
    print(widget.data_check.value, flush=True)
    widget.out.value = str(run)
    widget.stage.value, widget.preset.value = 1, "paper"  # Stage 1 alone, then Continue (not the finetune chain)
    widget.checkpoint.line_edit.value = ""
    widget.model_type.value = "vit_tiny"
    widget.mode.value = "full"
    widget.epochs.value = args.epochs
    widget.batch_size.value = args.batch_size
    widget.device.value = "cpu"
    widget.qat_epochs.value = args.qat_epochs
    t0 = time.monotonic()
    if not widget.start():
        sys.exit(widget.status.value)
    print("stage 1:", widget.command.value, flush=True)
    wait(app, lambda: not widget.busy, 3600, "Stage 1")
    print(f"stage 1 done in {time.monotonic() - t0:.0f} s: {widget.status.value}", flush=True)
    print("val Dice per epoch:", [round(d, 3) for d in widget.plot.dice_y], flush=True)
    if widget.last_error or not widget.continue_to_model():
        sys.exit(widget.status.value)
    wait(app, lambda: not widget.busy, 3600, "Stage 2 + export")
    print(f"all done in {time.monotonic() - t0:.0f} s: {widget.status.value}", flush=True)
    print(widget.models_label.value, flush=True)
    if widget.last_error:
        sys.exit(widget.last_error)

    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    widget.tabs.setCurrentIndex(1)
    for _ in range(10):
        app.processEvents()
        time.sleep(0.05)
    viewer.reset_view()
    for _ in range(10):
        app.processEvents()
        time.sleep(0.05)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False)
    print("saved", args.out)
    viewer.close()


if __name__ == "__main__":
    main()
