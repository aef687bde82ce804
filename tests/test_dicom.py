"""DICOM reading: LUTs, windowing, MONOCHROME1, bit depths, spacing, detection, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from napari_adaqat.io import ImageReadError, is_dicom, is_image_file, read_image

DX_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"


def make_dicom(path: Path, arr: np.ndarray, *, bits_stored: int = 16, **attrs) -> Path:
    """Write a minimal single-frame DX file holding ``arr`` (uint8/uint16/int16 or RGB uint8)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = arr.shape[:2]
    rgb = arr.ndim == 3
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = arr.dtype.itemsize * 8
    ds.BitsStored = min(bits_stored, ds.BitsAllocated)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if arr.dtype.kind == "i" else 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(arr).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def ramp(lo: int, hi: int, dtype=np.uint16, shape=(8, 16)) -> np.ndarray:
    return np.linspace(lo, hi, shape[0] * shape[1]).round().astype(dtype).reshape(shape)


def test_monochrome1_is_inverted(tmp_path):
    arr = ramp(0, 4000)
    m2 = read_image(make_dicom(tmp_path / "m2.dcm", arr, bits_stored=12))
    m1 = read_image(
        make_dicom(tmp_path / "m1.dcm", arr, bits_stored=12, PhotometricInterpretation="MONOCHROME1")
    )
    assert m1.meta["photometric"] == "MONOCHROME1"
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)
    assert m2.pixels[0, 0] == 0.0 and m2.pixels[-1, -1] == 1.0
    assert m1.pixels[0, 0] == 1.0 and m1.pixels[-1, -1] == 0.0


def test_window_center_width_applied(tmp_path):
    arr = np.array([[100, 1000, 1500, 2000, 3000]], np.uint16)
    path = make_dicom(tmp_path / "w.dcm", arr, bits_stored=12, WindowCenter=1500, WindowWidth=1000)
    img = read_image(path)
    px = img.pixels[0]
    assert img.meta["window"] == (1500.0, 1000.0)
    assert px[0] == 0.0 and px[1] == 0.0  # below / at the lower edge
    assert px[4] == 1.0  # above
    assert px[2] == pytest.approx(0.5, abs=0.01)
    assert 0.0 < px[2] < px[3] <= 1.0


def test_monochrome1_inverted_after_windowing(tmp_path):
    arr = np.array([[100, 1500, 3000]], np.uint16)
    img = read_image(
        make_dicom(tmp_path / "w1.dcm", arr, WindowCenter=1500, WindowWidth=1000,
                   PhotometricInterpretation="MONOCHROME1")
    )
    np.testing.assert_allclose(img.pixels[0], [1.0, 0.5, 0.0], atol=0.01)


def test_rescale_applied_before_window(tmp_path):
    # stored 0..200 -> HU -1000..1000 with slope 10, intercept -1000; window 0 +- 500 HU
    arr = np.array([[0, 50, 100, 150, 200]], np.uint16)
    img = read_image(
        make_dicom(tmp_path / "r.dcm", arr, bits_stored=12, RescaleSlope=10, RescaleIntercept=-1000,
                   WindowCenter=0, WindowWidth=1000)
    )
    np.testing.assert_allclose(img.pixels[0], [0.0, 0.0, 0.5, 1.0, 1.0], atol=0.01)


