"""Qt-free box prompts of the Batch dock: the default rule, a boxes CSV, or a folder of masks."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from napari_adaqat.data import MaskFolder, describe_unmatched, mask_box, read_boxes_csv
from napari_adaqat.data.folders import mirror_folder
from napari_adaqat.io import ImageReadError, read_mask

DEFAULT, CSV, MASKS = "default", "csv", "masks"


def boxes_from_masks(files: list[Path], folder: str | Path,
                     roots: Sequence[Path] = ()) -> tuple[dict[str, np.ndarray], list[str]]:
    """{input path: bounding box of its mask}, and the inputs left to the default box (no mask, an
    unreadable or an empty one) with the reason.  A film in a sub-folder of ``roots`` (a recursive run) has its
    mask in the same sub-folder of ``folder`` (a recursive run's output), else in ``folder`` itself."""
    folder = Path(folder)
    boxes, missing, listed = {}, [], {}

    def masks_in(place: Path) -> MaskFolder:  # each folder listed once
        if place not in listed:
            listed[place] = MaskFolder(place)
        return listed[place]

    for path in files:
        places = dict.fromkeys([folder / mirror_folder(path, roots), folder])
        mask_path = next((m for m in (masks_in(place).find(path) for place in places) if m is not None), None)
        if mask_path is None:
            missing.append(f"{path.name}: no mask in {folder.name}")
            continue
        try:
            box = mask_box(read_mask(mask_path, lung_labels=True))
        except ImageReadError as exc:
            missing.append(str(exc))
            continue
        if box is None:
            missing.append(f"{mask_path.name}: empty mask")
        else:
            boxes[str(path)] = box
    return boxes, missing


def check_source(kind: str, source: str) -> None:
    """Refuse a boxes source that cannot be used (ValueError, one line), before anything runs."""
    if kind == DEFAULT:
        return
    if not str(source or "").strip() or str(source) == ".":
        raise ValueError(f"Choose the boxes {'CSV file' if kind == CSV else 'mask folder'}.")
    if kind == CSV and not Path(source).is_file():
        raise ValueError(f"{source}: boxes CSV not found")
    if kind == MASKS and not Path(source).is_dir():
        raise ValueError(f"{source}: mask folder not found")


def load_boxes(kind: str, source: str, files: list[Path],
               roots: Sequence[Path] = ()) -> tuple[Optional[dict[str, np.ndarray]], list[str]]:
    """The boxes for ``files`` from the chosen source (``None``: the default rule for every file), and
    notes on files that fall back to the default box. Raises ValueError for an unusable source."""
    check_source(kind, source)
    if kind == DEFAULT:
        return None, []
    if kind == CSV:
        boxes = read_boxes_csv(source)
        return boxes, describe_unmatched(source, boxes, files, roots)  # the same warnings as adaqat segment
    return boxes_from_masks(files, source, roots)
