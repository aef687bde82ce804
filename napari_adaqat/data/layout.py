"""Which sub-folders of a dataset folder hold its films and its masks: ``images/`` and ``masks/``, or, as public
sets unpack, the one folder of films and the one of masks under their own names (Montgomery's ``CXR_png/`` and
``ManualMask/``, Shenzhen's ``CXR_png/`` and ``mask/``, COVID-QU-Ex's ``images/`` and ``lung masks/``, nnU-Net's
``imagesTr/`` and ``labelsTr/``)."""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path

from napari_adaqat.io import ImageReadError, is_image_file, read_mask, sample_name
from napari_adaqat.io.image_data import other_kind
from napari_adaqat.io.images import READ_BY_NAME_OR_CONTENT, raw_film_hint
from napari_adaqat.util.text import pairing_key

# what sites append to an image's name to name its mask (lower case; ``<name>_mask.png`` is checked first)
MASK_SUFFIXES = ("_mask", "-mask", " mask", ".mask", "_seg", "-seg", "_label", "-label", "_labels", "_gt", "-gt")

# the split layout's folders (any case: COVID-QU-Ex ships Train/ Val/ Test/; "valid" as Roboflow and Kaggle write it)
SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test", "testing")}

# words that name a folder of masks, as whole words in any case ("Segal/", a patient's folder, is no "seg")
MASK_WORDS = frozenset({"mask", "masks", "label", "labels", "seg", "segs", "segmentation", "segmentations",
                        "annotation", "annotations", "gt", "groundtruth", "truth"})
_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")  # lung_masks, ManualMask, labelsTr, GT: words of a name


def name_words(name: str) -> list[str]:
    """The lower-case words of a folder's name, split at ``_ -.^``, spaces and camelCase (``leftMask`` → left, mask)."""
    return [word.casefold() for word in _WORDS.findall(name)]


def is_mask_name(name: str) -> bool:
    """Whether a folder's name says it holds masks: one of its words (split at ``_ -.``, spaces and camelCase) is
    one of :data:`MASK_WORDS` (``masks``, ``ManualMask``, ``lung masks``, ``labelsTr``, ``GT``, ``SEG``); a
    patient's ``SEGAL^J`` or ``unlabeled/`` is not."""
    return any(word in MASK_WORDS for word in name_words(name))


def first_entries(folder: Path, n: int = 20) -> list[Path]:
    """Up to ``n`` visible entries of ``folder``, in no order (a look, not a listing: folders of 100k files)."""
    found: list[Path] = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.startswith("."):
                    found.append(Path(entry.path))
                    if len(found) >= n:
                        break
    except OSError:
        pass
    return found


def _holds_images(folder: Path) -> bool:
    """Whether one of the first entries of ``folder`` is an image file."""
    return any(p.is_file() and is_image_file(p) for p in first_entries(folder))


def _folders(root: Path) -> list[Path]:
    try:
        return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


RESULTS_NAME = "results.csv"  # (inference.journal.RESULTS_CSV; data does not import inference)
RUN_MARKS = (".adaqat-journal", ".adaqat-run.lock")  # a run's journal and lock (inference.journal, .lock)


