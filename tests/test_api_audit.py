"""The Python API used as an ML engineer coming from SAM would use it (bundled model, real radiographs):
array shapes and dtypes it takes, one clear line naming the argument for what it refuses, one way in with
``adaqat segment``, and one model shared by two threads."""
from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import torch

from napari_adaqat.io import read_image, read_mask


@pytest.fixture(scope="module")
def model():
    from napari_adaqat import open_model
    return open_model(device="cpu")


@pytest.fixture(scope="module")
def film(cxr_dir) -> np.ndarray:
    return read_image(sorted((cxr_dir / "images").glob("*.png"))[0]).pixels


def _box(image: np.ndarray) -> list[float]:
    h, w = image.shape[:2]
    return [0.1 * w + 0.25, 0.1 * h + 0.5, 0.9 * w - 0.25, 0.9 * h - 0.75]


def _one_line(excinfo: pytest.ExceptionInfo, name: str) -> None:
    text = str(excinfo.value)
    assert name in text and "\n" not in text, text



def both_at_once(work) -> None:
    """``work(0)`` and ``work(1)`` in two threads at once, waited for."""
    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_one_model_shared_by_two_threads_gives_each_thread_its_own_mask(model, cxr_dir):
    """A GUI's worker and a script on one Segmenter: segment() is set_image + predict, and another thread's
    set_image must not come between them (a wrong film's mask, even of the wrong shape)."""
    images = [read_image(p).pixels for p in sorted((cxr_dir / "images").glob("*.png"))[:2]]
    assert images[0].shape != images[1].shape
    expected = [model.segment(image) for image in images]
    wrong = []

    def work(i: int) -> None:
        for _ in range(8):
            mask = model.segment(images[i])
            if mask.shape != expected[i].shape or not np.array_equal(mask, expected[i]):
                wrong.append(i)

    both_at_once(work)
    assert not wrong
    with model.lock:  # documented: hold it across set_image and predict
        assert np.array_equal(model.set_image(images[1]).predict()[0], expected[1])


@pytest.mark.parametrize("boxes", [[np.nan, 0, 100, 100], [0, 0, np.inf, 100], "abc", [object()] * 4,
                                   [300, 400, 40, 50], [1, 2, 3]])
def test_a_bad_box_is_one_line_naming_boxes(model, film, boxes):
    model.set_image(film)
    with pytest.raises((ValueError, TypeError)) as excinfo:
        model.predict(boxes=boxes)
    _one_line(excinfo, "boxes")
    with pytest.raises((ValueError, TypeError)) as excinfo:  # the bare predictor too, not an empty mask
        model.predictor.predict(boxes)
    _one_line(excinfo, "boxes")


def test_a_bad_mask_input_is_one_line_naming_it(model, film):
    model.set_image(film)
    mask, pred = model.predict(boxes=_box(film))
    for bad in ("x", torch.full_like(pred.low_res_logits, float("nan")), torch.zeros(1, 1, 32, 32)):
        with pytest.raises((ValueError, TypeError)) as excinfo:
            model.predict(boxes=_box(film), mask_input=bad)
        _one_line(excinfo, "mask_input")
    with pytest.raises(ValueError, match="mask_input_from") as excinfo:  # an (H, W) mask: says what to do
        model.predict(boxes=_box(film), mask_input=mask)
    _one_line(excinfo, "mask_input")
    # what is accepted: the tensor, its numpy copy, one row without the batch axis
    again = model.predict(boxes=_box(film), mask_input=pred.low_res_logits)[0]
    assert np.array_equal(model.predict(boxes=_box(film), mask_input=pred.low_res_logits.numpy())[0], again)
    assert np.array_equal(model.predict(boxes=_box(film), mask_input=pred.low_res_logits[0])[0], again)


def test_points_take_the_shapes_and_label_types_an_engineer_passes(model, film):
    model.set_image(film)
    h, w = film.shape[:2]
    xy = [0.3 * w, 0.5 * h]
    expected = model.predict(point_coords=np.array([xy]), point_labels=np.array([1]))[0]
    for coords, labels in (([xy], [True]), ([xy], [1.0]), ([xy], 1), (xy, [1]), (xy, 1), (tuple(xy), np.int8(1))):
        assert np.array_equal(model.predict(point_coords=coords, point_labels=labels)[0], expected), (coords, labels)
    with pytest.raises(ValueError, match="2 points but 1 label") as excinfo:
        model.predict(point_coords=[xy, xy], point_labels=[1])
    _one_line(excinfo, "point_labels")
    with pytest.raises(ValueError) as excinfo:
        model.predict(point_coords=[xy], point_labels=[0.5])
    _one_line(excinfo, "point_labels")


