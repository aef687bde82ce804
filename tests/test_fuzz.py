"""Fuzzing with hypothesis: whatever bytes a file holds, ``read_image``/``read_mask`` return an image
or raise one :class:`ImageReadError` line, and ``read_boxes_csv`` returns boxes or raises one
ValueError line.  Fixed seeds (``derandomize``), no example database: the same examples every run.

Each test counts the examples it ran and prints ``fuzz <name>: N examples`` (``pytest -s``).
"""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from napari_adaqat.data import read_boxes_csv
from napari_adaqat.io import ImageData, ImageReadError, read_image, read_mask

CXR = Path(__file__).parent / "data" / "cxr" / "images"
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".jpg": b"\xff\xd8\xff", ".tif": b"II*\x00", ".tiff": b"MM\x00*", ".bmp": b"BM"}


def _real_files() -> dict[str, bytes]:
    """A real radiograph as PNG (as shipped), and shrunk to 96 px as PNG, 16-bit PNG, JPEG, TIFF and BMP."""
    original = sorted(CXR.glob("*.png"))[0]
    small = Image.open(original).convert("L").resize((96, 96))
    out = {"original.png": original.read_bytes()}
    for name, image, fmt in (("small.png", small, "PNG"), ("small16.png", small.convert("I;16"), "PNG"),
                             ("small.jpg", small, "JPEG"), ("small.bmp", small, "BMP")):
        buf = io.BytesIO()
        image.save(buf, fmt)
        out[name] = buf.getvalue()
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.asarray(small), compression="zlib")
    out["small.tif"] = buf.getvalue()
    return out


def _real_masks() -> dict[str, bytes]:
    """A real lung mask as shipped (0/255 PNG), shrunk to 96 px as PNG and TIFF."""
    original = sorted((CXR.parent / "masks").glob("*.png"))[0]
    small = Image.open(original).convert("L").resize((96, 96), Image.NEAREST)
    buf, tif = io.BytesIO(), io.BytesIO()
    small.save(buf, "PNG")
    tifffile.imwrite(tif, np.asarray(small))
    return {"mask.png": original.read_bytes(), "mask_small.png": buf.getvalue(), "mask_small.tif": tif.getvalue()}


REAL = _real_files()
MASKS = _real_masks()
COUNTS: dict[str, int] = {}


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def check_reader(path: Path, reader=read_image) -> str:
    """``reader`` returns an image or raises one ImageReadError line naming the file; nothing else."""
    try:
        result = reader(path)
    except ImageReadError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message and "\r" not in message, repr(message)
        return "refused"
    if isinstance(result, ImageData):
        pixels = result.pixels
        assert pixels.ndim == 2 and pixels.dtype == np.float32 and np.isfinite(pixels).all()
        assert 0.0 <= pixels.min() and pixels.max() <= 1.0
    else:
        assert result.ndim == 2 and result.dtype == bool
    return "read"


def count(name: str, outcome: str) -> None:
    COUNTS[name] += 1
    COUNTS[f"{name} {outcome}"] = COUNTS.get(f"{name} {outcome}", 0) + 1


def run_counted(name: str, test, expected: int) -> None:
    COUNTS[name] = 0
    test()
    outcomes = ", ".join(f"{COUNTS.get(f'{name} {o}', 0)} {o}" for o in ("read", "refused"))
    print(f"\nfuzz {name}: {COUNTS[name]} examples ({outcomes})")
    assert COUNTS[name] >= expected


def test_read_image_of_random_bytes_behind_a_valid_signature(folder):
    @FUZZ
    @given(suffix=st.sampled_from(sorted(MAGIC)), body=st.binary(max_size=4096))
    def fuzz(suffix: str, body: bytes) -> None:
        path = folder / f"magic{suffix}"
        path.write_bytes(MAGIC[suffix] + body)
        count("magic", check_reader(path))

    run_counted("magic", fuzz, 300)


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int | None, insert: tuple[int, bytes] | None) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        out[position % len(out)] = value
    if insert is not None:
        at = insert[0] % len(out)
        out[at:at] = insert[1]
    if cut is not None:
        out = out[: cut % (len(out) + 1)]
    return bytes(out)


MUTATIONS = dict(
    name=st.sampled_from(sorted(REAL)),
    edits=st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), max_size=12),
    header_edits=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=4),
    cut=st.none() | st.integers(0, 2**20),
    insert=st.none() | st.tuples(st.integers(0, 2**20), st.binary(min_size=1, max_size=64)),
)


def test_read_image_of_mutated_real_files(folder):
    @FUZZ
    @given(**MUTATIONS)
    def fuzz(name, edits, header_edits, cut, insert) -> None:
        path = folder / f"mutated_{name}"
        path.write_bytes(_mutate(REAL[name], edits + header_edits, cut, insert))
        count("mutated", check_reader(path))

    run_counted("mutated", fuzz, 300)