def is_adaqat_output(folder: Path) -> bool:
    """Whether ``folder`` is an ``adaqat segment`` output: its ``results.csv``, a run's journal or lock (masks the
    model made: never a dataset's reference masks)."""
    if any(os.path.exists(folder / mark) for mark in RUN_MARKS):  # (False, not raised, in a folder not readable)
        return True
    try:
        with (folder / RESULTS_NAME).open(encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return False
    return {"file", "status", "mask"} <= {cell.strip() for cell in header.split(",")}


def _mask_keys(masks: Path) -> set[str]:
    """The names (pairing keys, less a mask suffix) of the masks in ``masks`` or, where it holds only folders, in
    them (``ManualMask/leftMask``): to tell which folder of films they belong to."""
    keys = set()
    for place in [masks] + [p for p in first_entries(masks) if p.is_dir()]:
        try:
            names = [e.name for e in os.scandir(place) if e.is_file()]
        except OSError:
            continue
        for name in names:
            key = pairing_key(Path(name).stem)
            keys.add(key)
            keys.update(key[: -len(end)] for end in MASK_SUFFIXES if key.endswith(end))
    return keys


def _paired_most(films: list[Path], masks: Path) -> list[Path]:
    """Of several folders of films, the one whose films (the first 50 of each) have the most masks in ``masks``
    (nnU-Net's imagesTr/ beside imagesTs/ for labelsTr/; Kaggle's CXR_png/ beside test/), if one leads."""
    keys = _mask_keys(masks)

    def paired(folder: Path) -> int:
        names = [pairing_key(sample_name(p)) for p in first_entries(folder, 50) if p.is_file()]
        return sum(name in keys or name.removesuffix(CHANNEL_END) in keys for name in names)

    counts = {folder: paired(folder) for folder in films}
    best = max(counts.values())
    leaders = [folder for folder, n in counts.items() if n == best]
    return leaders if best > 0 and len(leaders) == 1 else films


CHANNEL_END = "_0000"  # nnU-Net names a case's first image channel CASE_0000; its label is CASE


def dataset_folders(root: Path) -> tuple[Path, Path]:
    """(films folder, masks folder) of the dataset folder ``root``: ``images/`` and ``masks/``.  Without
    ``masks/``, the one sub-folder named as masks (:func:`is_mask_name`: ``mask/``, ``ManualMask/``; of several, the
    one naming the lungs: COVID-QU-Ex's ``lung masks/`` beside ``infection masks/``), never an adaqat output of
    predicted masks (:func:`is_adaqat_output`); without ``images/``, the one other sub-folder that holds films
    (``CXR_png/``), or of several the one whose films those masks name (:func:`_paired_most`); ``(root, root)`` for
    films with their masks beside them (:func:`masks_beside`).  Otherwise the missing one is ``images/`` or
    ``masks/`` (absent: the caller says so)."""
    root = Path(root)
    images, masks = root / "images", root / "masks"
    if images.is_dir() and masks.is_dir():
        return images, masks
    folders = [p for p in _folders(root) if not is_adaqat_output(p)]
    if not masks.is_dir():
        named = [p for p in folders if is_mask_name(p.name)]
        lungs = [p for p in named if "lung" in p.name.casefold()]
        named = lungs if len(named) > 1 and len(lungs) == 1 else named
        masks = named[0] if len(named) == 1 else masks
    if not images.is_dir():
        films = [p for p in folders if not is_mask_name(p.name) and _holds_images(p)]
        films = _paired_most(films, masks) if len(films) > 1 and masks.is_dir() else films
        images = films[0] if len(films) == 1 else images
    if not masks.is_dir() and masks_beside(images if images.is_dir() else root):  # (DATA/lungs/ given as DATA/)
        return (images, images) if images.is_dir() else (root, root)
    return images, masks


def masks_beside(root: Path) -> bool:
    """Whether ``root`` holds films with their masks beside them (``a.png`` and ``a_mask.png``, ``a_seg.png`` …:
    :data:`MASK_SUFFIXES`): among its first entries (a look, in sorted order), one named so beside its film whose
    pixels read as a mask (a film named ``x-gt.png`` does not); never an adaqat output (its masks are predictions)."""
    if not root.is_dir():
        return False
    for path in sorted(first_entries(root, 200))[:50]:
        name = sample_name(path)
        end = next((e for e in MASK_SUFFIXES if name.casefold().endswith(e) and len(name) > len(e)), None)
        if end and path.is_file() and is_image_file(path):
            films = [p for p in root.glob(glob.escape(name[: -len(end)]) + ".*") if p.is_file() and is_image_file(p)]
            if films and reads_as_mask(path):
                return not is_adaqat_output(root)
    return False


def reads_as_mask(path: Path) -> bool:
    """Whether ``path`` holds a mask (two values, as :func:`~napari_adaqat.io.read_mask` reads it)."""
    try:
        read_mask(path, lung_labels=True)
    except ImageReadError:
        return False
    return True


def class_folders(root: Path) -> list[Path]:
    """The class sub-folders of ``root`` that are each a dataset of films and masks (:func:`dataset_folders`), when
    ``root`` has no folder of films of its own: COVID-19 Radiography's ``COVID/ Normal/ …``, each with ``images/``
    and ``masks/``; COVID-QU-Ex's ``Train/COVID-19/ Non-COVID/ Normal/``, each with ``images/`` and ``lung masks/``.
    One level only; never where a sub-folder is named as a split part (``val/``: the parts of a split are no
    classes, even beside a ``trainset/``); else ``[]``."""
    if dataset_folders(root)[0].is_dir():
        return []
    found = []
    folders = _folders(root)
    splits = {name for names in SPLIT_NAMES.values() for name in names}
    if any(folder.name.casefold() in splits for folder in folders):  # parts of a split (trainset/ + val/ + test/)
        return []
    for folder in folders:
        if not is_mask_name(folder.name) and not is_adaqat_output(folder):
            images, masks = dataset_folders(folder)
            if images.is_dir() and masks.is_dir():
                found.append(folder)
    return found


def classes_without_masks(root: Path) -> list[Path]:
    """The sub-folders of ``root`` beside its class folders (:func:`class_folders`) that hold a folder of films but
    no masks (a class left out of the dataset: said, never dropped without a word); ``[]`` without class folders."""
    groups = class_folders(root)
    if not groups:
        return []
    return [folder for folder in _folders(root) if folder not in groups and not is_mask_name(folder.name)
            and not is_adaqat_output(folder) and dataset_folders(folder)[0].is_dir()]


def holds_dataset(root: Path) -> bool:
    """Whether ``root`` is a dataset folder by itself: its folder of films, or class folders holding theirs."""
    return dataset_folders(root)[0].is_dir() or bool(class_folders(root))


def pair_places(root: Path) -> list[Path]:
    """Every folder of the dataset ``root`` whose films and masks pair (:func:`dataset_folders`): ``root``, its
    split folders (:func:`split_folders`), each of them replaced by its class folders where it has them."""
    places = []
    for top in [root, *split_folders(root).values()]:
        places += class_folders(top) or [top]
    return list(dict.fromkeys(places))


def layout_note(root: Path) -> str:
    """``"films from CXR_png/, masks from ManualMask/ …"`` when :func:`dataset_folders` chose folders of other
    names, or the class folders read (:func:`class_folders`), else ``""``."""
    parts = split_folders(root)
    top = parts.get("train", root)
    groups = class_folders(top)
    images, masks = dataset_folders(groups[0] if groups else top)
    if not images.is_dir():
        return ""
    likewise = " (likewise in each split folder)" if parts else ""
    if groups:
        shown = ", ".join(f"{g.name}/" for g in groups[:4]) + (", …" if len(groups) > 4 else "")
        each = "with the masks beside the films" if images == masks else f"{images.name}/ and {masks.name}/"
        bare = [f"{g.name}/" for g in classes_without_masks(top)]
        left = f"; left out, films without a masks folder: {', '.join(bare[:4])}{', …' if len(bare) > 4 else ''}"
        return (f"films and masks from {len(groups)} class folder(s) of {top.name}/ ({shown}), each "
                f"{each}{likewise}" + (left if bare else ""))
    if (images.name, masks.name) == ("images", "masks"):
        return ""
    if images == masks:
        return (f"films and their masks side by side in {images.name}/ (a mask named as its film + _mask, _seg …)"
                + likewise)
    return f"films from {images.name}/, masks from {masks.name}/ (the folders of {top.name}/ named so)"


def missing_films_folder(root: Path, empty: str = "empty dataset: no images found") -> str:
    """The one-line reason why ``root`` has no folder of films (no ``images/``, and not exactly one other);
    ``empty``: what the last resort says (no folder of films at all)."""
    folders = _folders(root)
    films = [f"{p.name}/" for p in folders if not is_mask_name(p.name) and _holds_images(p)]
    if len(films) > 1:
        return (f"{root}: no images/ folder, and {len(films)} folders hold films ({', '.join(films[:4])}): put the "
                "films with masks in images/ and their masks in masks/")
    images = root / "images"
    if images.is_dir() and not _holds_images(images):
        files = sorted(p for p in first_entries(images) if p.is_file())
        nested = [] if files else [d for d in sorted(first_entries(images)) if d.is_dir() and _holds_images(d)]
        if nested:  # per-patient folders (images/P001/…): a dataset is keyed by film name, which they may repeat
            film = next(p for p in sorted(first_entries(nested[0])) if p.is_file() and is_image_file(p))
            return (f"{images}: holds sub-folders of films ({nested[0].name}/{film.name}"
                    f"{', …' if len(nested) > 1 else ''}), not films: training reads films directly in images/ with "
                    "their masks of the same name directly in masks/; move them up, with names that differ "
                    f"(e.g. {nested[0].name}_{film.name})")
        if files:
            hint = raw_film_hint(files[0])
            return (f"{images}: holds no film adaqat reads; {files[0].name}: "
                    + (hint or f"not an image it reads ({READ_BY_NAME_OR_CONTENT})"))
    if _holds_images(root):
        return (f"{root}: holds films itself, no images/ folder and no masks beside them: give the folder above it "
                "as the data folder, with the films in images/ and the masks in masks/; or put each mask beside its "
                "film (a_mask.png beside a.png) and give this folder")
    others = [f"{p.name}/" for p in folders]
    found = f" (found {', '.join(others[:4])}{', …' if len(others) > 4 else ''})" if others else ""
    return f"{root}: {empty} (expected {root}/images and {root}/masks{found}){_archive_in(root)}"


def _archive_in(root: Path) -> str:
    """``"; films.zip: it is a ZIP archive; unpack it …"`` for the first archive among ``root``'s files, else ""."""
    for path in sorted(p for p in first_entries(root) if p.is_file()):
        try:
            with path.open("rb") as fh:
                kind = other_kind(fh.read(64))
        except OSError:
            continue
        if kind and "unpack" in kind:
            return f"; {path.name}: {kind}"
    return ""


def split_folders(root: Path) -> dict[str, Path]:
    """{"train" | "val" | "test": its folder} of the split layout ``DIR/train|val|test/images + masks``, its folders
    named in any case (``Train/``, ``valid/``); empty unless ``train`` and ``val`` or ``test`` hold films (a part
    without a folder is an empty part: ``train/`` + ``test/`` scores; training says that it lacks validation)."""
    by_name = {p.name.casefold(): p for p in _folders(root)}
    found = {}
    for part, names in SPLIT_NAMES.items():
        folder = next((by_name[n] for n in names if n in by_name and holds_dataset(by_name[n])), None)
        if folder is not None:
            found[part] = folder
    return found if "train" in found and len(found) > 1 else {}
