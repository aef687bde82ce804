"""Seeded, reproducible train/val/test split of a dataset's sample names."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_adaqat.util.atomic import atomic_write_text

SPLITS = ("train", "val", "test")
SMALL_DATASET = 20  # fewer names: the seeded cut keeps no test films (make_split)
OVERLAP_KEY = "val_overlaps_train"  # true in a split.json: validate on training images on purpose


def make_split(names: list[str], seed: int = 0, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> dict[str, list[str]]:
    """Shuffle sorted ``names`` with ``seed`` and cut them 80:10:10 (by default).

    Sorting first makes the split independent of directory listing order.
    Validation and test each get at least one sample when there are three or more.  Under
    :data:`SMALL_DATASET` names (a few films annotated for a fine-tune) there is no test cut: one or two test
    films measure nothing, and every annotated film is worth training on.
    """
    ordered = sorted(names)
    order = np.random.default_rng(seed).permutation(len(ordered))
    shuffled = [ordered[i] for i in order]
    n = len(shuffled)
    small = n < SMALL_DATASET
    n_val = int(round(fractions[1] * n))
    n_test = 0 if small else int(round(fractions[2] * n))
    if n >= 3:
        n_val, n_test = max(n_val, 1), n_test if small else max(n_test, 1)
    n_train = n - n_val - n_test
    return {
        "train": sorted(shuffled[:n_train]),
        "val": sorted(shuffled[n_train:n_train + n_val]),
        "test": sorted(shuffled[n_train + n_val:]),
    }


def save_split(split: dict[str, list[str]], path: str | Path, seed: int | None = None) -> None:
    """Write ``split`` (and ``seed``, and :data:`OVERLAP_KEY` when set) to ``path`` atomically."""
    payload: dict = {k: split[k] for k in SPLITS}
    if split.get(OVERLAP_KEY):
        payload[OVERLAP_KEY] = True
    if seed is not None:
        payload["seed"] = seed
    atomic_write_text(path, json.dumps(payload, indent=1))  # readers never see half a file


def load_split(path: str | Path) -> dict[str, list[str]]:
    """``{"train": [names], "val": [...], "test": [...]}`` from a split file; one-line ValueErrors naming it."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: split file not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: not a split file (JSON with train, val and test name lists): "
                         f"{' '.join(str(exc).split())[:100]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a split file (JSON with train, val and test name lists)")
    missing = [k for k in SPLITS if k not in data]
    if missing:
        raise ValueError(f"{path}: split file lacks {missing}")
    split = {k: list(data[k]) for k in SPLITS}
    if data.get(OVERLAP_KEY) is True:
        split[OVERLAP_KEY] = True  # type: ignore[assignment]
    return split
