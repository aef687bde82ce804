"""Segment many files through the one :class:`~napari_adaqat.inference.engine.Engine`: a generator
that yields one ``results.csv`` row per input.

Used by ``adaqat segment`` (also under torchrun, :mod:`.shard`) and the Batch dock.  The output folder
gets one mask per input (``<name>_mask.png``, or a DICOM SEG ``<name>_seg.dcm`` for DICOM inputs) and
``results.csv``.  One run holds the folder at a time (:mod:`.lock`); each process appends its rows to a
journal and ``results.csv`` is compacted from it (:mod:`.journal`): now and then while running (at most
~2 % of the run's time), and once in input order at the end.  Finished files are skipped on a rerun.
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Iterator, Sequence

import numpy as np

from napari_adaqat.data.boxes import check_box, default_box
from napari_adaqat.data.annotation_checks import REPLACED  # (OUT/replaced/: masks of films segmented again)
from napari_adaqat.data.csv_match import box_for
from napari_adaqat.data.points import check_points, points_for
from napari_adaqat.inference import journal as J
from napari_adaqat.inference.engine import ONE_SHOT, Engine, ModelLike, batched
from napari_adaqat.inference.journal import RESULT_COLUMNS, RESULTS_CSV, csv_text, load_results, write_results
from napari_adaqat.inference.lock import FolderBusy, RunLock
from napari_adaqat.inference.mask_names import SEG_SUFFIX, mask_names, recorded_mask
from napari_adaqat.inference.inputs import read_input, reading_notes, view_note
from napari_adaqat.inference.prefetch import chunks, embed_ahead, read_ahead
from napari_adaqat.inference.quality import mask_quality
from napari_adaqat.inference.shard import Shard
from napari_adaqat.io import ImageData, is_dicom, write_mask
from napari_adaqat.io.dicom import MultiFrameError
from napari_adaqat.io.image_data import NotAFilm
from napari_adaqat.io.dicom_seg import DicomSegError, check_seg_source, write_dicom_seg
from napari_adaqat.util.atomic import remove_stale_temps
from napari_adaqat.util.errors import first_line
from napari_adaqat.util.text import listed

__all__ = ["RESULTS_CSV", "RESULT_COLUMNS", "FolderBusy", "ResultRow", "SEG_SUFFIX", "compact_folder", "csv_text",
           "earlier_keys", "load_results", "read_input", "recorded_mask", "segment_files", "write_results"]

IGNORED = "ignored"  # the status of a file that is no film (io.NotAFilm): not segmented, not a failure
COMPACT_FIRST_S = 2.0  # rewrite results.csv while running first after this many seconds (a short run: once, at its end)
COMPACT_EVERY = 50  # ... then each time 50x the last rewrite's time has passed: at most ~2 % of the run


@dataclass
class ResultRow:
    """One row of ``results.csv`` (columns :data:`RESULT_COLUMNS`; rows may carry more)."""

    file: str
    status: str  # "ok" | "error" | "skipped" (done by an earlier run) | "ignored" (not a film, io.NotAFilm)
    error: str = ""
    box: str = ""
    area_px: int | str = ""
    seconds: float | str = ""
    mask: str = ""
    ssim_vs_baseline: float | str = ""
    quality: float | str = ""  # estimated Dice (inference/quality.py)
    review: int | str = ""  # 1: look at this mask (quality below the review threshold)
    orientation: str = ""  # the EXIF/TIFF orientation applied to read the film upright ("" for none)
    film_stamp: str = ""  # "size mtime" of the film its mask was made of (journal.film_stamp)
    note: str = ""  # what to know about this film's mask (a lateral view; then its reading warnings), "" for nothing
    frame: int | str = ""  # the frame (0-based) of a multi-frame DICOM that the mask is of; "" for a one-frame film
    points: str = ""  # the points it was prompted with: "x y label" each (1 = lung, 0 = not lung), "; " between
    view_note: ClassVar[str] = ""  # (not a column) the note's view part; its reading warnings were warned already


def earlier_keys(files: list[Path], rows: dict[str, dict], out_dir: Path) -> dict[str, str]:
    """This run's key of a file → the results.csv key of an earlier run that named the same file another way
    (``scans/a.png`` in a terminal, ``/home/me/scans/a.png`` in the Batch dock), so a rerun resumes.  An
    earlier relative key is resolved against the folder its run worked in (its row's ``run_folder``; for rows
    written before that column, only where the row's mask path is relative and lies in ``out_dir`` from
    here): never against today's folder alone, which would take ``export/P1/a.png`` of another site's tree
    for this one's and skip its film."""
    keys = {csv_text(str(path)): path for path in files}
    here = os.path.realpath(out_dir)

    def absolute(key: str, row: dict) -> str | None:
        if os.path.isabs(key):
            return key
        if row.get(J.RUN_FOLDER):
            return os.path.join(row[J.RUN_FOLDER], key)
        mask = row.get("mask") or ""
        from_here = bool(mask) and not os.path.isabs(mask) and os.path.realpath(mask).startswith(here + os.sep)
        return os.path.abspath(key) if from_here else None

    by_path = {}
    for key, row in rows.items():
        if key not in keys and (where := absolute(key, row)) is not None:
            by_path[csv_text(os.path.normpath(where))] = key
    if not by_path:
        return {}
    found = {key: by_path.get(csv_text(os.path.abspath(path))) for key, path in keys.items() if key not in rows}
    return {key: old for key, old in found.items() if old is not None}


