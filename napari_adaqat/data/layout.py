"""Which sub-folders of a dataset folder hold its films and its masks: ``images/`` and ``masks/``, or, as public
sets unpack, the one folder of films and the one of masks under their own names (Montgomery's ``CXR_png/`` and
``ManualMask/``, Shenzhen's ``CXR_png/`` and ``mask/``, COVID-QU-Ex's ``images/`` and ``lung masks/``)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from napari_adaqat.io import IMAGE_SUFFIXES, is_image_file
from napari_adaqat.io.images import raw_film_hint

# the split layout's folders (any case: COVID-QU-Ex ships Train/ Val/ Test/; "valid" as Roboflow and Kaggle write it)
SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}

# words that name a folder of masks, as whole words in any case ("Segal/", a patient's folder, is no "seg")
MASK_WORDS = frozenset({"mask", "masks", "label", "labels", "seg", "segs", "segmentation", "segmentations",
                        "annotation", "annotations", "gt", "groundtruth", "truth"})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")  # lung_masks, ManualMask, labelsTr, GT: words of a name


def is_mask_name(name: str) -> bool:
    """Whether a folder's name says it holds masks: one of its words (split at ``_ -.``, spaces and camelCase) is
    one of :data:`MASK_WORDS` (``masks``, ``ManualMask``, ``lung masks``, ``labelsTr``, ``GT``, ``SEG``); a
    patient's ``SEGAL^J`` or ``unlabeled/`` is not."""
    return any(word.casefold() in MASK_WORDS for word in _WORDS.findall(name))


def _holds_images(folder: Path, n: int = 20) -> bool:
    """Whether one of the first ``n`` entries of ``folder`` is an image file (a look, not a listing)."""
    try:
        with os.scandir(folder) as entries:
            for i, entry in enumerate(entries):
                if i >= n:
                    break
                if not entry.name.startswith(".") and entry.is_file() and is_image_file(Path(entry.path)):
                    return True
    except OSError:
        pass
    return False


def _first_files(folder: Path, n: int = 20) -> list[Path]:
    """Up to ``n`` files of ``folder`` (a look, not a listing)."""
    found: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_file():
                    found.append(Path(entry.path))
                    if len(found) >= n:
                        break
    except OSError:
        pass
    return found


def _folders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def dataset_folders(root: Path) -> tuple[Path, Path]:
    """(films folder, masks folder) of the dataset folder ``root``: ``images/`` and ``masks/``.  Without
    ``images/``, the one sub-folder of films (one holding images, not named as masks: ``CXR_png/``) when there is
    exactly one; without ``masks/``, the one sub-folder named as masks (:func:`is_mask_name`: ``mask/``,
    ``ManualMask/``) when there is exactly one.  Otherwise the missing one is ``images/`` or ``masks/`` (absent:
    the caller says so)."""
    root = Path(root)
    images, masks = root / "images", root / "masks"
    if images.is_dir() and masks.is_dir():
        return images, masks
    folders = _folders(root)
    named = [p for p in folders if is_mask_name(p.name)]
    if not images.is_dir():
        films = [p for p in folders if not is_mask_name(p.name) and _holds_images(p)]
        images = films[0] if len(films) == 1 else images
    if not masks.is_dir() and len(named) == 1:
        masks = named[0]
    return images, masks


def layout_note(root: Path) -> str:
    """``"films from CXR_png/, masks from ManualMask/ …"`` when :func:`dataset_folders` chose folders of other
    names, else ``""``."""
    images, masks = dataset_folders(root)
    if (images.name, masks.name) == ("images", "masks") or not images.is_dir():
        return ""
    return f"films from {images.name}/, masks from {masks.name}/ (the folders of {Path(root).name}/ named so)"


def missing_films_folder(root: Path) -> str:
    """The one-line reason why ``root`` has no folder of films (no ``images/``, and not exactly one other)."""
    folders = _folders(root)
    films = [f"{p.name}/" for p in folders if not is_mask_name(p.name) and _holds_images(p)]
    if len(films) > 1:
        return (f"{root}: no images/ folder, and {len(films)} folders hold films ({', '.join(films[:4])}): put the "
                "films with masks in images/ and their masks in masks/")
    images = root / "images"
    if images.is_dir() and not _holds_images(images):
        files = sorted(p for p in _first_files(images) if not p.name.startswith("."))
        if files:
            hint = raw_film_hint(files[0])
            return (f"{images}: holds no film adaqat reads; {files[0].name}: "
                    + (hint or f"not an image it reads ({', '.join(IMAGE_SUFFIXES)} and DICOM under any name)"))
    if _holds_images(root):
        return (f"{root}: holds films itself, no images/ folder: give the folder above it as the data folder, with "
                "the films in images/ and the masks in masks/")
    others = [f"{p.name}/" for p in folders]
    found = f" (found {', '.join(others[:4])}{', …' if len(others) > 4 else ''})" if others else ""
    return f"{root}: empty dataset: no images found (expected {root}/images and {root}/masks{found})"


def split_folders(root: Path) -> dict[str, Path]:
    """{"train" | "val" | "test": its folder} of the split layout ``DIR/train|val|test/images + masks``, its folders
    named in any case (``Train/``, ``valid/``); empty unless ``train`` and ``val`` or ``test`` hold films (a part
    without a folder is an empty part: ``train/`` + ``test/`` scores; training says that it lacks validation)."""
    by_name = {p.name.casefold(): p for p in _folders(root)}
    found = {}
    for part, names in SPLIT_NAMES.items():
        folder = next((by_name[n] for n in names if n in by_name and dataset_folders(by_name[n])[0].is_dir()), None)
        if folder is not None:
            found[part] = folder
    return found if "train" in found and len(found) > 1 else {}
