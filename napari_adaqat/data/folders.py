"""Input folders and the one rule for output folders: never inside an input (nothing is overwritten),
and writable before any work starts."""
from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

from napari_adaqat.data.dataset import MASK_SUFFIXES, masks_beside_films
from napari_adaqat.data.layout import first_entries, is_adaqat_output, is_mask_name
from napari_adaqat.io import IMAGE_SUFFIXES, ImageReadError, is_image_file, read_mask, sample_name
from napari_adaqat.io.dicom_open import is_dicomdir_name
from napari_adaqat.io.images import RAW_FILMS, READ_BY_NAME_OR_CONTENT, raw_film_hint
from napari_adaqat.io.jsrt import JSRT_SUFFIX
from napari_adaqat.io.masks import is_mask_file
from napari_adaqat.util.text import pairing_key


def collect_inputs(inputs: list[str | Path], recursive: bool = False) -> list[Path]:
    """Expand folders (image files only, sorted; ``recursive``: their sub-folders too); files are kept as given.

    Symbolic links are followed for files and folders given; links to sub-folders, link loops and
    other non-files in a folder are skipped (no link is recursed into, so nothing can loop), except a
    broken link or link loop with an image name, which is kept so that it is reported.
    """
    return scan_inputs(inputs, recursive)[0]


MASK, OTHER_FILE, MASK_FOLDER, LINKED, FOLDER, UNREADABLE, HIDDEN, SPECIAL = (
    "mask", "file", "mask folder", "linked folder", "folder", "unreadable folder", "hidden film",
    "special file")  # skipped: what (SPECIAL: a FIFO, socket or device, never opened: a FIFO would block)


class Skipped(list):
    """The second list of :func:`scan_inputs` (a ``list[Path]``) that also knows what each entry is (``kinds``:
    path → :data:`MASK`, :data:`OTHER_FILE`... as the scan decided; ``reasons``: why a folder could not be
    listed), so that :func:`describe_skipped` opens nothing again."""

    def __init__(self) -> None:
        super().__init__()
        self.kinds: dict[Path, str] = {}
        self.reasons: dict[Path, str] = {}  # (a special file's: what it is, "a FIFO")
        self.raw_film: tuple[Path, str] | None = None  # the first headerless raw film met (JSRT's .IMG), its hint

    def add(self, path: Path, kind: str) -> None:
        self.append(path)
        self.kinds[path] = kind


def scan_inputs(inputs: list[str | Path], recursive: bool = False,
                progress: Optional[Callable[[int], None]] = None) -> tuple[list[Path], list[Path]]:
    """(:func:`collect_inputs`, what the folders hold besides: their visible files that are not images this
    tool reads (a GIF, a WebP, a spreadsheet...), FIFOs, sockets and devices (never opened), the masks beside
    their films (:func:`masks_beside_films`) and the sub-folders not looked into, sorted), in one pass over each folder (an extension-less file is opened
    once to look for DICOM).  Hidden entries (``.DS_Store``) are not listed.  ``recursive`` goes into
    sub-folders (a PACS export's PATIENT/STUDY/SERIES tree), folder by folder in name order, except links to
    folders, folders of masks (:func:`is_mask_folder`) and sub-folders that cannot be listed (permission denied:
    the rest is scanned; an input folder that cannot be listed raises OSError), which are listed as skipped.
    The second list is a :class:`Skipped`, which records what each entry is.  A file named twice
    (``scans/ scans/a.png``, ``a.png ./a.png``) is listed once, where it first came.  ``progress(n)`` is called
    as each entry of a folder is looked at (``n``: how many so far), e.g. to show a big tree's scan or to stop it
    (whatever it raises ends the scan)."""
    files: list[Path] = []
    skipped = Skipped()
    seen = [0]

    def tick() -> None:
        seen[0] += 1
        if progress is not None:
            progress(seen[0])

    for item in inputs:
        path = Path(item)
        try:
            folder = path.is_dir()
        except OSError:  # e.g. a name too long for the file system: that input's row says so, the run goes on
            folder = False
        if folder:
            _scan_folder(path, recursive, files, skipped, tick)
        else:
            files.append(path)
    unique: dict[str, Path] = {}
    for path in files:
        unique.setdefault(os.path.abspath(path), path)
    return list(unique.values()), skipped


