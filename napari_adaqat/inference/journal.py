"""Bookkeeping of ``adaqat segment`` that scales: an append-only journal per process, ``results.csv``
compacted from it.

While a run holds the output folder (:mod:`.lock`) it keeps ``DIR/.adaqat-journal/``: ``base.csv``
(``results.csv`` as the run found it, a hard link) and one ``rank-NNNNN.jsonl`` per process, one line
per finished file (flushed, so a crash loses at most the line being written) and one ``claim`` line
before each mask is written (so a killed run's mask name is reused, never orphaned).  :func:`compact`
writes ``results.csv`` = the base rows (updated in place) + this run's new rows in input order — the
order a single process writes, however many processes there were.  The next run merges a killed
run's journal first (:func:`recover`).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import IO, Iterable, Iterator, Optional

from napari_adaqat.util.atomic import atomic_write, remove_stale_temps

RESULTS_CSV = "results.csv"
JOURNAL_DIR = ".adaqat-journal"
BASE = "base.csv"
RESULT_COLUMNS = ["file", "status", "error", "box", "area_px", "seconds", "mask", "ssim_vs_baseline",
                  "quality", "review"]
RUN_FOLDER = "run_folder"  # a column of rows whose ``file`` is relative: the working folder it was given in
INTERRUPTED = "interrupted before it finished (the run was stopped); run again to finish it"


STAMP_SLACK_S = 2.0  # FAT and SMB keep modification times to 2 s: a copy there is the same film


def film_stamp(path: Path) -> str:
    """``"size mtime"`` of a film ("" when it cannot be looked at): a rerun compares it with the one recorded
    when the film's mask was written (:func:`same_film`), to tell a film replaced under its name from the one its
    mask was made of."""
    try:
        st = path.stat()
    except OSError:
        return ""
    return f"{st.st_size} {st.st_mtime:.3f}"


def same_film(recorded: str, now: str) -> bool:
    """Whether two :func:`film_stamp` values are of one film: the same size, times within :data:`STAMP_SLACK_S`
    (a copy to a file system that keeps coarser times, e.g. an archive moved with ``rsync -a``)."""
    try:
        (size0, time0), (size1, time1) = (stamp.split() for stamp in (recorded, now))
        return size0 == size1 and abs(float(time0) - float(time1)) <= STAMP_SLACK_S
    except ValueError:  # a stamp edited by hand: not a reason to segment again
        return True


def csv_text(text: str) -> str:
    """``text`` as valid UTF-8 for results.csv: bytes of a non-UTF-8 file name become ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet runs a cell starting so as a formula (OWASP)


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_cell(text: str) -> str:
    """``text`` as results.csv stores it: a file name or message that a spreadsheet would run as a formula
    (``=HYPERLINK(…)``, ``@SUM(…)``) starts with ``'`` (shown, not run); so does text that starts with ``'``
    itself, so that :func:`plain_cell` gives back any text exactly.  Numbers are left as they are."""
    text = csv_text(text)
    if text[:1] == "'" or (text.startswith(FORMULA_STARTS) and not _number(text)):
        return "'" + text
    return text


def plain_cell(text: str) -> str:
    """The text that :func:`csv_cell` stored."""
    return text[1:] if text[:1] == "'" else text


def _reader(fh: IO[str], csv_path: Path) -> csv.DictReader:
    reader = csv.DictReader(fh)
    if not {"file", "status", "mask"} <= set(reader.fieldnames or ()):
        raise ValueError(f"{csv_path} is not an adaqat results file; choose another output folder")
    return reader


def load_results(csv_path: Path, header_only: bool = False) -> dict[str, dict]:
    """``results.csv`` as file → row (in file order); ``{}`` when there is none.  A CSV that is not
    ours raises a one-line ``ValueError`` (``header_only``: check only that)."""
    if not csv_path.is_file():
        return {}
    with csv_path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = _reader(fh, csv_path)
        if header_only:
            return {}
        rows = ({k: plain_cell(v) if isinstance(v, str) else v for k, v in row.items()} for row in reader)
        return {row["file"]: row for row in rows}


