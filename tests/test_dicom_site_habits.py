"""DICOM habits of real sites that the standard does not allow (a QA pass on files nobody here wrote): a decimal
comma in the numbers a film's reading needs, a Photometric Interpretation in lower case, a header whose Rows or
Columns do not fit its pixel data, a gzip-compressed file named .dcm.  Each is read as meant, or refused in one
line that says what is wrong."""
from __future__ import annotations

import gzip
import warnings

import numpy as np
import pydicom
import pytest
from pydicom import config

from napari_adaqat.io import read_image
from napari_adaqat.io.image_data import ImageReadError, ImageReadWarning
from test_dicom import make_dicom, ramp  # tests/ is on sys.path (pytest rootdir-less import)


def written(path, arr, **attrs):
    """``make_dicom`` with values that pydicom refuses to write (a site's writer did not ask): each value with a
    decimal comma is written with a dot, then the comma put back in the file's bytes (its header comes before the
    pixel data, so the first match is the element)."""
    texts = {k: v for k, v in attrs.items() if isinstance(v, (str, list))}
    dotted = {**attrs, **{k: [x.replace(",", ".") for x in v] if isinstance(v, list) else v.replace(",", ".")
                          for k, v in texts.items()}}
    with config.disable_value_validation(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make_dicom(path, arr, **dotted)
    raw = path.read_bytes()
    for value in texts.values():
        text = "\\".join(value) if isinstance(value, list) else value
        raw = raw.replace(text.replace(",", ".").encode(), text.encode(), 1)
    path.write_bytes(raw)
    return path


def read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_image(path)


@pytest.mark.parametrize("attrs, meant", [
    (dict(RescaleSlope="1,5", RescaleIntercept="0"), dict(RescaleSlope="1.5", RescaleIntercept="0")),
    (dict(RescaleSlope="-1", RescaleIntercept="4095,5"), dict(RescaleSlope="-1", RescaleIntercept="4095.5")),
    (dict(WindowCenter="2000,5", WindowWidth="3000,0"), dict(WindowCenter="2000.5", WindowWidth="3000.0")),
])
def test_a_decimal_comma_reads_as_the_number_meant(tmp_path, attrs, meant):
    """Before: "cannot convert DICOM pixels (UFuncTypeError)"."""
    film = ramp(0, 4000, shape=(32, 48))
    comma = read(written(tmp_path / "comma.dcm", film, bits_stored=12, **attrs))
    dot = read(make_dicom(tmp_path / "dot.dcm", film, bits_stored=12, **meant))
    np.testing.assert_allclose(comma.pixels, dot.pixels, atol=1e-6)


def test_a_pixel_spacing_with_decimal_commas_is_kept_not_dropped(tmp_path):
    """Before: dropped without a word, so a film of non-square pixels was taken as square."""
    film = ramp(0, 4000, shape=(32, 48))
    image = read(written(tmp_path / "s.dcm", film, PixelSpacing=["0,2", "0,1"]))
    assert image.spacing == pytest.approx((0.2, 0.1))
    assert read(written(tmp_path / "q.dcm", film, PixelSpacing=["0,139", "0,139"])).spacing == pytest.approx(
        (0.139, 0.139))


def test_a_photometric_interpretation_in_lower_case_reads_as_meant(tmp_path):
    """Before: "cannot decode Explicit VR Little Endian … pixel data (ValueError)", which blamed the codec."""
    film = ramp(0, 4000, shape=(32, 48))
    lower = read(written(tmp_path / "lower.dcm", film, PhotometricInterpretation="monochrome1"))
    upper = read(make_dicom(tmp_path / "upper.dcm", film, PhotometricInterpretation="MONOCHROME1"))
    np.testing.assert_allclose(lower.pixels, upper.pixels, atol=1e-6)
    assert lower.pixels[0, 0] > lower.pixels[-1, -1]  # shown inverted: the lowest value white


@pytest.mark.parametrize("rows, columns", [(32, 46), (20, 48)])
def test_rows_or_columns_that_do_not_fit_the_pixel_data_are_one_line(tmp_path, rows, columns):
    """Before: a wrong Columns sheared the film, a wrong Rows cut a third of it, both segmented as ok."""
    path = make_dicom(tmp_path / "h.dcm", ramp(0, 4000, shape=(32, 48)))
    ds = pydicom.dcmread(path)
    ds.Rows, ds.Columns = rows, columns
    ds.save_as(path)
    with pytest.raises(ImageReadError) as err:
        read(path)
    line = str(err.value)
    assert "pixel data length mismatch" in line and "Rows (0028,0010) or Columns (0028,0011) is wrong" in line
    assert "\n" not in line


def test_trailing_padding_that_fits_no_other_size_is_read_as_pydicom_reads_it(tmp_path):
    """A review find: extra bytes that fit no other Rows or Columns (a writer's padding, here 1.5 rows and 6 bytes)
    are not a wrong header; the film reads as without them."""
    film = ramp(0, 4000, shape=(32, 48))
    path = make_dicom(tmp_path / "padded.dcm", film)
    ds = pydicom.dcmread(path)
    ds.PixelData = film.tobytes() + bytes(48 * 3 + 6)
    ds.save_as(path)
    np.testing.assert_allclose(read(path).pixels, read(make_dicom(tmp_path / "plain.dcm", film)).pixels)


def test_a_gzip_compressed_dicom_named_dcm_says_so(tmp_path):
    path = make_dicom(tmp_path / "film.dcm", ramp(0, 4000, shape=(32, 48)))
    path.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(ImageReadError, match=r"film.dcm: not a DICOM file: it is gzip-compressed data; unpack it "
                                             r"\(gunzip\) and give the file it holds$"):
        read(path)


def _read_at_full_range(tmp_path, name: str, bits_stored: int, center: float, width: float, said: str) -> np.ndarray:
    """A 12-bit film (the CC-BY radiograph) in a DICOM with this window: read with one warning matching ``said``, at
    its full range (as the same film without a window); returns the film's stored values."""
    from PIL import Image

    from test_dicom_bits_stored import CXR

    film = np.round(np.asarray(Image.open(CXR).convert("L"), np.float64) / 255 * 4000).astype(np.uint16)
    path = make_dicom(tmp_path / name, film, bits_stored=bits_stored, WindowCenter=center, WindowWidth=width)
    with pytest.warns(ImageReadWarning, match=said):
        image = read_image(path)
    plain = read(make_dicom(tmp_path / "plain.dcm", film, bits_stored=12))
    np.testing.assert_allclose(image.pixels, plain.pixels, atol=1e-6)
    assert image.meta["voi"] == "full_range" and image.meta["voi_unused"] == "window"
    return film


def test_a_header_window_that_saturates_most_of_the_film_is_not_used(tmp_path):
    """A QA find: WW 400 on a 12-bit film turned 73 % of it pure black or white and was applied silently (Dice
    0.74).  Over 60 % saturated: one warning line, the full range; the film's own window (most of it in range)
    is applied as before."""
    film = _read_at_full_range(tmp_path, "narrow.dcm", 12, 2048, 400,
                               r"narrow.dcm: the header's window \(center 2048, width 400\) turns \d+% of the film "
                               r"pure black or white; read at its full range instead")
    bordered = np.full((film.shape[0] * 2, film.shape[1] * 2), 4095, np.uint16)  # a shutter's border: 75 %
    bordered[:film.shape[0], :film.shape[1]] = film
    lo, hi = np.percentile(film, [2, 98])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageReadWarning)
        own = read_image(make_dicom(tmp_path / "own.dcm", film, bits_stored=12, WindowCenter=2000, WindowWidth=4000))
        shuttered = read_image(make_dicom(tmp_path / "shutter.dcm", bordered, bits_stored=12,
                                          WindowCenter=(lo + hi) / 2, WindowWidth=hi - lo))
    assert own.meta["voi"] == "window" and shuttered.meta["voi"] == "window"  # (a review find: the border counted)


