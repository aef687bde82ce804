"""Input folders and the one rule for output folders: never inside an input (nothing is overwritten),
and writable before any work starts."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from napari_adaqat.io import IMAGE_SUFFIXES, is_image_file, sample_name
from napari_adaqat.io.dicom_open import is_dicomdir_name


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Expand folders (non-recursive, image files only, sorted); files are kept as given.

    Symbolic links are followed for files and folders; links to sub-folders, link loops and
    other non-files in a folder are skipped (nothing recurses, so nothing can loop), except a
    broken link or link loop with an image name, which is kept so that it is reported.
    """
    return scan_inputs(inputs)[0]


def scan_inputs(inputs: list[str | Path]) -> tuple[list[Path], list[Path]]:
    """(:func:`collect_inputs`, what the folders hold besides: their visible files that are not images this
    tool reads (a GIF, a WebP, a spreadsheet...) and their sub-folders, sorted), in one pass over each folder
    (an extension-less file is opened once to look for DICOM).  Hidden entries (``.DS_Store``) are not listed.
    A file named twice (``scans/ scans/a.png``, ``a.png ./a.png``) is listed once, where it first came."""
    files: list[Path] = []
    skipped: list[Path] = []
    for item in inputs:
        path = Path(item)
        try:
            folder = path.is_dir()
        except OSError:  # e.g. a name too long for the file system: that input's row says so, the run goes on
            folder = False
        if not folder:
            files.append(path)
            continue
        found = []
        for entry in sorted(path.iterdir()):
            if _is_input(entry):
                found.append(entry)
            elif not entry.name.startswith(".") and (entry.is_file() or entry.is_dir()):
                skipped.append(entry)
        masks = _masks_beside_films(found)
        beside = set(masks)  # (a set: a folder of 10,000 films and their masks is not 10^8 comparisons)
        files += [entry for entry in found if entry not in beside]
        skipped += masks
    unique: dict[str, Path] = {}
    for path in files:
        unique.setdefault(os.path.abspath(path), path)
    return list(unique.values()), skipped


MASK_END = "_mask"  # what adaqat segment and most exports append to a film's name for its mask


def _masks_beside_films(entries: list[Path]) -> list[Path]:
    """The ``NAME_mask.<ext>`` files of a folder's images that lie beside their film ``NAME.<ext>`` (an export
    of films with their masks, the bundled sample): masks, not films to segment."""
    stems = {sample_name(p).casefold() for p in entries}
    return [p for p in entries if sample_name(p).casefold().endswith(MASK_END)
            and sample_name(p).casefold()[: -len(MASK_END)] in stems]


def describe_skipped(entries: list[Path], shown: int = 3) -> str:
    """One line for the second list of :func:`scan_inputs`: how many, of which kinds, the first names."""
    folders = [p for p in entries if p.is_dir()]
    masks = [p for p in entries if not p.is_dir() and is_image_file(p)]  # (an image is skipped as a film's mask)
    listed = set(masks)
    files = [p for p in entries if not p.is_dir() and p not in listed]
    parts = []
    if masks:
        names = ", ".join(p.name for p in masks[:shown]) + (", ..." if len(masks) > shown else "")
        parts.append(f"{len(masks)} mask{'s' * (len(masks) != 1)} beside {'its film' if len(masks) == 1 else 'their films'}"
                     f" (NAME{MASK_END} beside NAME), not segmented: {names}")
    if files:
        kinds = sorted({"DICOMDIR, an export's index" if is_dicomdir_name(p) else p.suffix.lower() or "no extension"
                        for p in files})
        names = ", ".join(p.name for p in files[:shown]) + (", ..." if len(files) > shown else "")
        what = "file that is not an image" if len(files) == 1 else "files that are not images"
        parts.append(f"{len(files)} {what} adaqat reads ({', '.join(kinds)}; it reads "
                     f"{', '.join(IMAGE_SUFFIXES)} and DICOM under any name): {names}")
    if folders:
        names = ", ".join(p.name for p in folders[:shown]) + (", ..." if len(folders) > shown else "")
        parts.append(f"{len(folders)} sub-folder{'s' * (len(folders) != 1)}, not looked into "
                     f"(choose the folder of the films itself): {names}")
    return "; ".join(parts)


def _is_input(path: Path) -> bool:
    if path.is_file():
        return is_image_file(path)
    return path.is_symlink() and not path.exists() and path.suffix.lower() in IMAGE_SUFFIXES


def check_output_folder(out_dir: str | Path, inputs: list[str | Path], *, option: str = "--out",
                        what: str = "input folder") -> None:
    """Refuse an output folder that is, or lies inside, one of ``inputs`` (a file counts as its folder),
    or that cannot be written (checked by creating and removing a hidden file in it, or in the
    nearest folder above it that exists).

    Raises ValueError ``"{option} OUT is inside the {what} IN; choose another folder"`` or
    ``"{option} OUT: cannot write there (REASON)"``.
    """
    out = _resolve(out_dir)
    for item in inputs:
        if not os.path.lexists(item):
            continue  # a missing input is reported as "not found" where it is read, not as this folder's parent
        folder = _resolve(item)
        folder = folder if folder.is_dir() else folder.parent
        if out == folder or folder in out.parents:
            raise ValueError(f"{option} {out_dir} is inside the {what} {folder}; choose another folder")
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