def _scan_folder(folder: Path, recursive: bool, files: list[Path], skipped: Skipped,
                 tick: Callable[[], None], top: bool = True) -> None:
    """One folder's films into ``files``, the rest into ``skipped`` with its kind; then (``recursive``) its
    sub-folders (one that cannot be listed is skipped, not raised). ``tick()`` before each entry."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        if top:
            raise
        skipped.add(folder, UNREADABLE)
        skipped.reasons[folder] = (exc.strerror or type(exc).__name__).lower()
        return
    found, below = [], []
    for entry in entries:
        tick()
        if entry.name.startswith("."):  # (a sync tool's copy, macOS's ._NAME: not the user's films)
            if entry.is_file() and is_image_file(entry):
                skipped.add(entry, HIDDEN)  # said, not segmented (.DS_Store and the like: not even said)
            continue
        if _is_input(entry):
            found.append(entry)
        elif entry.is_dir():
            kind = LINKED if entry.is_symlink() else MASK_FOLDER if is_mask_folder(entry) else FOLDER
            if recursive and kind == FOLDER:
                below.append(entry)
            else:
                skipped.add(entry, kind)
        elif entry.is_file():
            skipped.add(entry, OTHER_FILE)
            if skipped.raw_film is None and _raw_size(entry):
                hint = raw_film_hint(entry)
                skipped.raw_film = (entry, hint) if hint else None
        elif special := special_kind(entry):  # (a broken link or link loop with another name: not listed)
            skipped.add(entry, SPECIAL)
            skipped.reasons[entry] = special
    masks = masks_beside_films(found)
    beside = set(masks)  # (a set: a folder of 10,000 films and their masks is not 10^8 comparisons)
    files += [entry for entry in found if entry not in beside]
    for mask in masks:
        skipped.add(mask, MASK)
    for sub in below:
        _scan_folder(sub, recursive, files, skipped, tick, top=False)


MASK_END = "_mask"  # what adaqat segment and most exports append to a film's name for its mask


def films_in_output(out_dir: Path, look: int = 200) -> list[Path]:
    """Images in an output folder that are not masks by their name (``NAME_mask``, ``NAME_seg``...), among its first
    ``look`` entries: films there would be passed over with it by a later recursive run (a folder with a
    ``results.csv`` is a folder of masks).  A look, not a listing."""
    names = [p for p in first_entries(out_dir, look) if p.is_file() and not p.name.startswith(".")]

    def mask_named(path: Path) -> bool:  # (NAME_mask_2.png: a mask numbered where NAME_mask.png was taken)
        stem = re.sub(r"_\d+$", "", path.stem).casefold()
        return any(stem.endswith(end) for end in MASK_SUFFIXES)

    return [p for p in names if not mask_named(p) and is_image_file(p)]


def is_mask_folder(folder: Path) -> bool:
    """A folder of masks, not of films: an ``adaqat segment`` output (:func:`~.layout.is_adaqat_output`), or one
    named as masks (:func:`~napari_adaqat.data.layout.is_mask_name`: ``masks/``, Shenzhen's ``mask/``, Montgomery's
    ``ManualMask/``, ``labelsTr/``, ``GT/``) whose first image (in it or a folder of it) reads as a mask, or that
    holds none.  A recursive scan does not go into it; ``site_gt_hospital/`` holding films is gone into."""
    if is_adaqat_output(folder):
        return True
    if not is_mask_name(folder.name):
        return False
    places = [folder] + [p for p in first_entries(folder) if p.is_dir()]
    first = next((f for place in places for f in first_entries(place) if f.is_file() and is_mask_file(f)), None)
    if first is None:
        return True
    try:
        read_mask(first, lung_labels=True)
    except ImageReadError:  # (a film: many grey levels)
        return False
    return True


def mirror_folder(path: Path, roots: Sequence[Path]) -> Path:
    """Where ``path``'s output goes under an output folder: its folder relative to the first of ``roots`` (the
    input folders of a recursive run) that holds it, so that the outputs mirror the input tree; else ``.``.
    With several roots, each one's tree goes under its :func:`root_labels` folder (``export/P1/S1``,
    ``export_2/P1/S1``): two sites' trees of one shape stay two mirrors."""
    labels = root_labels(roots)
    for root in labels:
        if root in path.parents:
            inner = path.parent.relative_to(root)
            return Path(labels[root], inner) if len(labels) > 1 else inner
    return Path(".")


def root_labels(roots: Sequence[Path]) -> dict[Path, str]:
    """{root: the folder its tree goes under} for the distinct ``roots`` (one folder named twice counts once), in
    the order given: each root's own name; a name taken already (case-insensitively) gets ``_2``, ``_3``..."""
    labels: dict[Path, str] = {}
    taken: set[str] = set()
    seen: set[str] = set()
    for root in roots:
        where = os.path.abspath(root)
        if where in seen:
            continue
        seen.add(where)
        name = os.path.basename(where) or "input"  # ("/": no name)
        label, n = name, 1
        while label.casefold() in taken:
            n += 1
            label = f"{name}_{n}"
        taken.add(label.casefold())
        labels[root] = label
    return labels


