"""The data check before training: what is used, what is skipped and why (grouped), the split, and
the refusals and warnings that save a wasted run.

One report, two readers: the Train dock shows :func:`check_data` of a folder (every pair), and
``adaqat train`` prints :func:`training_sets`' report on the terminal before the first epoch (the
pairs it trains and validates on).  A split whose validation set is empty or overlaps the training
set is refused (validating on training images reports a Dice the model has not earned), unless a
``split.json`` says ``"val_overlaps_train": true`` on purpose.  Masks that look inverted (lung =
black) and skips that all share one reason get a warning; a folder whose every usable mask looks inverted
is refused (the run would learn the background) unless the masks are taken as given (``--masks-as-given``:
masks that are right but odd), and split.json names that are no film are listed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage as ndi

from napari_adaqat.data.dataset import DataError, Pair, discover, load_pair, split_source
from napari_adaqat.data.layout import MASK_SUFFIXES, dataset_folders, layout_note, pair_places
from napari_adaqat.data.split import OVERLAP_KEY, SPLITS, make_split
from napari_adaqat.io import is_image_file, sample_name
from napari_adaqat.io.masks import is_mask_file
from napari_adaqat.util.text import listed

SOURCE_TEXT = {"layout": "from DIR/train|val|test", "split.json": "from split.json",
               "seeded": "seeded 80:10:10; under 20 pairs 90:10, no test"}  # (data/split.py make_split)
MAX_LISTED = 8  # names listed per group of skipped pairs; the rest are counted
# An inverted lung mask is a white background around black lungs.  On 97 real masks (full films, films cropped
# to the lung box, inverted ones) the white covers 0-25 % of the image's edge (cropped to the lung box
# included) versus 75-100 % inverted, and the black holes enclosed by white are 0 % of the image versus
# 14-61 % inverted (the lungs): either sign alone marks a mask as inverted.
INVERTED_EDGE = 0.7  # white along at least this share of the image's edge
INVERTED_HOLES = 0.05  # black holes enclosed by white covering at least this share of the image
INVERTED_WHY = "white along most of the image's edge, or around black lung-sized holes"
MASKS_AS_GIVEN = ("if they are right as they are, train with --masks-as-given "
                  "(Train dock: tick 'masks are right as given')")


@dataclass
class DataReport:
    """What a data folder holds: pair counts, the split, the pairs used, the skipped ones (one line
    each, ``PATH: reason``), warnings, and the error that makes the folder unusable (if any)."""

    folder: Path
    n_images: int = 0
    n_masks: int = 0
    split: dict[str, int] = field(default_factory=dict)
    source: str = ""
    bad: list[str] = field(default_factory=list)
    used: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    orphans: int = 0  # lines of ``bad`` that are masks without an image (not pairs)
    inverted: int = 0  # usable masks that look inverted (:func:`looks_inverted`)
    error: Optional[str] = None  # the folder (or its split) cannot be used
    cut: Optional[dict] = None  # the seeded cut made again over the usable pairs (training_sets' reseed)

    @property
    def n_good(self) -> int:
        return self.n_images - (len(self.bad) - self.orphans)

    @property
    def usable(self) -> bool:
        return self.error is None and self.n_good > 0

    def text(self) -> str:
        """A few lines: counts, split, pairs used, the skipped pairs grouped by reason, warnings, error."""
        if self.error and not self.n_images:
            return f"✗ {self.error}"
        split = " / ".join(f"{self.split.get(s, 0)} {s}" for s in SPLITS)
        lines = [f"{self.n_images} images · {self.n_masks} masks · {len(self.bad)} bad pairs",
                 f"split ({SOURCE_TEXT.get(self.source, self.source)}): {split}"]
        if self.used:
            lines.append("used: " + " / ".join(f"{n} {part}" for part, n in self.used.items()))
        for reason, names in group_skips(self.bad):
            lines.append(f"✗ skipped {len(names)} × {reason}: {listed(names, MAX_LISTED)}")
        lines += [f"⚠ {w}" for w in self.warnings]
        if self.error:
            lines.append(f"✗ {self.error}")
        return "\n".join(lines)


def _short(message: str, root: Path) -> str:
    """The message with the data folder's path left out (names stay relative to it)."""
    return message.replace(f"{root}/", "").replace(str(root), ".")


