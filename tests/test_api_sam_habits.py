"""SAM users' habits through the public API, as an ML engineer's QA pass found them: "not lung" points alone
give the same mask as ``adaqat segment --points``, ``box=`` is SAM's name for ``boxes``, an empty (0, 4) box
array is one line, RGB arrays of 16-bit or signed pixels are read as their file is, and the Engine takes
"default" (or a path) and an image file."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_adaqat import Engine, open_model
from napari_adaqat.cli import main
from napari_adaqat.data.boxes import default_box
from napari_adaqat.io import read_mask
from napari_adaqat.metrics import dice


@pytest.fixture(scope="module")
def nano(nano_pth):
    return open_model(nano_pth, model_type="vit_nano", device="cpu")


def _film(cxr_dir) -> np.ndarray:
    return np.asarray(Image.open(sorted((cxr_dir / "images").glob("*.png"))[0]).convert("L"))


def _box(shape: tuple[int, ...]) -> list[float]:
    """A box around most of a film of ``shape`` (H, W[, C])."""
    return [0.1 * shape[1], 0.1 * shape[0], 0.9 * shape[1], 0.85 * shape[0]]


def test_not_lung_points_alone_give_the_clis_mask(tmp_path, cxr_dir, nano_pth, nano):
    film = sorted((cxr_dir / "images").glob("*.png"))[0]
    (tmp_path / "points.csv").write_text(f"file,x,y,label\n{film.name},256,256,0\n")
    assert main(["segment", str(film), "--out", str(tmp_path / "out"), "--points", str(tmp_path / "points.csv"),
                 "--model", str(nano_pth), "--model-type", "vit_nano", "--device", "cpu"]) == 0
    cli = read_mask(tmp_path / "out" / f"{film.stem}_mask.png")
    api = nano.segment(film, point_coords=[[256, 256]], point_labels=[0])
    np.testing.assert_array_equal(api, cli != 0)
    nano.set_image(film)
    within_default, _ = nano.predict(point_coords=[[256, 256]], point_labels=[0])
    default, _ = nano.predict()
    np.testing.assert_array_equal(within_default, api)
    assert not np.array_equal(within_default, default)  # the point still counts, inside the default box
    nothing, _ = nano.predict(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0))
    np.testing.assert_array_equal(nothing, default)  # no points at all: the default box, not no prompt
    _, pred = nano.predict(point_coords=[[256, 256]], point_labels=[0])
    clicks = {"point_coords": [[256, 256], [100, 300]], "point_labels": [0, 0], "mask_input": pred.low_res_logits}
    second, _ = nano.predict(**clicks)  # the dock's next click feeds the last logits back: still the default box
    np.testing.assert_array_equal(second, nano.predict(boxes=default_box(default.shape), **clicks)[0])


def test_sams_box_keyword_and_an_empty_box_array(cxr_dir, nano):
    film = _film(cxr_dir)
    nano.set_image(film)
    box = _box(film.shape)
    np.testing.assert_array_equal(nano.predict(box=box)[0], nano.predict(boxes=box)[0])
    with pytest.raises(TypeError, match=r"^give boxes= or box= \(SAM's name\), not both$"):
        nano.predict(boxes=box, box=box)
    with pytest.raises(ValueError, match=r"^boxes is empty \(0 boxes\): give one box \(4,\) or \(N, 4\), or "
                                         r"boxes=None for the default box$"):
        nano.predict(boxes=np.zeros((0, 4)))


@pytest.mark.parametrize("dtype", [np.int16, np.uint16])
def test_an_rgb_array_of_wide_pixels_is_read_as_its_file(tmp_path, cxr_dir, nano, dtype):
    gray = _film(cxr_dir).astype(np.int32)
    values = gray * 8 - 1024 if dtype == np.int16 else gray * 200  # Hounsfield-like; 16-bit
    rgb = np.stack([values.astype(dtype)] * 3, -1)
    tifffile.imwrite(tmp_path / "film.tif", rgb, photometric="rgb")
    box = _box(rgb.shape)
    np.testing.assert_array_equal(nano.segment(rgb, box), nano.segment(tmp_path / "film.tif", box))


def test_the_engine_takes_default_and_an_image_file(cxr_dir, nano):
    film = sorted((cxr_dir / "images").glob("*.png"))[0]
    box = np.array(_box(_film(cxr_dir).shape))
    engine = Engine()
    result = engine.segment(film, box, nano, nano)  # a Segmenter as model and baseline, the image as a file
    np.testing.assert_array_equal(result.mask, nano.segment(film, box))
    assert result.ssim_mean == pytest.approx(1.0)
    with pytest.raises(TypeError, match=r"^model must be a model file, 'default', a ModelRef, a Segmenter or a "
                                        r"predictor \(with set_image and predict\); got int$"):
        engine.segment(film, box, 42)
    bundled = open_model()
    by_name = engine.segment(film, box, "default", "default")
    assert dice(by_name.mask, bundled.segment(film, box)) == 1.0 and by_name.p_baseline is not None


def test_one_prompts_logits_without_the_leading_one_are_a_mask_input(cxr_dir, nano):
    film = _film(cxr_dir)
    nano.set_image(film)
    box = _box(film.shape)
    _, pred = nano.predict(boxes=box)
    logits = np.asarray(pred.low_res_logits)[0, 0]  # (4E, 4E): SAM users drop the leading ones
    with_two, _ = nano.predict(boxes=box, mask_input=logits)
    np.testing.assert_array_equal(with_two, nano.predict(boxes=box, mask_input=logits[None])[0])
    with pytest.raises(ValueError, match=r"got \(\d+, \d+\); for an \(H, W\) mask of the image use "
                                         r"mask_input_from\(mask\)$"):
        nano.predict(boxes=box, mask_input=logits > 0)  # a mask, not logits, even at the logits' size


def test_a_channels_first_gray_array_is_the_film(cxr_dir, nano):
    """(1, H, W), a torch habit (a QA find: refused while (H, W, 1) was taken): the same mask as (H, W)."""
    film = _film(cxr_dir)
    np.testing.assert_array_equal(nano.segment(film[None], _box(film.shape)), nano.segment(film, _box(film.shape)))


@pytest.mark.parametrize("given, error, line", [
    ("bytes", TypeError, "got the bytes of a file, not a path: give the file's path, or decode it first"),
    ("open file", TypeError, "got an open file: give its path"),
    ("None", TypeError, "expected an image (an array, a file path or an ImageData), got None"),
    ("bool", ValueError, "got a bool array: that is a mask, not a film; give the film's pixels"),
])
def test_what_is_no_film_is_one_line_that_says_what_it_got(cxr_dir, nano, given, error, line):
    """A QA find: a file's bytes gave "embedded null byte", an open file and None "got shape ()", and a bool array
    (a mask passed by mistake) was segmented without a word."""
    import io

    path = sorted((cxr_dir / "images").glob("*.png"))[0]
    image = {"bytes": path.read_bytes(), "open file": io.BytesIO(path.read_bytes()), "None": None,
             "bool": _film(cxr_dir) > 128}[given]
    with pytest.raises(error) as err:
        nano.set_image(image)
    assert line in str(err.value) and "\n" not in str(err.value)
    assert nano.set_image(bytes(path)).image_shape == _film(cxr_dir).shape  # a path as bytes is still a path


def test_a_sam_users_positional_points_and_ragged_boxes_are_said_plainly(cxr_dir, nano):
    """QA finds: ``predict(coords, labels)`` in SamPredictor's order said only "boxes must be (4,) or (N, 4)", and
    boxes of rows of different lengths were "not numbers"."""
    nano.set_image(_film(cxr_dir))
    with pytest.raises(ValueError, match=r"got shape \(1, 2\) \(points\? unlike SamPredictor.predict, boxes come "
                                         r"first here: pass point_coords=, point_labels= by name\)"):
        nano.predict(np.array([[100.0, 120.0]]), np.array([1]))
    with pytest.raises(ValueError, match="boxes has rows of different lengths"):
        nano.predict(boxes=[[10, 10, 100, 100], [1, 2, 3]])


def test_the_bare_predictor_takes_sams_box_keyword_and_a_box_without_area_is_warned_of(cxr_dir, nano):
    """QA finds: BoxPredictor.predict (documented as SamPredictor's) refused ``box=``; a box of no area gave an
    empty mask without a word, while one outside the image was warned of."""
    film = _film(cxr_dir)
    nano.set_image(film)
    box = _box(film.shape)
    bare = nano.predictor
    np.testing.assert_array_equal(bare.predict(box=box).masks, bare.predict(boxes=box).masks)
    with pytest.warns(UserWarning, match=r"box 50,50,50,50 has no area \(segment\(\) refuses it; SAM's call takes "
                                         r"it\): give x1 > x0 and y1 > y0, around the lungs$"):
        nano.predict(boxes=[50, 50, 50, 50])
