"""Dataset folders of radiographs with lung masks, in either layout of DESIGN.md.

``DIR/images/<name>.<ext>`` + ``DIR/masks/<name>.png`` (optional ``DIR/split.json``),
or the authors' ``DIR/{train,val,test}/{images,masks}``.
"""
from __future__ import annotations

import glob
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_adaqat.data.layout import (  # (MASK_SUFFIXES: the names of masks, used here and beside films)
    CHANNEL_END, MASK_SUFFIXES, reads_as_mask, class_folders, dataset_folders, first_entries, is_adaqat_output,
    missing_films_folder, name_words, split_folders,
)
from napari_adaqat.data.mask_grid import film_for_mask
from napari_adaqat.data.split import SPLITS, load_split, make_split
from napari_adaqat.io import ImageData, ImageReadError, check_segmentable, is_image_file, read_image, read_mask
from napari_adaqat.io import IMAGE_SUFFIXES, sample_name
from napari_adaqat.io.masks import GIF_SUFFIX, is_mask_file
from napari_adaqat.util.text import pairing_key





class DataError(ValueError):
    """A dataset problem; the message is one line and names the file."""


@dataclass
class Pair:
    """A film and its reference mask; ``parts``: more masks joined to ``mask`` (the other lung, where a dataset
    keeps one folder per lung: :func:`lung_folders`); ``film_shape``: the film's own (H, W) once loading has
    resampled it onto its mask's grid (:mod:`~napari_adaqat.data.mask_grid`), else None."""
    name: str
    image: Path
    mask: Path | None
    parts: tuple[Path, ...] = ()
    film_shape: tuple[int, int] | None = None  # set when loading resampled the film onto its mask's grid
    beside: bool = False  # read from a folder of films with their masks beside them (layout.masks_beside)


