"""The Train dock at the end of a fine-tune, and its words for a clinician (QA pass 2, findings 5 and 11).

Before: "Model ready: …" although validation Dice fell from 0.962 to 0.942 (nothing compared the new model with
the one it started from), a bar reading "1 / 1" under a plot of 10 epochs, the "Stage 2 →" label drawn over the
Dice curve, "split (seeded 80:10:10; under 20 pairs 90:10, no test)" and "rank budget 192" in the dock's text.
The chain's records are written here as ``adaqat train --stage all`` writes them (no training: the dock's reading).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("napari")

from napari.utils.notifications import notification_manager  # noqa: E402

from napari_adaqat.train.chain import Chain  # noqa: E402
from napari_adaqat.widgets._train_plot import TrainPlot  # noqa: E402
from napari_adaqat.widgets._train_process import ChainProcess  # noqa: E402
from napari_adaqat.widgets.train import TrainWidget  # noqa: E402

pytestmark = pytest.mark.gui
OLD_MODEL = "keep using the old model, or annotate more films and train again"


def _log(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _stage1(start: float = 0.962) -> list[dict]:
    """The QA's Stage 1: 8 epochs on 1 validation film, its start model validated first."""
    steps = [{"kind": "step", "epoch": e, "step": 1, "steps": 1, "loss": 0.16 - 0.011 * e} for e in range(1, 9)]
    epochs = [{"kind": "epoch", "epoch": e, "epochs": 8, "loss": 0.16 - 0.011 * e, "val_dice": 0.962 - 0.001 * e,
               "best_dice": 0.961, "rank_budget": 192} for e in range(1, 9)]
    return ([{"kind": "start", "stage": 1, "epochs": 8, "train": 3, "val": 1},
             {"kind": "start_val", "val_dice": start, "val": 1}] + steps + epochs
            + [{"kind": "done", "best_dice": 0.961, "epochs_run": 5, "kept_dice": 0.954}])  # (resumed after 3)


def _finished_chain(root: Path, new: float) -> tuple[Chain, list[dict]]:
    """A chain folder as the QA's ended (Stage 2 keeps ``new``); returns it and its Stage-2 records."""
    chain = Chain(out=str(root), preset="finetune", options={"data": str(root.parent)})
    _log(root / "stage1" / "progress.jsonl", _stage1())
    stage2 = [{"kind": "start", "stage": 2, "epochs": 2, "train": 3, "val": 1}] + [
        {"kind": "epoch", "epoch": e, "epochs": 2, "loss": 0.075, "val_dice": new, "best_dice": new,
         "rank_budget": None} for e in (1, 2)] + [{"kind": "done", "best_dice": new, "epochs_run": 2, "kept_dice": new}]
    _log(root / "stage2" / "progress.jsonl", stage2)
    votes = [{"kind": "vote_epoch", "epoch": e, "epochs": 15, "loss": 0.2, "val_dice": 0.96} for e in range(1, 16)]
    _log(root / "progress.jsonl", votes)
    for name in ("model_int8.safetensors", "baseline_fp32.safetensors"):
        (root / name).write_bytes(b"0" * 1000)
    return chain, stage2


class _Ended(ChainProcess):
    """A chain subprocess that has exited with 0 (nothing runs)."""

    def __init__(self, chain: Chain) -> None:  # (no subprocess)
        self.chain, self.resume, self.stopping, self.label, self.last_vote = chain, False, False, "the vote", None

    def running(self) -> bool:
        return False

    def returncode(self) -> int:
        return 0

    def close(self) -> None:
        pass


@pytest.mark.parametrize("new", [0.942, 0.968])
def test_the_end_of_a_fine_tune_compares_the_new_model_with_its_start(qtbot, tmp_path, new):
    chain, stage2 = _finished_chain(tmp_path / "run1", new)
    widget = TrainWidget(None)  # (as tests/test_napari_train.py makes one without a viewer)
    widget.process = proc = _Ended(chain)
    widget._on_record({"kind": "chain", "step": "stage2", "status": "start", "path": str(tmp_path / "run1" / "stage2")})
    widget._on_record(stage2[1])
    assert widget.progress.native.text() == "Stage 2: epoch 1 / 2"  # (before: "%v / %m" of that stage alone)
    widget._on_record({"kind": "chain", "step": "vote", "status": "start", "path": "v"})
    widget._on_record({"kind": "vote_epoch", "epoch": 3, "epochs": 15, "loss": 0.2, "val_dice": 0.96, "eta_s": 9})
    assert widget.progress.native.text() == "the vote: epoch 3 / 15"
    widget._finish(proc)

    status = widget.status.value
    assert widget.exported == (tmp_path / "run1" / "model_int8.safetensors",
                               tmp_path / "run1" / "baseline_fp32.safetensors") and widget.use_button.enabled
    assert widget.progress.native.text() == "done: Stage 1: 8 epochs · Stage 2: 2 epochs · model files · vote: 15 epochs"
    if new < 0.962:
        assert status.startswith("Not better than the starting model. Validation Dice 0.942, below the starting "
                                 f"model's 0.962 on the same 1 film (from only 1 film: a rough figure): {OLD_MODEL}.")
        assert "Model ready" not in status and status.endswith("(The new files are in run1 all the same.)")
        assert "not better than the one it started from" in str(notification_manager.records[-1].message)
    else:
        assert status.startswith("Model ready: model_int8.safetensors (deploy) and its FP32 baseline in run1. "
                                 "Validation Dice 0.968, up from the starting model's 0.962 on the same 1 film")
    assert "without the vote" in widget.status.tooltip  # how both were measured


