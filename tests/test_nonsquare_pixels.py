"""Films whose pixels are not square (a DICOM's PixelSpacing 0.2 x 0.1 mm: some CR readers and digitisers).

napari shows such a film at its true shape (the reader's scale); the model must see it so too: before, it got the
film stretched 2:1 and the mask of the same anatomy had Dice 0.69 with the square film's (the model v4.2).  Now
every way in (the API, ``adaqat segment``, the engine, the Segment dock) makes the pixels square for the model and
gives the mask back on the film's own pixels; square pixels (within 2 %) take the stock path, bit for bit.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
import napari_adaqat._sam_import  # noqa: F401
# isort: split
from segment_anything.utils.transforms import ResizeLongestSide

from napari_adaqat.cli import main
from napari_adaqat.data.transforms import input_shape, pixel_aspect, prepare_image, transform_boxes, transform_coords
from napari_adaqat.inference.engine import Engine
from napari_adaqat.inference.segmenter import open_model
from napari_adaqat.io import ImageData, read_image, read_mask
from napari_adaqat.metrics import dice
from napari_adaqat.metrics.clicks import next_click
from napari_adaqat.model import loading
from test_dicom import make_dicom  # tests/ is on sys.path (pytest rootdir-less import)

ROOT = Path(__file__).resolve().parents[1]
FILM = ROOT / "tests/data/cxr/images/covid19_v7__5782ae15.png"
needs_default = pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="bundled default model not installed")


@pytest.mark.parametrize("spacing, aspect", [
    (None, 1.0), ((0.1, 0.1), 1.0), ((0.1430, 0.1431), 1.0), ((0.2, 0.1), 2.0), ((0.1, 0.2), 0.5),
    ((0.0, 0.1), 1.0), ((float("nan"), 0.1), 1.0), (("a", "b"), 1.0), ((0.1,), 1.0),
])
def test_pixel_aspect_is_one_unless_clearly_not_square(spacing, aspect):
    assert pixel_aspect(spacing) == pytest.approx(aspect)


def test_square_pixels_keep_stock_sams_arithmetic_bit_for_bit():
    boxes = np.array([[10.3, 20.7, 400.1, 300.9], [1, 2, 3, 4]])
    for size in ((512, 700), (700, 512), (3000, 2500)):
        np.testing.assert_array_equal(transform_boxes(boxes, size, 1024), ResizeLongestSide(1024).apply_boxes(boxes, size))
        np.testing.assert_array_equal(transform_coords(boxes[:, :2], size, 256),
                                      ResizeLongestSide(256).apply_coords(boxes[:, :2], size))
        assert input_shape(size, 1024) == ResizeLongestSide.get_preprocess_shape(*size, 1024)


def test_nonsquare_pixels_are_made_square_and_prompts_follow():
    # 512 rows of 0.2 mm, 700 columns of 0.1 mm: a film 102 mm tall and 70 mm wide
    assert input_shape((512, 700), 256, 2.0) == (256, 175)
    prepared = prepare_image(np.zeros((512, 700), np.float32), 256, [0, 0, 0], [1, 1, 1], aspect=2.0)
    assert prepared.input_size == (256, 175) and prepared.original_size == (512, 700)
    np.testing.assert_allclose(transform_coords(np.array([[700.0, 512.0], [350.0, 256.0]]), (512, 700), 256, 2.0),
                               [[175.0, 256.0], [87.5, 128.0]])  # the film's corner and centre, in the input
    np.testing.assert_allclose(transform_boxes(np.array([0.0, 0.0, 700.0, 512.0]), (512, 700), 256, 2.0),
                               [0.0, 0.0, 175.0, 256.0])


def _films(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    """The same anatomy as a square-pixel DICOM (512 x 512, 0.1 mm) and a 2:1 one (512 x 1024 columns of 0.1 mm,
    rows of 0.2 mm: twice as many columns); returns both paths and the square film's pixels as uint16."""
    film = (np.asarray(Image.open(FILM).convert("L"), dtype=np.uint16) * 16)  # 12-bit
    wide = np.asarray(Image.fromarray(film.astype(np.int32)).resize((1024, 512), Image.BILINEAR)).astype(np.uint16)
    square = make_dicom(tmp_path / "square.dcm", film, bits_stored=12, PixelSpacing=[0.1, 0.1])
    nonsquare = make_dicom(tmp_path / "nonsquare.dcm", wide, bits_stored=12, PixelSpacing=[0.2, 0.1])
    return square, nonsquare, film


def _stretched(mask: np.ndarray, width: int) -> np.ndarray:
    return np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((width, mask.shape[0]), Image.NEAREST)) > 0