def lung_folders(masks: Path) -> tuple[Path, ...]:
    """Where a dataset's masks are when ``masks/`` holds no mask itself, only folders: one folder per lung, joined
    (a name with "left" and one with "right": Montgomery's ``ManualMask/leftMask`` and ``rightMask``; among several
    left ones, the one naming a lung, as SCR's ``left lung`` beside ``left clavicle``); else its one sub-folder
    that holds images (``masks/lungs/``), unless it is one lung's (``leftMask/`` alone: not a whole reference);
    else ``()``."""
    if any(p.is_file() and is_mask_file(p) for p in first_entries(masks)):  # (a plain folder of masks: no listing)
        return ()
    try:
        folders = sorted(p for p in masks.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return ()

    def side(word: str) -> list[Path]:
        named = [p for p in folders if word in name_words(p.name)]
        return [p for p in named if "lung" in name_words(p.name)] if len(named) > 1 else named

    left, right = side("left"), side("right")
    if len(left) == 1 and len(right) == 1 and left != right:
        return left[0], right[0]
    with_images = [p for p in folders if any(f.is_file() and is_mask_file(f) for f in first_entries(p))]
    one_side = len(with_images) == 1 and {"left", "right"} & set(name_words(with_images[0].name))
    return (with_images[0],) if len(with_images) == 1 and not one_side else ()


class MaskFolder:
    """A masks folder listed once (one ``scandir``), so :meth:`find` applies the one image ↔ mask rule for
    every image of a dataset without listing the folder again per image.  An exact name (in Unicode NFC: macOS
    writes ``é`` as ``e`` + accent, Windows as one character) wins; other names pair by
    :func:`~napari_adaqat.util.text.pairing_key` (any case), the rule that also skips a mask beside its film;
    hidden files (``.name``) are no masks."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.real = os.path.realpath(self.folder)
        try:
            names = sorted(entry.name for entry in os.scandir(self.folder)
                           if entry.is_file() and not entry.name.startswith("."))
        except OSError:  # missing or unreadable: no masks
            names = []
        self.names = {_nfc(name): name for name in names}  # NFC name -> the file's own name
        self.by_sample: dict[str, list[str]] = {}  # pairing_key of the sample name -> file names, sorted
        self.by_base: dict[str, list[str]] = {}  # pairing_key less a MASK_SUFFIXES suffix -> file names
        for name in names:
            key = pairing_key(Path(name).stem if Path(name).suffix.lower() == GIF_SUFFIX else sample_name(name))
            self.by_sample.setdefault(key, []).append(name)
            suffix = next((s for s in MASK_SUFFIXES if key.endswith(s) and len(key) > len(s)), None)
            if suffix:
                self.by_base.setdefault(key[: -len(suffix)], []).append(name)

    def find(self, image: Path, channel_suffix: bool = False) -> Path | None:
        """The mask of ``image``: ``<name>.png``, else ``<name>_mask.png`` (what ``adaqat segment`` writes),
        else any image file named ``<name>.<ext>``, else ``<name>`` + one of :data:`MASK_SUFFIXES` (any case)
        ``.<ext>``; ``<name>`` is :func:`~napari_adaqat.io.sample_name`, else the film's whole file name (masks
        named ``a.jpg.png`` or ``a.png_mask.png``, as tools that append to the file name write them); with
        ``channel_suffix`` (a folder of nnU-Net films, all ``CASE_0000``), else the name less that suffix."""
        # a masks folder that is the images folder (masks -> images, or --masks pointing at it): never the film
        itself = image.name if os.path.realpath(image.parent) == self.real else None
        own = _nfc(sample_name(image))
        names = (own, _nfc(image.name)) + ((own[: -len(CHANNEL_END)],) if channel_suffix else ())
        for name in dict.fromkeys(names):
            for candidate in (f"{name}.png", f"{name}_mask.png"):
                if candidate in self.names and self.names[candidate] != itself:
                    return self.folder / self.names[candidate]
            for found in (self.by_sample, self.by_base):
                same = [self.folder / n for n in found.get(pairing_key(name), ())
                        if n != itself and is_mask_file(self.folder / n)]
                if same:
                    return same[0]
        return None


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def find_mask(image: Path, folder: Path) -> Path | None:
    """The mask of ``image`` in ``folder`` by the one rule (:meth:`MaskFolder.find`); for many images,
    list the folder once with :class:`MaskFolder`."""
    return MaskFolder(folder).find(image)


def mask_suffix(path: Path, stems: set[str]) -> str:
    """The :data:`MASK_SUFFIXES` suffix (``_mask``, ``_seg``...) that makes
    ``path`` the mask of a film whose sample name's :func:`~napari_adaqat.util.text.pairing_key` is in ``stems``,
    else ``""``."""
    name = pairing_key(sample_name(path))
    return next((s for s in MASK_SUFFIXES if name.endswith(s) and len(name) > len(s) and name[: -len(s)] in stems), "")


def masks_beside_films(entries: list[Path]) -> list[Path]:
    """The images of one folder that are the mask of a film beside them: ``NAME`` + a suffix that training
    pairs by (:data:`MASK_SUFFIXES`: ``a_mask.png``, ``a_seg.png``, ``a-gt.png``...
    beside ``a.png``; an export of films with their masks, the bundled sample): masks, not films to segment.
    The rule of ``adaqat segment``, the Batch dock and the Annotate dock (all through
    :func:`~napari_adaqat.data.folders.scan_inputs`); a dataset's pairs also ask that the pixels be a mask's."""
    stems = {pairing_key(name) for p in entries for name in (sample_name(p), p.name)}  # (a.png_mask.png too)
    whole = {pairing_key(p.name) for p in entries}  # a.jpg.png beside a.jpg: the film's whole name + an extension
    return [p for p in entries if mask_suffix(p, stems) or (Path(sample_name(p)).suffix.lower() in IMAGE_SUFFIXES
                                                           and pairing_key(sample_name(p)) in whole)]


def _pairs_in(folder: Path) -> dict[str, Pair]:
    """The pairs of ``folder``'s films and masks (:func:`~.layout.dataset_folders`: ``images/`` and ``masks/``, or
    a set's own names; hidden files and masks beside their films skipped); a mask that two images would share by a
    suffix rule (``a.png`` and ``a_seg.png``, mask ``a_seg.png``) or by case (``A.png`` and ``a.png``) stays with
    the image of its own name, and with neither when no name is its own (nor its other lung's mask)."""
    images, masks = dataset_folders(folder)
    if not images.is_dir():  # (class folders, each its films and masks, or nothing)
        groups = class_folders(folder)
        return _pairs_of_classes(groups) if groups else {}
    pairs = {}
    together = images == masks  # films with their masks beside them (layout.masks_beside checked one's pixels)
    finders = [MaskFolder(place) for place in lung_folders(masks)] or [MaskFolder(masks)]
    films = [path for path in sorted(images.iterdir())
             if path.is_file() and is_image_file(path) and not path.name.startswith(".")]
    # images/a_mask.png beside images/a.png: a mask, not a film (unless its pixels are a film's: a_seg.png can be one;
    # in a folder of films with their masks, by name: reading each of 50k masks would cost minutes per look)
    beside = set(masks_beside_films(films)) if together else \
        {path for path in masks_beside_films(films) if reads_as_mask(path)}
    channels = bool(films) and all(sample_name(path).endswith(CHANNEL_END) for path in films)  # nnU-Net's films
    for path in films:
        if path not in beside:
            name = sample_name(path)
            found = [finder.find(path, channels) for finder in finders]  # (one per lung folder: a film needs all)
            pairs[name] = Pair(name, path, found[0], tuple(found[1:]), beside=together) if all(found) \
                else Pair(name, path, None, beside=together)
    claims: dict[Path, list[Pair]] = {}
    for pair in pairs.values():
        if pair.mask is not None:
            claims.setdefault(pair.mask, []).append(pair)
    for mask, claimants in claims.items():
        if len(claimants) > 1:  # the film of the mask's exact name keeps it, else the one film of its key, else none
            own = sample_name(mask)
            keep = ([p for p in claimants if _nfc(p.name) == _nfc(own)]
                    or [p for p in claimants if pairing_key(p.name) == pairing_key(own)])
            for pair in claimants:
                if len(keep) != 1 or pair is not keep[0]:
                    pair.mask, pair.parts = None, ()
    return pairs


def _pairs_of_classes(groups: list[Path]) -> dict[str, Pair]:
    """The pairs of every class folder (:func:`~.layout.class_folders`); a film name in two of them is refused (a
    dataset is keyed by name, so one of the two would be lost)."""
    pairs: dict[str, Pair] = {}
    where: dict[str, Path] = {}  # the class folder of each name
    for group in groups:
        for name, pair in _pairs_in(group).items():
            if name in pairs:
                raise DataError(f"{pair.image}: a film of the same name is in {where[name].name}/ too; the class "
                                "folders are read as one dataset, so rename one of the two")
            pairs[name], where[name] = pair, group
    return pairs


def split_source(root: Path, folders: dict[str, Path] | None = None) -> str:
    """Where :func:`discover` takes the split from: ``"layout"`` (DIR/train|val|test),
    ``"split.json"`` (DIR/split.json) or ``"seeded"`` (an 80:10:10 cut of the names); ``folders``: the
    :func:`~.layout.split_folders` of ``root`` when already found."""
    if split_folders(root) if folders is None else folders:
        return "layout"
    return "split.json" if (root / "split.json").is_file() else "seeded"


def names_of_pairs(split: dict, pairs: dict[str, Pair]) -> dict:
    """``split`` with a name given as a file name (``a.png``) or in another Unicode form taken as its image's name."""
    known = {_nfc(name): name for name in pairs}

    def name_of(entry: str) -> str:
        entry = str(entry)
        return entry if entry in pairs else known.get(_nfc(entry), known.get(_nfc(sample_name(entry)), entry))
    return {k: [name_of(n) for n in v] if k in SPLITS else v for k, v in split.items()}


def discover(data_dir: str | Path, seed: int = 0) -> tuple[dict[str, Pair], dict[str, list[str]]]:
    """Find all pairs and the split (from the layout, ``split.json``, or a seeded 80:10:10 cut)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root}: data folder not found")
    folders = split_folders(root)
    source = split_source(root, folders)
    if source == "layout":
        pairs, split = {}, {}
        for s in SPLITS:
            found = _pairs_in(folders[s]) if s in folders else {}
            pairs.update(found)
            split[s] = sorted(found)
    else:
        pairs = _pairs_in(root)
        split = names_of_pairs(load_split(root / "split.json"), pairs) if source == "split.json" \
            else _seeded_split(pairs, seed)
    if not pairs:
        raise DataError(missing_films_folder(root))
    return pairs, split


def _seeded_split(pairs: dict[str, Pair], seed: int) -> dict[str, list[str]]:
    """The seeded cut (:func:`~.split.make_split`) of the films that have masks; the films without one go to
    ``train``, where the data check names them (Shenzhen's 96 films without masks left validation short)."""
    split = make_split([name for name, pair in pairs.items() if pair.mask is not None], seed)
    split["train"] = sorted(split["train"] + [name for name, pair in pairs.items() if pair.mask is None])
    return split


def _unread_mask(masks: Path, name: str) -> str:
    """``"; masks/NAME.gif is a GIF, which is not read: …"`` when ``masks`` holds a file of ``name`` in a format that
    is no mask here (JSRT/SCR's masks are GIFs), else ``""``."""
    try:  # (a glob of the name: a folder of 100k masks is not listed once per film without its mask)
        other = next((p for p in sorted(masks.glob(glob.escape(name) + "*.*"))
                      if pairing_key(p.stem) in {pairing_key(name + end) for end in ("", *MASK_SUFFIXES)}
                      and p.is_file() and not is_mask_file(p)), None)
    except OSError:
        return ""
    if other is None:
        return ""
    kind = other.suffix[1:].upper()
    return f"; {masks.name}/{other.name} is a {kind}, which is not read: save it as {masks.name}/{other.stem}.png"


def _expected_mask(image: Path, name: str, beside: bool = False) -> str:
    """Where the mask of ``image`` was looked for (``beside``: beside it, in a folder of films with their masks),
    and why none was found when that is known (one line)."""
    if beside:
        return f"expected {name}_mask.png beside it"
    masks = dataset_folders(image.parent.parent)[1]
    folders = lung_folders(masks)
    if len(folders) > 1:  # (a glob of the name, not a listing per film: folders of 100k masks)
        expected = f"expected {' and '.join(f'{masks.name}/{f.name}/{name}.png' for f in folders)}"
        unread = next((why for f in folders if (why := _unread_mask(f, name))), "")  # SCR's GIFs
        if unread:
            return f"{expected}{unread}"
        lacking = [f for f in folders if not any(f.glob(glob.escape(name) + "*"))] or list(folders)
        return f"{expected}: one mask per lung, joined; none in {' or '.join(f'{f.name}/' for f in lacking)}"
    if folders:
        return f"expected {masks.name}/{folders[0].name}/{name}.png{_unread_mask(folders[0], name)}"
    return f"expected {masks.name}/{name}.png{_no_masks_folder(image, masks)}"


def _no_masks_folder(image: Path, masks: Path) -> str:
    """``"; there is no masks/ folder …"`` when the dataset of ``image`` has no folder of masks ``masks``, a hint
    when ``masks`` holds only folders, else ``""``."""
    root = image.parent.parent
    if masks.is_dir():
        inside = _unread_mask(masks, sample_name(image))
        entries = first_entries(masks)  # (a look, not a listing: this runs for each film without its mask)
        if entries and not inside and not any(p.is_file() for p in entries):
            subs = sorted(f"{d.name}/" for d in entries if d.is_dir())
            return (f"; {masks.name}/ holds only folders ({', '.join(subs[:4])}): put the masks in {masks.name}/ "
                    "itself, or keep one folder per lung, named with left and right")
        return inside
    try:
        folders = sorted(d for d in root.iterdir() if d.is_dir() and d != image.parent and d.name[0] != ".")
    except OSError:
        folders = []
    made_here = {d: is_adaqat_output(d) for d in folders}  # (predictions: never a reference)
    outputs = [f"{d.name}/" for d in folders if made_here[d]]
    others = [f"{d.name}/" for d in folders if not made_here[d]]
    found = f" (found {', '.join(others[:4])}: rename the one holding the masks to masks/)" if others else ""
    made = (f"; {', '.join(outputs[:2])} holds masks adaqat made (its results.csv), not reference masks"
            if outputs else "")
    return f"; there is no masks/ folder beside {image.parent.name}/{found}{made}"


def read_reference(pair: Pair) -> np.ndarray:
    """The reference mask of ``pair`` as bool (H, W): its mask (a label map of the two lungs read as lungs), joined
    with its ``parts`` (one file per lung).  ImageReadError, or DataError for parts of different sizes."""
    mask = read_mask(pair.mask, lung_labels=True)
    for part in pair.parts:
        other = read_mask(part, lung_labels=True)
        if other.shape != mask.shape:
            raise DataError(f"{part}: mask size {other.shape} differs from {pair.mask}'s {mask.shape}")
        mask = mask | other
    return mask


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
    """Read and check one pair → (image float32 (H, W) in [0,1], mask bool (H, W)).

    Raises :class:`DataError` for a missing or unreadable file, a mask of another shape, an empty or
    full mask, and an image too small or blank to segment (see :func:`~napari_adaqat.io.check_segmentable`).
    A mask that is the film's shape at another size gets the film resampled onto its grid
    (:mod:`~napari_adaqat.data.mask_grid`; ``pair.film_shape`` then says so).
    """
    film, mask = load_film_pair(pair)
    return film.pixels, mask


def load_film_pair(pair: Pair) -> tuple[ImageData, np.ndarray]:
    """:func:`load_pair`, the film as an :class:`~napari_adaqat.io.ImageData` (its pixel spacing kept)."""
    if pair.mask is None:
        raise DataError(f"{pair.image}: missing mask ({_expected_mask(pair.image, pair.name, pair.beside)})")
    try:
        film = read_image(pair.image)
        image, mask = film.pixels, read_reference(pair)
    except ImageReadError as exc:
        raise DataError(str(exc)) from None
    if image.shape != mask.shape:
        try:  # (masks saved smaller or larger than their films: the film goes onto the mask's grid)
            film = film_for_mask(film, mask.shape)
        except ValueError:
            raise DataError(f"{pair.mask}: mask size {mask.shape} differs from image size {image.shape} (and is "
                            "not the film's shape scaled: a crop, a pad, or another film's mask?)") from None
        image, pair.film_shape = film.pixels, image.shape
    if not mask.any():
        raise DataError(f"{pair.mask}: mask is empty (no lung pixels)")
    if mask.all():
        raise DataError(f"{pair.mask}: mask covers the whole image (every pixel is lung); expected lungs on a background")
    try:
        check_segmentable(image, pair.image)
    except ImageReadError as exc:
        raise DataError(str(exc)) from None
    return film, mask


def check_pairs(pairs: list[Pair]) -> tuple[list[Pair], list[str]]:
    """Validate pairs; return the good ones and one warning line per bad one."""
    good, warnings = [], []
    for pair in pairs:
        try:
            load_pair(pair)
            good.append(pair)
        except DataError as exc:
            warnings.append(str(exc))
    return good, warnings
