"""Qt-free data check of the Train dock: a dataset folder's counts, split and bad pairs, before training.

Uses the same discovery, split rule and pair checks as training (:mod:`napari_adaqat.data`), so what it
shows is what ``adaqat train`` will use. Reading every pair takes a moment: the dock runs
:func:`check_data` in a worker thread.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from napari_adaqat.data import SPLITS, DataError, check_pairs, discover, split_source

SOURCE_TEXT = {"layout": "from DIR/train|val|test", "split.json": "from split.json", "seeded": "seeded 80:10:10"}
MAX_LISTED = 8  # bad pairs listed one per line; the rest are counted


@dataclass
class DataReport:
    """What a data folder holds: pair counts, the split and one line per bad pair."""

    folder: Path
    n_images: int = 0
    n_masks: int = 0
    split: dict[str, int] = field(default_factory=dict)
    source: str = ""
    bad: list[str] = field(default_factory=list)
    error: Optional[str] = None  # the folder cannot be used at all

    @property
    def n_good(self) -> int:
        return self.n_images - len(self.bad)

    @property
    def usable(self) -> bool:
        return self.error is None and self.n_good > 0

    def text(self) -> str:
        """A few lines for the dock: counts, split, then each bad pair with its reason."""
        if self.error:
            return f"✗ {self.error}"
        split = " / ".join(f"{self.split.get(s, 0)} {s}" for s in SPLITS)
        lines = [f"{self.n_images} images · {self.n_masks} masks · {len(self.bad)} bad pairs",
                 f"split ({SOURCE_TEXT.get(self.source, self.source)}): {split}"]
        lines += [f"✗ {line}" for line in self.bad[:MAX_LISTED]]
        if len(self.bad) > MAX_LISTED:
            lines.append(f"… and {len(self.bad) - MAX_LISTED} more bad pairs")
        return "\n".join(lines)


def _short(message: str, root: Path) -> str:
    """The reason with the data folder's path left out (names stay relative to it)."""
    return message.replace(f"{root}/", "").replace(str(root), ".")


def check_data(folder: str | Path, seed: int = 0) -> DataReport:
    """Discover ``folder`` as training would and check every pair (image readable, mask present,
    same size, not empty). Never raises for a bad folder: the report carries the error."""
    root = Path(folder)
    report = DataReport(root)
    try:
        pairs, split = discover(root, seed)
        report.source = split_source(root)
    except (DataError, ValueError, OSError) as exc:
        report.error = " ".join(str(exc).split())
        return report
    report.n_images = len(pairs)
    report.n_masks = sum(p.mask is not None for p in pairs.values())
    report.split = {s: sum(name in pairs for name in split.get(s, [])) for s in SPLITS}
    _good, warnings = check_pairs(list(pairs.values()))
    report.bad = [_short(w, root) for w in warnings]
    return report