def test_rescale_without_window_uses_full_range(tmp_path):
    arr = np.array([[0, 100, 200]], np.uint16)
    img = read_image(make_dicom(tmp_path / "r2.dcm", arr, RescaleSlope=2, RescaleIntercept=-50))
    np.testing.assert_allclose(img.pixels[0], [0.0, 0.5, 1.0], atol=1e-6)
    assert img.meta["voi"] == "full_range" and "window" not in img.meta


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_voi_lut_sequence_applied(tmp_path, syntax):
    """Implicit VR (the PACS default) reads LUT Data back as OW bytes, not as a list of values."""
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [4, 0, 16])  # 4 entries, first input 0, 16-bit
    item.add_new("LUTData", "US", [0, 1000, 3000, 4000])
    arr = np.array([[0, 1, 2, 3, 9]], np.uint16)
    path = make_dicom(tmp_path / "lut.dcm", arr, bits_stored=12, VOILUTSequence=Sequence([item]))
    if syntax == ImplicitVRLittleEndian:
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, enforce_file_format=True)
        assert isinstance(pydicom.dcmread(path).VOILUTSequence[0].LUTData, bytes)
    img = read_image(path)
    assert img.meta["voi"] == "lut"
    np.testing.assert_allclose(img.pixels[0], [0.0, 0.25, 0.75, 1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize("bits, hi", [(16, 65535), (12, 4095), (8, 255)])
def test_bit_depths_monotone_full_range(tmp_path, bits, hi):
    dtype = np.uint8 if bits == 8 else np.uint16
    arr = ramp(0, hi, dtype)
    img = read_image(make_dicom(tmp_path / f"b{bits}.dcm", arr, bits_stored=bits))
    px = img.pixels.ravel()
    assert img.pixels.dtype == np.float32 and img.pixels.shape == arr.shape
    assert img.meta["bits_stored"] == bits
    assert px.min() == 0.0 and px.max() == 1.0
    assert np.all(np.diff(px) >= 0) and np.all(np.diff(px)[np.diff(arr.ravel().astype(int)) > 0] > 0)
    np.testing.assert_allclose(px, arr.ravel() / hi, atol=1e-6)


def test_signed_16bit(tmp_path):
    arr = ramp(-1000, 3000, np.int16)
    img = read_image(make_dicom(tmp_path / "s.dcm", arr))
    assert img.pixels.min() == 0.0 and img.pixels.max() == 1.0
    assert np.all(np.diff(img.pixels.ravel()) >= 0)


def test_spacing_from_pixel_spacing_and_imager_pixel_spacing(tmp_path):
    arr = ramp(0, 100)
    a = read_image(make_dicom(tmp_path / "a.dcm", arr, PixelSpacing=[0.139, 0.143],
                              ImagerPixelSpacing=[0.2, 0.2]))
    b = read_image(make_dicom(tmp_path / "b.dcm", arr, ImagerPixelSpacing=[0.15, 0.16]))
    c = read_image(make_dicom(tmp_path / "c.dcm", arr))
    assert a.spacing == pytest.approx((0.139, 0.143)) and isinstance(a.spacing[0], float)
    assert b.spacing == pytest.approx((0.15, 0.16))
    assert c.spacing is None
    assert a.meta["modality"] == "DX" and a.meta["format"] == "dicom"


def test_dicom_without_extension(tmp_path):
    path = make_dicom(tmp_path / "IM0001", ramp(0, 4095), bits_stored=12, PixelSpacing=[0.1, 0.1])
    other = tmp_path / "notes"
    other.write_bytes(b"\0" * 200)
    assert is_dicom(path) and is_image_file(path)
    assert not is_dicom(other) and not is_image_file(other)
    img = read_image(path)
    assert img.meta["format"] == "dicom" and img.spacing == pytest.approx((0.1, 0.1))
    assert img.pixels.shape == (8, 16)


def test_rgb_dicom_to_gray(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 255  # pure red
    img = read_image(make_dicom(tmp_path / "rgb.dcm", rgb, bits_stored=8))
    assert img.pixels.shape == (4, 5)
    np.testing.assert_allclose(img.pixels, 0.2125, atol=1e-3)  # rgb2gray luminance of red


def test_multiframe_dicom_rejected(tmp_path):
    frames = ramp(0, 100, shape=(3 * 4, 5))  # 3 frames of 4 x 5, written as one block
    path = make_dicom(tmp_path / "mf.dcm", frames, NumberOfFrames=3)
    ds = pydicom.dcmread(path)
    ds.Rows = 4
    ds.save_as(path)
    with pytest.raises(ImageReadError, match=r"3-D stack \(3 planes\)"):
        read_image(path)


def _assert_one_line(err: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(err.value)
    assert "\n" not in msg and path.name in msg


def test_random_bytes_dcm_is_clean_error(tmp_path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    _assert_one_line(err, path)


def test_truncated_dicom_is_clean_error(tmp_path):
    full = make_dicom(tmp_path / "full.dcm", ramp(0, 4095, shape=(64, 64)))
    data = full.read_bytes()
    for name, cut in (("trunc_pixels.dcm", len(data) - 3000), ("trunc_header.dcm", 200)):
        path = tmp_path / name
        path.write_bytes(data[:cut])
        with pytest.raises(ImageReadError) as err:
            read_image(path)
        _assert_one_line(err, path)


def test_dicom_without_pixel_data(tmp_path):
    path = make_dicom(tmp_path / "nopix.dcm", ramp(0, 10))
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(ImageReadError, match="no pixel data") as err:
        read_image(path)
    _assert_one_line(err, path)


def test_missing_file(tmp_path):
    path = tmp_path / "absent.dcm"
    with pytest.raises(ImageReadError, match="file not found") as err:
        read_image(path)
    _assert_one_line(err, path)