def _modality_lut_file(path, film, depth):
    """A film whose Modality LUT Sequence maps each stored value to itself, with LUT Descriptor 4096\\0\\``depth``."""
    from pydicom.dataset import Dataset

    item = Dataset()
    item.LUTDescriptor, item.ModalityLUTType = [4096, 0, depth], "US"
    item.add_new("LUTData", "OW", np.arange(4096, dtype="<u2").tobytes())
    return make_dicom(path, film, bits_stored=12, ModalityLUTSequence=[item])


def test_a_modality_lut_of_12_bit_entries_is_read_as_16_bit_words(tmp_path):
    """A QA find (pydicom issue #2317): LUT Descriptor 4096\\0\\12 made pydicom build a 'uint12' array, and the file
    was refused as "cannot convert DICOM pixels (TypeError)".  Its entries are read as 16-bit words (pydicom's fix)."""
    film = ramp(0, 4000, shape=(32, 48))
    twelve = read(_modality_lut_file(tmp_path / "lut12.dcm", film, 12))
    sixteen = read(_modality_lut_file(tmp_path / "lut16.dcm", film, 16))
    plain = read(make_dicom(tmp_path / "plain.dcm", film, bits_stored=12))
    np.testing.assert_allclose(twelve.pixels, plain.pixels, atol=1e-6)
    np.testing.assert_allclose(sixteen.pixels, plain.pixels, atol=1e-6)