def test_the_stage_labels_and_the_start_models_line_leave_the_curves_clear(qtbot):
    plot = TrainPlot()
    qtbot.addWidget(plot)
    plot.resize(420, 230)
    plot.continue_from(_stage1(), stage=2)
    plot.add([{"kind": "epoch", "epoch": e, "val_dice": 0.942} for e in (1, 2)])
    plot.refresh()
    plot.figure.canvas.draw()
    renderer = plot.figure.canvas.get_renderer()
    legend = plot.figure.legends[-1]

    def along(xs: list, ys: list, transform) -> list:  # points on the drawn curve, every 1/20 of a segment
        dense = [(x0 + (x1 - x0) * k / 20, y0 + (y1 - y0) * k / 20)
                 for (x0, y0), (x1, y1) in zip(zip(xs, ys), list(zip(xs, ys))[1:]) for k in range(21)]
        return list(transform.transform(dense))

    curves = along(plot.dice_x, plot.dice_y, plot.ax2.transData) + along(plot.loss_x, plot.loss_y, plot.ax.transData)
    labels = [t for t in plot.ax.texts if "Stage" in t.get_text()]
    assert sorted(t.get_text().strip() for t in labels) == ["Stage 2 →", "← Stage 1"]
    for text in labels:
        box = text.get_window_extent(renderer)
        assert not [p for p in curves if box.contains(*p)], f"{text.get_text()!r} covers the curves"
        assert box.y0 >= plot.ax.bbox.y1 - 1 and box.y1 <= plot.figure.bbox.y1  # over the frame, in the figure
        assert not box.overlaps(legend.get_window_extent(renderer))
    assert plot.start_dice == 0.962  # the starting model's Dice: a dotted line, named in the legend
    assert [t.get_text() for t in legend.get_texts()][-1] == "starting model (before training)"
    assert plot.ax2.get_ylim()[0] == pytest.approx(0.9)  # zoomed on the Dice: 0.962 → 0.942 shows


def test_the_data_check_and_the_status_speak_plainly(qtbot, tmp_path, cxr_dir):
    data = tmp_path / "films"
    shutil.copytree(cxr_dir, data, ignore=shutil.ignore_patterns("*.md", "*.csv"))  # 4 pairs: the seeded cut
    widget = TrainWidget(None)  # (as tests/test_napari_train.py makes one without a viewer)
    widget.data.value = str(data)
    qtbot.waitUntil(lambda: widget.data_report is not None and not widget.checking, timeout=30_000)
    text, tip = widget.data_check.value, widget.data_check.tooltip
    assert "80:10:10" not in text and "seeded" not in text
    assert text.splitlines()[1] == ("3 films to train on · 1 to check the model (validation) · none kept for a final "
                                    "test (under 20 films); picked at random, the same each time")
    assert "used:" not in text  # (all of them: the split says it)
    assert "split (seeded 80:10:10; under 20 pairs 90:10, no test): 3 train / 1 val / 0 test" in tip  # the detail

    epoch = {"kind": "epoch", "epoch": 3, "epochs": 8, "loss": 0.1, "val_dice": 0.95, "best_dice": 0.95,
             "rank_budget": 192, "eta_s": 60.0}
    widget._take([{"kind": "start_val", "val_dice": 0.962, "val": 1}])
    assert widget.status.value == "The starting model, before training: val Dice 0.9620 on 1 validation film"
    widget._take([epoch])
    widget._take([{"kind": "step", "epoch": 4, "step": 1, "steps": 2, "loss": 0.09}])
    shown = widget.status.value + widget.plot_info.value
    assert "rank budget" not in shown and "192" not in shown and "val Dice 0.9500" in widget.status.value
    assert "Rank budget 192: the total rank the AdaLoRA adapters keep" in widget.plot_info.tooltip
