"""Make the k cross-validation folds of a dataset as data folders that ``adaqat train`` reads.

Every fold folder FOLDS/fold<k>/ holds links to all images and masks plus a ``split.json``:
``test`` = fold k (its out-of-fold images), ``val`` = a few of the others (checkpoint choice),
``train`` = the rest.  The folds are a seeded permutation of the sorted names, so every
model (U-Net reference, v2, v3) sees the same folds.

    python benchmarks/cv_folds.py ../shared/data/cxr/permissive_512 /work/cv --k 3
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from napari_adaqat.data.dataset import discover


def make_folds(names: list[str], k: int, seed: int = 0) -> list[list[str]]:
    """Seeded permutation of the sorted ``names`` cut into ``k`` near-equal folds."""
    ordered = sorted(names)
    order = np.random.default_rng(seed).permutation(len(ordered))
    return [sorted(ordered[i] for i in part) for part in np.array_split(order, k)]


def write_fold_folders(data: Path, out: Path, k: int, n_val: int = 6, seed: int = 0) -> list[Path]:
    pairs, _ = discover(data, seed)
    folds = make_folds(list(pairs), k, seed)
    folders = []
    for i, test in enumerate(folds):
        rest = sorted(n for n in pairs if n not in test)
        val = rest[:: max(1, len(rest) // n_val)][:n_val]
        split = {"train": [n for n in rest if n not in val], "val": val, "test": test}
        folder = out / f"fold{i}"
        for sub in ("images", "masks"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        for name, pair in pairs.items():
            for src, sub in ((pair.image, "images"), (pair.mask, "masks")):
                link = folder / sub / Path(src).name
                if not link.exists():
                    os.symlink(Path(src).resolve(), link)
        (folder / "split.json").write_text(json.dumps(split, indent=1))
        folders.append(folder)
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()
    for folder in write_fold_folders(args.data, args.out, args.k):
        split = json.loads((folder / "split.json").read_text())
        print(folder, {s: len(v) for s, v in split.items()})


if __name__ == "__main__":
    main()