@pytest.mark.parametrize("empty", ["RescaleSlope", "RescaleIntercept", "both"])
def test_an_empty_rescale_slope_or_intercept_is_read_as_absent(tmp_path, empty):
    """A QA find: an anonymiser blanked the Rescale Slope/Intercept: "cannot convert DICOM pixels (TypeError)".
    Empty is read as absent: slope 1, intercept 0."""
    film = ramp(0, 4000, shape=(32, 48))
    attrs = {"RescaleSlope": "1", "RescaleIntercept": "0"}
    for key in ("RescaleSlope", "RescaleIntercept") if empty == "both" else (empty,):
        attrs[key] = ""
    blank = read(make_dicom(tmp_path / "blank.dcm", film, bits_stored=12, **attrs))
    plain = read(make_dicom(tmp_path / "plain.dcm", film, bits_stored=12))
    np.testing.assert_allclose(blank.pixels, plain.pixels, atol=1e-6)


def test_photometric_monochrome_is_read_as_monochrome2_with_a_warning(tmp_path):
    """A QA find: 'MONOCHROME' (no 1 or 2) was "cannot decode Explicit VR Little Endian … (ValueError)", blaming the
    transfer syntax.  Read as MONOCHROME2 with one warning line; another unknown value is named with its tag."""
    film = ramp(0, 4000, shape=(32, 48))
    typo = make_dicom(tmp_path / "typo.dcm", film, bits_stored=12, PhotometricInterpretation="MONOCHROME")
    with pytest.warns(ImageReadWarning, match=r"typo.dcm: Photometric Interpretation \(0028,0004\) is 'MONOCHROME', "
                                              r"not a DICOM value; read as MONOCHROME2"):
        image = read_image(typo)
    np.testing.assert_allclose(image.pixels, read(make_dicom(tmp_path / "m2.dcm", film, bits_stored=12)).pixels)
    with pytest.raises(ImageReadError, match=r"odd.dcm: unknown Photometric Interpretation 'GRAY' \(0028,0004\)"):
        read(written(tmp_path / "odd.dcm", film, PhotometricInterpretation="GRAY"))


def test_a_rescale_slope_of_zero_is_named(tmp_path):
    """A QA find: Rescale Slope 0 made every pixel the intercept and the film was refused as "image is blank"."""
    path = make_dicom(tmp_path / "zero.dcm", ramp(0, 4000, shape=(32, 48)), bits_stored=12, RescaleSlope="0",
                      RescaleIntercept="0")
    with pytest.raises(ImageReadError, match=r"zero.dcm: Rescale Slope \(0028,1053\) is 0"):
        read(path)


def test_float_pixel_data_is_read_not_refused_for_bits_stored(tmp_path):
    """A QA find: a Float Pixel Data film was refused as "attributes missing: Bits Stored", an attribute such a
    file must not have.  It is read (min-max, as a float TIFF)."""
    film = ramp(0, 4000, shape=(32, 48))
    path = make_dicom(tmp_path / "float.dcm", film, bits_stored=12)
    ds = pydicom.dcmread(path)
    for keyword in ("PixelData", "BitsStored", "HighBit", "PixelRepresentation"):
        delattr(ds, keyword)
    ds.BitsAllocated = 32
    ds.FloatPixelData = (film.astype("<f4") / 10.0).tobytes()
    ds.save_as(path)
    np.testing.assert_allclose(read(path).pixels, (film - 0.0) / 4000.0, atol=1e-5)


@pytest.mark.parametrize("bits_stored, center, width", [(16, 32767.5, 65535), (12, 32768, 65536)])
def test_a_header_window_far_wider_than_the_film_is_not_used(tmp_path, bits_stored, center, width):
    """A QA find, the mirror of the saturated window: a "full 16-bit" window on 12-bit data left the film in 6 % of
    the gray range, segmented nearly black (Dice 0.67) without a word.  Under 1/8: one warning line, the full range;
    a window 4 times the film's range is applied as before."""
    film = _read_at_full_range(tmp_path, "wide.dcm", bits_stored, center, width,
                               r"wide.dcm: the header's window \(center 3276\d\.?5?, width 6553\d\) leaves the film "
                               r"\d+% of the gray range")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageReadWarning)
        four = read_image(make_dicom(tmp_path / "four.dcm", film, bits_stored=16, WindowCenter=8000, WindowWidth=16000))
    assert four.meta["voi"] == "window"


def test_a_header_window_wholly_outside_the_films_values_is_said_and_not_used(tmp_path):
    """A QA find: a window that lies wholly outside the film's values (one gray for all of it) was dropped without a
    word, while a saturating one was said."""
    _read_at_full_range(tmp_path, "outside.dcm", 12, 40000, 100,
                        r"outside.dcm: the header's window \(center 40000, width 100\) gives one gray for the whole "
                        r"film \(its values run from \d+ to \d+\); read at its full range instead")