def group_skips(lines: list[str]) -> list[tuple[str, list[str]]]:
    """``"PATH: reason"`` lines → [(reason, [file names])], the largest group first.  Reasons that differ
    only in numbers (sizes) or in the file's own name are one group, shown as the first of them (its
    name as ``<name>``)."""
    groups: dict[str, tuple[str, list[str]]] = {}
    for line in lines:
        path, sep, reason = line.partition(": ")
        if not sep:
            path, reason = "", line
        stem = Path(path).stem
        shown = re.sub(rf"(?<=/){re.escape(stem)}(?=\.)", "<name>", reason) if stem else reason  # masks/<name>.png
        groups.setdefault(re.sub(r"\d+", "#", shown), (shown, []))[1].append(Path(path).name or "?")
    return sorted(groups.values(), key=lambda g: -len(g[1]))


def looks_inverted(mask: np.ndarray) -> bool:
    """True for a (H, W) bool mask that looks like lung = 0 on background = 255: white along most of the
    image's edge (:data:`INVERTED_EDGE`), or black holes enclosed by white that cover a lung-sized share of
    the image (:data:`INVERTED_HOLES`).  A film cropped to its lung box has lungs touching all four borders
    at a few points only, and no holes: it is not inverted."""
    step = max(1, max(mask.shape) // 512)  # shares of area and edge: a 512-px view is plenty
    small = np.asarray(mask[::step, ::step], dtype=bool)
    edge = np.concatenate([small[0], small[-1], small[1:-1, 0], small[1:-1, -1]])
    if edge.size and edge.mean() >= INVERTED_EDGE:
        return True
    holes = ndi.binary_fill_holes(small) & ~small
    return bool(holes.mean() >= INVERTED_HOLES)


def unknown_names(pairs: dict[str, Pair], split: dict) -> list[str]:
    """The names of ``split`` (train, val, test) that are no image of the folder, in order."""
    return [name for s in SPLITS for name in split.get(s, []) if name not in pairs]


def inverted_problem(inverted: list[str], n_masks: int, as_given: bool = False) -> Optional[str]:
    """One line refusing a run whose every usable mask looks inverted (training would learn the background),
    naming the way through for masks that are right (``as_given``: no refusal), or None."""
    if as_given or not n_masks or len(inverted) < n_masks:
        return None
    return (f"all {n_masks} usable masks look inverted ({INVERTED_WHY}); masks need lung = 255 (white) on "
            f"background = 0 (black): invert them and check again, or, {MASKS_AS_GIVEN}")


def _warnings(inverted: list[str], n_masks: int, bad: list[str], unknown: list[str] = (),
              as_given: bool = False) -> list[str]:
    out = []
    if unknown:
        shown = ", ".join(unknown[:MAX_LISTED]) + (" …" if len(unknown) > MAX_LISTED else "")
        out.append(f"split.json names {len(unknown)} image(s) that are not in the folder ({shown}); "
                   "they are left out (names are file names without the extension)")
    if inverted and not inverted_problem(inverted, n_masks, as_given):  # all inverted: the refusal says it
        shown = ", ".join(inverted[:MAX_LISTED]) + (" …" if len(inverted) > MAX_LISTED else "")
        given = "; used as given, as asked (--masks-as-given)" if as_given else \
            f"; left out: masks need lung = 255 (white) on background = 0 (black); {MASKS_AS_GIVEN}"
        out.append(f"{len(inverted)} of {n_masks} masks look inverted ({INVERTED_WHY}: {shown}){given}")
    groups = group_skips(bad)
    if len(bad) >= 2 and len(groups) == 1:
        out.append(f"every skipped pair ({len(bad)}) fails for the same reason ({groups[0][0]}): "
                   "the way these files were exported is likely at fault; fix it and check again")
    return out


def reading_notes(root: Path, pairs: list[Pair]) -> list[str]:
    """How the loaded ``pairs`` of ``root`` were read where it is not plain images/ + masks/: the folders chosen
    (:func:`~napari_adaqat.data.layout.layout_note`), masks joined from one folder per lung, films resampled onto
    their masks' grid (masks saved at another size: ``film_shape``).  One line each."""
    notes = [note] if (note := layout_note(root)) else []
    joined = next((pair for pair in pairs if pair.parts), None)
    if joined is not None:
        folders = " and ".join(f"{path.parent.name}/" for path in (joined.mask, *joined.parts))
        notes.append(f"each reference mask joins the masks of {folders} (one folder per lung)")
    moved = [p for p in pairs if p.film_shape]
    if moved:
        notes.append(f"{len(moved)} film(s) are used on their masks' grid: the masks are the films' shape at another "
                     f"size (e.g. {moved[0].name}: {'×'.join(map(str, moved[0].film_shape))} px, resampled to its "
                     "mask's size)")
    return notes


def split_problem(train: list[str], val: list[str], allow_overlap: bool = False,
                  source: str = "seeded") -> Optional[str]:
    """Why a split of usable pair names cannot be trained on (one line, saying what to do for the split's
    ``source``: :func:`~.dataset.split_source`), or None."""
    if not train:
        return None  # reported as "no usable training pairs"
    if not val:
        empty = f"the validation set is empty ({len(train)} usable training image(s)); "
        if source == "layout":  # (Kaggle's train/ + test/: no val/)
            return empty + ("the folder's train/, val/, test/ layout has no usable val/ films: add a val/ folder "
                            "(a few films with their masks, as in train/), so that validation uses films the model "
                            "does not train on")
        if source == "split.json":
            return empty + ("split.json's 'val' list names no usable image (names are file names without the "
                            "extension): list a few films there that are not in 'train'")
        return empty + ("a run needs at least 3 usable images for the seeded 80:10:10 cut (or a split.json with a "
                        "'val' list), so that validation uses images the model does not train on")
    overlap = sorted(set(train) & set(val))
    if overlap and not allow_overlap:
        shown = ", ".join(overlap[:MAX_LISTED]) + (" …" if len(overlap) > MAX_LISTED else "")
        return (f"{len(overlap)} of {len(val)} validation images are also training images ({shown}); validation "
                f"must use other images: fix split.json (or set \"{OVERLAP_KEY}\": true in it to do this on purpose)")
    return None


def orphan_masks(root: Path, pairs: dict[str, Pair]) -> list[str]:
    """One ``"PATH: mask without an image …"`` line per mask file that no image of the dataset uses."""
    used = {p.mask.resolve() for p in pairs.values() if p.mask is not None}
    used |= {p.image.resolve() for p in pairs.values()}  # (a masks/ that is images/ holds the films too)
    places = [dataset_folders(folder) for folder in pair_places(root)]
    lines = []
    for films_folder, folder in places:
        films = films_folder.name
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                if path.is_file() and is_mask_file(path) and not path.name.startswith(".") \
                        and path.resolve() not in used:
                    second = _second_mask(path, pairs)
                    lines.append(f"{path}: {second}" if second else f"{path}: mask without an image (expected {films}/{sample_name(path)}.png or another "
                                 "image format)")
    return lines


def _second_mask(path: Path, pairs: dict[str, Pair]) -> str:
    """``"a second mask of its film …"`` for a mask file left over whose name less a mask suffix (``X_mask.png``,
    ``X-seg.png``) is a film that already has another mask (``X.png``), else ``""`` (one reason: grouped)."""
    name = sample_name(path)
    for end in MASK_SUFFIXES:
        if name.casefold().endswith(end) and len(name) > len(end):
            pair = pairs.get(name[: -len(end)])
            if pair is not None and pair.mask is not None:
                return "a second mask of its film (the film's other mask is used, not this one)"
    return ""


def shadowed_images(root: Path, pairs: dict[str, Pair]) -> list[str]:
    """One line per image file left out because another image has its name (``a.png`` beside ``a.jpg``): a
    dataset is keyed by name, so only one of them is a film."""
    used = {p.image.resolve() for p in pairs.values()}
    lines = []
    for folder in [dataset_folders(place)[0] for place in pair_places(root)]:
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                name = sample_name(path)
                if path.is_file() and is_image_file(path) and not path.name.startswith(".") \
                        and path.resolve() not in used and name in pairs:
                    lines.append(f"{path}: left out: {pairs[name].image.name} has the same name; rename one to use both")
    return lines


def _check(pairs: list[Pair]) -> tuple[list[Pair], list[str], list[str], int]:
    """(good pairs, one line per bad pair, names of masks that look inverted, how many other good masks are not
    two lungs side by side (:func:`two_lungs`)), each pair read once."""
    good, bad, inverted, odd = [], [], [], 0
    for pair in pairs:
        try:
            _image, mask = load_pair(pair)
        except DataError as exc:
            bad.append(str(exc))
            continue
        good.append(pair)
        if looks_inverted(mask):
            inverted.append(pair.name)
        elif not two_lungs(mask):
            odd += 1
    return good, bad, inverted, odd


def _leave_out_inverted(inverted: list[str], n_good: int, as_given: bool) -> bool:
    """Whether the masks that look inverted are left out of training and validation: some (not all, which is
    refused: :func:`inverted_problem`), and not ``as_given``."""
    return bool(inverted) and not as_given and not inverted_problem(inverted, n_good)


def _recut_note(n_usable: int) -> str:
    return (f"the seeded cut was made again over the {n_usable} usable pairs, so that the pairs left out do not "
            "empty validation")


def _not_lungs(odd: int, n_masks: int) -> list[str]:
    """The warning where half the usable masks or more are not two lungs side by side (:func:`two_lungs`)."""
    if n_masks < 2 or odd * 2 < n_masks:
        return []
    return [f"{odd} of {n_masks} masks are not two lungs side by side (one region, or regions one above the "
            "other): is each mask both lungs (lung = white) of its very film? A heart, one lung or a rotated mask "
            "trains a model of that"]


def two_lungs(mask: np.ndarray) -> bool:
    """Whether a (H, W) bool mask holds two lungs side by side: its two largest regions each at least a fifth of
    its area, and one's middle column outside the other's columns (a heart, one lung, lungs one above the other
    as in a mask rotated against its film: not).  Looked at on a view of at most ~256 px."""
    small = mask[:: max(1, max(mask.shape) // 256), :: max(1, max(mask.shape) // 256)]
    regions, n = ndi.label(small)
    if n < 2:
        return False
    sizes = np.bincount(regions.ravel())[1:]
    first, second = np.argsort(sizes)[::-1][:2] + 1
    if sizes[second - 1] < 0.2 * sizes.sum():
        return False
    a, b = (np.nonzero(regions == r)[1] for r in (first, second))
    return bool(np.median(a) < b.min() or np.median(b) < a.min() or np.median(a) > b.max() or np.median(b) > a.max())


def training_sets(data: str | Path, pairs: dict[str, Pair], split: dict, masks_as_given: bool = False,
                  reseed: Optional[int] = None) -> tuple[dict[str, list[Pair]], DataReport]:
    """The usable train and val pairs of ``split`` and the report ``adaqat train`` prints.  Masks that look
    inverted are left out (as evaluate leaves them out), unless ``masks_as_given`` or all of them do (refused).
    ``reseed``: ``split`` is the folder's seeded cut with this seed; where pairs are left out, the cut is made
    again over the usable pairs (``report.cut``), so that one bad validation mask does not empty validation.

    Raises :class:`DataError` (one line; its ``report`` the data check so far) when no training pair is usable,
    when every mask looks inverted (unless ``masks_as_given``), or when the validation set is empty or overlaps
    the training set (:func:`split_problem`)."""
    root = Path(data)
    report = DataReport(root, n_images=len(pairs), n_masks=sum(p.mask is not None for p in pairs.values()),
                        split={s: sum(n in pairs for n in split.get(s, [])) for s in SPLITS}, source=split_source(root))
    parts = ("train", "val") + (("test",) if reseed is not None else ())
    sets, inverted, odd = {}, [], 0
    for part in parts:
        good, bad, flipped, not_lungs = _check([pairs[n] for n in split.get(part, []) if n in pairs])
        sets[part], odd = good, odd + not_lungs
        report.bad += [_short(b, root) for b in bad if _short(b, root) not in report.bad]
        inverted += [n for n in flipped if n not in inverted]
    n_good = len({p.name for part in parts for p in sets[part]})
    left_out = _leave_out_inverted(inverted, n_good, masks_as_given)
    if left_out:  # (the warning names them)
        sets = {part: [p for p in sets[part] if p.name not in inverted] for part in parts}
    if reseed is not None and (report.bad or left_out):
        usable = {p.name: p for part in parts for p in sets[part]}
        report.cut = make_split(sorted(usable), reseed)
        sets = {part: [usable[n] for n in report.cut[part]] for part in parts}
    orphans = orphan_masks(root, pairs)
    report.bad += [_short(b, root) for b in orphans + shadowed_images(root, pairs)]
    report.orphans = len(orphans)
    report.used = {part: len(sets[part]) for part in ("train", "val")}
    unknown = unknown_names(pairs, split)
    n_used = len({p.name for part in ("train", "val") for p in sets[part]})  # a pair in both (overlap) once
    report.warnings = _warnings(inverted, n_good, report.bad, unknown, masks_as_given) + _not_lungs(odd, n_good)
    if report.cut is not None:
        report.warnings.append(_recut_note(len(usable)))
    report.warnings += reading_notes(root, sets["train"] + sets["val"])
    report.inverted = len(inverted)
    if not sets["train"]:
        why = report.warnings[0] if unknown else report.bad[0] if report.bad else ""
        raise _refused(report, f"{data}: no usable training pairs" + (f" ({why})" if why else ""))
    problem = inverted_problem(inverted, n_good, masks_as_given) or split_problem(
        [p.name for p in sets["train"]], [p.name for p in sets["val"]], bool(split.get(OVERLAP_KEY)), report.source)
    if problem:
        raise _refused(report, f"{data}: {problem}")
    return sets, report


def _refused(report: DataReport, line: str) -> DataError:
    """The DataError of a refused folder, carrying its data check (``report``: printed before the line)."""
    error = DataError(line)
    error.report = report  # type: ignore[attr-defined]
    return error


def check_data(folder: str | Path, seed: int = 0, masks_as_given: bool = False) -> DataReport:
    """Discover ``folder`` as training would and check every pair (image readable, mask present, same
    size, not empty, not inverted unless ``masks_as_given``) and the split. Never raises for a bad folder:
    the report carries the error."""
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
    good, bad, inverted, odd = _check(list(pairs.values()))
    orphans = orphan_masks(root, pairs)
    report.bad = [_short(w, root) for w in bad + orphans + shadowed_images(root, pairs)]
    report.orphans = len(orphans)
    usable = {p.name for p in good}
    if _leave_out_inverted(inverted, len(good), masks_as_given):
        usable -= set(inverted)  # left out, as training leaves them out
    unknown = unknown_names(pairs, split)
    report.warnings = _warnings(inverted, len(good), report.bad, unknown, masks_as_given) + _not_lungs(
        odd, len(good)) + reading_notes(root, good)
    if report.source == "seeded" and len(usable) < len(pairs):  # as training_sets(reseed=seed) cuts them
        split = {**split, **make_split(sorted(usable), seed)}
        report.warnings.append(_recut_note(len(usable)))
    train = [n for n in split["train"] if n in usable]
    val = [n for n in split["val"] if n in usable]
    report.used = {"train": len(train), "val": len(val)}
    report.inverted = len(inverted)
    problem = inverted_problem(inverted, len(good), masks_as_given) or split_problem(
        train, val, bool(split.get(OVERLAP_KEY)), report.source)
    if good and not train and not problem:  # (with no good pair at all, the skips say why)
        problem = "no usable training pairs" + (" (the split's names are not in the folder)" if unknown else "")
    if problem:
        report.error = problem
    return report
