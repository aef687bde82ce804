"""A DICOM whose Bits Stored (0028,0101) understates its pixel values (a modality that writes 12 but stores
14-16 bit values): pydicom masks (unsigned) or sign-extends (signed) the values to Bits Stored, which scrambles
the film. It is read as Bits Allocated allows, with one warning line, through read_image, the napari reader and
`adaqat segment`; files whose values fit Bits Stored (or keep an overlay in the unused bits) read as before."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from napari_adaqat._reader import get_dicom_reader
from napari_adaqat.cli import main
from napari_adaqat.io import read_image, read_mask
from napari_adaqat.io.image_data import ImageReadWarning
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)

CXR = sorted((Path(__file__).parent / "data" / "cxr" / "images").glob("*.png"))[0]


@pytest.fixture(scope="module")
def film16() -> np.ndarray:
    """A real radiograph as uint16 values 0 to 40000 (16 bits used), (128, 128)."""
    gray = np.asarray(Image.open(CXR).convert("L"))[::4, ::4].astype(np.float64)
    return np.round(gray / gray.max() * 40000).astype(np.uint16)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a).astype(float), np.ravel(b).astype(float))[0, 1])


def read_warned(path: Path):
    """read_image(path) and the one ImageReadWarning line it gave."""
    with pytest.warns(ImageReadWarning) as record:
        image = read_image(path)
    lines = [str(w.message) for w in record if issubclass(w.category, ImageReadWarning)]
    assert len(lines) == 1 and "\n" not in lines[0] and lines[0].startswith(str(path)), lines
    return image, lines[0]


def test_pydicom_scrambles_such_a_file(tmp_path, film16):
    """What pydicom (the installed version) does: it cuts the values to Bits Stored, silently."""
    path = make_dicom(tmp_path / "understated.dcm", film16, bits_stored=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cut = pydicom.dcmread(path).pixel_array
    np.testing.assert_array_equal(cut, film16 & 0x0FFF)
    assert corr(cut, film16) < 0.5


def test_unsigned_values_beyond_bits_stored_read_as_the_true_film(tmp_path, film16):
    true = read_image(make_dicom(tmp_path / "true.dcm", film16, bits_stored=16))
    image, line = read_warned(make_dicom(tmp_path / "understated.dcm", film16, bits_stored=12))
    assert corr(image.pixels, film16) > 0.9999
    np.testing.assert_allclose(image.pixels, true.pixels, atol=1e-6)
    assert "Bits Stored (0028,0101) says 12 bits" in line and f"{film16.min()} to 40000" in line and "16-bit" in line
    assert image.meta["bits_stored"] == 16


def test_signed_values_beyond_bits_stored_read_as_the_true_film(tmp_path, film16):
    signed = (film16.astype(np.int32) - 20000).astype(np.int16)
    true = read_image(make_dicom(tmp_path / "true.dcm", signed, bits_stored=16))
    image, line = read_warned(make_dicom(tmp_path / "understated.dcm", signed, bits_stored=12))
    assert corr(image.pixels, signed) > 0.9999
    np.testing.assert_allclose(image.pixels, true.pixels, atol=1e-6)
    assert f"{signed.min()} to 20000" in line


def test_a_window_scales_by_the_bits_really_used(tmp_path, film16):
    """Windowing's output range follows Bits Stored: with the values kept, it follows Bits Allocated."""
    kw = {"WindowCenter": 20000, "WindowWidth": 40000}
    true = read_image(make_dicom(tmp_path / "true.dcm", film16, bits_stored=16, **kw))
    image, _line = read_warned(make_dicom(tmp_path / "understated.dcm", film16, bits_stored=12, **kw))
    assert image.meta["voi"] == "window"
    np.testing.assert_allclose(image.pixels, true.pixels, atol=1e-6)


@pytest.mark.parametrize("signed", [False, True])
def test_values_that_fit_bits_stored_read_as_pydicom_reads_them(tmp_path, film16, signed):
    """Conformant 12-bit files (signed ones with or without their sign extended) are unchanged, unwarned."""
    values = (film16 // 10).astype(np.int32) - (2000 if signed else 0)  # 0..4000 or -2000..2000
    stored = [values.astype(np.int16 if signed else np.uint16)]
    if signed:
        stored.append((values & 0x0FFF).astype(np.int16))  # two's complement in the low 12 bits only
    for i, arr in enumerate(stored):
        path = make_dicom(tmp_path / f"fit{i}.dcm", arr, bits_stored=12)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ImageReadWarning)
            image = read_image(path)
        expected = pydicom.dcmread(path).pixel_array
        np.testing.assert_array_equal(expected, values)
        assert corr(image.pixels, values) > 0.9999 and image.meta["bits_stored"] == 12


