"""Segment many files through the one :class:`~napari_adaqat.inference.engine.Engine`: a generator
that yields one ``results.csv`` row per input.

Used by ``adaqat segment`` (and a batch dock).  The output folder gets one mask per
input (``<stem>_mask.png``) and ``results.csv``; finished files are skipped on a rerun.
"""
from __future__ import annotations

import csv
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from napari_adaqat.inference.engine import Engine, ModelLike
from napari_adaqat.data.boxes import box_for, check_box, default_box
from napari_adaqat.io import read_image, write_mask

RESULT_COLUMNS = ["file", "status", "error", "box", "area_px", "seconds", "mask", "ssim_vs_baseline"]


@dataclass
class ResultRow:
    """One row of ``results.csv``."""

    file: str
    status: str  # "ok" | "error" | "skipped"
    error: str = ""
    box: str = ""
    area_px: int | str = ""
    seconds: float | str = ""
    mask: str = ""
    ssim_vs_baseline: float | str = ""


def _mask_names(files: list[Path], rows: dict[str, dict], out_dir: Path, suffix: str) -> dict[str, str]:
    """A mask file name per input that never collides with another input's mask, in this run or
    an earlier one: a file already in results.csv keeps its name; a new one takes ``STEM_mask``,
    else ``PARENT_STEM_mask``, else ``PARENT_STEM_mask_2``, ... (never an existing file)."""
    names = {key: Path(row["mask"]).name for key, row in rows.items() if row.get("mask")}
    taken = set(names.values())
    for path in files:
        key = str(path)
        if key in names:
            continue
        stem = f"{path.stem}_mask"
        candidates = [stem, f"{path.parent.name}_{stem}"] + [f"{path.parent.name}_{stem}_{i}" for i in range(2, 10_000)]
        name = next(f"{c}{suffix}" for c in candidates
                    if f"{c}{suffix}" not in taken and not (out_dir / f"{c}{suffix}").exists())
        names[key] = name
        taken.add(name)
    return names


def load_results(csv_path: Path) -> dict[str, dict]:
    if not csv_path.is_file():
        return {}
    with csv_path.open(newline="") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


def write_results(csv_path: Path, rows: dict[str, dict]) -> None:
    """Write ``results.csv`` atomically (temp file + rename)."""
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows.values())
    os.replace(tmp, csv_path)


def segment_files(
    files: list[Path],
    model: ModelLike,
    out_dir: Path,
    *,
    boxes: dict[str, np.ndarray] | None = None,
    baseline: ModelLike | None = None,
    suffix: str = ".png",
    clean: bool = True,
    device: str = "cpu",
    engine: Engine | None = None,
) -> Iterator[ResultRow]:
    """Segment ``files`` into ``out_dir``, yielding one :class:`ResultRow` per file.

    A file whose row says ``ok`` and whose mask exists is skipped.  A bad file gives an
    ``error`` row and the rest go on.  ``results.csv`` is rewritten after every file.
    ``clean`` keeps the two largest regions of each mask and fills its holes.
    """
    engine = engine or Engine()
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    rows = load_results(csv_path)
    names = _mask_names(files, rows, out_dir, suffix)
    for path in files:
        key = str(path)
        mask_path = out_dir / names[key]
        previous = rows.get(key)
        if previous and previous.get("status") == "ok" and mask_path.is_file():
            yield ResultRow(file=key, status="skipped", mask=str(mask_path))
            continue
        start = time.perf_counter()
        try:
            image = read_image(path)
            box = box_for(path, boxes or {})
            box = default_box(image.pixels.shape) if box is None else box
            check_box(box, image.pixels.shape)
            segmented = engine.segment(image.pixels, box, model, baseline, device, clean=clean)
            write_mask(mask_path, segmented.mask, overwrite=True)
            result = ResultRow(
                file=key, status="ok", box=" ".join(f"{v:.1f}" for v in box), area_px=int(segmented.mask.sum()),
                mask=str(mask_path),
            )
            if segmented.ssim_mean is not None:
                result.ssim_vs_baseline = round(segmented.ssim_mean, 5)
        except Exception as exc:  # one bad input must not stop the batch; it becomes an error row
            result = ResultRow(file=key, status="error", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        result.seconds = round(time.perf_counter() - start, 4)
        rows[key] = asdict(result)
        write_results(csv_path, rows)
        yield result
