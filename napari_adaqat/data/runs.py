"""A training run's folder layout: where a run keeps its checkpoints, progress, split and config.

Below ``train`` and ``report`` (both read run folders) and torch-free, so the docks can import it.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["CHAIN_FILE", "run_paths"]

CHAIN_FILE = "chain.json"  # what marks a chain run's folder (adaqat train --stage all; train/chain.py)


def run_paths(out: str | Path) -> dict[str, Path]:
    """The files of run folder ``out``: checkpoints (``ema``: the weight average at ``last``, with
    ``ema_decay``), progress log, split, config, log."""
    root = Path(out)
    return {
        "root": root, "last": root / "checkpoints" / "last.safetensors",
        "best": root / "checkpoints" / "best.safetensors",
        "ema": root / "checkpoints" / "ema_last.safetensors", "progress": root / "progress.jsonl",
        "split": root / "split.json", "config": root / "config.json", "log": root / "train.log",
    }
