"""Segment many files: a generator that yields one result row per input.

Used by ``adaqat segment`` and the batch dock.  The output folder gets one mask per
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

from napari_adaqat.inference.postprocess import clean_lung_mask
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.inference.transforms import default_box
from napari_adaqat.io import is_image_file, read_image, write_mask

RESULT_COLUMNS = ["file", "status", "error", "box", "area_px", "seconds", "mask", "ssim_vs_baseline"]


@dataclass
class SegmentResult:
    file: str
    status: str  # "ok" | "error" | "skipped"
    error: str = ""
    box: str = ""
    area_px: int | str = ""
    seconds: float | str = ""
    mask: str = ""
    ssim_vs_baseline: float | str = ""


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


def check_output_folder(out_dir: Path, inputs: list[str | Path]) -> None:
    """Refuse an output folder that is, or lies inside, an input folder."""
    out = out_dir.resolve()
    for item in inputs:
        folder = Path(item).resolve()
        folder = folder if folder.is_dir() else folder.parent
        if out == folder or folder in out.parents:
            raise ValueError(f"--out {out_dir} is inside the input folder {folder}; choose another folder")


def read_boxes_csv(path: str | Path) -> dict[str, np.ndarray]:
    """``file,x0,y0,x1,y1`` rows → {file name or path: (4,) box}; matched by path, name or stem."""
    boxes: dict[str, np.ndarray] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:  # -sig: CSVs saved by Excel start with a BOM
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                box = np.array([float(row[k]) for k in ("x0", "y0", "x1", "y1")])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}:{line}: expected columns file,x0,y0,x1,y1 with numbers") from None
            try:
                check_box(box)
            except ValueError as exc:
                raise ValueError(f"{path}:{line}: {exc}") from None
            boxes[row["file"]] = box
    return boxes


def check_box(box: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    """Refuse an xyxy box that is not finite, is inverted, or misses the (H, W) image entirely."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not np.isfinite([x0, y0, x1, y1]).all() or x1 <= x0 or y1 <= y0:
        raise ValueError(f"invalid box {x0:g},{y0:g},{x1:g},{y1:g}: needs finite numbers with x1 > x0 and y1 > y0")
    if shape is None:
        return
    h, w = shape
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise ValueError(f"box {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {w}x{h} image")


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


def _box_for(path: Path, boxes: dict[str, np.ndarray]) -> np.ndarray | None:
    for key in (str(path), path.name, path.stem):
        if key in boxes:
            return boxes[key]
    return None


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
    predictor: BoxPredictor,
    out_dir: Path,
    *,
    boxes: dict[str, np.ndarray] | None = None,
    baseline: BoxPredictor | None = None,
    suffix: str = ".png",
    clean: bool = True,
) -> Iterator[SegmentResult]:
    """Segment ``files`` into ``out_dir``, yielding one :class:`SegmentResult` per file.

    A file whose row says ``ok`` and whose mask exists is skipped.  A bad file gives an
    ``error`` row and the rest go on.  ``results.csv`` is rewritten after every file.
    ``clean`` keeps the two largest regions of each mask and fills its holes.
    """
    from napari_adaqat.metrics.ssim import ssim_map

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    rows = load_results(csv_path)
    names = _mask_names(files, rows, out_dir, suffix)
    for path in files:
        key = str(path)
        mask_path = out_dir / names[key]
        previous = rows.get(key)
        if previous and previous.get("status") == "ok" and mask_path.is_file():
            yield SegmentResult(file=key, status="skipped", mask=str(mask_path))
            continue
        start = time.perf_counter()
        try:
            image = read_image(path)
            box = _box_for(path, boxes or {})
            box = default_box(image.pixels.shape) if box is None else box
            check_box(box, image.pixels.shape)
            predictor.set_image(image.pixels)
            pred = predictor.predict(box)
            mask = clean_lung_mask(pred.masks[0]) if clean else pred.masks[0]
            write_mask(mask_path, mask, overwrite=True)
            result = SegmentResult(
                file=key, status="ok", box=" ".join(f"{v:.1f}" for v in box), area_px=int(mask.sum()),
                mask=str(mask_path),
            )
            if baseline is not None:
                baseline.set_image(image.pixels)
                result.ssim_vs_baseline = round(ssim_map(pred.probs[0], baseline.predict(box).probs[0])[0], 5)
        except Exception as exc:  # one bad input must not stop the batch; it becomes an error row
            result = SegmentResult(file=key, status="error", error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        result.seconds = round(time.perf_counter() - start, 4)
        rows[key] = asdict(result)
        write_results(csv_path, rows)
        yield result