def compact_folder(out_dir: Path) -> int | None:
    """On demand: write ``results.csv`` from what a stopped or killed run left in ``out_dir`` (refused
    with :class:`FolderBusy` while a live run holds it); return its rows, or ``None`` if nothing was left."""
    with RunLock(out_dir, "adaqat segment --compact"):
        return J.recover(out_dir)


def _start(out_dir: Path, shard: Shard, what: str, notes: list[str]) -> RunLock | None:
    """Rank 0 holds the folder, merges a killed run's journal and starts this run's; every rank learns
    whether it may go on (else each raises the same :class:`FolderBusy` line).  What was taken over
    goes to ``notes``."""
    lock, refusal = None, None
    if shard.lead:
        try:
            lock = RunLock(out_dir, what)
            note = lock.note()
            notes.extend([note] if note else [])
            merged = J.recover(out_dir)
            if merged is not None:
                notes.append(f"merged what a stopped run left in {out_dir} ({merged} rows in {RESULTS_CSV})")
            J.begin(out_dir)
        except Exception as exc:
            if lock is not None:
                lock.release()
            if shard.world == 1:
                raise
            lock, refusal = None, (type(exc).__name__, first_line(exc))
    refusal = shard.from_lead(refusal)
    if refusal is not None:
        raise (FolderBusy if refusal[0] == "FolderBusy" else RuntimeError)(refusal[1])
    return lock


