"""The Train dock in a real napari viewer (Xvfb): `adaqat train` runs as a subprocess, the viewer
stays responsive, progress follows RUN/progress.jsonl, Stop then Resume completes the run.

Training is tiny: the 4 shipped radiographs, random-init ``vit_nano`` in ``full`` mode, on the CPU; one test
runs the whole dock on 12 real radiographs of the shared development set (``vit_tiny``): data check, live
plot, Stop/Resume, Stage 2 + export, and the exported pair in the Segment dock.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")

from qt_probe import tick_probe  # noqa: E402

# imported at collection, before any viewer creates an OpenGL context (see widgets/_compat.py)
from napari_adaqat._sample import chest_xray  # noqa: E402
from napari_adaqat.train.progress import read_progress  # noqa: E402
from napari_adaqat.widgets.train import TrainWidget  # noqa: E402

pytestmark = pytest.mark.gui
PLUGIN, WIDGET = "napari-adaqat", "Train (AdaLoRA-QAT)"
WAIT_MS = 180_000


def dock(viewer) -> TrainWidget:
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    assert isinstance(widget, TrainWidget)
    assert getattr(widget.viewer, "__wrapped__", widget.viewer) is viewer  # napari passed its viewer
    return widget


def fill(widget: TrainWidget, data: Path, out: Path, epochs: int, batch_size: int = 4) -> None:
    widget.stage.value = 1
    widget.preset.value = "paper"
    widget.checkpoint.line_edit.value = ""
    widget.data.value = str(data)
    widget.out.value = str(out)
    widget.model_type.value = "vit_nano"
    widget.mode.value = "full"
    widget.epochs.value = epochs
    widget.batch_size.value = batch_size
    widget.device.value = "cpu"


def test_training_runs_in_a_subprocess_and_the_viewer_stays_responsive(make_napari_viewer, qtbot, dataset, tmp_path,
                                                                      screenshot_dir):
    viewer = make_napari_viewer()
    for data, kw, kind in chest_xray():
        getattr(viewer, f"add_{kind}")(data, **kw)
    widget = dock(viewer)
    run = tmp_path / "run"
    widget.data.value, widget.out.line_edit.value = str(dataset), ""
    assert widget.command.value == "(not yet: choose a run folder)"  # not a command with --out ''
    fill(widget, dataset, run, epochs=2)
    cmd = widget.command.value
    assert "-m napari_adaqat train --stage 1" in cmd and "--epochs 2" in cmd and str(dataset) in cmd
    assert widget.command.native.isReadOnly()

    probe, ticks = tick_probe()  # fires every 50 ms while the Qt event loop runs
    t0 = time.monotonic()
    widget.start_button.native.click()
    assert time.monotonic() - t0 < 2.0, "Start must return at once"
    assert widget.busy and widget.process.running()
    assert not widget.start_button.enabled and widget.stop_button.enabled
    # while the subprocess trains, the Qt event loop keeps running (ticks every ~50 ms)
    qtbot.waitUntil(lambda: len(ticks) >= 20, timeout=10_000)
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    probe.stop()
    gaps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(gaps) < 1.5, f"the event loop stalled for {max(gaps):.2f} s"

    assert widget.last_error is None, widget.status.value
    assert widget.progress.max == 2 and widget.progress.value == 2
    status = widget.status.value
    assert status.startswith("Done") and "val Dice" in status and "best Dice" in status
    assert (run / "checkpoints" / "best.safetensors").is_file()
    assert [r["kind"] for r in read_progress(run / "progress.jsonl")][-1] == "done"
    assert widget.start_button.enabled and not widget.stop_button.enabled

    viewer.window.resize(1400, 860)
    qtbot.wait(300)
    shot = screenshot_dir / "screenshot_train_quick.png"  # the README's: benchmarks/train_dock_screenshot.py
    viewer.screenshot(str(shot), canvas_only=False)
    assert shot.stat().st_size > 10_000


def test_missing_data_folder_gives_a_message_and_starts_nothing(make_napari_viewer, tmp_path):
    widget = dock(make_napari_viewer())
    widget.out.value = str(tmp_path / "run")
    assert widget.start() is False
    assert not widget.busy and widget.process is None
    assert widget.status.value.startswith("Choose a data folder")
    widget.data.value = str(tmp_path / "nope")
    widget.start_button.native.click()
    assert not widget.busy and "data folder not found" in widget.status.value
    assert "\n" not in widget.status.value
    assert not (tmp_path / "run").exists()
    # Stage 2 swaps the Stage-1 fields for "from run" and needs a Stage-1 model
    widget.stage.value = 2
    assert not widget.from_run.native.isHidden() and widget.mode.native.isHidden()
    assert "--stage 2" in widget.command.value and "--mode" not in widget.command.value


def test_subprocess_failure_shows_its_last_stderr_line(make_napari_viewer, qtbot, dataset, tmp_path):
    widget = dock(make_napari_viewer())
    fill(widget, dataset, tmp_path / "run", epochs=1)
    bad = tmp_path / "broken.pth"
    bad.write_bytes(b"not a checkpoint")
    widget.checkpoint.value = str(bad)
    assert widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=60_000)
    assert widget.last_error and widget.last_error.startswith("adaqat train: ") and "broken.pth" in widget.last_error
    assert widget.status.value.startswith("Failed (exit ") and widget.last_error in widget.status.value
    assert widget.start_button.enabled and not widget.stop_button.enabled


def test_stop_terminates_and_resume_continues(make_napari_viewer, qtbot, dataset, tmp_path):
    widget = dock(make_napari_viewer())
    run = tmp_path / "run"
    fill(widget, dataset, run, epochs=4, batch_size=1)  # 4 steps per epoch
    assert widget.start()
    proc = widget.process
    progress = run / "progress.jsonl"

    def kinds() -> list[tuple]:
        return [(r["kind"], r.get("epoch")) for r in read_progress(progress)]

    # stop once epoch 1 is saved and epoch 2 has begun (a "step" record of epoch 2)
    qtbot.waitUntil(lambda: ("step", 2) in kinds(), timeout=WAIT_MS)
    widget.stop_button.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert proc.returncode() != 0 and not proc.running()
    assert widget.last_error is None and widget.status.value.startswith("Stopped")
    assert widget.resume.value is True and "--resume" in widget.command.value
    assert ("done", None) not in kinds()
    assert 1 <= widget.progress.value < 4

    widget.start_button.native.click()
    assert widget.busy
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None, widget.status.value
    records = read_progress(progress)
    starts = [r for r in records if r["kind"] == "start"]
    assert len(starts) == 2 and starts[1]["resumed_from"]
    assert records[-1]["kind"] == "done" and widget.progress.value == 4
    assert "val Dice" in widget.status.value
    assert (run / "checkpoints" / "best.safetensors").is_file()



def test_progress_follower_starts_over_when_the_log_is_replaced_or_truncated(tmp_path):
    from napari_adaqat.widgets._train_process import ProgressFollower

    log = tmp_path / "progress.jsonl"
    log.write_text("".join(json.dumps({"kind": "step", "epoch": 1, "step": i}) + "\n" for i in range(40)))
    follower = ProgressFollower.from_end(log)
    assert follower.read_new() == []
    log.unlink()  # a fresh run replaces the log with a shorter one
    log.write_text(json.dumps({"kind": "start"}) + "\n" + json.dumps({"kind": "epoch", "epoch": 1}) + "\n")
    assert [r["kind"] for r in follower.read_new()] == ["start", "epoch"]
    with log.open("a") as fh:
        fh.write(json.dumps({"kind": "done"}) + "\n" + '{"kind": "st')  # a half-written line waits
    assert [r["kind"] for r in follower.read_new()] == ["done"]
    log.write_text(json.dumps({"kind": "start"}) + "\n")  # same file truncated in place
    assert [r["kind"] for r in follower.read_new()] == ["start"]


def test_a_folder_with_an_unfinished_attempt_shows_the_new_runs_progress(make_napari_viewer, qtbot, dataset, tmp_path):
    """Stop during epoch 1 leaves a long progress.jsonl and no checkpoint; Start again must follow the new run."""
    run = tmp_path / "run"
    run.mkdir()
    old = [{"kind": "start", "epochs": 9}] + [{"kind": "step", "epoch": 1, "step": i, "loss": 1.0} for i in range(60)]
    (run / "progress.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    widget = dock(make_napari_viewer())
    fill(widget, dataset, run, epochs=1)
    assert widget.start()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None, widget.status.value
    assert widget.progress.max == 1 and widget.progress.value == 1
    assert widget.status.value.startswith("Done") and "val Dice" in widget.status.value
    assert [r["kind"] for r in read_progress(run / "progress.jsonl")][0] == "start"
    assert len(read_progress(run / "progress.jsonl")) < len(old)


# ---------------------------------------------------------------------------------------------------------
# A real run on real radiographs: data check → live plot → Stop/Resume → Stage 2 + export → Segment dock
DEV_SET = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "permissive_512"


@pytest.fixture()
def real12(tmp_path) -> Path:
    """12 real radiographs with their lung masks from the shared development set (seeded 80:10:10 split)."""
    if not (DEV_SET / "images").is_dir():
        pytest.skip(f"development set not found: {DEV_SET}")
    root = tmp_path / "dev12"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    for image in sorted((DEV_SET / "images").glob("*.png"))[:12]:
        shutil.copy(image, root / "images" / image.name)
        shutil.copy(DEV_SET / "masks" / image.name, root / "masks" / image.name)
    return root


def test_data_check_shows_counts_split_and_bad_pairs(make_napari_viewer, qtbot, dataset):
    widget = dock(make_napari_viewer())
    (dataset / "images" / "broken.png").write_bytes(b"not a png")
    (dataset / "images" / "lonely.png").write_bytes((dataset / "images" / "covid19_v7__5782ae15.png").read_bytes())
    widget.data.value = str(dataset)
    qtbot.waitUntil(lambda: widget.data_report is not None and not widget.checking, timeout=30_000)
    report = widget.data_report
    assert (report.n_images, report.n_masks, report.source) == (6, 4, "split.json")
    assert len(report.bad) == 2 and any("broken.png" in b for b in report.bad)
    assert any("lonely.png" in b and "missing mask" in b for b in report.bad)
    text = widget.data_check.value
    assert "6 images · 4 masks · 2 bad pairs" in text and "as split.json lists them" in text and "✗ " in text
    assert "split (from split.json)" in widget.data_check.tooltip  # the technical line
    assert all("\n" not in line for line in report.bad)  # one line per bad pair
    widget.data.value = str(dataset / "nope")
    qtbot.waitUntil(lambda: not widget.checking and widget.data_check.value.startswith("✗"), timeout=30_000)


def test_real_run_plot_stop_resume_continue_to_model_and_use_it(make_napari_viewer, qtbot, real12, tmp_path):
    viewer = make_napari_viewer()
    for data, kw, kind in chest_xray():
        getattr(viewer, f"add_{kind}")(data, **kw)
    widget = dock(viewer)
    widget.data.value = str(real12)
    qtbot.waitUntil(lambda: widget.data_report is not None and not widget.checking, timeout=30_000)
    report = widget.data_report
    assert (report.n_images, report.n_masks, report.bad, report.source) == (12, 12, [], "seeded")
    assert report.split == {"train": 11, "val": 1, "test": 0}  # under 20 pairs: no test cut
    assert "12 images · 12 masks · 0 bad pairs" in widget.data_check.value
    assert "11 films to train on · 1 to check the model (validation) · none kept for a final test" in \
        widget.data_check.value
    assert "11 train / 1 val / 0 test" in widget.data_check.tooltip

    run = tmp_path / "run"
    widget.out.value = str(run)
    widget.stage.value = 1
    widget.preset.value = "paper"
    widget.checkpoint.line_edit.value = ""
    widget.model_type.value = "vit_tiny"
    widget.mode.value = "full"
    widget.epochs.value = 3
    widget.batch_size.value = 2
    widget.max_steps.value = 4
    widget.device.value = "cpu"
    assert "--max-steps-per-epoch 4" in widget.command.value
    assert not widget.continue_button.enabled  # no Stage-1 model yet
    assert widget.start()
    progress = run / "progress.jsonl"

    def kinds() -> list[tuple]:
        return [(r["kind"], r.get("epoch")) for r in read_progress(progress)]

    qtbot.waitUntil(lambda: len(widget.plot.loss_x) >= 2, timeout=WAIT_MS)
    seen = len(widget.plot.loss_x)
    qtbot.waitUntil(lambda: ("step", 2) in kinds(), timeout=WAIT_MS)
    widget.stop_button.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=30_000)
    assert widget.status.value.startswith("Stopped") and widget.resume.value is True
    assert len(widget.plot.loss_x) > seen and widget.plot.dice_x == [1]  # the plot followed the records

    widget.start_button.native.click()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None, widget.status.value
    assert widget.status.value.startswith("Done") and widget.progress.value == 3
    assert widget.plot.dice_x == [1, 2, 3] and len(widget.plot.dice_y) == 3
    assert widget.plot.loss_x == sorted(set(widget.plot.loss_x)) and len(widget.plot.loss_x) == 12  # 3 × 4 steps
    assert "Rank budget" in widget.plot_info.tooltip and "ETA" in widget.plot_info.value

    widget.qat_epochs.value = 1
    assert widget.continue_button.enabled
    widget.continue_button.native.click()
    assert widget.busy and "--stage all" in widget.command.value and f"--from {run}" in widget.command.value
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None, widget.status.value
    int8, fp32 = widget.exported
    assert int8.is_file() and fp32.is_file() and int8.parent == tmp_path / "run_model"
    assert (tmp_path / "run_model" / "stage2" / "checkpoints" / "best.safetensors").is_file()
    assert "run_model/model_int8.safetensors (" in widget.models_label.value and "MB)" in widget.models_label.value
    assert str(int8) in widget.models_label.tooltip
    assert int8.stat().st_size < fp32.stat().st_size  # INT8 (deploy) is the smaller file
    assert widget.use_button.enabled

    segment = widget.use_in_segment_dock()
    assert segment is not None and segment.model.value == "file" and segment.baseline.value == "file"
    assert Path(segment.model_file.value) == int8 and Path(segment.baseline_file.value) == fp32
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    qtbot.waitUntil(lambda: not segment.busy, timeout=WAIT_MS)
    assert segment.last_error is None, segment.last_error
    assert viewer.layers["lung mask"].data.shape == (512, 512)
    assert "SSIM" in viewer.layers and segment.legends.ssim.isVisibleTo(segment.native)


def test_resume_keeps_the_runs_own_config(qtbot, tmp_path):
    """Resume takes the run's config.json: the form's preset, model type and mode do not override it."""
    from napari_adaqat.train.chain import config_args
    from napari_adaqat.train.config import make_config

    run = tmp_path / "r"
    run.mkdir()
    saved = make_config("authors", 1, {"data": str(tmp_path), "out": str(run), "model_type": "vit_nano",
                                       "mode": "full", "epochs": 5})
    (run / "config.json").write_text(json.dumps(saved.to_dict()))
    widget = TrainWidget(None)
    widget.stage.value, widget.preset.value, widget.model_type.value = 1, "paper", "vit_b"
    widget.data.value, widget.out.value, widget.epochs.value = str(tmp_path), str(run), 7
    widget.resume.value = True
    cfg = widget.config()
    assert (cfg.preset, cfg.model_type, cfg.mode, cfg.epochs) == ("authors", "vit_nano", "full", 7)
    assert widget.command.value.endswith(" ".join(config_args(cfg, resume=True)))
    assert "--resume" in widget.command.value and "--preset authors" in widget.command.value


def test_resume_follows_the_runs_own_stage(qtbot, tmp_path):
    """Resume on a Stage-1 run with the stage field on 2 (or 'all'): the dock used to continue the run as Stage 1
    while its field said 2. The field now follows the run, and says so; a mismatch left is refused in one line."""
    from napari_adaqat.train.config import make_config
    from napari_adaqat.widgets.train import TrainWidget

    run = tmp_path / "r"
    run.mkdir()
    saved = make_config("authors", 1, {"data": str(tmp_path), "out": str(run), "model_type": "vit_nano", "epochs": 5})
    (run / "config.json").write_text(json.dumps(saved.to_dict()))
    widget = TrainWidget(None)
    widget.data.value, widget.out.value = str(tmp_path), str(run)
    for asked in (2, "all"):
        widget.resume.value = False
        widget.stage.value = asked
        widget.resume.value = True
        assert widget.stage.value == 1 and widget.status.value == f"Resume: {run} is a Stage-1 run, so stage is set to 1."
        assert "--stage 1" in widget.command.value and "--resume" in widget.command.value
    with widget.stage.changed.blocked():  # a mismatch the field did not follow (set behind its back)
        widget.stage.value = 2
    with pytest.raises(ValueError, match="is a Stage-1 run: Resume continues it with stage 1"):
        widget.config()
    assert not widget.start() and "Stage-1 run" in widget.status.value and not widget.busy


def test_start_with_the_defaults_fine_tunes_the_bundled_model(make_napari_viewer, qtbot, dataset, tmp_path,
                                                              screenshot_dir):
    """No GPU and no SAM checkpoint: the dock opens on the finetune preset from the bundled model, Start runs
    the core chain (its command is the Chain's) and the new pair goes to the Segment and Annotate docks."""
    from napari_adaqat.train.chain import chain_paths
    from napari_adaqat.train.compare import compare_runs
    from napari_adaqat.widgets._train_process import ChainProcess, adaqat_argv

    viewer = make_napari_viewer()
    for data, kw, kind in chest_xray():
        getattr(viewer, f"add_{kind}")(data, **kw)
    widget = dock(viewer)
    assert (widget.stage.value, widget.preset.value, widget.checkpoint.line_edit.value) == ("all", "finetune",
                                                                                            "default")
    assert widget.why.value.startswith("No GPU and no SAM checkpoint") and "\n" not in widget.why.value
    assert widget.model_type.native.isHidden()  # the bundled file carries its architecture
    run = tmp_path / "mine"
    widget.data.value, widget.out.value = str(dataset), str(run)
    qtbot.waitUntil(lambda: widget.data_report is not None and not widget.checking, timeout=30_000)
    assert widget.eta.value.startswith("about ") and "4 training films" in widget.eta.value
    widget.epochs.value, widget.qat_epochs.value = 1, 1  # the test's only change: one epoch per stage
    viewer.window.resize(1400, 900)
    qtbot.wait(300)
    viewer.screenshot(str(screenshot_dir / "screenshot_train_finetune.png"), canvas_only=False)
    widget.start_button.native.click()
    assert widget.busy and isinstance(widget.process, ChainProcess), widget.status.value
    chain = widget.process.chain
    assert widget.process.argv == adaqat_argv(chain.argv()) and chain == widget.chain()
    qtbot.waitUntil(lambda: not widget.busy, timeout=WAIT_MS)
    assert widget.last_error is None, widget.status.value
    compared = compare_runs(run / "stage1", run / "stage2")  # the bundled model validated before training
    assert compared is not None and compared.line() in widget.status.value
    assert widget.status.value.startswith("Model ready: model_int8.safetensors" if compared.better else
                                          "Not better than the starting model.")
    assert json.loads(chain_paths(run)["config"].read_text()) == chain.to_dict()  # written by the core chain
    int8, fp32 = widget.exported
    assert (int8, fp32) == (run / "model_int8.safetensors", run / "baseline_fp32.safetensors")
    assert int8.is_file() and fp32.is_file() and widget.plot.dice_x  # the curves followed both stages

    assert widget.use_in_annotate_dock() is None and "Annotate dock is not open" in widget.status.value
    viewer.window.add_plugin_dock_widget(PLUGIN, "Annotate folder (AdaLoRA-QAT)")
    widget.annotate_button.native.click()
    annotate = widget.use_in_annotate_dock()
    assert annotate is not None and Path(annotate.models.model_file.value) == int8
    segment = widget.use_in_segment_dock()
    assert Path(segment.model_file.value) == int8 and Path(segment.baseline_file.value) == fp32

    from napari_adaqat.widgets.train import TrainWidget

    later = TrainWidget(None)  # a Train dock opened later on the finished run's folder hands its model over too
    later.data.value, later.out.value = str(dataset), str(run)
    assert later.exported == (int8, fp32) and later.use_button.enabled and later.batch_button.enabled
    assert later.status.value.startswith("A finished model: model_int8.safetensors and its FP32 baseline")
    later.out.value = str(tmp_path / "another")
    assert later.exported is None and not later.use_button.enabled and later.status.value == "Ready: press Start."


def test_the_vote_steps_epochs_move_the_bar_and_say_so(make_napari_viewer):
    """The chain's last step (the bundled model's vote, fine-tuned) showed nothing for its ~20 s-2 min: its epoch
    records (as ``adaqat train --stage all`` writes them to the chain's progress log) now move the bar and the
    status line, and leave the plot's line over the stages' epochs as it was."""
    widget = dock(make_napari_viewer())
    stage_epoch = {"kind": "epoch", "epoch": 3, "epochs": 3, "loss": 0.2, "val_dice": 0.9, "best_dice": 0.9}
    widget._on_record(stage_epoch)
    for epoch in (1, 2):
        widget._on_record({"kind": "vote_epoch", "epoch": epoch, "epochs": 15, "loss": 0.05, "val_dice": 0.95,
                           "best": 0.95, "eta_s": 26.0 - 13 * epoch})
        assert (widget.progress.value, widget.progress.max) == (epoch, 15)
    assert widget.status.value == "The vote: epoch 2/15 · loss 0.0500 · val Dice 0.9500 · ETA 0 s"
    assert widget.last_epoch is stage_epoch
