"""Input folders and the one rule for output folders: never inside an input (nothing is overwritten),
and writable before any work starts."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from napari_adaqat.io import IMAGE_SUFFIXES, is_image_file


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Expand folders (non-recursive, image files only, sorted); files are kept as given.

    Symbolic links are followed for files and folders; links to sub-folders, link loops and
    other non-files in a folder are skipped (nothing recurses, so nothing can loop), except a
    broken link or link loop with an image name, which is kept so that it is reported.
    """
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if _is_input(p)))
        else:
            files.append(path)
    return files


def skipped_files(inputs: list[str | Path]) -> list[Path]:
    """The visible files in the input folders that :func:`collect_inputs` leaves out (not images it
    reads: a GIF, a WebP, a spreadsheet...), sorted; hidden files (``.DS_Store``) are not listed."""
    skipped: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            skipped.extend(sorted(p for p in path.iterdir()
                                  if not p.name.startswith(".") and p.is_file() and not _is_input(p)))
    return skipped


def describe_skipped(files: list[Path], shown: int = 3) -> str:
    """One line for :func:`skipped_files`: how many, of which kinds, and the first names."""
    kinds = sorted({p.suffix.lower() or "no extension" for p in files})
    names = ", ".join(p.name for p in files[:shown]) + (", ..." if len(files) > shown else "")
    what = "file that is not an image" if len(files) == 1 else "files that are not images"
    return (f"{len(files)} {what} it reads "
            f"({', '.join(kinds)}; it reads {', '.join(IMAGE_SUFFIXES)} and DICOM without extension): {names}")


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