def test_read_mask_of_mutated_real_files(folder):
    @settings(FUZZ, max_examples=150)
    @given(**{**MUTATIONS, "name": st.sampled_from(sorted(MASKS))})
    def fuzz(name, edits, header_edits, cut, insert) -> None:
        path = folder / f"mask_{name}"
        path.write_bytes(_mutate(MASKS[name], edits + header_edits, cut, insert))
        count("mask", check_reader(path, read_mask))

    run_counted("mask", fuzz, 150)


def check_csv(path: Path) -> str:
    try:
        boxes = read_boxes_csv(path)
    except ValueError as exc:
        message = str(exc)
        assert message.startswith(str(path)) and "\n" not in message and "\r" not in message, repr(message)
        return "refused"
    assert boxes and all(b.shape == (4,) and np.isfinite(b).all() and b[2] > b[0] and b[3] > b[1]
                         for b in boxes.values())
    return "read"


def test_read_boxes_csv_of_random_text(folder):
    @FUZZ
    @given(text=st.text(max_size=400) | st.binary(max_size=400))
    def fuzz(text) -> None:
        path = folder / "random.csv"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
        count("csv_text", check_csv(path))

    run_counted("csv_text", fuzz, 300)


NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**6, 10**6).map(str),
                   st.sampled_from(["", " ", "nan", "-inf", "1e400", "0x10", "1_000", "١٢", "5,5", '"7"']),
                   st.text(max_size=8))
GOOD_ROW = st.builds(lambda name, x, y, w, h: (name, str(x), f" {y}", str(x + w), f"{y + h:g} "),
                     st.text(min_size=1, max_size=12).filter(lambda t: t.strip() and t.isprintable()
                                                              and not set(t) & set(',;"\t')),
                     st.integers(0, 4000), st.floats(0, 4000), st.integers(1, 900), st.floats(0.5, 900))
ROW = st.one_of(GOOD_ROW, GOOD_ROW, GOOD_ROW, st.tuples(st.text(max_size=12), NUMBER, NUMBER, NUMBER, NUMBER))


def test_read_boxes_csv_of_csv_shaped_text(folder):
    columns = ["file", "x0", "y0", "x1", "y1"]
    header = st.one_of(st.just(columns), st.permutations(columns), st.permutations(columns + ["note"]),
                       st.lists(st.text(max_size=6), max_size=6))

    @FUZZ
    @given(header=header, rows=st.lists(ROW, max_size=6), separator=st.sampled_from([","] * 8 + [";", "\t"]),
           newline=st.sampled_from(["\n", "\r\n", "\r"]))
    @example(header=columns, rows=[("a.png", "1", "2", "30", "40"), ("b c.png", " 0", "0.5 ", "1e3", "2E2")],
             separator=",", newline="\r\n")
    @example(header=columns[::-1] + ["note"], rows=[("9", "8", "7", "6", "x.dcm", "left")], separator=",", newline="\n")
    def fuzz(header, rows, separator, newline) -> None:
        lines = [separator.join(header)] + [separator.join(row) for row in rows]
        path = folder / "rows.csv"
        path.write_bytes(newline.join(lines).encode("utf-8", "surrogatepass"))
        count("csv_rows", check_csv(path))

    run_counted("csv_rows", fuzz, 300)


def _real_dicoms(folder: Path) -> dict[str, bytes]:
    """DICOM files to mutate: a real radiograph (96 px, 12-bit) written as DICOM here, and pydicom's own
    JPEG Baseline, JPEG 2000, RLE and implicit-VR files (compressed streams exercise the decoders)."""
    import pydicom

    from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)

    small = np.asarray(Image.open(sorted(CXR.glob("*.png"))[0]).convert("L").resize((96, 96)), np.uint16) * 16
    out = {"radiograph.dcm": make_dicom(folder / "radiograph.dcm", small, bits_stored=12).read_bytes()}
    corpus = Path(pydicom.__file__).parent / "data" / "test_files"
    for name in ("SC_jpeg_no_color_transform.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "CT_small.dcm"):
        if (corpus / name).is_file():
            out[name] = (corpus / name).read_bytes()
    return out


def test_read_image_of_mutated_dicom_files(folder):
    """Mutated DICOM (header and pixel data, compressed or not): an image or one ImageReadError line."""
    dicoms = _real_dicoms(folder)

    @FUZZ
    @given(name=st.sampled_from(sorted(dicoms)), edits=MUTATIONS["edits"],
           header_edits=st.lists(st.tuples(st.integers(128, 700), st.integers(0, 255)), max_size=4),
           cut=MUTATIONS["cut"], insert=MUTATIONS["insert"])
    def fuzz(name, edits, header_edits, cut, insert) -> None:
        path = folder / f"mutated_{name}"
        path.write_bytes(_mutate(dicoms[name], edits + header_edits, cut, insert))
        count("dicom", check_reader(path))

    run_counted("dicom", fuzz, 300)
