"""Box prompts: the default and tight boxes, the one validity rule, and box CSV files.

A box is an xyxy float array (4,) in original image pixels (of the upright image, after its EXIF
orientation).  A box CSV has the columns ``file,x0,y0,x1,y1`` (others are ignored), as Excel writes
it (comma, semicolon or tab; any case; trailing empty rows); a bad CSV is refused as a whole with one line naming
the file, the line and the problem, before anything is segmented.  Rows repeated with the same box
are harmless; two different boxes for one file are refused.  Rows that name no input are not an
error (one CSV may serve several folders): :mod:`.csv_match` matches rows to inputs and lists those.
"""
from __future__ import annotations

import codecs
import csv
import errno
import io
import os
import re
from pathlib import Path, PureWindowsPath

import numpy as np

from napari_adaqat.io.image_data import check_image_size
from napari_adaqat.util.regions import bounding_window
from napari_adaqat.util.defaults import CLIP_MARGIN_FRACTION, CLIP_MARGIN_MIN_PX, DEFAULT_BOX_MARGIN_FRACTION

COLUMNS = ("file", "x0", "y0", "x1", "y1")
EDGE_TOLERANCE_PX = 1.0  # a box may overshoot the image by this much (rounding, pixel-centre conventions)


def clip_margin(shape: tuple[int, int]) -> float:
    """The box-clipping margin in pixels for an image of (H, W) ``shape``: how far outside its box a mask
    may reach (:func:`~napari_adaqat.inference.postprocess.clip_to_box`; training clips the same way)."""
    return max(CLIP_MARGIN_MIN_PX, CLIP_MARGIN_FRACTION * max(shape[0], shape[1]))


def clip_rectangle(shape: tuple[int, int], box: np.ndarray, points: np.ndarray | None = None,
                   margin: float | None = None) -> tuple[int, int, int, int]:
    """The (row0, row1, col0, col1) half-open pixel rectangle that a mask is clipped to: the xyxy
    ``box`` (4,), widened to the positive ``points`` (P, 2) x, y if any, plus ``margin`` pixels (default
    :func:`clip_margin` of ``shape``; training passes the margin in its input pixels)."""
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if points is not None and len(points):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        x0, y0 = min(x0, pts[:, 0].min()), min(y0, pts[:, 1].min())
        x1, y1 = max(x1, pts[:, 0].max()), max(y1, pts[:, 1].max())
    m = clip_margin(shape) if margin is None else float(margin)
    h, w = shape
    r0, c0 = max(0, int(np.ceil(y0 - m))), max(0, int(np.ceil(x0 - m)))  # pixel centres within the margin
    r1, c1 = min(h, int(np.floor(y1 + m)) + 1), min(w, int(np.floor(x1 + m)) + 1)
    return r0, max(r0, r1), c0, max(c0, c1)


def default_box(shape: tuple[int, int], margin: float = DEFAULT_BOX_MARGIN_FRACTION) -> np.ndarray:
    """The whole image minus a small margin (``margin`` of each side), as an xyxy box (4,)."""
    h, w = shape
    mx, my = margin * w, margin * h
    return np.array([mx, my, w - 1 - mx, h - 1 - my], dtype=np.float64)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Bounding box (4,) xyxy of a boolean mask (H, W) (its first and last pixels), or None when empty."""
    window = bounding_window(np.asarray(mask))
    if window is None:
        return None
    rows, cols = window
    return np.array([cols.start, rows.start, cols.stop - 1, rows.stop - 1], dtype=np.float64)


def box_outside(box: "np.ndarray | list[float] | tuple[float, ...]", shape: tuple[int, int]) -> bool:
    """Whether the xyxy ``box`` misses the (H, W) image altogether (touching its edge from outside counts)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return x1 <= 0 or y1 <= 0 or x0 >= shape[1] or y0 >= shape[0]


def normalised(values: np.ndarray, shape: tuple[int, int]) -> bool:
    """Whether prompt coordinates look like fractions of the image (0.06, 0.74: every value in [0, 1], one not a
    whole number) on an image larger than that: a box or click of a tool that writes them so (a QA find: such a
    box segmented nothing, reported "ok")."""
    values = np.asarray(values, dtype=float)
    return (values.size > 0 and min(shape) > 2 and bool(np.isfinite(values).all())
            and bool(((values >= 0) & (values <= 1)).all()) and bool((values != np.round(values)).any()))