@needs_default
def test_every_way_in_segments_a_nonsquare_film_as_its_square_twin(tmp_path):
    square, nonsquare, _film = _films(tmp_path)
    model = open_model("default", device="cpu")
    assert read_image(nonsquare).spacing == (0.2, 0.1)
    square_mask = model.segment(square)
    api = model.segment(nonsquare)
    assert api.shape == (512, 1024)  # on the film's own pixels
    twin = _stretched(square_mask, 1024)
    assert dice(api, twin) >= 0.97, dice(api, twin)
    # the pixels alone (their spacing lost) are the stretched film of before: a much worse mask
    pixels = read_image(nonsquare).pixels
    assert dice(model.segment(pixels), twin) < dice(api, twin) - 0.05
    # the pixels with their spacing, the engine with the file or an ImageData, adaqat segment: the same mask
    np.testing.assert_array_equal(model.segment(pixels, spacing=(0.2, 0.1)), api)
    engine = Engine()
    np.testing.assert_array_equal(engine.predict(nonsquare, None, "default").mask, api)
    np.testing.assert_array_equal(engine.predict(ImageData(pixels, (0.2, 0.1), ""), None, "default").mask, api)
    assert main(["segment", str(nonsquare), "--out", str(tmp_path / "out")]) == 0
    np.testing.assert_array_equal(read_mask(tmp_path / "out/nonsquare_mask.png"), api)
    with open(tmp_path / "out/results.csv", newline="") as fh:
        assert [row["status"] for row in csv.DictReader(fh)] == ["ok"]


@needs_default
def test_a_click_lands_where_it_was_made_on_a_nonsquare_film(tmp_path):
    square, nonsquare, _film = _films(tmp_path)
    truth = _stretched(read_mask(ROOT / "tests/data/cxr/masks" / FILM.name), 1024)  # the expert mask, 2:1
    wide = open_model("default", device="cpu").set_image(nonsquare)
    before, pred = wide.predict()
    x, y, label = next_click(before, truth)  # the standard corrective click (adaqat evaluate --clicks)
    after, _ = wide.predict(point_coords=[[x, y]], point_labels=[label], mask_input=pred.low_res_logits)
    assert dice(after, truth) > dice(before, truth)
    # the same click on the square twin (half the x): the same correction
    twin = open_model("default", device="cpu").set_image(square)
    first, twin_pred = twin.predict()
    corrected, _ = twin.predict(point_coords=[[x / 2, y]], point_labels=[label], mask_input=twin_pred.low_res_logits)
    assert dice(after, _stretched(corrected, 1024)) >= 0.97


def test_the_cache_never_mixes_a_film_with_its_nonsquare_reading(nano_pth):
    model = open_model(nano_pth, model_type="vit_nano", device="cpu")
    pixels = np.random.default_rng(0).random((96, 128)).astype(np.float32)
    predictor = model.predictor
    keys = {predictor.key_of(pixels), predictor.key_of(pixels, (0.2, 0.1)), predictor.key_of(pixels, (0.1, 0.2))}
    assert len(keys) == 3
    assert predictor.key_of(pixels, (0.1, 0.1)) == predictor.key_of(pixels)  # square: the stock key
    model.set_image(pixels)
    square = predictor._current
    model.set_image(pixels, spacing=(0.2, 0.1))
    assert predictor._current is not square and predictor._current.input_size != square.input_size


def test_training_makes_nonsquare_pixels_square_as_inference_does(tmp_path):
    """A site's own non-square DICOMs train as they segment: the film, its target mask and its box at the film's
    true shape in the model input (validation Dice is then the Dice adaqat evaluate gives)."""
    from napari_adaqat.data.dataset import Pair
    from napari_adaqat.train.dataset import LungDataset

    _square, nonsquare, _film = _films(tmp_path)
    truth = _stretched(read_mask(ROOT / "tests/data/cxr/masks" / FILM.name), 1024)
    Image.fromarray(truth.astype(np.uint8) * 255).save(tmp_path / "nonsquare.png")
    item = LungDataset([Pair("nonsquare", nonsquare, tmp_path / "nonsquare.png")], 256, [0, 0, 0], [1, 1, 1],
                       train=False)[0]
    assert item["valid"].tolist() == [256, 256]  # 512 rows of 0.2 mm, 1024 columns of 0.1 mm: a square film
    rows, cols = np.nonzero(item["mask"][0].numpy() > 0.5)
    x0, y0, x1, y1 = item["box"].tolist()
    assert abs(x0 - cols.min()) < 3 and abs(x1 - cols.max()) < 3 and abs(y0 - rows.min()) < 3 and abs(y1 - rows.max()) < 3


def test_the_maps_of_a_prompt_use_its_spacing(nano_models):
    """Engine.add_maps given the bare pixels after a prompt with their spacing: the baseline sees the film as the
    model did (its mask is the baseline's own prompt with that spacing), not stretched."""
    from napari_adaqat.inference.engine import ModelRef

    model, baseline = (ModelRef(path=p, model_type="vit_nano") for p in nano_models)
    pixels = np.asarray(Image.open(FILM).convert("L").resize((256, 128)), np.float32) / 255  # 2:1 pixels
    film, box = ImageData(pixels, (0.2, 0.1), ""), np.array([10.0, 5.0, 240.0, 120.0])
    engine = Engine()
    result = engine.predict(film, box, model)
    assert result.spacing == (0.2, 0.1)
    engine.add_maps(result, pixels, baseline)
    np.testing.assert_array_equal(result.baseline_mask, engine.predict(film, box, baseline).mask)
    assert not np.array_equal(engine.predict(pixels, box, baseline).p_model, result.p_baseline)