def test_a_few_stray_high_bits_are_cleared_as_pydicom_clears_them(tmp_path, film16):
    """An old writer's junk in the unused bits of a few pixels (no overlay group) is not a film using more
    bits: those bits are cleared as pydicom clears them, silently (read at 16 bits, min-max would darken it)."""
    film12 = film16 // 10  # 0..4000: 12 bits
    junk = film12.copy()
    junk[0, :4] |= 0x8000  # 4 of 16,384 pixels
    path = make_dicom(tmp_path / "junk.dcm", junk, bits_stored=12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageReadWarning)
        image = read_image(path)
    clean = read_image(make_dicom(tmp_path / "clean.dcm", film12, bits_stored=12))
    np.testing.assert_allclose(image.pixels, clean.pixels, atol=1e-6)
    assert image.meta["bits_stored"] == 12


@pytest.mark.parametrize("junk", ["random bits in every pixel", "text in bit 15 over 3 % of the film"])
def test_junk_high_bits_without_an_overlay_group_are_cleared(tmp_path, film16, junk):
    """Junk in the unused bits of many pixels (a QA find: random bits 12-15, or burnt-in text in bit 15, read as
    16-bit values with a warning that said the opposite; Dice 0.56 and 0.47): cut to Bits Stored, the film is
    whole and smooth, while the values as stored are noise or jump along the text, so they are cut, silently."""
    film12 = film16 // 10
    if junk.startswith("random"):
        stored = film12 | (np.random.default_rng(0).integers(0, 16, film12.shape).astype(np.uint16) << 12)
    else:
        stored = film12.copy()
        stored[20:24, 8:120] |= 0x8000
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageReadWarning)
        image = read_image(make_dicom(tmp_path / "junk.dcm", stored, bits_stored=12))
    clean = read_image(make_dicom(tmp_path / "clean.dcm", film12, bits_stored=12))
    np.testing.assert_allclose(image.pixels, clean.pixels, atol=1e-6)


