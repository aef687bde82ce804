"""DICOM faults each get their own one-line message; preamble-less files, a missing transfer
syntax and multi-frame files are read where they can be."""
from __future__ import annotations


from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from napari_adaqat.io import ImageReadError, is_dicom, read_image
from napari_adaqat.io.dicom import MultiFrameError, read_dicom, read_dicom_stack
from test_dicom import make_dicom, ramp  # tests/ is on sys.path (pytest rootdir-less import)

CORPUS = Path(pydicom.__file__).parent / "data" / "test_files"
INTERNAL = ("plugins", "Traceback", "exceptions were raised", "object has no attribute")


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(ImageReadError) as err:
        read_dicom(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    assert not any(word in message for word in INTERNAL), message
    return message.split(": ", 1)[1]


def _resave(path: Path, edit) -> Path:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)
    return path


# --- one message per fault -------------------------------------------------------------------

def test_no_pixel_data_names_the_sop_class(tmp_path):
    path = _resave(make_dicom(tmp_path / "sr.dcm", ramp(0, 10)), lambda ds: (
        delattr(ds, "PixelData"), setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.88.11")))
    assert _error(path) == "DICOM file has no pixel data (SOP class: Basic Text SR Storage): not an image"


def test_bad_vr_value_is_named_with_its_tag(tmp_path):
    path = make_dicom(tmp_path / "badvr.dcm", ramp(0, 100), NumberOfFrames=1)
    good = b"\x28\x00\x08\x00IS\x02\x001 "  # (0028,0008) IS, length 2, '1 '
    path.write_bytes(path.read_bytes().replace(good, good[:-2] + b"1A"))  # pydicom would not write '1A'
    assert _error(path) == "bad DICOM VR: Number of Frames (0028,0008) is '1A', not a valid IS value"


def test_unknown_vr_code_is_named_with_its_tag(tmp_path):
    path = make_dicom(tmp_path / "zz.dcm", ramp(0, 100))
    raw = bytearray(path.read_bytes())
    at = raw.index(b"\x08\x00\x60\x00CS")  # (0008,0060) Modality, explicit VR 'CS'
    raw[at + 4:at + 6] = b"ZZ"
    path.write_bytes(bytes(raw))
    assert _error(path) == "bad DICOM VR: unknown value representation 'ZZ' in element (0008,0060)"


def test_pixel_data_length_mismatch(tmp_path):
    path = _resave(make_dicom(tmp_path / "short.dcm", ramp(0, 4000, shape=(64, 64))),
                   lambda ds: setattr(ds, "Rows", 128))
    assert _error(path) == ("pixel data length mismatch: 8192 bytes stored, but 128 rows x 64 columns x 1 sample(s) "
                            "x 16 bits x 1 frame(s) need 16384")


def test_truncated_pixel_data_header_and_compressed_data(tmp_path):
    full = make_dicom(tmp_path / "full.dcm", ramp(0, 4095, shape=(64, 64))).read_bytes()
    cut = tmp_path / "cut_pixels.dcm"
    cut.write_bytes(full[:-3000])
    assert _error(cut) == "truncated DICOM file: the pixel data ends after 5192 of 8192 bytes"
    head = tmp_path / "cut_header.dcm"
    head.write_bytes(full[:200])
    assert _error(head) == "truncated DICOM file: it ends inside the file meta header"
    jpeg = tmp_path / "cut_jpeg.dcm"
    jpeg.write_bytes((CORPUS / "SC_rgb_jpeg.dcm").read_bytes()[:-500])
    assert _error(jpeg) == "truncated DICOM file: it ends before the end of a sequence or of the compressed pixel data"


def test_corrupt_and_not_dicom_differ(tmp_path):
    rng = np.random.default_rng(1)
    corrupt = tmp_path / "corrupt.dcm"
    corrupt.write_bytes(b"\0" * 128 + b"DICM" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    assert _error(corrupt) == "corrupt DICOM file: no valid data elements after the file meta header"
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    assert _error(junk) == "not a DICOM file (no DICM marker and no DICOM image elements)"


def test_missing_image_attributes(tmp_path):
    path = _resave(make_dicom(tmp_path / "nobits.dcm", ramp(0, 100)), lambda ds: delattr(ds, "BitsAllocated"))
    assert _error(path) == "DICOM image attributes missing: Bits Allocated; the pixel data cannot be interpreted"


def test_compressed_pixel_data_without_transfer_syntax(tmp_path):
    ds = pydicom.dcmread(CORPUS / "SC_rgb_jpeg_dcmtk.dcm")
    del ds.file_meta.TransferSyntaxUID
    path = tmp_path / "enc_nots.dcm"
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=True)
    assert _error(path).startswith("no Transfer Syntax UID (0002,0010) and the pixel data is compressed")


def test_undecodable_syntax_names_it(tmp_path):
    raw = (CORPUS / "SC_rgb_jpeg.dcm").read_bytes()
    path = tmp_path / "j2k_part2.dcm"
    path.write_bytes(raw.replace(b"1.2.840.10008.1.2.4.50", b"1.2.840.10008.1.2.4.92", 1))
    assert _error(path) == ("cannot decode JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only) "
                            "(1.2.840.10008.1.2.4.92) "
                            "pixel data: not a transfer syntax pydicom can decode; export the image uncompressed "
                            "or as JPEG / JPEG 2000")


def test_missing_decoder_names_the_syntax_and_the_packages(tmp_path, monkeypatch):
    import pydicom.pixels

    class NoPlugins:
        is_available = False
        available_plugins = ()

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: NoPlugins())
    assert _error(CORPUS / "SC_rgb_jpeg.dcm") == (
        "cannot decode JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50) pixel data: no decoder for it is "
        "installed; `pip install pillow` would decode it")
    # JPEG Lossless: python-gdcm (a default dependency, permissive) decodes it; without it, the line names it
    assert _error(CORPUS / "SC_rgb_jpeg_gdcm.dcm") == (
        "cannot decode JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1]) "
        "(1.2.840.10008.1.2.4.70) pixel data: no decoder for it is installed; `pip install python-gdcm` would "
        "decode it")
    # 12-bit JPEG Extended: python-gdcm decodes it (io/dicom_jpeg12.py); without it, the line names it
    assert _error(CORPUS / "JPGExtended.dcm") == (
        "cannot decode JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51) pixel data: no decoder for it is "
        "installed; `pip install python-gdcm` would decode it")


# --- read where possible ---------------------------------------------------------------------

def test_meta_without_transfer_syntax_assumes_how_it_was_parsed(tmp_path):
    arr = ramp(0, 4000, shape=(32, 40))
    ds = pydicom.dcmread(make_dicom(tmp_path / "nots.dcm", arr))
    del ds.file_meta.TransferSyntaxUID
    path = tmp_path / "nots.dcm"
    pydicom.dcmwrite(path, ds, implicit_vr=False, little_endian=True)
    img = read_dicom(path)
    assert img.meta["transfer_syntax_assumed"] and img.meta["transfer_syntax"].startswith("Explicit VR Little Endian")
    np.testing.assert_allclose(img.pixels, (arr - arr.min()) / (arr.max() - arr.min()), atol=1e-6)


def _bare_dataset(arr: np.ndarray, implicit: bool) -> bytes:
    """A data set with no preamble, no 'DICM' and no file meta."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = arr.tobytes()
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("implicit", [True, False])
def test_file_without_preamble_is_read_and_recognised_without_extension(tmp_path, implicit):
    arr = ramp(0, 4000, shape=(16, 20))
    path = tmp_path / "IM0001"
    path.write_bytes(_bare_dataset(arr, implicit))
    assert is_dicom(path)
    img = read_image(path)
    assert img.pixels.shape == (16, 20) and img.meta["transfer_syntax_assumed"]
    assert img.pixels[0, 0] == 0.0 and img.pixels[-1, -1] == 1.0


def test_file_meta_without_preamble_keeps_its_transfer_syntax(tmp_path):
    raw = (CORPUS / "SC_rgb_jpeg_dcmtk.dcm").read_bytes()
    meta_first = tmp_path / "IM0003"
    meta_first.write_bytes(raw[132:])  # no preamble, no 'DICM': file meta group, then the JPEG data set
    img = read_dicom(meta_first)
    assert img.pixels.shape == (100, 100) and "transfer_syntax_assumed" not in img.meta
    assert img.meta["transfer_syntax"] == "JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)"
    meta_length = int(pydicom.dcmread(CORPUS / "SC_rgb_jpeg_dcmtk.dcm").file_meta.FileMetaInformationGroupLength)
    bare = tmp_path / "IM0004"
    bare.write_bytes(raw[132 + 12 + meta_length:])  # the JPEG data set alone: its codec is unknown
    assert is_dicom(bare)
    assert _error(bare).startswith("no Transfer Syntax UID (0002,0010) and the pixel data is compressed")


def test_pydicom_no_meta_file_is_read():
    img = read_dicom(CORPUS / "no_meta.dcm")
    ref = read_dicom(CORPUS / "CT_small.dcm")
    np.testing.assert_array_equal(img.pixels, ref.pixels)


def test_random_files_are_not_taken_for_dicom(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(20):
        path = tmp_path / f"{i:08d}"
        path.write_bytes(rng.integers(0, 256, 500, dtype=np.uint8).tobytes())
        assert not is_dicom(path), path
    header_only = tmp_path / "IM0002"  # data elements but no image
    header_only.write_bytes(_bare_dataset(ramp(0, 10, shape=(2, 2)), True)[:60])
    assert not is_dicom(header_only)


# --- multi-frame -----------------------------------------------------------------------------

def multiframe(path: Path, frames: np.ndarray, **attrs) -> Path:
    """A (F, H, W) uint16 stack as one multi-frame DX file."""
    f, h, w = frames.shape
    make_dicom(path, frames.reshape(f * h, w), NumberOfFrames=f, **attrs)
    return _resave(path, lambda ds: setattr(ds, "Rows", h))


def test_multiframe_needs_a_frame_and_gives_a_stack(tmp_path):
    frames = np.stack([ramp(0, 1000 * (i + 1), shape=(8, 12)) for i in range(3)])
    frames[1, 0, 0] = 3000  # frame 1 differs in one pixel after scaling
    path = multiframe(tmp_path / "mf.dcm", frames)
    with pytest.raises(MultiFrameError, match=r"3-D stack \(3 planes\)") as err:
        read_dicom(path)
    assert err.value.frames == 3
    one = read_dicom(path, frame=1)
    assert one.pixels.shape == (8, 12) and one.meta["frame"] == 1 and one.meta["frames"] == 3
    stack = read_dicom_stack(path)
    assert stack.pixels.shape == (3, 8, 12)
    np.testing.assert_array_equal(stack.pixels[1], one.pixels)
    assert _error(path, frame=3) == "frame 3 is out of range: the file has 3 frames (0 to 2)"


def test_frame_is_ignored_for_single_frame_files(tmp_path):
    path = make_dicom(tmp_path / "one.dcm", ramp(0, 100))
    np.testing.assert_array_equal(read_dicom(path, frame=2).pixels, read_dicom(path).pixels)


def test_compressed_multiframe_frame_matches_stack():
    path = CORPUS / "examples_ybr_color.dcm"  # 30 JPEG Baseline frames
    stack = read_dicom_stack(path).pixels
    assert stack.shape == (30, 240, 320)
    np.testing.assert_array_equal(read_dicom(path, frame=7).pixels, stack[7])


def test_make_dicom_meta_is_explicit_little_endian(tmp_path):
    """The writer these tests use keeps its transfer syntax (guards the assumptions above)."""
    ds = pydicom.dcmread(make_dicom(tmp_path / "x.dcm", ramp(0, 10)))
    assert isinstance(ds.file_meta, FileMetaDataset) and ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
