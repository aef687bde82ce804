"""JPEG Lossless (Process 14), the usual compression of CR/DX films from a hospital archive, decodes with the
default install (python-gdcm, permissively licensed): a real radiograph stored 12-bit in 16, compressed
by GDCM itself, reads and segments exactly as the same film stored uncompressed."""
from __future__ import annotations

from pathlib import Path

import gdcm  # a default dependency (pyproject.toml): JPEG Lossless decodes with every install
import numpy as np
import pydicom
import pytest
from PIL import Image

from napari_adaqat.cli import main
from napari_adaqat.io import read_image, read_mask
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)

FILM = sorted((Path(__file__).parent / "data" / "cxr" / "images").glob("*.png"))[0]
LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"


def jpeg_lossless(src: Path, dst: Path) -> Path:
    """``src`` re-encoded as JPEG Lossless, Process 14, Selection Value 1, by GDCM (as a PACS exports it)."""
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGLosslessProcess14_1))
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()
    return dst


@pytest.fixture(scope="module")
def films(tmp_path_factory) -> tuple[Path, Path, np.ndarray]:
    """(uncompressed DICOM, its JPEG Lossless twin, the stored values (256, 256) uint16 0..4095)."""
    folder = tmp_path_factory.mktemp("lossless")
    gray = np.asarray(Image.open(FILM).convert("L").resize((256, 256)), dtype=np.float64)
    values = np.round(gray / gray.max() * 4095).astype(np.uint16)
    plain = make_dicom(folder / "film_plain.dcm", values, bits_stored=12)
    (folder / "archive").mkdir()
    packed = jpeg_lossless(plain, folder / "archive" / "film.dcm")
    return plain, packed, values


def test_the_archive_file_is_really_jpeg_lossless_and_reads_as_stored(films):
    plain, packed, values = films
    assert str(pydicom.dcmread(packed).file_meta.TransferSyntaxUID) == LOSSLESS_SV1
    assert packed.stat().st_size < 0.8 * plain.stat().st_size  # compressed
    np.testing.assert_array_equal(read_image(packed).pixels, read_image(plain).pixels)
    assert read_image(packed).pixels.shape == values.shape


def test_adaqat_segment_gives_the_uncompressed_films_mask(films, tmp_path):
    plain, packed, _values = films
    assert main(["segment", str(packed), "--out", str(tmp_path / "a")]) == 0
    assert main(["segment", str(plain), "--out", str(tmp_path / "b")]) == 0
    got = read_mask(next((tmp_path / "a").glob("*_mask.png")))
    want = read_mask(next((tmp_path / "b").glob("*_mask.png")))
    assert got.any() and np.array_equal(got, want)
