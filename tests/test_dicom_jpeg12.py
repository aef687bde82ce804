"""12-bit JPEG Extended DICOM (older CR archives) decodes with the default, permissive install (python-gdcm,
napari_adaqat/io/dicom_jpeg12.py), as the GPL decoder decodes it; what GDCM cannot read still names the extra."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

from napari_adaqat.io import ImageReadError, read_image
from napari_adaqat.io.dicom_pixels import decode

CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
REFERENCE = Path(__file__).parent / "data" / "dicom" / "jpgextended_libjpeg_every8.npy"  # see its README


def _stored(path: Path, frame: int | None = None) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return decode(path, ds, frame, int(ds.get("NumberOfFrames", 1) or 1))


def test_a_12_bit_jpeg_extended_film_decodes_as_the_reference_decoder_decodes_it():
    pixels = _stored(CORPUS / "JPGExtended.dcm")
    assert pixels.shape == (1024, 256) and pixels.dtype == np.uint16
    reference = np.load(REFERENCE)
    difference = np.abs(pixels[::8, ::8].astype(int) - reference)
    assert difference.max() <= 1 and (difference == 0).mean() > 0.95  # IDCT rounding at most
    # the non-conformant original of that file (NEMA's NM1_JPLY) reads as its fixed version
    assert np.abs(_stored(CORPUS / "JPEG-lossy.dcm").astype(int) - pixels).max() <= 1
    film = read_image(CORPUS / "JPGExtended.dcm")
    assert film.pixels.shape == (1024, 256) and film.meta["bits_stored"] == 12 and film.pixels.max() == 1.0


def test_frames_of_a_multi_frame_file_decode_one_by_one_and_as_a_stack(tmp_path):
    ds = pydicom.dcmread(CORPUS / "JPGExtended.dcm")
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([frame, frame, frame])
    ds.NumberOfFrames = 3
    path = tmp_path / "three.dcm"
    ds.save_as(path)
    one = _stored(CORPUS / "JPGExtended.dcm")
    np.testing.assert_array_equal(_stored(path, 2), one)
    stack = _stored(path)
    assert stack.shape == (3, 1024, 256) and all(np.array_equal(f, one) for f in stack)


def test_a_jpeg_extended_file_gdcm_cannot_read_names_the_gpl_extra(tmp_path):
    ds = pydicom.dcmread(CORPUS / "JPGExtended.dcm")
    ds.PixelRepresentation = 1  # signed 12-bit: neither pydicom's permissive plugins nor dicom_jpeg12 read it
    path = tmp_path / "signed.dcm"
    ds.save_as(path)
    if importlib.util.find_spec("libjpeg") is not None:
        pytest.skip("the dicom-gpl extra is installed here: it decodes this file")
    with pytest.raises(ImageReadError, match=r"pip install 'napari-adaqat\[dicom-gpl\]'") as caught:
        read_image(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)
