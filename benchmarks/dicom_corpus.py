"""Read every DICOM test file that ships with pydicom and tabulate what happens to each.

    python benchmarks/dicom_corpus.py            # writes build/dicom_corpus.md, prints the counts

The corpus is ``<pydicom>/data/test_files/*.dcm`` on disk (nothing is downloaded). Each file is
read like ``adaqat segment`` reads it: single-frame images must decode; a multi-frame file is
read as a stack (the napari reader) and as frame 0 (``--frame 0``); any other file must be refused
with a specific one-line message, whose reason is recorded.
"""
from __future__ import annotations

import argparse
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# message start -> reason (in this order: the first match wins)
REASONS: tuple[tuple[str, str], ...] = (
    ("DICOM file has no pixel data", "no pixel data (not an image: SR, RT plan, waveform, ...)"),
    ("not a film", "not a film (a Segmentation, parametric map or RT dose: pixels over another image)"),
    ("truncated DICOM file", "truncated file"),
    ("bad DICOM VR", "bad VR (value not valid for its VR)"),
    ("DICOM image attributes missing", "image attributes missing (Rows, Columns, ...)"),
    ("pixel data length mismatch", "pixel data length mismatch"),
    ("no Transfer Syntax UID", "no transfer syntax and compressed pixel data"),
    ("not a DICOM file", "not a DICOM file"),
    ("corrupt DICOM file", "corrupt DICOM structure"),
)


@dataclass
class Row:
    """One corpus file: its transfer syntax and what reading it gave."""

    file: str
    syntax: str
    outcome: str  # "decoded" | "decoded (multi-frame)" | "ignored, not a film (its pixels decode)" | "refused"
    detail: str  # shape, or the one-line message without the path
    reason: str = ""  # why it was refused


def corpus_dir() -> Path:
    """pydicom's own test files folder (on disk, shipped with the package)."""
    import pydicom

    return Path(pydicom.__file__).parent / "data" / "test_files"


def _syntax(path: Path) -> str:
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        uid = ds.file_meta.get("TransferSyntaxUID")
    except Exception:
        return "(unreadable)"
    return f"{uid.name} ({uid})" if uid else "(none in file meta)"


def reason_of(message: str) -> str:
    """The refusal reason of a one-line message (``"cannot decode ..."`` keeps the syntax)."""
    for start, reason in REASONS:
        if start in message:
            return reason
    if message.startswith("cannot decode") and "corrupt" in message:
        return "corrupt compressed pixel data (" + message.split(" pixel data")[0].removeprefix("cannot decode ") + ")"
    if message.startswith("cannot decode"):
        return "no decoder (" + message.split(" pixel data")[0].removeprefix("cannot decode ") + ")"
    return "other: " + message


def read_one(path: Path) -> Row:
    """Read ``path`` as the CLI and the napari reader would; never raises for a bad file."""
    from napari_adaqat.io import ImageReadError
    from napari_adaqat.io.dicom import MultiFrameError, read_dicom, read_dicom_raw, read_dicom_stack
    from napari_adaqat.io.image_data import NotAFilm

    syntax = _syntax(path)
    try:
        image = read_dicom(path)
        return Row(path.name, syntax, "decoded", f"{image.pixels.shape[0]}x{image.pixels.shape[1]}")
    except NotAFilm as exc:  # never segmented, but pixels it has must decode (a SEG is read as a mask)
        message = str(exc).split(": ", 1)[1]
        try:
            arr = read_dicom_raw(path, frame=0)[1]
        except ImageReadError:  # no pixel data: a report, a plan...
            return Row(path.name, syntax, "refused", message, reason_of(message))
        return Row(path.name, syntax, "ignored, not a film (its pixels decode)", f"{arr.shape[0]}x{arr.shape[1]}",
                   reason_of(message))
    except MultiFrameError as exc:
        try:
            stack = read_dicom_stack(path).pixels
            first = read_dicom(path, frame=0).pixels
            assert first.shape == stack.shape[1:], (first.shape, stack.shape)
            size = f"{exc.frames} frames of {first.shape[0]}x{first.shape[1]}"
            return Row(path.name, syntax, "decoded (multi-frame)", size)
        except ImageReadError as inner:
            exc = inner
        message = str(exc).split(": ", 1)[1]
    except ImageReadError as exc:
        message = str(exc).split(": ", 1)[1]
    return Row(path.name, syntax, "refused", message, reason_of(message))


def run(folder: Path | None = None) -> list[Row]:
    """One :class:`Row` per ``*.dcm`` file of the corpus, sorted by name."""
    return [read_one(p) for p in sorted((folder or corpus_dir()).glob("*.dcm"))]


def markdown(rows: list[Row]) -> str:
    """The table, counts by outcome and by refusal reason first."""
    import pydicom

    outcomes = Counter(r.outcome for r in rows)
    reasons = Counter(r.reason for r in rows if r.reason and r.outcome == "refused")
    lines = [f"# pydicom {pydicom.__version__} test files: {len(rows)} DICOM files", ""]
    lines += [f"- {n} {k}" for k, n in sorted(outcomes.items())]
    lines += [f"  - refused, {k}: {n}" for k, n in sorted(reasons.items())]
    lines += ["", "| file | transfer syntax | result | detail |", "|---|---|---|---|"]
    lines += [f"| {r.file} | {r.syntax} | {r.outcome}{': ' + r.reason if r.reason else ''} | {r.detail} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dicom_corpus.py", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "build" / "dicom_corpus.md"), help="markdown table to write")
    args = parser.parse_args(argv)
    rows = run()
    text = markdown(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text.split("\n| file")[0].strip())
    print(f"table: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