def check_box(box: np.ndarray, shape: tuple[int, int] | None = None) -> None:
    """Refuse a box that is not finite, is inverted or has negative coordinates; with the image's
    (H, W) ``shape`` also an image too small to segment and a box outside the image
    (beyond :data:`EDGE_TOLERANCE_PX`)."""
    if shape is not None:
        check_image_size(shape)
    x0, y0, x1, y1 = (float(v) for v in box)
    text = f"{x0:g},{y0:g},{x1:g},{y1:g}"
    if not np.isfinite([x0, y0, x1, y1]).all() or x1 <= x0 or y1 <= y0:
        raise ValueError(f"invalid box {text}: needs finite numbers with x1 > x0 and y1 > y0")
    if min(x0, y0) < -EDGE_TOLERANCE_PX:
        raise ValueError(f"invalid box {text}: coordinates are pixels from the top-left corner and cannot be negative")
    if shape is None:
        return
    h, w = shape
    if normalised(np.array([x0, y0, x1, y1]), shape):
        raise ValueError(f"box {text}: fractions of the image? give pixels from the top-left corner "
                         f"(this image is {w}x{h})")
    if box_outside(box, shape):
        raise ValueError(f"box {text} lies outside the {w}x{h} image")
    if x1 > w + EDGE_TOLERANCE_PX or y1 > h + EDGE_TOLERANCE_PX:
        raise ValueError(f"box {text} reaches outside the {w}x{h} image (x1 <= {w}, y1 <= {h}); "
                         "was it drawn on a resized copy?")