def describe_skipped(entries: list[Path], shown: int = 3, recurse_hint: str = "") -> str:
    """One line for the second list of :func:`scan_inputs`: how many, of which kinds, the first names.
    ``recurse_hint`` (``"use --recursive"``) is said of skipped sub-folders that hold films."""
    def listing(paths: list[Path]) -> str:
        return ", ".join(p.name for p in paths[:shown]) + (", ..." if len(paths) > shown else "")

    def many(n: int, word: str) -> str:
        return f"{n} {word}{'s' * (n != 1)}"

    recorded: dict[Path, str] = getattr(entries, "kinds", {})  # (a Skipped: the scan's word, nothing read again)
    kinds = {p: recorded.get(p) or entry_kind(p) for p in entries}
    linked, of_masks, plain, masks, files, unreadable, hidden, special = (
        [p for p in entries if kinds[p] == kind]
        for kind in (LINKED, MASK_FOLDER, FOLDER, MASK, OTHER_FILE, UNREADABLE, HIDDEN, SPECIAL))
    reasons: dict[Path, str] = getattr(entries, "reasons", {})
    parts = []
    if masks:
        ends = sorted({next((s for s in MASK_SUFFIXES if sample_name(p).casefold().endswith(s)), MASK_END)
                       for p in masks})
        parts.append(f"{many(len(masks), 'mask')} beside {'its film' if len(masks) == 1 else 'their films'}"
                     f" ({', '.join(f'NAME{e}' for e in ends)} beside NAME), not segmented: {listing(masks)}")
    if files:
        kinds = sorted({"DICOMDIR, an export's index" if is_dicomdir_name(p) else p.suffix.lower() or "no extension"
                        for p in files})
        what = "file that is not an image" if len(files) == 1 else "files that are not images"
        raw = entries.raw_film if isinstance(entries, Skipped) else next(  # (JSRT's .IMG films)
            ((p, hint) for p in files[:20] if (hint := raw_film_hint(p))), None)
        parts.append(f"{len(files)} {what} adaqat reads ({', '.join(kinds)}; it reads "
                     f"{READ_BY_NAME_OR_CONTENT}): {listing(files)}"
                     + (f" ({raw[0].name} and the like: {raw[1]})" if raw else ""))
    if special:
        what = ", ".join(sorted({reasons.get(p) or special_kind(p) or "a FIFO, socket or device" for p in special}))
        parts.append(f"{len(special)} {'entry that is' if len(special) == 1 else 'entries that are'} not a regular "
                     f"file ({what}), not read: {listing(special)}")
    if hidden:
        parts.append(f"{many(len(hidden), 'hidden film')} (a name starting with a dot), not segmented; rename "
                     f"{'it' if len(hidden) == 1 else 'them'} to segment {'it' if len(hidden) == 1 else 'them'}: "
                     f"{listing(hidden)}")
    if of_masks:
        parts.append(f"{many(len(of_masks), 'folder')} of masks (an adaqat output with its results.csv, or named as "
                     f"masks), not segmented: {listing(of_masks)}")
    if linked:
        parts.append(f"{many(len(linked), 'linked folder')}, not followed: {listing(linked)}")
    if plain:
        with_films = recurse_hint and _has_films_below(plain)
        why = f"{recurse_hint} to segment the films in them" if with_films else "choose the folder of the films itself"
        part = f"{many(len(plain), 'sub-folder')}, not looked into ({why}): {listing(plain)}"
        parts.insert(0 if with_films else len(parts), part)  # what to do first
    if unreadable:
        why = ", ".join(sorted({reasons.get(p, "permission denied") for p in unreadable}))
        shown_paths = ", ".join(map(str, unreadable[:shown])) + (", ..." if len(unreadable) > shown else "")
        parts.append(f"{len(unreadable)} sub-folder{'s' * (len(unreadable) != 1)} that cannot be read ({why}): "
                     f"{shown_paths}")
    return "; ".join(parts)


def _raw_size(path: Path) -> bool:
    """Whether ``path`` has the size of a headerless raw film (:data:`~napari_adaqat.io.images.RAW_FILMS`)."""
    try:
        return path.stat().st_size in RAW_FILMS
    except OSError:
        return False


