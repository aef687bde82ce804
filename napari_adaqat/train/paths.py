"""Where a training run keeps its files (torch-free, so the Train dock can import it)."""
from __future__ import annotations

from pathlib import Path


def run_paths(out: str | Path) -> dict[str, Path]:
    """The files of run folder ``out``: checkpoints, progress log, split, config, log."""
    root = Path(out)
    return {
        "root": root, "last": root / "checkpoints" / "last.safetensors",
        "best": root / "checkpoints" / "best.safetensors", "progress": root / "progress.jsonl",
        "split": root / "split.json", "config": root / "config.json", "log": root / "train.log",
    }
