"""PNG/TIFF image reading, to_gray01, and binary mask read/write."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage.io import imread, imsave

from napari_adaqat.io import (
    IMAGE_SUFFIXES,
    ImageData,
    ImageReadError,
    is_image_file,
    read_image,
    read_mask,
    to_gray01,
    write_mask,
)

CXR = Path(__file__).parent / "data" / "cxr"


def save_png(path: Path, arr: np.ndarray) -> Path:
    imsave(path, arr, check_contrast=False)
    return path


def gradient(dtype=np.uint8, hi: int = 255, shape=(6, 10)) -> np.ndarray:
    return np.linspace(0, hi, shape[0] * shape[1]).round().astype(dtype).reshape(shape)


# ---- to_gray01 ---------------------------------------------------------------------


def test_to_gray01_dtypes():
    u8 = np.array([[0, 51, 255]], np.uint8)
    np.testing.assert_allclose(to_gray01(u8), [[0.0, 0.2, 1.0]], atol=1e-6)
    u16 = np.array([[1000, 2000, 3000]], np.uint16)  # min-max, not /65535
    np.testing.assert_allclose(to_gray01(u16), [[0.0, 0.5, 1.0]], atol=1e-6)
    np.testing.assert_array_equal(to_gray01(np.array([[True, False]])), [[1.0, 0.0]])
    inside = np.array([[0.2, 0.7]], np.float64)
    np.testing.assert_allclose(to_gray01(inside), inside)  # already in [0, 1]: untouched
    np.testing.assert_allclose(to_gray01(np.array([[-5.0, 0.0, 5.0]])), [[0.0, 0.5, 1.0]])
    assert to_gray01(np.full((3, 3), 7, np.uint16)).max() == 0.0  # constant -> zeros, no NaN
    for arr in (u8, u16, inside):
        assert to_gray01(arr).dtype == np.float32


def test_to_gray01_rgb_and_rgba():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 255  # pure green
    np.testing.assert_allclose(to_gray01(rgb), 0.7154, atol=1e-3)
    rgba = np.dstack([rgb, np.zeros((2, 2), np.uint8)])  # alpha must be ignored
    np.testing.assert_allclose(to_gray01(rgba), to_gray01(rgb))
    with pytest.raises(ValueError):
        to_gray01(np.zeros((2, 2, 5), np.uint8))


# ---- read_image: PNG / TIFF --------------------------------------------------------


def test_png_8bit(tmp_path):
    arr = gradient()
    img = read_image(save_png(tmp_path / "a.png", arr))
    assert isinstance(img, ImageData)
    assert img.pixels.dtype == np.float32 and img.pixels.shape == (6, 10)
    np.testing.assert_allclose(img.pixels, arr / 255.0, atol=1e-6)
    assert img.spacing is None and img.meta["format"] == "png" and img.source.endswith("a.png")


def test_png_16bit(tmp_path):
    arr = gradient(np.uint16, 4000) + 100
    path = save_png(tmp_path / "b.png", arr)
    assert imread(path).dtype == np.uint16
    img = read_image(path)
    assert img.pixels.min() == 0.0 and img.pixels.max() == 1.0
    np.testing.assert_allclose(img.pixels, (arr - 100) / 4000.0, atol=1e-6)


def test_png_rgb_and_rgba_to_gray(tmp_path):
    gray = gradient()
    rgb = np.dstack([gray] * 3)
    rgba = np.dstack([rgb, np.full(gray.shape, 128, np.uint8)])
    a = read_image(save_png(tmp_path / "rgb.png", rgb))
    b = read_image(save_png(tmp_path / "rgba.png", rgba))
    assert a.pixels.shape == b.pixels.shape == (6, 10)
    np.testing.assert_allclose(a.pixels, gray / 255.0, atol=1e-4)
    np.testing.assert_allclose(b.pixels, a.pixels, atol=1e-6)
    assert a.meta["channels"] == 3 and b.meta["channels"] == 4


def test_tiff_2d_and_rgb(tmp_path):
    arr = gradient(np.uint16, 60000)
    tifffile.imwrite(tmp_path / "g.tif", arr)
    img = read_image(tmp_path / "g.tif")
    assert img.meta["format"] == "tiff" and img.pixels.shape == (6, 10)
    np.testing.assert_allclose(img.pixels, arr / 60000.0, atol=1e-6)

    rgb = np.zeros((6, 10, 3), np.uint8)
    rgb[..., 2] = 255  # pure blue
    tifffile.imwrite(tmp_path / "c.tiff", rgb, photometric="rgb")
    img = read_image(tmp_path / "c.tiff")
    assert img.pixels.shape == (6, 10)
    np.testing.assert_allclose(img.pixels, 0.0721, atol=1e-3)

    planar = np.moveaxis(rgb, -1, 0).copy()  # (3, H, W) planar RGB
    tifffile.imwrite(tmp_path / "p.tif", planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_allclose(read_image(tmp_path / "p.tif").pixels, img.pixels)


@pytest.mark.parametrize("thumbnail", ["first", "after"])
def test_a_tiffs_thumbnail_page_is_not_the_film(tmp_path, thumbnail):
    """A reduced page (NewSubfileType 1) before the film (a QA find: the 64 x 51 thumbnail was segmented)."""
    film = np.arange(120 * 90, dtype=np.uint16).reshape(120, 90)
    with tifffile.TiffWriter(tmp_path / "t.tif") as tif:
        pages = [(film[::8, ::8], {"subfiletype": 1}), (film, {})]
        for data, extra in pages if thumbnail == "first" else pages[::-1]:
            tif.write(data, compression="zlib", **extra)
    img = read_image(tmp_path / "t.tif")
    assert img.pixels.shape == film.shape
    np.testing.assert_allclose(img.pixels, film / film.max(), atol=1e-6)


def test_two_same_size_pages_are_refused_as_two_images(tmp_path):
    with tifffile.TiffWriter(tmp_path / "two.tif") as tif:
        tif.write(np.zeros((20, 30), np.uint8))
        tif.write(np.ones((20, 30), np.uint8))
    with pytest.raises(ImageReadError, match=r"two.tif: holds 2 images \(pages\); give a single 2-D image$"):
        read_image(tmp_path / "two.tif")


def test_tiff_stack_is_refused(tmp_path):
    stack = np.zeros((5, 6, 10), np.uint8)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack)
    expected = r"is a 3-D stack \(5 planes\); give a single 2-D image"
    with pytest.raises(ImageReadError, match=expected) as err:
        read_image(path)
    assert "\n" not in str(err.value) and "stack.tif" in str(err.value)


@pytest.mark.parametrize("name, content", [
    ("bad.png", b"not a png at all"),
    ("bad.tif", b"II*\0garbage-garbage"),
    ("bad.xyz", b"whatever"),
])
def test_bad_files_give_one_line_errors(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_truncated_png(tmp_path):
    rng = np.random.default_rng(1)
    path = save_png(tmp_path / "t.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    assert "\n" not in str(err.value) and "t.png" in str(err.value)


def test_is_image_file(tmp_path):
    assert set(IMAGE_SUFFIXES) >= {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
    assert is_image_file("x/Y.PNG") and is_image_file("a.tiff") and is_image_file("scan.dcm")
    (tmp_path / "readme.txt").write_text("hello")
    assert not is_image_file(tmp_path / "readme.txt")


@pytest.mark.parametrize("suffix", [".jfif", ".JPE"])
def test_jpeg_named_as_windows_and_chrome_save_it_is_read(tmp_path, suffix):
    """Chrome and Windows save JPEGs as ``.jfif`` (a QA find: refused as an unsupported format)."""
    film = np.random.default_rng(0).integers(0, 256, (40, 60), dtype=np.uint8)
    path = tmp_path / f"chest{suffix}"
    Image.fromarray(film).save(path, "JPEG", quality=95)
    assert is_image_file(path)
    img = read_image(path)
    assert img.pixels.shape == (40, 60) and np.abs(img.pixels * 255 - film).mean() < 8


# ---- real radiograph ---------------------------------------------------------------


def _cxr_pair() -> tuple[Path, Path]:
    images = sorted((CXR / "images").glob("*.png"))
    if not images:
        pytest.skip("no sample radiographs in tests/data/cxr")
    return images[0], CXR / "masks" / images[0].name


def test_real_radiograph_and_mask():
    image_path, mask_path = _cxr_pair()
    raw = imread(image_path)
    img = read_image(image_path)
    assert img.pixels.dtype == np.float32 and img.pixels.shape == raw.shape[:2]
    assert 0.0 <= img.pixels.min() < img.pixels.max() <= 1.0
    mask = read_mask(mask_path)
    assert mask.dtype == bool and mask.shape == img.pixels.shape
    assert 0.1 < mask.mean() < 0.6


# ---- masks -------------------------------------------------------------------------


def test_read_mask_accepts_binary_encodings(tmp_path):
    ref = np.zeros((5, 7), bool)
    ref[1:4, 2:6] = True
    save_png(tmp_path / "m255.png", ref.astype(np.uint8) * 255)
    save_png(tmp_path / "m1.png", ref.astype(np.uint8))
    save_png(tmp_path / "rgb.png", np.dstack([ref.astype(np.uint8) * 255] * 3))
    tifffile.imwrite(tmp_path / "b.tif", ref)
    for name in ("m255.png", "m1.png", "rgb.png", "b.tif"):
        out = read_mask(tmp_path / name)
        assert out.dtype == bool, name
        np.testing.assert_array_equal(out, ref, err_msg=name)
    save_png(tmp_path / "empty.png", np.zeros((5, 7), np.uint8))
    assert not read_mask(tmp_path / "empty.png").any()


def test_read_mask_rejects_three_values(tmp_path):
    arr = np.zeros((4, 4), np.uint8)
    arr[0, 0], arr[1, 1] = 1, 2
    path = save_png(tmp_path / "labels.png", arr)
    with pytest.raises(ImageReadError, match=r"mask is not binary \(found 3 distinct values\)") as err:
        read_mask(path)
    assert "labels.png" in str(err.value) and "\n" not in str(err.value)
    assert "values 0, 1, 2, a label map? save lung = 255 on background 0" in str(err.value)  # (both labels at left)


@pytest.mark.parametrize("labels", [(1, 2), (2, 1), (100, 200)])
def test_a_label_map_of_the_left_and_right_lungs_is_both_lungs_as_a_reference(tmp_path, labels):
    """nnU-Net-style exports label the right lung 1 and the left lung 2: a dataset's reference reads both as lung;
    where a mask would be written back (the Annotate dock), it is refused, never flattened silently."""
    from napari_adaqat.data.dataset import Pair, load_pair

    arr = np.zeros((40, 50), np.uint8)
    arr[5:35, 5:20], arr[5:35, 30:45] = labels
    (tmp_path / "masks").mkdir()
    (tmp_path / "images").mkdir()
    path = save_png(tmp_path / "masks" / "a.png", arr)
    np.testing.assert_array_equal(read_mask(path, lung_labels=True), arr > 0)
    with pytest.raises(ImageReadError, match="a label map of the left and right lungs .*training and evaluation "
                                             "read it as both lungs"):
        read_mask(path)
    film = save_png(tmp_path / "images" / "a.png", np.linspace(0, 255, 2000).reshape(40, 50).astype(np.uint8))
    _image, mask = load_pair(Pair("a", film, path))
    np.testing.assert_array_equal(mask, arr > 0)
    heart = arr.copy()
    heart[10:30, 18:32] = 3  # a third label (the heart): which labels are lung is not guessed
    with pytest.raises(ImageReadError, match=r"found 4 distinct values\): values 0, .*a label map\?"):
        read_mask(save_png(tmp_path / "heart.png", heart), lung_labels=True)
    lungs_and_heart = (arr > 0).astype(np.uint8)  # 1 = both lungs, 2 = the heart between them: refused
    lungs_and_heart[10:30, 20:30] = 2
    with pytest.raises(ImageReadError, match="a label map"):
        read_mask(save_png(tmp_path / "lungs_heart.png", lungs_and_heart), lung_labels=True)


def test_a_label_map_of_an_off_centre_patients_lungs_is_both_lungs(tmp_path):
    """A QA find: 8 of 93 real masks as left/right label maps were refused, their patient off the film's centre
    (a lung over 10 % past the film's middle).  The lungs side by side are what counts."""
    from scipy import ndimage

    mask = np.asarray(Image.open(sorted((CXR / "masks").glob("*.png"))[0]).convert("L")) > 127
    shift = mask.shape[1] // 5
    off = np.zeros_like(mask)
    off[:, shift:] = mask[:, :-shift]  # the patient a fifth of the film to the right
    regions, n = ndimage.label(off)
    assert n == 2
    order = sorted((1, 2), key=lambda r: np.nonzero(regions == r)[1].mean())
    labels = np.where(regions == order[0], 1, np.where(regions == order[1], 2, 0)).astype(np.uint8)
    assert np.mean(np.nonzero(labels == 1)[1] < mask.shape[1] / 2) < 0.9  # (the old rule's 90 % on its side)
    np.testing.assert_array_equal(read_mask(save_png(tmp_path / "off.png", labels), lung_labels=True), off)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff"])
def test_write_mask_roundtrip_atomic(tmp_path, suffix):
    labels = np.zeros((9, 11), np.int32)
    labels[2:5, 3:8] = 1
    labels[6:8, 1:3] = 7  # labels > 0 count as mask
    path = write_mask(tmp_path / f"out{suffix}", labels)
    assert path == tmp_path / f"out{suffix}"
    raw = imread(path) if suffix == ".png" else tifffile.imread(path)
    assert raw.dtype == np.uint8 and set(np.unique(raw)) == {0, 255}
    np.testing.assert_array_equal(read_mask(path), labels > 0)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # the user's usual permissions, not 0600


def test_sixteen_bit_rgba_is_scaled_without_its_alpha():
    rgba = np.zeros((4, 4, 4), np.uint16)
    rgba[..., :3] = np.arange(16, dtype=np.uint16).reshape(4, 4, 1) * 273  # 12-bit content, 0..4095
    rgba[..., 3] = 65535  # fully opaque
    gray = to_gray01(rgba)
    assert gray.min() == 0.0 and gray.max() == pytest.approx(1.0, abs=1e-6)


def test_write_mask_refuses_overwrite(tmp_path):
    path = write_mask(tmp_path / "m.png", np.eye(4, dtype=bool))
    before = path.read_bytes()
    with pytest.raises(FileExistsError) as err:
        write_mask(path, np.ones((4, 4), bool))
    assert "m.png" in str(err.value) and "\n" not in str(err.value)
    assert path.read_bytes() == before
    write_mask(path, np.ones((4, 4), bool), overwrite=True)
    assert read_mask(path).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.png"]


def test_write_mask_bad_input(tmp_path):
    with pytest.raises(ValueError, match="unsupported mask format"):
        write_mask(tmp_path / "m.jpg", np.eye(3))
    with pytest.raises(ValueError, match="2-D"):
        write_mask(tmp_path / "m.png", np.zeros((2, 3, 3)))
    assert list(tmp_path.iterdir()) == []


def test_a_mask_drawn_in_the_alpha_channel_is_its_alpha(tmp_path):
    """Black (or white) everywhere with the lung opaque, as an editor exports a selection: the alpha is the mask;
    an alpha that is the same everywhere still leaves the colour as the mask."""
    from PIL import Image

    lung = np.zeros((6, 8), bool)
    lung[1:5, 2:6] = True
    for colour in (0, 255):
        la = np.dstack([np.full(lung.shape, colour, np.uint8), np.where(lung, 255, 0).astype(np.uint8)])
        Image.fromarray(la, "LA").save(tmp_path / f"la{colour}.png")
        np.testing.assert_array_equal(read_mask(tmp_path / f"la{colour}.png"), lung)
    rgba = np.dstack([np.where(lung, 255, 0).astype(np.uint8)] * 3 + [np.full(lung.shape, 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "opaque.png"), lung)



def test_a_marker_burned_in_at_the_formats_maximum_does_not_darken_the_film(tmp_path):
    """A 12-bit film in a 16-bit PNG with a label at 65535 (0.05 % of the pixels): min-max scaling squashed the
    film into its darkest 6 % (a QA find: Dice 0.75 against the clean film's mask). The film keeps its range;
    the marker is white; a film without such outliers is scaled exactly as before."""
    film = np.random.default_rng(0).integers(0, 4096, (200, 300)).astype(np.uint16)
    film[0, 0], film[1, 1] = 0, 4095
    marked = film.copy()
    marked[5:8, 200:210] = 65535
    Image.fromarray(film).save(tmp_path / "clean.png")
    Image.fromarray(marked).save(tmp_path / "marked.png")
    clean, with_marker = read_image(tmp_path / "clean.png").pixels, read_image(tmp_path / "marked.png").pixels
    np.testing.assert_allclose(clean, film / 4095.0, atol=1e-6)  # as before: min-max
    np.testing.assert_allclose(with_marker[marked != 65535], clean[marked != 65535], atol=1e-6)
    assert (with_marker[marked == 65535] == 1.0).all()


@pytest.mark.parametrize("share", [0.004, 0.015])
def test_a_label_and_text_line_burned_in_over_a_percent_of_the_film_do_not_darken_it(tmp_path, share):
    """Real labels cover more than 0.1 % (a QA find: an "R" and a text line at 65535 over 0.18 % of a 2500 x 2000
    film read it at a mean gray of 0.03 instead of 0.51): up to 2 % of the pixels far above the rest are ignored."""
    rng = np.random.default_rng(1)
    film = rng.integers(0, 4096, (200, 300)).astype(np.uint16)
    film[0, 0], film[1, 1] = 0, 4095
    marked = film.copy()
    side = int(round((share * film.size) ** 0.5))  # a square label (a text line reads alike)
    marked[10:10 + side, 100:100 + side] = 65535
    Image.fromarray(marked).save(tmp_path / "marked.png")
    pixels = read_image(tmp_path / "marked.png").pixels
    np.testing.assert_allclose(pixels[marked != 65535], film[marked != 65535] / 4095.0, atol=1e-6)
    assert (pixels[marked == 65535] == 1.0).all()


def test_a_films_own_bright_region_at_its_top_is_read_as_before(tmp_path):
    """A review ask: metal or a shoulder at the film's top value over 1.5 % of a real film is its own range (the
    film spans its range), not a label: min-max, as before the 0.5-2 % marker tiers."""
    film = np.asarray(Image.open(sorted((CXR / "images").glob("*.png"))[0]).convert("L"), np.float64)
    film = np.round(film / film.max() * 3000).astype(np.uint16)
    side = int((0.015 * film.size) ** 0.5)
    film[20:20 + side, 20:20 + side] = 4095  # metal
    Image.fromarray(film).save(tmp_path / "metal.png")
    np.testing.assert_allclose(read_image(tmp_path / "metal.png").pixels, (film - film.min()) / (4095.0 - film.min()),
                               atol=1e-6)


@pytest.mark.parametrize("where", ["top+left", "bottom+right", "row 1+col 1"])
def test_a_thin_bright_line_reads_alike_wherever_it_lies(tmp_path, where):
    """A QA find: a 1-px line at 65535 along the top and left edges (0.4 % of the film) weighed 3 % of a 1-in-64
    sample that always holds row 0 and column 0, so the film was squashed into its darkest 6 % (Dice 0.66); on the
    other edges it was a marker.  The share is counted on the whole film: every place reads the film alike."""
    film = np.asarray(Image.open(sorted((CXR / "images").glob("*.png"))[0]).convert("L"), np.uint16) * 16
    marked = film.copy()
    row, col = {"top+left": (0, 0), "bottom+right": (-1, -1), "row 1+col 1": (1, 1)}[where]
    marked[row, :] = marked[:, col] = 65535
    Image.fromarray(marked).save(tmp_path / "line.png")
    pixels = read_image(tmp_path / "line.png").pixels
    rest = film[marked != 65535].astype(np.float64)
    np.testing.assert_allclose(pixels[marked != 65535], (rest - rest.min()) / np.ptp(rest), atol=1e-6)
    assert (pixels[marked == 65535] == 1.0).all()


def test_an_animated_gif_is_no_mask(tmp_path):
    from PIL import Image

    frames = [Image.fromarray(np.zeros((16, 16), np.uint8)), Image.fromarray(np.full((16, 16), 255, np.uint8))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageReadError, match=r"a.gif: an animated GIF \(2 frames\), not a mask"):
        read_mask(tmp_path / "a.gif")

