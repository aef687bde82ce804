"""Segment many files through the one :class:`~napari_adaqat.inference.engine.Engine`: a generator
that yields one ``results.csv`` row per input.

Used by ``adaqat segment`` (and a batch dock).  The output folder gets one mask per
input (``<stem>_mask.png``, or a DICOM SEG ``<stem>_seg.dcm`` for DICOM inputs) and
``results.csv``; finished files are skipped on a rerun.
"""
from __future__ import annotations

import csv
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from napari_adaqat.inference.engine import Engine, ModelLike, batched
from napari_adaqat.data.boxes import box_for, check_box, default_box
from napari_adaqat.io import ImageData, is_dicom, read_image, write_mask
from napari_adaqat.io.dicom import MultiFrameError, read_dicom
from napari_adaqat.io.dicom_seg import DicomSegError, write_dicom_seg

SEG_SUFFIX = ".dcm"  # a DICOM Segmentation object instead of a PNG/TIFF mask
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


def csv_text(text: str) -> str:
    """``text`` as valid UTF-8 for results.csv: bytes of a non-UTF-8 file name become ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _name_part(text: str, max_bytes: int) -> str:
    """A piece of a mask file name: valid UTF-8 (undecodable bytes become ``_``), at most ``max_bytes``."""
    clean = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\ufffd", "_")
    return clean.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def _mask_names(files: list[Path], rows: dict[str, dict], out_dir: Path, suffix: str) -> dict[str, str]:
    """A mask file name per input that never collides with another input's mask, in this run or
    an earlier one: a file already in results.csv keeps its name; a new one takes ``STEM_mask``,
    else ``PARENT_STEM_mask``, else ``PARENT_STEM_mask_2``, ... (never an existing file)."""
    names = {key: Path(row["mask"]).name for key, row in rows.items()
             if row.get("mask") and Path(row["mask"]).name.endswith(suffix)}  # a PNG run does not make a TIF one
    taken = set(names.values())
    for path in files:
        key = csv_text(str(path))
        if key in names:
            continue
        # 180 + 1 + 50 + "_mask_9999" + suffix stays within the 255 bytes of a file name
        stem = f"{_name_part(path.stem, 180)}_{'seg' if suffix == SEG_SUFFIX else 'mask'}"
        parent = _name_part(path.parent.name, 50)
        candidates = [stem, f"{parent}_{stem}"] + [f"{parent}_{stem}_{i}" for i in range(2, 10_000)]
        name = next(f"{c}{suffix}" for c in candidates
                    if f"{c}{suffix}" not in taken and not (out_dir / f"{c}{suffix}").exists())
        names[key] = name
        taken.add(name)
    return names


def read_input(path: Path, frame: int | None = None) -> ImageData:
    """Read one input; ``frame`` (0-based) picks the frame of a multi-frame DICOM, which is refused
    without it (single-frame files ignore it)."""
    if not is_dicom(path):
        return read_image(path)
    try:
        return read_dicom(path, frame=frame)
    except MultiFrameError as exc:
        raise MultiFrameError(f"{path}: multi-frame DICOM with {exc.frames} frames; choose one with --frame N "
                              f"(0-based, 0 to {exc.frames - 1})", exc.frames) from None


def load_results(csv_path: Path) -> dict[str, dict]:
    if not csv_path.is_file():
        return {}
    with csv_path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.DictReader(fh)
        if not {"file", "status", "mask"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{csv_path} is not an adaqat results file; choose another output folder")
        return {row["file"]: row for row in reader}


def write_results(csv_path: Path, rows: dict[str, dict]) -> None:
    """Write ``results.csv`` atomically (temp file + rename), as valid UTF-8; a failed write
    (e.g. a full disk) leaves the previous file and no temp file."""
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    try:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({k: csv_text(v) if isinstance(v, str) else v for k, v in row.items()}
                             for row in rows.values())
        os.replace(tmp, csv_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _read_ahead(paths: list[Path], frame: int | None, seg: bool) -> dict[Path, tuple[ImageData | Exception, float]]:
    """Read ``paths`` now: each one's image, or the error reading it raised, and the seconds it took.
    A DICOM SEG run reads no non-DICOM input (it gets its error without)."""
    ahead: dict[Path, tuple[ImageData | Exception, float]] = {}
    for path in paths:
        start = time.perf_counter()
        try:
            if seg and not is_dicom(path):
                continue
            image: ImageData | Exception = read_input(path, frame)
        except Exception as exc:  # reported as this file's error row when its turn comes
            image = exc
        ahead[path] = (image, time.perf_counter() - start)
    return ahead


def _take(ahead: dict[Path, tuple[ImageData | Exception, float]], path: Path, frame: int | None) -> ImageData:
    """The image of ``path``: the one read ahead (or the error that reading raised), else read now."""
    if path not in ahead:
        return read_input(path, frame)
    image = ahead[path][0]
    if isinstance(image, Exception):
        raise image
    return image


def _prefetch(engine: Engine, ahead: dict[Path, tuple[ImageData | Exception, float]], model: ModelLike,
              baseline: ModelLike | None, device: str, batch_size: int) -> float | None:
    """Embed the images read ahead, ``batch_size`` per encoder forward; return the seconds per image,
    or ``None`` when it failed (e.g. a batch out of GPU memory): the files then embed one by one."""
    images = [image.pixels for image, _seconds in ahead.values() if not isinstance(image, Exception)]
    if not images:
        return 0.0
    try:
        return engine.prefetch(images, model, baseline, device, batch_size) / len(images)
    except Exception as exc:  # never fatal: the per-file path embeds each file on its own
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        warnings.warn(f"batched embedding failed ({first}); embedding the files one by one", RuntimeWarning)
        return None


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
    frame: int | None = None,
    batch_size: int = 8,
) -> Iterator[ResultRow]:
    """Segment ``files`` into ``out_dir``, yielding one :class:`ResultRow` per file.

    ``suffix`` ``".png"``/``".tif"`` writes masks; ``".dcm"`` writes a DICOM SEG per DICOM input
    (other inputs get an error row).  ``frame`` picks the frame of multi-frame DICOM inputs.

    A file whose row says ``ok`` and whose mask exists is skipped.  A bad file gives an
    ``error`` row and the rest go on.  ``results.csv`` is rewritten after every file.
    ``clean`` keeps the two largest regions of each mask and fills its holes.
    On a GPU (:func:`~napari_adaqat.inference.engine.batched`), files are read ``batch_size`` at a
    time and embedded ``batch_size`` per encoder forward before their prompts (a file's ``seconds``
    includes its share of that); on the CPU they go one by one.
    """
    engine = engine or Engine()
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    rows = load_results(csv_path)
    names = _mask_names(files, rows, out_dir, suffix)
    seg = suffix == SEG_SUFFIX
    step = max(1, int(batch_size)) if batched(device) else 1
    prefetching = step > 1

    def done(path: Path) -> bool:
        previous = rows.get(csv_text(str(path)))
        mask_path = out_dir / names[csv_text(str(path))]
        return bool(previous) and previous.get("status") == "ok" \
            and Path(previous.get("mask") or "").name == mask_path.name and mask_path.is_file()

    for first in range(0, len(files), step):
        chunk = files[first:first + step]
        ahead = _read_ahead([p for p in chunk if not done(p)], frame, seg) if step > 1 else {}
        share = _prefetch(engine, ahead, model, baseline, device, step) if prefetching else 0.0
        prefetching = prefetching and share is not None
        for path in chunk:
            key = csv_text(str(path))
            mask_path = out_dir / names[key]
            if done(path):
                yield ResultRow(file=key, status="skipped", mask=str(mask_path))
                continue
            image_ahead, read_seconds = ahead.get(path, (None, 0.0))
            embedded = share if share and isinstance(image_ahead, ImageData) else 0.0
            start = time.perf_counter() - read_seconds - embedded  # its read and its share of the batch, done already
            try:
                if seg and not is_dicom(path):
                    raise DicomSegError(f"{path}: a DICOM SEG needs a DICOM input; this is not a DICOM file "
                                        "(use --format png or tif)")
                image = _take(ahead, path, frame)
                box = box_for(path, boxes or {})
                prompted = box is not None  # a box from the CSV was drawn by someone: semi-automatic
                box = default_box(image.pixels.shape) if box is None else box
                check_box(box, image.pixels.shape)
                segmented = engine.segment(image.pixels, box, model, baseline, device, clean=clean)
                if seg:
                    write_dicom_seg(mask_path, path, segmented.mask, frame=image.meta.get("frame"),
                                    model_file=segmented.model_file, overwrite=True,
                                    algorithm_type="SEMIAUTOMATIC" if prompted else "AUTOMATIC")
                else:
                    write_mask(mask_path, segmented.mask, overwrite=True)
                result = ResultRow(
                    file=key, status="ok", box=" ".join(f"{v:.1f}" for v in box),
                    area_px=int(segmented.mask.sum()), mask=str(mask_path),
                )
                if segmented.ssim_mean is not None:
                    result.ssim_vs_baseline = round(segmented.ssim_mean, 5)
            except Exception as exc:  # one bad input must not stop the batch; it becomes an error row
                result = ResultRow(file=key, status="error",
                                   error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            result.seconds = round(time.perf_counter() - start, 4)
            rows[key] = asdict(result)
            write_results(csv_path, rows)
            yield result
