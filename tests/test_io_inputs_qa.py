"""Films given in the ways a QA round found mis-read: a PIL image passed to the API, a gray + alpha array, a float
film in the bottom of [0, 1] (skimage's img_as_float of 12-bit data)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_adaqat.io import film_and_spacing, read_image, to_gray01

CXR = Path(__file__).parent / "data" / "cxr"


@pytest.mark.parametrize("mode", ["P", "P+tRNS", "CMYK", "LA", "1", "L", "I;16"])
def test_a_pil_image_is_read_as_its_file(tmp_path, mode):
    """A QA find: ``model.segment(Image.open(path))`` took the raw array, palette indices as gray (Dice 0.75) and
    C, M, Y, K as R, G, B, A (0.43); LA and 1-bit were refused with confusing lines.  A PIL image is converted as
    the file reader converts a file of its mode, so both give the same film."""
    from napari_adaqat.io import film_and_spacing

    film = Image.open(sorted((CXR / "images").glob("*.png"))[0]).convert("L")
    im = {"P": film.convert("RGB").quantize(64), "CMYK": film.convert("CMYK"), "1": film.convert("1"),
          "P+tRNS": film.convert("RGB").quantize(64), "LA": film.convert("LA"), "L": film,
          "I;16": Image.fromarray(np.asarray(film, np.uint16) * 16)}[mode]
    path = tmp_path / ("film.tif" if mode in ("1", "CMYK") else "film.png")
    im.save(path, **({"transparency": 0} if mode == "P+tRNS" else {}))
    im = Image.open(path)
    assert im.mode == mode[:1] if mode == "P+tRNS" else im.mode == mode
    pixels, spacing = film_and_spacing(im)
    np.testing.assert_allclose(to_gray01(pixels), read_image(path).pixels, atol=1e-6)
    assert spacing is None


def test_a_gray_and_alpha_array_is_read_as_an_la_file(tmp_path):
    """(H, W, 2) gray + alpha given to the API was refused although LA files are read: it is the film over black."""
    from napari_adaqat.io import film_and_spacing

    gray = np.asarray(Image.open(sorted((CXR / "images").glob("*.png"))[0]).convert("L"))
    alpha = np.full(gray.shape, 255, np.uint8)
    alpha[:, :40] = 0  # a transparent margin
    la = np.dstack([gray, alpha])
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    pixels = film_and_spacing(la)[0]
    assert pixels.shape == gray.shape
    np.testing.assert_allclose(to_gray01(pixels), read_image(tmp_path / "la.png").pixels, atol=1e-6)


def test_a_float_film_in_the_bottom_of_its_range_is_stretched_with_a_warning(tmp_path):
    """A QA find: skimage's img_as_float of a 12-bit film in a uint16 lands in 0..0.0625; a float TIFF in [0, 1]
    (and the same array given to the API) was taken as it is, nearly black (Dice 0.66), without a word.  Under 1/8
    of [0, 1]: stretched to its own range with one warning line; a float film that fills its range is as before."""
    from napari_adaqat.data.transforms import to_uint8
    from napari_adaqat.io.image_data import ImageReadWarning

    film = np.asarray(Image.open(sorted((CXR / "images").glob("*.png"))[0]).convert("L"), np.uint16) * 16
    dark = (film / 65535.0).astype(np.float32)  # skimage.img_as_float(film)
    tifffile.imwrite(tmp_path / "dark.tif", dark)
    lo, hi = float(dark.min()), float(dark.max())
    with pytest.warns(ImageReadWarning, match=r"dark.tif: its values lie in 0.0\d+\.\.0.0\d+, under 1/8 of \[0, 1\]"):
        pixels = read_image(tmp_path / "dark.tif").pixels
    np.testing.assert_allclose(pixels, (dark - lo) / (hi - lo), atol=1e-6)
    with pytest.warns(ImageReadWarning, match=r"^image: its values lie in"):
        as_api = to_uint8(film_and_spacing(dark)[0])  # the array given to the API: stretched on its way in
    np.testing.assert_array_equal(as_api, np.round(np.clip((dark - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8))
    eight = (film // 16 // 8).astype(np.uint8)  # a dark 8-bit film (max 31): read and given to the model as it is
    imageio_path = tmp_path / "dark8.png"
    Image.fromarray(eight).save(imageio_path)
    with warnings.catch_warnings():  # (review find: to_uint8 stretched it, and warned of "12-bit data")
        warnings.simplefilter("error", ImageReadWarning)
        read8 = read_image(imageio_path).pixels
        np.testing.assert_array_equal(to_uint8(film_and_spacing(read_image(imageio_path))[0]),
                                      np.round(read8 * 255).astype(np.uint8))
        assert to_uint8(read8).max() == eight.max()
    full = (film / 4095.0 / 16.0 * 15.0).astype(np.float32)  # a float film that spans most of [0, 1]
    tifffile.imwrite(tmp_path / "full.tif", full)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ImageReadWarning)
        np.testing.assert_array_equal(read_image(tmp_path / "full.tif").pixels, full)
        np.testing.assert_array_equal(to_uint8(full), np.round(full * 255).astype(np.uint8))