def test_junk_high_bits_in_every_frame_read_alike_alone_and_in_the_stack(tmp_path, film16):
    """A review find: the junk rule judged one frame (read alone) but not a stack (the napari reader)."""
    from napari_adaqat.io.dicom import read_dicom, read_dicom_stack

    film12 = film16 // 10
    rng = np.random.default_rng(0)
    frames = np.stack([film12 | (rng.integers(0, 16, film12.shape).astype(np.uint16) << 12) for _ in range(2)])
    path = make_dicom(tmp_path / "two_frames.dcm", frames[0], bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames, ds.PixelData = 2, frames.tobytes()
    ds.save_as(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageReadWarning)
        alone, stack = read_dicom(path, frame=1), read_dicom_stack(path)
    clean = read_image(make_dicom(tmp_path / "clean.dcm", film12, bits_stored=12))
    np.testing.assert_allclose(alone.pixels, clean.pixels, atol=1e-6)
    np.testing.assert_allclose(stack.pixels[0], clean.pixels, atol=1e-6)


def test_an_overlay_in_the_unused_bits_is_no_part_of_the_film(tmp_path, film16):
    """Old files keep an overlay plane in the high bits (Overlay Bits Allocated = Bits Allocated): still cleared."""
    film12 = film16 // 10
    overlay = np.zeros_like(film12)
    overlay[10:20, 10:100] = 1 << 12  # an annotation burnt into bit 12
    path = make_dicom(tmp_path / "overlay.dcm", film12 | overlay, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.add_new((0x6000, 0x0010), "US", film12.shape[0])
    ds.add_new((0x6000, 0x0011), "US", film12.shape[1])
    ds.add_new((0x6000, 0x0100), "US", 16)
    ds.add_new((0x6000, 0x0102), "US", 12)
    ds.save_as(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageReadWarning)
        image = read_image(path)
    lo, hi = film12.min(), film12.max()
    np.testing.assert_allclose(image.pixels, (film12 - lo) / (hi - lo), atol=1e-6)


def test_the_napari_reader_shows_the_true_film(tmp_path, film16):
    path = make_dicom(tmp_path / "understated.dcm", film16, bits_stored=12)
    reader = get_dicom_reader(str(path))
    assert reader is not None
    with pytest.warns(ImageReadWarning, match="Bits Stored"):
        (data, _kwargs, kind), = reader(str(path))
    assert kind == "image" and corr(data, film16) > 0.9999


def test_adaqat_segment_segments_the_true_film(tmp_path, film16, nano_pth, capsys):
    for folder in ("true", "scanner"):
        (tmp_path / folder).mkdir()
    true = make_dicom(tmp_path / "true" / "film.dcm", film16, bits_stored=16)
    understated = make_dicom(tmp_path / "scanner" / "film.dcm", film16, bits_stored=12)
    model = ["--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]
    assert main(["segment", str(true), "--out", str(tmp_path / "out_true"), *model]) == 0
    capsys.readouterr()
    assert main(["segment", str(understated), "--out", str(tmp_path / "out"), *model]) == 0
    mask, = (tmp_path / "out").glob("*_mask.png")
    mask_true, = (tmp_path / "out_true").glob("*_mask.png")
    np.testing.assert_array_equal(read_mask(mask), read_mask(mask_true))
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if "warning" in line]
    assert warned == [w for w in warned if w.startswith(f"adaqat segment: warning: {understated}: Bits Stored")]
    assert len(warned) == 1 and "Traceback" not in err and "ImageReadWarning" not in err, err


@pytest.mark.gui
def test_napari_opens_the_true_film_through_our_reader(make_napari_viewer, tmp_path, film16):
    path = make_dicom(tmp_path / "understated.dcm", film16, bits_stored=12)
    viewer = make_napari_viewer()
    with pytest.warns(ImageReadWarning, match="Bits Stored"):
        [layer] = viewer.open(str(path), plugin="napari-adaqat")
    assert corr(layer.data, film16) > 0.9999


@pytest.mark.parametrize("signed", [False, True])
def test_a_frame_reads_alike_alone_and_in_its_stack(tmp_path, film16, signed):
    """The Bits Stored reading is decided on the whole file: frame 0 fits 12 bits, frame 1 does not; frame 0
    alone (``adaqat segment --frame 0``) reads as it does in the stack (the napari reader), with the same
    warning and Bits Stored."""
    from napari_adaqat.io.dicom import read_dicom, read_dicom_stack

    small = (film16 // 10).astype(np.int32)  # 0..4000: fits 12 bits unsigned; signed: the unextended case
    frames = np.stack([small, film16.astype(np.int32) // (2 if signed else 1)])
    arr = frames.astype(np.int16 if signed else np.uint16)
    path = make_dicom(tmp_path / "two_frames.dcm", arr[0], bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames, ds.PixelData = 2, arr.tobytes()
    ds.save_as(path)
    with pytest.warns(ImageReadWarning) as alone_warned:
        alone = read_dicom(path, frame=0)
    with pytest.warns(ImageReadWarning) as stack_warned:
        stack = read_dicom_stack(path)
    np.testing.assert_array_equal(alone.pixels, stack.pixels[0])
    assert alone.meta["bits_stored"] == stack.meta["bits_stored"] == 16
    assert len(alone_warned) == len(stack_warned) == 1
    assert corr(stack.pixels[1], frames[1]) > 0.9999 and corr(alone.pixels, frames[0]) > 0.9999


def test_a_bright_patch_just_above_bits_stored_is_kept_not_wrapped_to_black(tmp_path, film16):
    """A few pixels just over Bits Stored (a marker burnt in at 4200 on a 12-bit film) are the film's own values,
    not junk bits: kept, with the warning (cleared, they would read near black)."""
    film12 = (film16 // 10).astype(np.uint16)
    film12[:6, :6] = 4200  # 36 of 16,384 pixels: 0.2 %
    image, line = read_warned(make_dicom(tmp_path / "marker.dcm", film12, bits_stored=12))
    assert image.pixels[:6, :6].min() == image.pixels.max()  # the brightest, not wrapped to 104 / 4095
    assert "4200" in line


def test_a_damaged_frame_does_not_stop_the_others_from_reading(tmp_path):
    """One frame of several is read with the file's Bits Stored reading, looking at the other frames one at a time;
    a frame that does not decode (a cut transfer) is left out of that look, and is refused only when asked for."""
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import RLELossless

    from napari_adaqat.io import ImageReadError
    from napari_adaqat.io.dicom import read_dicom

    frames = np.random.default_rng(0).integers(0, 4096, (3, 64, 64)).astype(np.uint16)
    path = make_dicom(tmp_path / "three.dcm", frames[0], bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames, ds.PixelData = 3, frames.tobytes()
    ds.compress(RLELossless, encoding_plugin="pydicom")
    parts = list(generate_frames(ds.PixelData, number_of_frames=3))
    parts[2] = parts[2][:64] + b"\x00" * 10
    ds.PixelData = encapsulate(parts, has_bot=True)
    ds.save_as(path, enforce_file_format=True)
    for index in (0, 1):
        np.testing.assert_allclose(read_dicom(path, frame=index).pixels, frames[index] / frames[index].max(), atol=1e-6)
    with pytest.raises(ImageReadError, match="corrupt"):
        read_dicom(path, frame=2)
