"""An exponential moving average (EMA) of the trainable weights, for validation and ``best``.

On 56-93 radiographs the validation Dice of the live weights swings by several points from
one epoch to the next, so the "best" epoch is partly luck.  The EMA is a smoothed copy of the
weights that the loop validates and saves as ``best.safetensors``; training itself runs on the
live weights, which ``last.safetensors`` keeps (with the optimizer) for ``--resume``.

Only parameters that train are averaged.  On resume, the average continues from
``ema_last.safetensors`` with the run's current ``ema_decay``; a missing or stale file (another
epoch than ``last``) restarts it from the live weights, with a warning in the log.  Buffers (AdaLoRA's rank masks and importance,
position tables) are always the live model's, so rank pruning applies to both copies.
Hand-written rather than ``torch.optim.swa_utils.AveragedModel``: that class deep-copies the
whole model and averages buffers too, which would turn the binary rank masks fractional.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from napari_adaqat.model.formats.container import read_adaqat_metadata, read_tensors, write_safetensors


class WeightEMA:
    """``shadow ← d·shadow + (1 − d)·live`` after every optimizer step, with
    ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (a short warm-up, so early
    epochs are not dominated by the random initialisation)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]
        self.updates = 0  # update() counts; the warm-up depends on it

    @torch.no_grad()
    def reset(self) -> None:
        """Restart the average from the live weights."""
        for avg, p in zip(self.shadow, self.params):
            avg.copy_(p.detach())
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the live weights into the average (call after ``optimizer.step()``)."""
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, p in zip(self.shadow, self.params):
            avg.lerp_(p.detach(), 1.0 - d)
        self.updates += 1

    @torch.no_grad()
    def _swap(self) -> None:
        """Exchange the live and averaged values, one tensor at a time (no second model copy)."""
        for avg, p in zip(self.shadow, self.params):
            live = p.detach().clone()
            p.copy_(avg)
            avg.copy_(live)

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; the live ones come back after,
        also when the block raises."""
        self._swap()
        try:
            yield
        finally:
            self._swap()

    def save(self, path: Path, epoch: int) -> None:
        """The average after ``epoch``, with its update count, as safetensors (atomically)."""
        tensors = dict(zip(self.names, self.shadow))
        write_safetensors(path, tensors, {"kind": "weight_ema", "epoch": epoch, "updates": self.updates,
                                          "decay": self.decay})

    def load(self, path: Path, epoch: int) -> bool:
        """Restore :meth:`save`'s average if it was saved after ``epoch``; False (and the average
        left as is) when the file is missing or from another epoch, e.g. a kill between writing it
        and ``last.safetensors``.  A file for another model is a one-line error."""
        meta = read_adaqat_metadata(path) if path.is_file() else None
        if not meta or meta.get("epoch") != epoch:
            return False
        tensors = read_tensors(path)
        shapes = {name: tuple(t.shape) for name, t in zip(self.names, self.shadow)}
        if {name: tuple(t.shape) for name, t in tensors.items()} != shapes:
            raise ValueError(f"{path}: its averaged weights do not match this model's trainable parameters")
        with torch.no_grad():
            for name, avg in zip(self.names, self.shadow):
                avg.copy_(tensors[name])
        self.updates = int(meta.get("updates", 0))
        return True
