"""The three-line public API, on real radiographs with the bundled model."""
from __future__ import annotations

import json

import numpy as np

from napari_adaqat.data import mask_box
from napari_adaqat.io import read_mask
from napari_adaqat.metrics import dice


def test_three_lines_predict_a_lung_mask(cxr_dir):
    image = sorted((cxr_dir / "images").glob("*.png"))[0]
    reference = read_mask(cxr_dir / "masks" / image.name)

    from napari_adaqat import open_model
    model = open_model()
    mask = model.segment(image, mask_box(reference))

    assert mask.shape == reference.shape and mask.dtype == bool
    assert dice(mask, reference) > 0.85  # the hardest of the four films
    # without a box: the whole image minus 2 %, as `adaqat segment` does
    assert dice(model.segment(image), reference) > 0.85
    # the bare network, for training or stock segment_anything: its metadata hangs on it
    from napari_adaqat import BoxPredictor, load_model
    sam = load_model()
    assert sam.meta["format"] == "adaqat-model"
    raw = BoxPredictor(sam).set_image(image).predict(mask_box(reference)).masks[0]
    assert np.array_equal(raw, model.segment(image, mask_box(reference), clean=False))  # dequantized = INT8 kept


def test_public_evaluate_takes_model_files_and_the_bundled_default(tmp_path, cxr_dir):
    from napari_adaqat import evaluate

    summary = evaluate(cxr_dir, None, "default", tmp_path / "report", split="all")
    assert summary["n"] == len(list((cxr_dir / "images").glob("*.png")))
    assert summary["model"]["dice"]["mean"] > 0.85
    assert 0.0 <= summary["wilcoxon_dice_p"] <= 1.0 or np.isnan(summary["wilcoxon_dice_p"])
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["n"] == summary["n"]


def test_the_engine_defaults_to_auto_as_open_model_does_and_loads_a_model_once(monkeypatch):
    """A QA find: the Engine's methods defaulted to device="cpu" while open_model, evaluate() and the CLI default to
    "auto", so a GPU user of Engine().segment ran on the CPU. "auto" is resolved before the model is keyed: the
    same device named two ways loads one model."""
    from napari_adaqat.inference import engine as engine_module
    from napari_adaqat.model.device import resolve_device

    asked = []
    monkeypatch.setattr(engine_module, "resolve_device", lambda name: asked.append(name) or resolve_device(name))
    engine = engine_module.Engine()
    segmenter = engine.segmenter("default")
    assert asked == ["auto"] and segmenter.predictor.device.type == resolve_device("auto")
    assert engine.segmenter("default", resolve_device("auto")) is segmenter
