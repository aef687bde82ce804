"""The counts and learning rates of a training configuration, checked before any work (one line each)."""
from __future__ import annotations

from typing import Any

# {field: (the least value, what it is)}: a count or rate outside these trains nothing or the wrong way
_AT_LEAST = {"epochs": (1, "a number of epochs"), "batch_size": (1, "a number of images"),
             "accumulate": (1, "a number of steps"), "patience": (0, "a number of epochs (0 = off)"),
             "warmup_epochs": (0, "a number of epochs"), "max_steps_per_epoch": (0, "a number of steps (0 = all)"),
             "image_size": (16, "an input size in pixels"), "num_workers": (0, "a number of processes"),
             "log_every": (1, "a number of steps")}


def check_numbers(cfg: Any) -> None:
    """One line for a count below its least value or a learning rate that is not a positive number (before any
    work: ``--batch-size 0`` ended in a ZeroDivisionError, ``--lr-adapter -1`` trained the wrong way)."""
    for name, (least, what) in _AT_LEAST.items():
        value = getattr(cfg, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ValueError(f"{name} must be {what}, at least {least}; got {value!r}")
    for name in ("lr_adapter", "lr_decoder", "lr_other"):
        value = getattr(cfg, name)
        if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")):
            raise ValueError(f"{name} must be a learning rate above 0 (e.g. 1e-4); got {value!r}")
