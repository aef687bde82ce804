"""Files from other sites' scanners and exporters, each read as the film it shows or refused in one line:
white-is-zero, palette, CMYK and YCbCr TIFFs, TIFFs with a thumbnail page or LZW / JPEG compression (no
imagecodecs), DICOM pixel padding, Presentation LUT Shape INVERSE, windows that miss the data, PNG/JPEG/TIFF
files named ``.dcm``, 12-bit / lossless / JPEG-LS ``.jpg`` exports, formats we do not read; masks as stored."""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_adaqat.io import ImageReadError, read_image
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)

CXR = sorted((Path(__file__).parent / "data" / "cxr" / "images").glob("*.png"))[0]


@pytest.fixture(scope="module")
def film() -> np.ndarray:
    """A real radiograph, uint8 (128, 128)."""
    return np.asarray(Image.open(CXR).convert("L"))[::4, ::4].copy()


def corr(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.corrcoef(np.ravel(a).astype(float), np.ravel(b).astype(float))[0, 1])


def one_line_error(path: Path) -> str:
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


# ---- TIFF --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [8, 16])
def test_a_white_is_zero_tiff_is_read_as_it_is_shown_not_inverted(tmp_path, film, bits):
    top = 255 if bits == 8 else 4095
    shown = film if bits == 8 else (film.astype(np.uint16) * 16)
    tifffile.imwrite(tmp_path / "wiz.tif", (top - shown).astype(shown.dtype), photometric="miniswhite")
    image = read_image(tmp_path / "wiz.tif")
    assert corr(image.pixels, shown) > 0.999
    assert image.pixels.min() >= 0 and image.pixels.max() <= 1


def test_a_palette_tiff_is_read_through_its_colormap(tmp_path, film):
    rng = np.random.default_rng(0)
    order = rng.permutation(256)  # index i shows gray order[i]
    colormap = np.tile((order * 257).astype(np.uint16), (3, 1))
    indices = np.argsort(order)[film].astype(np.uint8)
    tifffile.imwrite(tmp_path / "palette.tif", indices, photometric="palette", colormap=colormap)
    image = read_image(tmp_path / "palette.tif")
    np.testing.assert_allclose(image.pixels, film / 255.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["CMYK", "YCbCr"])
def test_cmyk_and_ycbcr_tiffs_are_read_as_shown_not_black_or_washed_out(tmp_path, film, mode):
    """A figure from a print workflow (CMYK: ink, 0 = white) or a YCbCr TIFF; tifffile returns both raw."""
    Image.fromarray(film).convert("RGB").convert(mode).save(tmp_path / "print.tif")
    image = read_image(tmp_path / "print.tif")
    np.testing.assert_allclose(image.pixels, film / 255.0, atol=2 / 255)


def test_a_tiff_with_a_thumbnail_page_is_one_film(tmp_path, film):
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tw:
        tw.write(film)
        tw.write(film[::4, ::4], subfiletype=1)  # a reduced-resolution copy, as scanners store a preview
    image = read_image(tmp_path / "thumb.tif")
    np.testing.assert_allclose(image.pixels, film / 255.0, atol=1e-6)


@pytest.mark.parametrize("mode, compression, exact", [
    (mode, compression, compression != "jpeg") for mode in ("L", "RGB", "I;16")
    for compression in ("tiff_lzw", "tiff_adobe_deflate", "jpeg") if (mode, compression) != ("I;16", "jpeg")])
def test_compressed_tiffs_are_read_without_imagecodecs(tmp_path, film, compression, exact, mode):
    data = film.astype(np.uint16) * 200 if mode == "I;16" else film
    im = Image.fromarray(data) if mode != "RGB" else Image.fromarray(film).convert("RGB")
    path = tmp_path / f"scan {compression}.tif"
    im.save(path, compression=compression)
    image = read_image(path)
    assert image.pixels.shape == film.shape
    if exact:
        assert corr(image.pixels, film) > 0.9999
    else:
        assert corr(image.pixels, film) > 0.99


def test_a_tiff_whose_codec_is_missing_everywhere_says_so(tmp_path, film):
    # a compression neither tifffile (without imagecodecs) nor Pillow decodes: LERC (34887)
    message = one_line_error(_write(tmp_path / "lerc.tif", film))
    assert "LERC" in message and "corrupt" not in message, message
    assert "uncompressed" in message, message