DELIMITERS = (",", ";", "\t")  # Excel writes ; where the decimal separator is a comma, and tabs as "Text"
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def _sniff(first_line: str, columns: tuple[str, ...] = COLUMNS) -> str:
    """The delimiter of a box CSV from its header line: the one that yields every column name
    (trimmed, case-folded), else the most frequent of , ; tab outside quotes (``,`` when none)."""
    for delimiter in DELIMITERS:
        names = {h.strip().casefold() for h in next(csv.reader([first_line], delimiter=delimiter), [])}
        if set(columns) <= names:
            return delimiter
    unquoted = "".join(first_line.split('"')[::2])
    counts = {d: unquoted.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _text(path: str | Path) -> str:
    """The whole CSV as text (``utf-8-sig``: CSVs saved by Excel start with a BOM; UTF-16 with its BOM, as
    Excel saves "Unicode Text"; else Windows-1252, Excel's "CSV" on a Western Windows PC); one-line errors."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:  # a typo, a folder: one line naming the CSV, not "[Errno 2] ..."
        problem = {errno.ENOENT: "CSV file not found", errno.EISDIR: "is a folder, not a CSV file"}.get(exc.errno)
        raise ValueError(f"{path}: {problem or f'cannot read ({exc.strerror or exc})'}") from None
    if data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # Excel's "Unicode Text" (tab-separated)
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    kind = _binary_kind(data)
    if kind:
        what = ("in Excel: File > Save As > CSV UTF-8" if "Excel" in kind
                else "give the CSV of prompts here (the films go in INPUT)")
        raise ValueError(f"{path}: {kind}, not a CSV file; {what}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = exc
    # Excel's plain "CSV" on a Western Windows PC is Windows-1252 ("Müller.png" as one byte per letter); a file that
    # also holds UTF-8 letters was written in both (rows pasted from elsewhere): neither reading is right, refused
    mixed = any(ord(c) > 127 for c in data.decode("utf-8", errors="ignore"))
    try:
        if not mixed:
            return data.decode("cp1252")
    except UnicodeDecodeError:
        pass
    raise ValueError(f"{path}: not a UTF-8 text file (byte 0x{bad.object[bad.start]:02x} at offset {bad.start}"
                     f"{'; some rows are UTF-8, others not' if mixed else ''}); save it as CSV (UTF-8)")


_SIGNATURES = ((b"PK\x03\x04", "an Excel workbook (.xlsx) or another zip file"),
               (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls)"), (b"\x89PNG", "a PNG image"),
               (b"\xff\xd8\xff", "a JPEG image"), (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
               (b"%PDF", "a PDF document"))


def _binary_kind(data: bytes) -> str | None:
    """What a file given as a CSV is when it is a workbook, an image or a document (by its first bytes), else None."""
    if data[128:132] == b"DICM":
        return "a DICOM file"
    return next((kind for magic, kind in _SIGNATURES if data.startswith(magic)), None)


def _headerless(row: list[str], columns: tuple[str, ...]) -> bool:
    """Whether the first row of a CSV whose header is optional is data: as many fields as ``columns``,
    none of them a column name, and a number after the file name."""
    names = {field.strip().casefold() for field in row}
    if len(row) != len(columns) or names & set(columns):
        return False
    try:
        float(row[1].strip())
    except ValueError:
        return False
    return True


def _rows(path: str | Path, columns: tuple[str, ...] = COLUMNS, header_optional: bool = False):
    """(line number, delimiter, {column: value}) of each non-empty row of a CSV
    with ``columns`` (a box CSV by default).

    The delimiter is sniffed (, ; tab); header names are trimmed and case-folded; rows whose every
    field is blank (Excel's trailing ``,,,,``) are skipped; a row with another field count than the
    header is refused, so that a decimal comma can never shift a box.  ``header_optional``: a first row
    that is data (:func:`_headerless`) takes the columns in order.  One-line ValueErrors."""
    text = _text(path)
    delimiter = _sniff(text.lstrip("\r\n").splitlines()[0] if text.strip() else "", columns)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        while header is not None and not any(h.strip() for h in header):
            header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file; expected a header line {','.join(columns)}")
        if header_optional and _headerless(header, columns):
            yield reader.line_num, delimiter, dict(zip(columns, header))
            header = list(columns)
        names = [h.strip().casefold() for h in header]
        missing = [c for c in columns if c not in names]
        if missing:
            found = " ".join(",".join(h.strip() for h in header).split())[:80]  # an unclosed quote reads newlines
            raise ValueError(f"{path}:1: missing column(s) {', '.join(missing)}; expected {','.join(columns)}"
                             f" (found {found or 'nothing'})")
        index = {c: names.index(c) for c in columns}
        while True:
            row = next(reader, None)
            if row is None:
                return
            if not any(field.strip() for field in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}:{reader.line_num}: {_count_problem(len(row), len(header), delimiter)}")
            yield reader.line_num, delimiter, {c: row[i] for c, i in index.items()}
    except csv.Error as exc:
        raise ValueError(f"{path}: not a valid CSV file ({' '.join(str(exc).split())[:120]})") from None


def _count_problem(found: int, expected: int, delimiter: str) -> str:
    text = f"{found} fields where the header has {expected} ({_DELIMITER_NAMES[delimiter]}-separated)"
    if delimiter == "," and found > expected:
        text += "; a decimal comma (40,5) splits a number in two: write 40.5"
    return text


def _number(column: str, value: str, delimiter: str, names: str = "x0,y0,x1,y1") -> float:
    """One coordinate; a decimal comma only in a ;-separated file (as Excel writes it where the comma is the
    decimal mark, unquoted; unambiguous there)."""
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    comma = text.count(",") == 1 and "." not in text
    if comma and delimiter == ";":
        try:
            return float(text.replace(",", "."))
        except ValueError:
            pass
    elif comma:
        raise ValueError(f"{column} is {value[:20]!r}: a decimal comma is read only in a ;-separated file; "
                         f"write {text.replace(',', '.')}")
    raise ValueError(f"{names} must be numbers; {column} is {value[:20]!r}")


_DRIVE = re.compile(r"[A-Za-z]:[\\/]")  # C:\ or C:/ at the start of a CSV row's file


def _windows_path(name: str) -> bool:
    """Whether a CSV row's ``file`` is a Windows path that this (Linux or macOS) machine cannot open as written."""
    return os.sep == "/" and ("\\" in name or _DRIVE.match(name) is not None)


def csv_file_key(name: str, path: str | Path, line: int, origins: dict[str, str]) -> str:
    """A CSV row's ``file`` as it is looked up here.  On Linux and macOS a Windows path (``C:\\films\\a.png``: a CSV
    made on a hospital PC) is taken by its last part, the film's name; two such rows from different folders
    naming one film name are refused (``origins``: key → the row's text, filled here), never merged.  A drive
    letter marks a Windows path too (``C:/films/a.png``); Windows paths that differ by case only are one film."""
    key = (PureWindowsPath(name).name or name) if _windows_path(name) else name
    first = origins.setdefault(key, name)
    windows = _windows_path(first) or _windows_path(name)
    if first != name and windows and PureWindowsPath(first) != PureWindowsPath(name):
        raise ValueError(f"{path}:{line}: {name!r} and {first!r} both name {key!r} here (a Windows path is matched "
                         "by its file name); give each film's path on this machine")
    return key


def read_boxes_csv(path: str | Path) -> dict[str, np.ndarray]:
    """``file,x0,y0,x1,y1`` rows → {file name or path: (4,) box}; matched by path, name or stem (a Windows
    path by its name, :func:`csv_file_key`).

    Separated by commas, semicolons or tabs (sniffed from the header); header names are trimmed and
    case-folded (``File, X0`` works); without a header the columns are taken in order; blank rows are skipped.
    Raises ValueError (one line, ``PATH:LINE: problem``) for a missing column, a row with another field count
    than the header, a value that is not a number (named), an invalid box (see :func:`check_box`), two different
    boxes for one file, or a CSV with no rows.
    """
    boxes: dict[str, np.ndarray] = {}
    first_line: dict[str, int] = {}
    origins: dict[str, str] = {}
    for line, delimiter, row in _rows(path, header_optional=True):  # as point CSVs
        name = row["file"].strip()
        if not name:
            raise ValueError(f"{path}:{line}: empty file name")
        name = csv_file_key(name, path, line, origins)
        try:
            box = np.array([_number(k, row[k], delimiter) for k in COLUMNS[1:]])
            check_box(box)
        except ValueError as exc:
            raise ValueError(f"{path}:{line}: {exc}") from None
        if name in boxes and not np.array_equal(boxes[name], box):
            raise ValueError(f"{path}:{line}: a second, different box for {name!r} (first on line {first_line[name]})")
        boxes[name] = box
        first_line.setdefault(name, line)
    if not boxes:
        raise ValueError(f"{path}: no boxes (only a header line)")
    return boxes
