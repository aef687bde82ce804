"""The ETA a training run writes into each epoch record of ``progress.jsonl`` (``eta_s``), which the CLI prints and
the Train dock shows: pure Python, so the dock's reading of the log needs no torch."""
from __future__ import annotations

from typing import Optional


class TimeLeft:
    """The time a stage run has left, from its step and epoch records, leaving out its first epoch's start-up.

    The first epoch of a training process also decodes every film and warms up the kernels (a real 7-film
    ``--preset finetune`` Stage 1, 1 thread: 9.7 s, the next seven 6.4 s on average); time so far / epochs done ×
    epochs left carried that into every estimate: 1.5× the time actually left after epoch 1 (1.8× in the Train dock
    with a 7-film folder).  Here an epoch lasts what the epochs after the first took;
    during the first, what its steps after the first took (with its validation).  When neither is known yet (the
    first epoch was one step: no more training films than a batch), ``eta_s`` is None: it comes with the next epoch."""

    def __init__(self) -> None:
        self._first: Optional[dict] = None  # the first epoch record of this process
        self._steps: list[dict] = []  # the first and the latest step record of that epoch

    def take(self, rec: dict) -> dict:
        """``rec``, an epoch record with ``eta_s`` counted so (other records as they are)."""
        kind = rec.get("kind")
        if kind == "start":  # a new stage process (or a resumed one): its first epoch starts up again
            self._first, self._steps = None, []
        elif kind == "step" and self._first is None:
            self._steps = [self._steps[0] if self._steps else rec, rec]
        elif kind == "epoch" and rec.get("epochs") and rec.get("epoch"):
            per_epoch, left = self._epoch_s(rec), max(0, int(rec["epochs"]) - int(rec["epoch"]))
            rec = {**rec, "eta_s": None if per_epoch is None and left else round((per_epoch or 0.0) * left, 1)}
        return rec

    def _epoch_s(self, rec: dict) -> Optional[float]:
        if self._first is None:
            self._first = rec
            a, b = self._steps or (None, None)
            if a is None or int(b["step"]) <= int(a["step"]):
                return None
            step_s = (float(b["time"]) - float(a["time"])) / (int(b["step"]) - int(a["step"]))
            return float(rec["time"]) - float(a["time"]) + step_s * int(a["step"])  # step 1 at the steady pace
        done = int(rec["epoch"]) - int(self._first["epoch"])
        return (float(rec["seconds"]) - float(self._first["seconds"])) / done if done > 0 else None