def _write(path: Path, film: np.ndarray) -> Path:
    """An uncompressed TIFF whose Compression tag (259) says LERC (34887)."""
    tifffile.imwrite(path, film)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags[259].overwrite(34887)
    return path


# ---- DICOM -------------------------------------------------------------------------------------------------

def _u12(film: np.ndarray) -> np.ndarray:
    return (film.astype(np.int64) * 4095 // 255).astype(np.uint16)


@pytest.mark.parametrize("signed", [False, True])
def test_dicom_pixel_padding_is_left_out_of_the_range_and_shown_black(tmp_path, film, signed):
    data = _u12(film).astype(np.int16 if signed else np.uint16)
    pad = -32768 if signed else 0xFFFF  # the frame around a rotated or collimated film
    data[:, :12] = pad
    make_dicom(tmp_path / "pad.dcm", data, bits_stored=16, PixelPaddingValue=pad)
    image = read_image(tmp_path / "pad.dcm")
    inside = image.pixels[:, 12:]
    assert corr(inside, film[:, 12:]) > 0.999
    assert inside.min() == 0.0 and inside.max() == 1.0  # the anatomy keeps the whole range
    assert (image.pixels[:, :12] == 0).all()


def test_dicom_pixel_padding_range_limit(tmp_path, film):
    data = _u12(film) + 100
    data[:8] = np.arange(data.shape[1]) % 50  # padding 0..49 (Pixel Padding Range Limit 49)
    make_dicom(tmp_path / "padr.dcm", data, bits_stored=12, PixelPaddingValue=0, PixelPaddingRangeLimit=49)
    image = read_image(tmp_path / "padr.dcm")
    assert (image.pixels[:8] == 0).all() and image.pixels[8:].min() == 0.0 and image.pixels[8:].max() == 1.0


def test_monochrome1_padding_is_black_too(tmp_path, film):
    data = 5095 - _u12(film)  # 1000..5095
    data[:, :12] = 0  # MONOCHROME1: stored 0 would show white
    make_dicom(tmp_path / "m1pad.dcm", data, bits_stored=16, PhotometricInterpretation="MONOCHROME1",
               PixelPaddingValue=0)
    image = read_image(tmp_path / "m1pad.dcm")
    assert corr(image.pixels[:, 12:], film[:, 12:]) > 0.999 and (image.pixels[:, :12] == 0).all()
    assert image.pixels[:, 12:].min() == 0.0 and image.pixels[:, 12:].max() == 1.0


@pytest.mark.parametrize("photometric", [
    "MONOCHROME2",  # INVERSE: shown inverted
    "MONOCHROME1",  # DX: MONOCHROME1 comes with INVERSE, and means one inversion in all
])
def test_presentation_lut_shape_inverse(tmp_path, film, photometric):
    data = 4095 - _u12(film)
    make_dicom(tmp_path / "plut.dcm", data, bits_stored=12, PhotometricInterpretation=photometric,
               PresentationLUTShape="INVERSE")
    image = read_image(tmp_path / "plut.dcm")
    assert corr(image.pixels, film) > 0.999  # bones white, lungs dark


def test_a_window_that_leaves_one_value_falls_back_to_the_full_range(tmp_path, film):
    # e.g. a window meant for rescaled values, in a file whose Rescale Intercept was dropped
    make_dicom(tmp_path / "win.dcm", _u12(film), bits_stored=12, WindowCenter=40000, WindowWidth=10)
    image = read_image(tmp_path / "win.dcm")
    assert corr(image.pixels, film) > 0.999
    assert image.meta["voi"] == "full_range"


@pytest.mark.parametrize("fmt, suffix", [("PNG", ".dcm"), ("JPEG", ".dcm"), ("TIFF", ".dicom")])
def test_a_png_jpeg_or_tiff_named_dcm_is_read_as_what_it_is(tmp_path, film, fmt, suffix):
    path = tmp_path / f"film{suffix}"
    Image.fromarray(film).save(path, fmt, quality=95)
    image = read_image(path)
    assert corr(image.pixels, film) > 0.99 and image.meta["format"] == fmt.lower()


def test_napari_reader_opens_a_png_named_dcm_as_the_film(tmp_path, film):
    from napari_adaqat._reader import get_dicom_reader

    Image.fromarray(film).save(tmp_path / "film.dcm", "PNG")
    reader = get_dicom_reader(str(tmp_path / "film.dcm"))
    (data, kwargs, kind), = reader(str(tmp_path / "film.dcm"))
    assert kind == "image" and corr(data, film) > 0.999 and kwargs["metadata"]["format"] == "png"


@pytest.mark.parametrize("suffix, fmt, kind", [(".webp", "WEBP", "WebP"), (".gif", "GIF", "GIF"),
                                               (".jp2", "JPEG2000", "JPEG 2000"), (".tga", "TGA", None)])
def test_formats_we_do_not_read_say_what_to_do(tmp_path, film, suffix, fmt, kind):
    path = tmp_path / f"film{suffix}"
    Image.fromarray(film).save(path, fmt)
    message = one_line_error(path)
    assert (kind or suffix) in message and "convert it to PNG" in message, message


def _lzw_tiff(path: Path, arr: np.ndarray, photometric: int) -> Path:
    """A one-strip grayscale TIFF in LZW (9-bit literal codes, a Clear code every 200) with the given
    Photometric Interpretation: written here, so no decoder's own idea of white-is-zero is in the test."""
    data = arr.astype(f"<u{arr.dtype.itemsize}").tobytes()
    codes = [c for i in range(0, len(data), 200) for c in (256, *data[i:i + 200])] + [257]
    bits = "".join(f"{c:09b}" for c in codes)
    bits += "0" * (-len(bits) % 8)
    strip = int(bits, 2).to_bytes(len(bits) // 8, "big") + b"\x00" * (len(bits) // 8 % 2)
    h, w = arr.shape
    tags = [(256, 3, w), (257, 3, h), (258, 3, arr.dtype.itemsize * 8), (259, 3, 5), (262, 3, photometric),
            (273, 4, 8), (277, 3, 1), (278, 3, h), (279, 4, len(strip))]
    out = b"II*\x00" + struct.pack("<I", 8 + len(strip)) + strip + struct.pack("<H", len(tags))
    for tag, kind, value in tags:
        out += struct.pack("<HHI", tag, kind, 1) + struct.pack("<HH" if kind == 3 else "<I", *((value, 0) if kind == 3
                                                                                             else (value,)))
    path.write_bytes(out + struct.pack("<I", 0))
    return path


@pytest.mark.parametrize("bits", [8, 16])
def test_a_white_is_zero_lzw_tiff_is_not_inverted(tmp_path, film, bits):
    shown = film if bits == 8 else film.astype(np.uint16) * 16
    top = 255 if bits == 8 else 65535
    image = read_image(_lzw_tiff(tmp_path / "wiz_lzw.tif", (top - shown).astype(shown.dtype), photometric=0))
    assert corr(image.pixels, shown) > 0.999
    black = read_image(_lzw_tiff(tmp_path / "biz_lzw.tif", shown, photometric=1))
    assert corr(black.pixels, shown) > 0.999


def test_masks_are_read_as_stored_whatever_their_photometric(tmp_path):
    from napari_adaqat.io import read_mask

    ref = np.zeros((20, 30), bool)
    ref[5:15, 8:20] = True
    tifffile.imwrite(tmp_path / "bool.tif", ref)  # tifffile writes bool data as white-is-zero
    tifffile.imwrite(tmp_path / "imagej.tif", ref.astype(np.uint8) * 255, photometric="miniswhite")  # inverted LUT
    _lzw_tiff(tmp_path / "lzw.tif", ref.astype(np.uint8) * 255, photometric=0)
    for name in ("bool.tif", "imagej.tif", "lzw.tif"):
        np.testing.assert_array_equal(read_mask(tmp_path / name), ref, err_msg=name)


@pytest.mark.parametrize("marker, precision, kind", [(0xC0, 12, "12-bit JPEG"), (0xC3, 16, "16-bit lossless JPEG"),
                                                     (0xC3, 8, "lossless JPEG"), (0xF7, 8, "JPEG-LS image")])
def test_a_jpeg_that_pillow_cannot_decode_is_named_not_called_corrupt(tmp_path, film, marker, precision, kind):
    """12-bit, lossless and JPEG-LS JPEGs (as tools export DICOM pixel data) are not corrupt files."""
    buf = io.BytesIO()
    Image.fromarray(film).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    at = data.index(b"\xff\xc0")
    data[at + 1], data[at + 4] = marker, precision
    (tmp_path / "export.jpg").write_bytes(bytes(data))
    message = one_line_error(tmp_path / "export.jpg")
    assert f"is a {kind}, which adaqat cannot decode: convert it to a 16-bit PNG or TIFF" in message, message
    assert "corrupt" not in message