def segment_files(
    files: list[Path],
    model: ModelLike,
    out_dir: Path,
    *,
    boxes: dict[str, np.ndarray] | None = None,
    points: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
    clip: bool = True,
    baseline: ModelLike | None = None,
    suffix: str = ".png",
    clean: bool = True,
    device: str = "cpu",
    engine: Engine | None = None,
    frame: int | None = None,
    frame_hint: str = "",
    batch_size: int = 8,
    shard: Shard = Shard(),
    notes: list[str] | None = None,
    roots: Sequence[Path] = (),
) -> Iterator[ResultRow]:
    """Segment ``files`` into ``out_dir``, yielding one :class:`ResultRow` per file (of this ``shard``).

    ``suffix`` ``".png"``/``".tif"`` writes masks; ``".dcm"`` writes a DICOM SEG per DICOM input
    (other inputs get an error row).  ``frame`` picks the frame of multi-frame DICOM inputs; ``frame_hint`` says
    what to do with one refused for want of it where ``--frame N`` is no option (a dock's way).

    Raises :class:`FolderBusy` (one line naming the holder) when another live run holds ``out_dir``;
    a killed run's lock and journal are taken over (a line about it goes to ``notes``).  A file whose
    row says ``ok`` and whose mask exists is skipped.  A bad file gives an ``error`` row and the rest
    go on.  Each row carries the mask's ``quality`` (estimated Dice) and ``review`` flag.  ``clean``
    keeps the two largest regions of each mask and fills its holes.  ``points``
    (:func:`~napari_adaqat.data.points.read_points_csv`) adds a file's points to its box (a file with
    points and no box in ``boxes`` is prompted by its points alone, with the default box when none is
    1 = lung); ``clip`` clears what lies outside the box plus a margin.  Under torchrun (``shard``) rank
    ``r`` does inputs ``r, r + N, ...``; ``results.csv`` is merged once at the end, as one process
    writes it.  On a GPU (:func:`~napari_adaqat.inference.engine.batched`), files are read
    ``batch_size`` at a time and embedded ``batch_size`` per encoder forward before their prompts (a
    file's ``seconds`` includes its share of that); on the CPU they go one by one.  ``roots``: the input
    folders of a recursive run, whose sub-folder tree the masks mirror under ``out_dir``.
    """
    engine = engine or Engine(recheck_seconds=ONE_SHOT)
    out_dir = Path(out_dir)
    lock = _start(out_dir, shard, "adaqat segment", notes if notes is not None else [])
    finished = False
    journal = None
    try:
        shard.barrier()  # results.csv is whole before any rank reads it
        rows = load_results(out_dir / RESULTS_CSV)
        aliases = earlier_keys(files, rows, out_dir)
        folders = {old: rows[old].get(J.RUN_FOLDER, "") for old in aliases.values()}
        rows.update({key: rows.pop(old) for key, old in aliases.items()})  # (renamed: one row, one mask)
        names, kept = mask_names(files, rows, out_dir, suffix, roots)
        for sub in {Path(name).parent for name in names.values()} - {Path(".")}:
            remove_stale_temps(out_dir / sub)  # a killed run's temps in the mirrored tree (recover() sweeps out_dir)
        done_keys = {key for key in kept if rows[key].get("status") == "ok"}
        stamps = {key: rows[key].get("film_stamp") or "" for key in done_keys}
        rows_frames = {key: rows[key].get("frame") or "" for key in done_keys}
        del rows  # only the set of finished files (and their films' stamps) is kept
        changed, stuck = _changed_since(files, stamps, out_dir, names), {}
        if changed and shard.lead:
            kept_aside, stuck = _put_aside(out_dir, changed, names)  # (a hand-corrected mask among them?)
            if notes is not None:
                notes.append(f"{len(changed)} film(s) changed after their masks were written, so they are segmented "
                             f"again: {listed(changed, 3)}" + (f"; their earlier masks (yours, if you corrected "
                             f"them) are kept in {out_dir / REPLACED}: {listed(kept_aside, 3)}" if kept_aside else ""))
                notes.extend(f"{key}: its earlier mask could not be moved aside ({why}), so it is kept as it is and "
                             "the film is not segmented again" for key, why in stuck.items())
        changed, stuck = shard.from_lead((changed, stuck))  # (every rank: the lead's moves)
        done_keys -= set(changed) - set(stuck)
        _note_other_frames(frame, {key: rows_frames[key] for key in done_keys}, notes, shard)
        shard.barrier()  # every rank chose the same mask names before any mask is written
        journal = J.Journal(out_dir, shard.rank, aliases, folders)
        yield from _segment_mine(files, model, out_dir, names, done_keys, journal, shard, engine, boxes=boxes,
                                 points=points, clip=clip, baseline=baseline, suffix=suffix, clean=clean,
                                 device=device, frame=frame, frame_hint=frame_hint,
                                 batch_size=batch_size)
        finished = True
    finally:
        if journal is not None:
            journal.close()
        if finished:
            shard.barrier()  # every rank's journal is complete
        if lock is not None:
            try:
                if finished or shard.world == 1:  # a crashed torchrun run is merged by the next run
                    J.finish(out_dir)
            finally:
                lock.release()


def _note_other_frames(frame: int | None, frames: dict[str, str], notes: list[str] | None, shard: Shard) -> None:
    """Say which finished multi-frame films (``frames``: key → the frame recorded with its mask) have a mask of
    another frame than ``frame``: a rerun keeps finished masks, so ``--frame 1`` after ``--frame 0`` would otherwise
    look as if it had segmented frame 1."""
    other = [f"{key} (frame {was})" for key, was in frames.items() if was != "" and frame is not None
             and str(was) != str(frame)]
    if other and notes is not None and shard.lead:
        notes.append(f"{len(other)} multi-frame film(s) already have a mask of another frame, kept as it is, not of "
                     f"frame {frame}: {listed(other, 3)}; to segment frame {frame}, choose another --out folder")


