"""How a trained model compares with the model it started from, on the same validation films.

Stage 1 validates its start model once before training (the ``start_val`` record of its ``progress.jsonl``:
"epoch 0"); each stage's ``done`` record holds the Dice of the epoch it keeps (``kept_dice``).  Both are
measured as training measures every epoch (the box prompt, the clicks a preset trains, no vote), so the two
figures are comparable.  ``adaqat train --stage all`` prints :meth:`Comparison.line` at its end and the
Train dock shows the same line.  Torch-free (the dock imports it).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from napari_adaqat.train.config import MIN_VAL_FOR_BEST
from napari_adaqat.train.paths import run_paths
from napari_adaqat.train.progress import read_progress
from napari_adaqat.util.text import count_of

__all__ = ["Comparison", "compare_runs", "kept_dice", "start_val"]

SAME = 0.0005  # Dice differences under this read as "the same" (the line shows 3 decimals)
OLD_MODEL = "keep using the old model, or annotate more films and train again"


@dataclass
class Comparison:
    """The new model's validation Dice against its start model's (``start``), on ``films`` validation films
    (``start_films``: the start model's, when they differ)."""

    new: float
    start: float
    films: int
    start_films: int

    @property
    def better(self) -> bool:
        """Whether the new model scores higher than its start model (by more than rounding; on other films: no
        verdict, True)."""
        return self.films != self.start_films or self.new - self.start >= SAME

    def line(self) -> str:
        """One sentence for a clinician: the two figures, how few films they rest on, and what to do."""
        same = self.films == self.start_films
        if not same:  # (other films: no verdict)
            return (f"Validation Dice {self.new:.3f} on {count_of(self.films, 'film')}; the starting model's "
                    f"{self.start:.3f} was measured on {count_of(self.start_films, 'film')}, so the two are not "
                    "compared")
        on = f"on the same {count_of(self.films, 'film')}"
        rough = f" (from only {count_of(min(self.films, self.start_films), 'film')}: a rough figure)" \
            if min(self.films, self.start_films) < MIN_VAL_FOR_BEST else ""
        if self.better:
            return f"Validation Dice {self.new:.3f}, up from the starting model's {self.start:.3f} {on}{rough}"
        how = "the same as" if abs(self.new - self.start) < SAME else "below"
        return f"Validation Dice {self.new:.3f}, {how} the starting model's {self.start:.3f} {on}{rough}: {OLD_MODEL}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "better": self.better}


def start_val(records: list[dict]) -> Optional[dict]:
    """The start model's validation record (``start_val``) of a stage's progress records, or None."""
    return next((r for r in reversed(records) if r.get("kind") == "start_val" and r.get("val_dice") is not None), None)


def kept_dice(records: list[dict]) -> Optional[float]:
    """The validation Dice of the epoch a finished stage keeps as its model (its ``done`` record), or None."""
    done = next((r for r in reversed(records) if r.get("kind") == "done"), None)
    if done is None:
        return None
    value = done.get("kept_dice", done.get("best_dice"))  # (a run from before kept_dice: its best)
    return float(value) if value is not None and value >= 0 else None


def _val_films(records: list[dict]) -> Optional[int]:
    start = next((r for r in reversed(records) if r.get("kind") == "start"), None)
    return int(start["val"]) if start is not None and start.get("val") is not None else None


def compare_runs(start_run: str | Path, end_run: str | Path) -> Optional[Comparison]:
    """The model kept by stage run ``end_run`` against the start model of Stage-1 run ``start_run`` (the same
    folder for a Stage-1 run; the chain's stage1/ and stage2/), or None when either figure is not recorded
    (a start from random weights has none; nor has a run from before this record)."""
    first = read_progress(run_paths(start_run)["progress"])
    last = first if Path(start_run) == Path(end_run) else read_progress(run_paths(end_run)["progress"])
    begin, new = start_val(first), kept_dice(last)
    if begin is None or new is None:
        return None
    start_films = int(begin.get("val") or 0)
    return Comparison(new=new, start=float(begin["val_dice"]), films=_val_films(last) or start_films,
                      start_films=start_films)
