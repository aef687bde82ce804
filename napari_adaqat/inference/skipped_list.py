"""``OUT/skipped.csv``: every entry of the input folders that a run passed over, with what it is, so that an archive
is audited from its output folder alone (``results.csv`` has a row per film; this file has the rest: the masks
beside their films, files that are no image adaqat reads, folders of masks, sub-folders not looked into...)."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from napari_adaqat.data.folders import (
    FOLDER, HIDDEN, LINKED, MASK, MASK_FOLDER, OTHER_FILE, SPECIAL, UNREADABLE, entry_kind, special_kind,
)
from napari_adaqat.inference.journal import csv_cell
from napari_adaqat.util.atomic import atomic_write_text

SKIPPED_CSV = "skipped.csv"
HEADER = ("file", "what")
WHAT = {
    MASK: "a mask beside its film (NAME_mask beside NAME): not segmented",
    OTHER_FILE: "not an image adaqat reads",
    MASK_FOLDER: "a folder of masks (an adaqat output, or named as masks): not looked into",
    FOLDER: "a sub-folder, not looked into (--recursive goes into sub-folders)",
    LINKED: "a linked folder, not followed",
    UNREADABLE: "a sub-folder that cannot be read",
    HIDDEN: "a hidden film (its name starts with a dot): not segmented",
    SPECIAL: "not a regular file ({}): not read",  # {}: a FIFO, a socket, a device
}


def write_skipped_csv(out_dir: Path, entries: list[Path]) -> Path | None:
    """Write ``out_dir/skipped.csv`` (rows: file, what) for ``entries``, the second list of
    :func:`~napari_adaqat.data.folders.scan_inputs` (this run's list: with none, an earlier list is removed, never
    left stale); returns its path, or None when a ``skipped.csv`` that is not adaqat's is there (left as it is:
    nothing of the user's is overwritten)."""
    path = Path(out_dir) / SKIPPED_CSV
    if path.is_file():
        try:
            with path.open(newline="", encoding="utf-8", errors="replace") as fh:
                if tuple(next(csv.reader(fh), ())) != HEADER:
                    return None
        except OSError:
            return None
    if not entries:
        path.unlink(missing_ok=True)
        return path
    kinds: dict[Path, str] = getattr(entries, "kinds", {})
    reasons: dict[Path, str] = getattr(entries, "reasons", {})
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(HEADER)
    for entry in entries:
        kind = kinds.get(entry) or entry_kind(entry)
        what = WHAT.get(kind, kind)
        if kind == SPECIAL:
            what = what.format(reasons.get(entry) or special_kind(entry) or "a FIFO, socket or device")
        elif entry in reasons:
            what += f" ({reasons[entry]})"
        writer.writerow([csv_cell(str(entry)), what])
    atomic_write_text(path, text.getvalue())
    return path