def test_images_of_every_common_layout_and_dtype(model, film):
    gray = np.round(np.asarray(film, dtype=np.float64) * 255).astype(np.uint8) if film.dtype != np.uint8 else film
    box = _box(gray)
    expected = model.set_image(gray).predict(boxes=box)[0]
    for image in (gray[..., None], np.asfortranarray(gray), np.repeat(gray, 2, axis=1)[:, ::2],
                  np.stack([gray] * 3, axis=-1), gray.astype(">u1"), gray.astype(">f4") / 255.0):
        mask = model.set_image(image).predict(boxes=box)[0]
        assert np.array_equal(mask, expected), (image.shape, image.dtype, image.flags["C_CONTIGUOUS"])
    big = np.kron(gray, np.ones((6, 6), np.uint8))[:3000, :2500]  # a film at full scanner size
    mask = model.set_image(big).predict(boxes=[300, 300, 2200, 2700])[0]
    assert mask.shape == (3000, 2500) and mask.dtype == bool and mask.any()
    with pytest.raises(ValueError) as excinfo:
        model.set_image(gray[:, :1])  # a 1-pixel strip
    assert "\n" not in str(excinfo.value)


def test_multimask_output_false_is_accepted_and_true_is_one_line(model, film):
    model.set_image(film)
    expected = model.predict(boxes=_box(film))[0]
    assert np.array_equal(model.predict(boxes=_box(film), multimask_output=False)[0], expected)
    with pytest.raises(ValueError) as excinfo:
        model.predict(boxes=_box(film), multimask_output=True)
    _one_line(excinfo, "multimask_output")


def test_predict_with_a_fractional_box_and_points_equals_adaqat_segment(model, film, cxr_dir, tmp_path):
    """One way in: the same film, box and points give the mask `adaqat segment` writes."""
    from napari_adaqat.cli import main

    path = sorted((cxr_dir / "images").glob("*.png"))[0]
    box, h = _box(film), film.shape[0]
    points = [(0.3 * film.shape[1] + 0.5, 0.5 * h, 1), (0.5 * film.shape[1], 0.5 * h, 0)]
    (tmp_path / "boxes.csv").write_text(f"{path.name},{','.join(repr(v) for v in box)}\n")
    (tmp_path / "points.csv").write_text("".join(f"{path.name},{x!r},{y!r},{lab}\n" for x, y, lab in points))
    assert main(["segment", str(path), "--out", str(tmp_path / "out"), "--boxes", str(tmp_path / "boxes.csv"),
                 "--points", str(tmp_path / "points.csv")]) == 0
    written = read_mask(tmp_path / "out" / f"{path.stem}_mask.png")
    mask, _ = model.set_image(path).predict(boxes=box, point_coords=[p[:2] for p in points],
                                            point_labels=[p[2] for p in points])
    assert written.any() and np.array_equal(mask, written)


def test_the_names_an_engineer_looks_for_are_at_the_top():
    import napari_adaqat

    for name in ("open_model", "Segmenter", "Prediction", "Engine", "load_model", "BoxPredictor"):
        assert name in napari_adaqat.__all__ and name in dir(napari_adaqat), name
    from napari_adaqat import Prediction
    from napari_adaqat.inference.predictor import Prediction as Inner
    assert Prediction is Inner
    assert "thread" in (napari_adaqat.Segmenter.__doc__ or "")


def test_two_engines_given_one_segmenter_do_not_mix_their_films(model, cxr_dir):
    """A script's Segmenter handed to two engines (say a dock's and a report's), prompted from two threads."""
    from napari_adaqat import Engine

    images = [read_image(p).pixels for p in sorted((cxr_dir / "images").glob("*.png"))[:2]]
    expected = [model.segment(image) for image in images]
    engines, wrong = [Engine(), Engine()], []

    def work(i: int) -> None:
        for _ in range(8):
            mask = engines[i].predict(images[i], None, model).mask
            if mask.shape != expected[i].shape or not np.array_equal(mask, expected[i]):
                wrong.append(i)

    both_at_once(work)
    assert not wrong