def _changed_since(files: list[Path], stamps: dict[str, str], out_dir: Path, names: dict[str, str]) -> list[str]:
    """The finished files (the keys of ``stamps``) whose film is not the one their mask was made of (a film
    re-exported under its name: its old mask would no longer fit it): its size or modification time is not the
    recorded :func:`~napari_adaqat.inference.journal.film_stamp` (a re-export that kept its old time, as
    ``rsync -a`` or ``cp -p`` copy, has another size; films restored with ``rsync -a`` keep both, and are not
    segmented again); for rows of runs before the stamp, a film newer than its mask, as make decides.  A film or
    mask that cannot be looked at is left to the run (which reports it)."""
    changed = []
    for path in files:
        key = csv_text(str(path))
        if key in stamps:
            try:
                now = J.film_stamp(path)
                if stamps[key] and now and not J.same_film(stamps[key], now):
                    changed.append(key)
                elif not stamps[key] and path.stat().st_mtime > (out_dir / names[key]).stat().st_mtime:
                    changed.append(key)
            except OSError:
                pass
    return changed


def _put_aside(out_dir: Path, keys: list[str], names: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Move the existing mask of each of ``keys`` (``names``: key → its mask's name relative to ``out_dir``) to
    ``out_dir/replaced/`` under the same relative name (numbered when taken, or when a mask of this run will be
    written there): a film segmented again never overwrites a mask that may hold the user's corrections.
    Returns (the new names, relative to ``out_dir/replaced``; {key: why} for the masks that could not be moved)."""
    planned = {Path(name).as_posix().casefold() for name in names.values()}
    kept, stuck = [], {}
    for key in keys:
        name = names[key]
        mask = out_dir / name
        if not mask.is_file():
            continue
        target, number = out_dir / REPLACED / name, 1
        while target.exists() or target.relative_to(out_dir).as_posix().casefold() in planned:
            target, number = (out_dir / REPLACED / name).with_stem(f"{Path(name).stem}_{number}"), number + 1
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(mask, target)
        except OSError as exc:
            stuck[key] = exc.strerror or type(exc).__name__
            continue
        kept.append(str(target.relative_to(out_dir / REPLACED)))
    return kept, stuck


def _segment_mine(files: list[Path], model: ModelLike, out_dir: Path, names: dict[str, str], done_keys: set[str],
                  journal: J.Journal, shard: Shard, engine: Engine, *, boxes, points, clip, baseline, suffix, clean,
                  device, frame, frame_hint, batch_size) -> Iterator[ResultRow]:
    """The loop of :func:`segment_files` over this rank's files."""
    seg = suffix == SEG_SUFFIX
    step = max(1, int(batch_size)) if batched(device) else 1
    prefetching = step > 1
    next_compact = time.monotonic() + COMPACT_FIRST_S

    def done(key: str) -> bool:
        return key in done_keys and (out_dir / names[key]).is_file()

    mine = [(i, path) for i, path in enumerate(files) if shard.mine(i)]
    for _first, chunk in chunks(mine, step):
        keys = {path: csv_text(str(path)) for _i, path in chunk}
        finished = {path for path, key in keys.items() if done(key)}  # once per file: the prefetch and the loop
        todo = [path for _i, path in chunk if path not in finished] if step > 1 else []
        ahead = read_ahead([p for p in todo if not (seg and not is_dicom(p))], lambda p: read_input(p, frame))
        images = [image for image, _s in ahead.values() if isinstance(image, ImageData)]  # (with their spacing)
        shares = embed_ahead(engine, images, {"model": model, "baseline": baseline}, device, step) \
            if prefetching else {}
        prefetching = prefetching and shares is not None
        share = sum((shares or {}).values())
        for index, path in chunk:
            key = keys[path]
            mask_path = out_dir / names[key]
            if path in finished:
                yield ResultRow(file=key, status="skipped", mask=str(mask_path))
                continue
            image_ahead, read_seconds = ahead.get(path, (None, 0.0))
            embedded = share if isinstance(image_ahead, ImageData) else 0.0
            start = time.perf_counter() - read_seconds - embedded  # its read and its share of the batch, done already
            result = _segment_one(path, key, mask_path, index, image_ahead, journal, engine, model, baseline,
                                  (boxes, points, clip), device, clean, frame, seg, frame_hint)
            result.seconds = round(time.perf_counter() - start, 4)
            journal.record(index, asdict(result))
            if shard.lead and time.monotonic() >= next_compact:
                t0 = time.monotonic()
                J.compact(out_dir)  # results.csv follows the run, at a bounded cost
                next_compact = time.monotonic() + COMPACT_EVERY * (time.monotonic() - t0)
            yield result


def _segment_one(path: Path, key: str, mask_path: Path, index: int, image_ahead, journal: J.Journal, engine: Engine,
                 model: ModelLike, baseline: ModelLike | None, prompts, device: str, clean: bool, frame: int | None,
                 seg: bool, frame_hint: str = "") -> ResultRow:
    """One input: its mask written (claimed in the journal first) and its row; a failure is an error row."""
    stamp = J.film_stamp(path)  # (before it is read: a film replaced meanwhile is segmented again next time)
    try:
        if seg and not is_dicom(path):
            raise DicomSegError(f"{path}: a DICOM SEG needs a DICOM input; this is not a DICOM file "
                                "(use --format png or tif)")
        if seg:
            check_seg_source(path)  # (its UIDs: said before the model runs, not after)
        if isinstance(image_ahead, Exception):
            raise image_ahead
        image = image_ahead if isinstance(image_ahead, ImageData) else read_input(path, frame)
        boxes, points, clip = prompts
        box = box_for(path, boxes or {})
        coords, labels = points_for(path, points or {}) or (None, None)
        prompted = box is not None or coords is not None  # drawn or clicked by someone: semi-automatic
        if coords is not None:
            check_points(coords, image.pixels.shape)
        if box is None and (labels is None or not (labels == 1).any()):  # "not lung" points alone say no where
            box = default_box(image.pixels.shape)
        if box is not None:
            check_box(box, image.pixels.shape)
        segmented = engine.segment(image, box, model, baseline, device, clean=clean, clip=clip,
                                   point_coords=coords, point_labels=labels)
        journal.claim(index, key, str(mask_path))  # a kill from here on leaves the name reserved, not orphaned
        mask_path.parent.mkdir(parents=True, exist_ok=True)  # a recursive run's masks mirror the input tree
        if seg:
            write_dicom_seg(mask_path, path, segmented.mask, frame=image.meta.get("frame"),
                            model_file=segmented.model_file, overwrite=True,
                            algorithm_type="SEMIAUTOMATIC" if prompted else "AUTOMATIC")
        else:
            write_mask(mask_path, segmented.mask, overwrite=True)
        quality = mask_quality(segmented.p_own, segmented.mask)  # the model's own probabilities (not a vote's)
        view, read = view_note(image), reading_notes(image)
        note = "; ".join(n for n in [view, *read] if n)
        result = ResultRow(file=key, status="ok", box="" if box is None else " ".join(f"{v:.1f}" for v in box),
                           area_px=int(segmented.mask.sum()), mask=str(mask_path), quality=quality.score,
                           review=int(quality.review or bool(view) or bool(read)),  # (a reading re-read: a look)
                           orientation=image.meta.get("orientation_applied", ""), film_stamp=stamp, note=note,
                           frame=image.meta.get("frame", ""), points="" if coords is None else "; ".join(
                               f"{x:.1f} {y:.1f} {int(label)}" for (x, y), label in zip(coords, labels)))
        result.view_note = view
        if segmented.ssim_mean is not None:
            result.ssim_vs_baseline = round(segmented.ssim_mean, 5)
        return result
    except NotAFilm as exc:  # a study export's Segmentation, Presentation State...: said, not a failure
        return ResultRow(file=key, status=IGNORED, error=first_line(exc))
    except Exception as exc:  # one bad input must not stop the batch; it becomes an error row
        return ResultRow(file=key, status="error", error=_row_error(path, key, exc, frame_hint))


def _row_error(path: Path, key: str, exc: BaseException, frame_hint: str = "") -> str:
    """An error row's text, ``FILE: problem`` as the readers write it (a check on the pixels, e.g. a strip's, does
    not name the file); a multi-frame DICOM's says ``frame_hint`` instead of ``--frame N`` when given."""
    if frame_hint and isinstance(exc, MultiFrameError):
        exc = exc.hinted(path, frame_hint)
    line = first_line(exc)
    return line if line.startswith((f"{path}: ", f"{key}: ")) else f"{key}: {line}"