def special_kind(path: Path) -> str:
    """``"a FIFO"``, ``"a socket"`` or ``"a device"`` for such an entry (its link followed), else ``""``: from its
    status alone, never opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    return ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "")


def entry_kind(path: Path) -> str:
    """What a skipped entry is, looked at on disk (for a plain list; a :class:`Skipped` knows it)."""
    if path.is_dir():
        return LINKED if path.is_symlink() else MASK_FOLDER if is_mask_folder(path) else FOLDER
    if special_kind(path):
        return SPECIAL
    if path.name.startswith(".") and is_image_file(path):
        return HIDDEN
    return MASK if is_image_file(path) else OTHER_FILE  # (an image is skipped as a film's mask)


def _has_films_below(folders: list[Path], budget: int = 2000) -> bool:
    """Whether one of ``folders`` or a folder below them holds an image file (looking at ``budget`` files at most:
    a hint, not a scan)."""
    for folder in folders:
        for root, dirs, names in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(names):
                budget -= 1
                if budget < 0:
                    return False
                if not name.startswith(".") and is_image_file(Path(root) / name):
                    return True
    return False


def missing_inputs(inputs: list[str | Path]) -> list[str]:
    """The inputs that do not exist (each gets an error row and the others are segmented, in ``adaqat segment``
    and the Batch dock alike).  When none exists (a mistyped folder) raises ValueError, one line, before anything
    is written: an error row would outlive the typo in every later run into that output folder."""
    def missing(path: str | Path) -> bool:
        try:
            os.lstat(path)
        except FileNotFoundError:
            return True
        except OSError:  # e.g. a name too long for the file system: its row says so
            return False
        return False

    gone = [str(path) for path in inputs if missing(path)]
    if gone and len(gone) == len(inputs):
        more = f" (and {len(gone) - 1} more inputs)" if len(gone) > 1 else ""
        raise ValueError(f"{gone[0]}: no such file or folder{more}; nothing was written")
    return gone


def _is_input(path: Path) -> bool:
    if path.is_file():
        return is_image_file(path)
    return path.is_symlink() and not path.exists() and path.suffix.lower() in IMAGE_SUFFIXES + (JSRT_SUFFIX,)


def check_output_folder(out_dir: str | Path, inputs: list[str | Path], *, option: str = "--out",
                        what: str = "input folder", roots: Sequence[Path] = ()) -> None:
    """Refuse an output folder that is, or lies inside, one of the folders in ``inputs``, or that is the folder
    of a file in ``inputs`` (a folder below it is fine: ``adaqat segment xray.png --out masks`` from the film's
    folder), or that cannot be written (checked by creating and removing a hidden file in it, or in the
    nearest folder above it that exists).  With several ``roots`` (a recursive run's input folders, each
    mirrored under its :func:`root_labels` folder), also one whose mirror folder would be an input folder
    (``adaqat segment scans other -r --out .`` would write into ``./scans``).

    Raises ValueError ``"{option} OUT is inside the {what} IN; choose another folder"``, ``"{option} OUT is the
    folder of the input FILE; …"`` or ``"{option} OUT: cannot write there (REASON)"``.
    """
    out = _resolve(out_dir)
    for item in inputs:
        if not os.path.lexists(item):
            continue  # a missing input is reported as "not found" where it is read, not as this folder's parent
        place = _resolve(item)
        if not place.is_dir():  # a file: not its own folder (the output's bookkeeping would sit beside the films)
            if out == place.parent:
                raise ValueError(f"{option} {out_dir} is the folder of the input {Path(item).name}; choose another "
                                 f"folder, e.g. {option} {Path(out_dir) / 'masks'}")
        elif out == place or place in out.parents:
            raise ValueError(f"{option} {out_dir} is inside the {what} {place}; choose another folder")
    labels = root_labels(roots)
    for root, label in labels.items() if len(labels) > 1 else ():
        mirror = out / label
        for item in inputs:
            place = _resolve(item)
            if os.path.lexists(item) and place.is_dir() and mirror == place:  # (its parents: refused above)
                raise ValueError(f"{option} {out_dir} would put the masks of {root} in {mirror}, the {what} "
                                 f"{place} (several input folders each get a folder of their name there); "
                                 "choose another folder")
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ValueError(f"{option} {out_dir}: cannot write there ({existing} is a file, not a folder)")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".adaqat-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{option} {out_dir}: cannot write there ({exc.strerror or exc})") from None


def _resolve(path: str | Path) -> Path:
    """``Path.resolve()``, or the absolute path for a symbolic link loop (reported when it is read)."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # RuntimeError: "Symlink loop" (Python < 3.13)
        return Path(os.path.abspath(path))
