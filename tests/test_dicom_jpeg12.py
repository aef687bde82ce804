"""12-bit JPEG Extended DICOM (older CR archives) decodes with the default, permissive install (python-gdcm, the
pydicom plugin of napari_adaqat/io/dicom_jpeg12.py) as the GPL decoder decodes it; what it cannot read is refused
with one line: a corrupt stream as corrupt, a signed or 16-bit one naming the GPL extra."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate, generate_frames

from napari_adaqat.io import ImageReadError, read_image
from napari_adaqat.io import dicom_jpeg12
from napari_adaqat.io.dicom_pixels import decode

CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
DATA = Path(__file__).parent / "data" / "dicom"  # see its README
sys.path.insert(0, str(DATA))
from make_jpeg12_frames import pattern  # noqa: E402

GPL_DECODER = importlib.util.find_spec("libjpeg") is not None


def _stored(path: Path, frame: int | None = None) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return decode(path, ds, frame, int(ds.get("NumberOfFrames", 1) or 1))


def _with_frames(tmp_path: Path, streams: list[bytes], name: str = "film.dcm", **header) -> Path:
    """pydicom's JPGExtended.dcm header over ``streams`` (64 x 48 unless ``header`` says otherwise)."""
    ds = pydicom.dcmread(CORPUS / "JPGExtended.dcm")
    ds.Rows, ds.Columns = 64, 48
    ds.PixelData = encapsulate(streams)
    ds.NumberOfFrames = len(streams)
    for key, value in header.items():
        setattr(ds, key, value)
    ds.save_as(tmp_path / name)
    return tmp_path / name


def test_a_12_bit_jpeg_extended_film_decodes_as_the_reference_decoder_decodes_it():
    ds = pydicom.dcmread(CORPUS / "JPGExtended.dcm")
    ds.pixel_array_options(decoding_plugin=dicom_jpeg12.LABEL)  # this plugin, also where the GPL decoder is
    pixels = ds.pixel_array
    assert pixels.shape == (1024, 256) and pixels.dtype == np.uint16
    difference = np.abs(pixels[::8, ::8].astype(int) - np.load(DATA / "jpgextended_libjpeg_every8.npy"))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.95  # IDCT rounding at most
    # through the reader: the film, and NEMA's non-conformant original of the file (the GPL decoder refuses it)
    assert np.abs(_stored(CORPUS / "JPEG-lossy.dcm").astype(int) - pixels).max() <= 1
    film = read_image(CORPUS / "JPGExtended.dcm")
    assert film.pixels.shape == (1024, 256) and film.meta["bits_stored"] == 12 and film.pixels.max() == 1.0


def test_each_frame_of_a_multi_frame_file_is_its_own(tmp_path):
    streams = [(DATA / f"jpeg12_frame{k}.jpg").read_bytes() for k in (0, 1)]
    path = _with_frames(tmp_path, [streams[0], streams[1], streams[0]])
    stack = _stored(path)
    assert stack.shape == (3, 64, 48)
    for index, k in enumerate((0, 1, 0)):
        frame = _stored(path, index)
        np.testing.assert_array_equal(frame, stack[index])
        error = np.abs(frame.astype(int) - pattern(k))
        assert error.mean() < 12 and error.mean() < 0.05 * np.abs(frame.astype(int) - pattern(1 - k)).mean()


def test_a_damaged_stream_is_refused_as_corrupt_in_one_line(tmp_path):
    ds = pydicom.dcmread(CORPUS / "JPGExtended.dcm")
    stream = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
    stream[len(stream) // 2:len(stream) // 2 + 50] = b"\xff\x00" * 25  # a damaged stretch of entropy-coded data
    ds.PixelData = encapsulate([bytes(stream)])
    ds.save_as(tmp_path / "damaged.dcm")
    with pytest.raises(ImageReadError) as caught:
        read_image(tmp_path / "damaged.dcm")
    message = str(caught.value)
    assert "the compressed data is corrupt or non-conformant (rejected by " in message and "\n" not in message
    assert GPL_DECODER or "python-gdcm: GDCM could not decode the JPEG stream" in message


@pytest.mark.skipif(GPL_DECODER, reason="the dicom-gpl extra is installed here: it decodes these")
@pytest.mark.parametrize("header", [{"PixelRepresentation": 1}, {"BitsStored": 16, "HighBit": 15}],
                         ids=["signed", "16-bit"])
def test_what_the_plugin_does_not_read_names_the_gpl_extra(tmp_path, header):
    path = _with_frames(tmp_path, [(DATA / "jpeg12_frame0.jpg").read_bytes()], **header)
    with pytest.raises(ImageReadError, match=r"pip install 'napari-adaqat\[dicom-gpl\]'") as caught:
        read_image(path)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_a_stream_of_another_precision_is_not_read_as_12_bit():
    class Runner:  # what pydicom hands a plugin
        rows, columns, samples_per_pixel, bits_allocated, bits_stored, pixel_representation = 64, 48, 1, 16, 12, 0
        photometric_interpretation = "MONOCHROME2"

    stream = bytearray((DATA / "jpeg12_frame0.jpg").read_bytes())
    assert len(dicom_jpeg12.decode_frame(bytes(stream), Runner())) == 2 * 64 * 48
    marker = stream.index(b"\xff\xc1")  # SOF1; its precision byte follows the segment length
    stream[marker + 4] = 16
    with pytest.raises(ValueError, match="of 16-bit precision"):
        dicom_jpeg12.decode_frame(bytes(stream), Runner())


def test_fill_bytes_before_a_marker_are_skipped():
    from napari_adaqat.io.jpeg_header import frame_header

    stream = (DATA / "jpeg12_frame0.jpg").read_bytes()
    at = stream.index(b"\xff\xc1")
    assert frame_header(stream) == frame_header(stream[:at] + b"\xff\xff" + stream[at:]) == (0xC1, 12)


@pytest.mark.skipif(GPL_DECODER, reason="the dicom-gpl extra is installed here: its own message")
def test_a_stream_whose_precision_disagrees_with_the_header_says_so(tmp_path):
    stream = bytearray((DATA / "jpeg12_frame0.jpg").read_bytes())
    stream[stream.index(b"\xff\xc1") + 4] = 8  # the frame header says 8 bits; the DICOM header 12
    path = _with_frames(tmp_path, [bytes(stream)])
    with pytest.raises(ImageReadError, match="its JPEG stream is of 8-bit precision, but the header says 12 bits "
                                             "stored$"):
        read_image(path)
