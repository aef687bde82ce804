"""Input folders and the one rule for output folders: never inside an input (nothing is overwritten)."""
from __future__ import annotations

from pathlib import Path

from napari_adaqat.io import is_image_file


def collect_inputs(inputs: list[str | Path]) -> list[Path]:
    """Expand folders (non-recursive, image files only, sorted); files are kept as given."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p)))
        else:
            files.append(path)
    return files


def check_output_folder(out_dir: str | Path, inputs: list[str | Path], *, option: str = "--out",
                        what: str = "input folder") -> None:
    """Refuse an output folder that is, or lies inside, one of ``inputs`` (a file counts as its folder).

    Raises ValueError ``"{option} OUT is inside the {what} IN; choose another folder"``.
    """
    out = Path(out_dir).resolve()
    for item in inputs:
        folder = Path(item).resolve()
        folder = folder if folder.is_dir() else folder.parent
        if out == folder or folder in out.parents:
            raise ValueError(f"{option} {out_dir} is inside the {what} {folder}; choose another folder")