@pytest.mark.parametrize("dtype, scale, offset", [(np.uint16, 40000, 3000), (np.int16, 3000, -1024)])
def test_an_integer_array_gives_the_mask_adaqat_segment_writes_for_its_file(model, film, tmp_path, dtype, scale, offset):
    """16-bit pixels (tifffile, pydicom's pixel_array, a napari layer) as an array and as a file: one mask."""
    import tifffile
    from napari_adaqat.cli import main

    pixels = (np.asarray(film, np.float64) * scale + offset).astype(dtype)
    tifffile.imwrite(tmp_path / "film.tif", pixels)
    box = [40.5, 30.25, 380, 480]
    (tmp_path / "boxes.csv").write_text("film.tif," + ",".join(map(str, box)) + "\n")
    assert main(["segment", str(tmp_path / "film.tif"), "--out", str(tmp_path / "out"),
                 "--boxes", str(tmp_path / "boxes.csv")]) == 0
    written = read_mask(tmp_path / "out" / "film_mask.png")
    assert written.any()
    assert np.array_equal(model.segment(pixels, box), written)
    assert np.array_equal(model.segment(pixels.astype(pixels.dtype.newbyteorder(">")), box), written)


def test_prompts_of_different_row_counts_name_the_arguments(model, film):
    model.set_image(film)
    box = _box(film)
    _, two = model.predict(boxes=np.array([box, box]))
    assert two.masks.shape == (2, *film.shape[:2]) and two.low_res_logits.shape[:2] == (2, 1)
    with pytest.raises(ValueError, match="boxes 3, mask_input 2") as excinfo:
        model.predict(boxes=np.array([box] * 3), mask_input=two.low_res_logits)
    _one_line(excinfo, "mask_input")


def test_a_box_wholly_outside_the_film_warns_and_gives_an_empty_mask(model, film):
    """``predict`` takes boxes as SAM does (no refusal), but a box that misses the film altogether says so."""
    model.set_image(film)
    h, w = film.shape[:2]
    for box in ([-500, -500, -100, -100], [w + 10, 10, w + 200, 200]):
        with pytest.warns(UserWarning, match=rf"lies outside the {w}x{h} image .*: the mask is empty$"):
            mask, _pred = model.predict(boxes=box)
        assert not mask.any()
    with pytest.warns(UserWarning, match="the mask comes from the other prompts"):  # a lung click widens the clip
        mask, _pred = model.predict(boxes=[-500, -500, -100, -100], point_coords=[[w / 3, h / 2]], point_labels=[1])
    assert mask.any()
    with pytest.warns(UserWarning, match="lies outside"):
        model.predict(boxes=[-500, -500, -100, -100], clip=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a box partly outside (SAM's habit) is taken without a word
        mask, _pred = model.predict(boxes=[-5, -5, w + 5, h + 5])
    assert mask.any()


def test_a_point_outside_the_film_and_a_nan_array_are_refused_as_everywhere(model, film):
    """QA9: ``predict`` and ``Engine.segment`` took points outside the image, and ``segment`` an all-NaN array (a mask
    of 102,250 px), where ``adaqat segment`` refuses both."""
    from napari_adaqat.inference.engine import Engine

    h, w = film.shape[:2]
    model.set_image(film)
    for point in ([w + 388, 10], [1e6, 1e6]):
        with pytest.raises(ValueError, match=rf"point .* lies outside the {w}x{h} image; was it placed on a resized"):
            model.predict(point_coords=[point], point_labels=[1])
    mask, _pred = model.predict(point_coords=[[w - 1.5, 3]], point_labels=[1])  # on the edge: taken
    mask, _pred = model.predict(boxes=_box(film), point_coords=[[w / 3, h / 2], [-10, -10]],
                                point_labels=[1, -1])  # a padding point (label -1, as HF's SamProcessor pads): taken
    with pytest.raises(ValueError, match="lies outside"):
        Engine().segment(film, np.array(_box(film)), model, point_coords=[[w + 388, 10]], point_labels=[0])
    nan = np.full((h, w), np.nan, np.float32)
    with pytest.raises(Exception, match=rf"^{h * w} of {h * w} pixel values are NaN or infinite; the image data is "):
        model.segment(nan)
    spot = film.astype(np.float32)
    spot[3, 4] = np.inf
    with pytest.raises(Exception, match=r"^1 of .* pixel values are NaN or infinite"):
        model.segment(spot)
