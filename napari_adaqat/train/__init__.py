"""Training: Stage 1 (AdaLoRA fine-tuning) and Stage 2 (INT8 QAT).

This package is also a function: ``napari_adaqat.train(data=..., out=...)`` (the same as
``from napari_adaqat.train import train``) runs a stage, see :func:`napari_adaqat.train.run.train`.

Modules, in the order a run uses them:
  config       TrainConfig (nested AdaLoRAConfig and QATConfig), YAML presets, field help
  paths        the run folder: its layout (run_paths) and the one check (check_run_folder)
  preflight    the one check before a run (config + run folder), for run(), the CLI and the dock
  chain        Stage 1 → Stage 2 → both model files: the Chain (torch-free), its folder and resume rule
  run          run(config): the one way through (checks, resume, SIGTERM); run_chain(chain);
               train(...) for people (stage="all": the chain)
  start_model  the model a run starts from (Stage 1 or Stage 2) with its trainable parameters
  modes        which parameters train, and their optimizer groups
  dataset, augment, losses, progress, distributed   the pieces of
  loop         the epochs of one stage
  export_run   a finished run as one model file (adaqat export)
  compare      the new model against its start model on the same validation films (torch-free)

Names resolve lazily, so ``import napari_adaqat.train`` does not import torch.
"""
from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

from napari_adaqat._lazy import lazy_exports

# public name -> "module:attribute". The core function is ``napari_adaqat.train.run.run``:
# ``napari_adaqat.train.run`` itself is that module (importing a submodule binds its name here).
_API = {
    "train": ".run:train",
    "resolve_config": ".run:resolve_config",
    "TrainConfig": ".config:TrainConfig",
    "QATConfig": ".config:QATConfig",
    "make_config": ".config:make_config",
    "field_help": ".config:field_help",
    "stage_defaults": ".config:stage_defaults",
    "check_run_folder": ".paths:check_run_folder",
    "Chain": ".chain:Chain",
    "run_chain": ".run:run_chain",
    "run_paths": ".paths:run_paths",
}

__all__ = sorted(_API)
__getattr__, __dir__ = lazy_exports(__name__, _API)


class _CallablePackage(types.ModuleType):
    """``napari_adaqat.train`` is both this package and the function ``train``: importing a
    submodule binds the package as ``napari_adaqat.train``, so a plain function of that name
    could not live in ``napari_adaqat``; the package forwards calls to it instead."""

    def __call__(self, data: str | Path | None = None, out: str | Path | None = None, *, preset: str | None = None,
                 stage: int | str | None = None, resume: bool = False, config: Any = None, **options: Any) -> dict:
        """Run a training stage: :func:`napari_adaqat.train.run.train` (its signature, spelt out here so that
        ``inspect.signature`` and IDEs show the arguments without importing torch)."""
        # imported on the first call, not at import time, because train.run imports torch
        # (a lazy import for its cost; there is no import cycle to avoid)
        from napari_adaqat.train.run import train

        return train(data, out, preset=preset, stage=stage, resume=resume, config=config, **options)


sys.modules[__name__].__class__ = _CallablePackage
