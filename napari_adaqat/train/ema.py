"""An exponential moving average (EMA) of the trainable weights, for validation and ``best``.

On 56-93 radiographs the validation Dice of the live weights swings by several points from
one epoch to the next, so the "best" epoch is partly luck.  The EMA is a smoothed copy of the
weights that the loop validates and saves as ``best.safetensors``; training itself runs on the
live weights, which ``last.safetensors`` keeps (with the optimizer) for ``--resume``.

Only parameters that train are averaged.  Buffers (AdaLoRA's rank masks and importance,
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

from napari_adaqat.model.files import read_adaqat_metadata, read_tensors, write_safetensors


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
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the live weights into the average (call after ``optimizer.step()``)."""
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - d)
        self.updates += 1

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; the live ones come back after."""
        live = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            torch._foreach_copy_(self.params, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, live)

    def save(self, path: Path) -> None:
        """The average and its update count, as safetensors (atomically; read back by :meth:`load`)."""
        tensors = dict(zip(self.names, self.shadow))
        write_safetensors(path, tensors, {"kind": "weight_ema", "updates": self.updates, "decay": self.decay})

    def load(self, path: Path) -> None:
        """Restore :meth:`save`'s average; a one-line error if it does not fit this model."""
        tensors = read_tensors(path)
        if sorted(tensors) != sorted(self.names):
            raise ValueError(f"{path}: its averaged weights do not match this model's trainable parameters")
        with torch.no_grad():
            for name, t in zip(self.names, self.shadow):
                t.copy_(tensors[name])
        self.updates = int((read_adaqat_metadata(path) or {}).get("updates", 0))
