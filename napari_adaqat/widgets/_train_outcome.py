"""What the Train dock says as a chain moves on and when it ends: the progress bar's text for each step, and the end
of the chain (the new model against the model it started from, on the same validation films: train/compare.py).

:mod:`napari_adaqat.widgets.train` calls :func:`step_format` for each ``chain`` record and :func:`chain_done`.
"""
from __future__ import annotations

from typing import Any, Optional

from napari.utils.notifications import show_info, show_warning

from napari_adaqat.train.chain import Chain
from napari_adaqat.train.compare import Comparison, compare_runs
from napari_adaqat.train.paths import run_paths
from napari_adaqat.train.progress import read_progress
from napari_adaqat.widgets import _continue as cont

HOW = ("Both figures are measured as training measures each epoch: the Dice on the validation films (films the model "
       "never trains on), without the vote; the starting model's before its first epoch.")


def stage_format(stage: int) -> str:
    """The progress bar's text while ``stage`` trains (Qt fills in ``%v`` and ``%m``)."""
    return f"Stage {stage}: epoch %v / %m"


def step_format(rec: dict) -> Optional[str]:
    """The bar's text from a chain step's ``start`` record that is not a stage (a stage's: :func:`stage_format`)."""
    step = str(rec.get("step"))
    if rec.get("kind") != "chain" or rec.get("status") != "start" or step.startswith("stage"):
        return None
    return "the vote: epoch %v / %m" if step == "vote" else f"writing the {step.upper()} model file…"


def _epochs(run: Any) -> Optional[int]:
    """The epochs a stage run trained (a resumed run's log keeps those before the stop: not ``epochs_run``)."""
    epochs = [int(r["epoch"]) for r in read_progress(run_paths(run)["progress"]) if r.get("kind") == "epoch"]
    return max(epochs) if epochs else None


def done_format(chain: Chain) -> str:
    """The full bar's text at the chain's end: each step and its epochs (Stage 1's of a continued run too)."""
    parts = [f"Stage {n}: {e} epoch{'' if e == 1 else 's'}" for n, e in
             ((1, _epochs(chain.stage1_dir)), (2, _epochs(chain.paths["stage2"]))) if e is not None]
    votes = [r for r in read_progress(chain.paths["progress"]) if r.get("kind") == "vote_epoch"]
    parts += ["model files"] + ([f"vote: {votes[-1].get('epoch')} epochs"] if votes else [])
    return "done: " + " · ".join(parts)


def outcome_text(chain: Chain, compared: Optional[Comparison]) -> str:
    """The status line at the chain's end: where the files are and, first where it is not better, how the new
    model compares with its start model."""
    paths = chain.paths
    ready = f"{paths['int8'].name} ({chain.profile}) and its FP32 baseline in {paths['root'].name}"
    if compared is None:
        return f"Model ready: {ready}. 'Use in Segment / Annotate / Batch dock' load them."
    if compared.better:
        return f"Model ready: {ready}. {compared.line()}. 'Use in Segment / Annotate / Batch dock' load them."
    root = paths["root"].name
    return f"Not better than the starting model. {compared.line()}. (The new files are in {root} all the same.)"


def chain_done(dock: Any, chain: Chain) -> Optional[Comparison]:
    """The dock's fields at the chain's end (its files handed over, the bar full, the outcome said); returns the
    comparison shown (None: no start model to compare with, e.g. random initial weights)."""
    paths = chain.paths
    dock.exported, dock._found = (paths["int8"], paths["fp32"]), False
    dock.progress.max, dock.progress.value = 1, 1
    dock.progress.native.setFormat(done_format(chain))
    dock.resume.value = False
    dock.models_label.value = cont.files_text(chain)
    dock.models_label.tooltip = f"{paths['int8']}\n{paths['fp32']}"
    compared = compare_runs(chain.stage1_dir, paths["stage2"])
    dock.status.value = outcome_text(chain, compared)
    dock.status.tooltip = HOW if compared is not None else ""
    if compared is not None and not compared.better:
        show_warning(f"AdaLoRA-QAT: the new model is not better than the one it started from. {compared.line()}.")
    else:
        show_info(f"AdaLoRA-QAT model exported: {paths['int8']}")
    return compared
