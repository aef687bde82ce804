"""Qt-free plan of the Train dock's "Continue: Stage 2 + export": from a finished Stage-1 run to an INT8
model file and its FP32 baseline, as three ``python -m napari_adaqat`` subprocesses run one after another.

1. ``adaqat train --stage 2 --from RUN1 --out RUN1_stage2 …`` (resumed if an earlier attempt was stopped,
   left out if it already finished);
2. ``adaqat export RUN1_stage2 --out RUN1_stage2/model_int8.safetensors --profile deploy|paper``;
3. ``adaqat export RUN1 --out RUN1_stage2/baseline_fp32.safetensors --profile fp32`` (the baseline of the
   SSIM maps).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from napari_adaqat.train.paths import run_paths
from napari_adaqat.train.progress import read_progress
from napari_adaqat.widgets._train_process import TrainRequest

INT8_NAME, FP32_NAME = "model_int8.safetensors", "baseline_fp32.safetensors"
ADAPTER_MODES = ("adalora", "lora")


def stage1_config(run: str | Path) -> dict:
    """The saved config.json of a run ({} when absent or unreadable)."""
    try:
        return json.loads(run_paths(run)["config"].read_text())
    except (OSError, ValueError):
        return {}


def finished(run: str | Path) -> bool:
    """True when ``run`` holds a best checkpoint and its progress log ends with ``done``."""
    records = read_progress(run_paths(run)["progress"])
    return run_paths(run)["best"].is_file() and bool(records) and records[-1].get("kind") == "done"


def continue_problem(run: str | Path) -> Optional[str]:
    """Why Stage 2 cannot start from ``run`` (one line), or None."""
    if not str(run or "").strip():
        return "Choose the Stage-1 run folder."
    if not run_paths(run)["best"].is_file():
        return f"{run} holds no Stage-1 model yet (checkpoints/best.safetensors)."
    if stage1_config(run).get("stage", 1) != 1:
        return f"{run} is a Stage-2 run; continue from its Stage-1 run."
    return None


@dataclass
class ContinuePlan:
    """Where the chain writes, and its steps (``stage2`` None when Stage 2 already finished)."""

    stage1: Path
    stage2_dir: Path
    stage2: Optional[TrainRequest]
    profile: str = "deploy"
    note: str = ""
    exports: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def int8(self) -> Path:
        return self.stage2_dir / INT8_NAME

    @property
    def fp32(self) -> Path:
        return self.stage2_dir / FP32_NAME

    def files_text(self) -> str:
        """The two model files with their sizes, one a line."""
        return f"INT8: {size_text(self.int8, self.stage2_dir.parent)}\n" \
               f"FP32 baseline: {size_text(self.fp32, self.stage2_dir.parent)}"

    def done_text(self) -> str:
        """The status once both files are written."""
        return (f"Model ready: {self.int8.name} ({self.profile}) and its FP32 baseline. "
                f"'Use in Segment dock' loads them. {self.note}").strip()


def _export_argv(source: Path, out: Path, profile: str) -> list[str]:
    # --force: both files live in the chain's own Stage-2 folder and are derived from its checkpoints
    return [sys.executable, "-m", "napari_adaqat", "export", str(source), "--out", str(out), "--profile", profile,
            "--force"]


def plan_continue(stage1: str | Path, base: TrainRequest, *, epochs: int = 0, profile: str = "deploy") -> ContinuePlan:
    """The chain from Stage-1 run ``stage1``; ``base`` supplies data, preset, batch size, step cap and
    device; ``epochs`` the QAT epochs (0 = preset). The Stage-2 run folder is ``<stage1>_stage2``."""
    stage1 = Path(stage1)
    stage2_dir = stage1.with_name(f"{stage1.name}_stage2")
    config = stage1_config(stage1)
    extra: tuple[str, ...] = ()
    note = ""
    if config.get("mode") not in ADAPTER_MODES:  # no adapters: Λ cannot train, the decoder does
        extra = ("--set", "qat.trainable=authors")
        note = f"(Stage 1 '{config.get('mode')}' has no adapters: Stage 2 trained the decoders.)"
    request: Optional[TrainRequest] = None
    if not finished(stage2_dir):
        resume = run_paths(stage2_dir)["last"].is_file()
        request = replace(base, stage=2, data=base.data or str(config.get("data") or ""), out=str(stage2_dir),
                          from_run=str(stage1), checkpoint="", epochs=epochs, resume=resume, extra=extra)
    plan = ContinuePlan(stage1, stage2_dir, request, profile, note)
    plan.exports = [(f"export INT8 ({profile})", _export_argv(stage2_dir, plan.int8, profile)),
                    ("export FP32 baseline", _export_argv(stage1, plan.fp32, "fp32"))]
    return plan


def size_text(path: Path, start: Optional[Path] = None) -> str:
    """``path (4.7 MB)``, the path relative to ``start`` when given."""
    name = path.relative_to(start) if start is not None else path
    return f"{name} ({path.stat().st_size / 1e6:.1f} MB)" if path.is_file() else f"{name} (missing)"
