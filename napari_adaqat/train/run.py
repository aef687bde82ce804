"""The one way to train: ``run(config)`` for a resolved :class:`TrainConfig`, ``train(...)`` for people.

Both ``adaqat train`` and Python callers come through here, so every caller gets the same
run-folder contract (:func:`~napari_adaqat.train.paths.check_run_folder`), the resume rule
(the run's saved config.json ← the caller's explicit options), SIGTERM → ``SystemExit(143)``
(so ``finally`` blocks run and no half-written checkpoint survives), cleanup of temporary
files a hard kill left behind, and device resolution.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from napari_adaqat.model.device import resolve_device
from napari_adaqat.model.files import remove_stale_temps
from napari_adaqat.train.config import TrainConfig, make_config, merge_options
from napari_adaqat.train.loop import train_stage
from napari_adaqat.train.paths import check_run_folder, run_paths

__all__ = ["run", "train", "resolve_config"]


def resolve_config(preset: str | None, stage: int, options: dict, resume: bool = False) -> TrainConfig:
    """Defaults ← YAML preset ← ``options``; with ``resume``, the run's saved config ← ``options``
    (``options["out"]`` names the run; ``preset`` and ``stage`` are the saved run's then)."""
    options = {k: v for k, v in options.items() if v is not None}
    if resume and options.get("out"):
        saved = run_paths(options["out"])["config"]
        if not saved.is_file():
            raise ValueError(f"{options['out']}: nothing to resume (no config.json); run without --resume")
        return TrainConfig.from_dict(merge_options(json.loads(saved.read_text()), options))
    return make_config(preset or "paper", stage, options)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM (the dock's Stop, torchrun, a scheduler) becomes ``SystemExit(128 + 15)`` while
    training, so ``finally`` blocks run; the previous handler is back afterwards. Signal handlers
    can only be set in the main thread: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _remove_stale_temp_files(out: str | Path) -> None:
    """Delete the temporary files that a hard kill (SIGKILL, power loss) left beside the run's
    checkpoints and split; a temp whose writer is still alive is kept (:func:`remove_stale_temps`)."""
    paths = run_paths(out)
    for path in (paths["last"], paths["best"], paths["ema"]):
        remove_stale_temps(path)
    paths["split"].with_name(paths["split"].name + ".tmp").unlink(missing_ok=True)  # written by rank 0 only


def run(config: TrainConfig, resume: bool = False) -> dict:
    """Train one stage as ``config`` says, into ``config.out``; returns the summary
    (``best_dice``, ``epochs_run``, ``out``).

    ``config`` is complete (build it with :func:`resolve_config`, :func:`train` or
    ``TrainConfig``); ``resume`` continues ``RUN/checkpoints/last.safetensors``.
    Raises ValueError / FileExistsError (one line) when the run folder or options are wrong.
    """
    if not config.data or not config.out:
        raise ValueError("--data and --out are required")
    check_run_folder(config.out, config.data, resume=resume, from_run=config.from_run)
    config = dataclasses.replace(config, device=resolve_device(config.device))
    with _sigterm_exits():
        if os.environ.get("RANK", "0") == "0":
            _remove_stale_temp_files(config.out)
        return train_stage(config, resume=resume)


def train(data: str | Path | None = None, out: str | Path | None = None, *, preset: str = "paper", stage: int = 1,
          resume: bool = False, config: TrainConfig | None = None, **options) -> dict:
    """Fine-tune SAM (Stage 1: AdaLoRA) or quantize it (Stage 2: INT8 QAT), as ``adaqat train``.

    The configuration is the defaults ← the YAML ``preset`` (paper, authors, or a .yaml path) ←
    ``options`` (any TrainConfig field, e.g. ``epochs=5``, ``model_type="vit_nano"``,
    ``adalora={"r_init": 16}`` or old flat names such as ``r_init=16``). With ``config``, that
    config ← ``options`` instead. With ``resume=True``, the run's saved config.json ← ``options``
    (``data`` may then be left out). Returns the summary (``best_dice``, ``epochs_run``, ``out``)::

        from napari_adaqat import train
        train(data="DATA", out="runs/s1", checkpoint="sam_vit_b_01ec64.pth")
        train(data="DATA", out="runs/s2", stage=2, from_run="runs/s1")
    """
    options.update({k: v for k, v in (("data", data), ("out", out)) if v is not None})
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}  # config.json holds strings
    if config is not None:
        cfg = TrainConfig.from_dict(merge_options(config.to_dict(), options))
    else:
        cfg = resolve_config(preset, stage, options, resume)
    return run(cfg, resume=resume)
