"""The mask file each input of a batch run gets: never another input's, in this run or an earlier one (results.csv),
never an existing file, and a name that says which film it belongs to."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence

from napari_adaqat.data.folders import mirror_folder
from napari_adaqat.inference.journal import csv_text
from napari_adaqat.io import sample_name
from napari_adaqat.io.images import IMAGE_SUFFIXES
from napari_adaqat.io.jsrt import JSRT_SUFFIX

SEG_SUFFIX = ".dcm"  # a DICOM Segmentation object instead of a PNG/TIFF mask


def _name_part(text: str, max_bytes: int) -> str:
    """A piece of a mask file name: valid UTF-8 (undecodable bytes become ``_``), at most ``max_bytes``."""
    clean = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\ufffd", "_")
    return clean.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def recorded_mask(mask: str, out_dir: Path) -> str | None:
    """A results.csv ``mask`` as a path relative to ``out_dir``: as written, or resolved; for a run made from
    another folder or an output folder since moved, the longest tail of it that names a file in ``out_dir``
    (``/old/out/P1/S1/IM0001_mask.png`` → ``P1/S1/IM0001_mask.png``).  None where no tail does: that file is
    segmented again under a fresh name, never into another file's mask."""
    path = Path(mask)
    for inside, base in ((path, out_dir), (path.resolve(), out_dir.resolve())):
        try:
            return str(inside.relative_to(base))
        except ValueError:
            continue
    parts = path.parts
    for start in range(max(0, len(parts) - 64), len(parts)):  # (longest first; 64 levels is any real tree)
        tail = Path(*parts[start:])
        if not tail.is_absolute() and (out_dir / tail).is_file():
            return str(tail)
    return None


def _own_stem(name: str, kind: str) -> str:
    """``NAME_mask`` (``kind``: mask, or seg for a DICOM SEG), the film's own mask name: ``NAME`` cut to 180 bytes
    (+ 1 + 50 + ``_mask_9999`` + the suffix stays within the 255 bytes of a file name)."""
    return f"{_name_part(name, 180)}_{kind}"


def named_after_folder(path: Path, mask: str) -> bool:
    """Whether the mask file ``mask`` of the input ``path`` took a ``PARENT_NAME_…`` name of :func:`mask_names`
    (``NAME_mask`` and ``NAME_EXT_mask`` were taken), not its film's own."""
    name = sample_name(path)
    names = (name, f"{name}_{path.suffix.lower()[1:]}")  # (films of one name in one folder: chest_dcm_mask)
    return Path(mask).stem not in {_own_stem(n, kind) for n in names for kind in ("mask", "seg")}


def mask_names(files: list[Path], rows: dict[str, dict], out_dir: Path, suffix: str,
                roots: Sequence[Path] = ()) -> tuple[dict[str, str], set[str]]:
    """(a mask path relative to ``out_dir`` per input, the inputs whose earlier mask is kept).  No path collides
    with another input's mask, in this run or an earlier one: a file already in results.csv keeps its mask
    (:func:`recorded_mask`; one that two rows claim is neither's), also where names differ only in case (one file
    on a case-insensitive disk); a new one takes ``NAME_mask``, else
    ``PARENT_NAME_mask``, else ``PARENT_NAME_mask_2``, ... (never an existing file; films of one name in one
    folder, ``chest.png`` and ``chest.dcm``, take ``NAME_EXT``: ``chest_png_mask``), in the folder that
    :func:`~napari_adaqat.data.folders.mirror_folder` gives (a recursive run mirrors the input tree:
    ``P1/ST1/SE1/IM0001_mask.png``).  ``NAME`` is :func:`~napari_adaqat.io.sample_name` (the name evaluate
    pairs masks by): an extension-less DICOM export ``1.2.840.113619.2.55.3.1234`` keeps its last UID component."""
    recorded = {key: recorded_mask(row["mask"], out_dir) for key, row in rows.items()
                if row.get("mask") and Path(row["mask"]).name.endswith(suffix)}  # a PNG run does not make a TIF one
    # a name two rows claim (a tail that fits both, or names one in case apart) is neither's: no overwrite
    holders = Counter(name.casefold() for name in recorded.values() if name is not None)
    names = {key: name for key, name in recorded.items() if name is not None and holders[name.casefold()] == 1}
    # compared case-folded: on a macOS, Windows or SMB disk chest_mask.png and CHEST_mask.png are one file
    kept, taken = set(names), {name.casefold() for name in names.values()}
    # films of one name in one folder (chest.png, chest.dcm): each mask says its film's extension, chest_dcm_mask,
    # unless another film there has that name (chest_dcm.png): then NAME_mask, PARENT_NAME_mask, ...
    sample = {path: sample_name(path) for path in files}  # (once a film: an archive holds 100k)
    own = Counter((path.parent, name) for path, name in sample.items())
    kind = "seg" if suffix == SEG_SUFFIX else "mask"
    for path in files:
        key = csv_text(str(path))
        if key in names:
            continue
        name, extension = sample[path], path.suffix.lower()
        with_extension = f"{name}_{extension[1:]}"
        first = [with_extension] if own[path.parent, name] > 1 and extension in IMAGE_SUFFIXES + (JSRT_SUFFIX,) and \
            (path.parent, with_extension) not in own else []
        stem = _own_stem(name, kind)
        parent = _name_part(path.parent.name, 50)
        folder = mirror_folder(path, roots)
        candidates = [_own_stem(n, kind) for n in first] + [stem, f"{parent}_{stem}"] + \
            [f"{parent}_{stem}_{i}" for i in range(2, 10_000)]
        name = next(str(folder / f"{c}{suffix}") for c in candidates
                    if str(folder / f"{c}{suffix}").casefold() not in taken
                    and not (out_dir / folder / f"{c}{suffix}").exists())
        names[key] = name
        taken.add(name.casefold())
    return names, kept