def write_results(csv_path: Path, rows: Iterable[dict]) -> None:
    """Write ``results.csv`` atomically (a temp name unique to this process, then a rename), as valid
    UTF-8 and safe to open in a spreadsheet (:func:`csv_cell`); a failed write (e.g. a full disk) leaves the previous file and no temp file.  Columns beyond
    :data:`RESULT_COLUMNS` that rows carry are kept, after them."""
    rows = list(rows)
    extra = [k for k in dict.fromkeys(k for row in rows for k in row) if k not in RESULT_COLUMNS and k != "i"]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS + extra, extrasaction="ignore", restval="")
            writer.writeheader()
            writer.writerows({k: csv_cell(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows)

    atomic_write(csv_path, write, fsync=False, sweep=False)  # recover() sweeps stale temps once per run


class Journal:
    """The append-only journal of one process (rank) of the run holding ``out_dir``."""

    def __init__(self, out_dir: Path, rank: int = 0, aliases: Optional[dict[str, str]] = None,
                 folders: Optional[dict[str, str]] = None) -> None:
        """``aliases``: this run's key of a file → the key results.csv already has for it (the same file named
        another way, e.g. absolute in the Batch dock, relative in a terminal): its row is updated, not doubled.
        ``folders``: such a relative key → the :data:`RUN_FOLDER` its row has (it keeps it)."""
        self.path = Path(out_dir) / JOURNAL_DIR / f"rank-{rank:05d}.jsonl"
        self._fh: Optional[IO[str]] = self.path.open("a", encoding="utf-8", newline="\n")
        self._aliases = aliases or {}
        self._folder = os.getcwd()  # what a relative ``file`` is relative to (:data:`RUN_FOLDER`)
        self._folders = folders or {}

    def _write(self, entry: dict) -> None:
        assert self._fh is not None, "journal closed"
        self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._fh.flush()  # on disk (in the OS) before the next file starts: a crash loses at most this line

    def claim(self, index: int, key: str, mask: str) -> None:
        """About to write ``mask`` for input ``index`` (its position in the run's file list)."""
        self._write({"i": index, "file": self._aliases.get(key, key), "claim": mask})

    def record(self, index: int, row: dict) -> None:
        """The finished row of input ``index``."""
        entry = {"i": index, **row, "file": self._aliases.get(row["file"], row["file"])}
        if not os.path.isabs(entry["file"]):  # a terminal's relative name: where it was given from
            entry[RUN_FOLDER] = self._folders.get(entry["file"]) or self._folder
        self._write(entry)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _entries(folder: Path) -> Iterator[dict]:
    """Every complete journal line of every rank (a line cut short by a kill is skipped)."""
    for path in sorted(folder.glob("rank-*.jsonl")):
        try:
            with path.open(encoding="utf-8", errors="surrogateescape") as fh:
                for line in fh:
                    if not line.endswith("\n"):
                        break  # being written (or cut short): not finished
                    try:
                        entry = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(entry, dict) and "file" in entry:
                        yield entry
        except FileNotFoundError:
            continue


def merged_rows(out_dir: Path, final: bool) -> list[dict]:
    """The rows ``results.csv`` should hold: base rows (in their order, updated in place) + new rows in
    input order.  ``final`` also writes an error row (keeping its mask name) for each claimed file that
    never finished."""
    folder = Path(out_dir) / JOURNAL_DIR
    rows = load_results(folder / BASE)
    done: dict[str, dict] = {}
    claims: dict[str, dict] = {}
    for entry in _entries(folder):
        if "claim" in entry:
            claims[entry["file"]] = entry
        else:
            done[entry["file"]] = entry
    if final:
        for key, entry in claims.items():
            if key not in done:
                done[key] = {"i": entry.get("i", 0), "file": key, "status": "error", "error": INTERRUPTED,
                             "mask": entry["claim"]}
    new = []
    for key, entry in done.items():
        row = {k: v for k, v in entry.items() if k != "i"}
        if key in rows:
            rows[key] = row
        else:
            new.append((entry.get("i", 0), row))
    new.sort(key=lambda item: item[0])  # stable: a file retried in one run keeps its latest row
    return list(rows.values()) + [row for _i, row in new]


def compact(out_dir: Path, final: bool = False) -> int:
    """Write ``results.csv`` from the base and the journals of the run holding ``out_dir``; return its
    row count.  The caller holds the folder (or is the run)."""
    rows = merged_rows(out_dir, final)
    write_results(Path(out_dir) / RESULTS_CSV, rows)
    return len(rows)


def recover(out_dir: Path) -> Optional[int]:
    """Merge what a killed run left (its journal) into ``results.csv`` and remove it, with the dead
    processes' temp files; return the rows written, or ``None`` when nothing was left.  Holder only."""
    out_dir = Path(out_dir)
    remove_stale_temps(out_dir)
    for stale in out_dir.glob(f"{JOURNAL_DIR}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    folder = out_dir / JOURNAL_DIR
    if not folder.is_dir():
        return None
    count = compact(out_dir, final=True)
    shutil.rmtree(folder)
    return count


def begin(out_dir: Path) -> None:
    """Start this run's journal (after :func:`recover`): ``base.csv`` is ``results.csv`` as it is now.
    The folder appears complete or not at all (made under a temp name, then renamed)."""
    out_dir = Path(out_dir)
    results = out_dir / RESULTS_CSV
    load_results(results, header_only=True)  # not ours: refused before anything is written
    tmp = out_dir / f"{JOURNAL_DIR}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    if results.is_file():
        try:
            os.link(results, tmp / BASE)  # results.csv is replaced by renames, so the link keeps this version
        except OSError:
            shutil.copy2(results, tmp / BASE)
    os.replace(tmp, out_dir / JOURNAL_DIR)


def finish(out_dir: Path) -> int:
    """The run's final compaction: ``results.csv`` in single-run order, the journal removed."""
    count = compact(out_dir, final=True)
    shutil.rmtree(Path(out_dir) / JOURNAL_DIR, ignore_errors=True)
    return count
