"""A mask refiner that sees the clicks (issue 32): click maps, a zero start, the file round trip, training."""
import json

import numpy as np
import pytest
import torch

from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.model.build import PRESETS, ModelLoadError, add_refiner_clicks, build_sam, spec_from_metadata
from napari_adaqat.model.formats.model_file import export_model
from napari_adaqat.model.loading import load_model
from napari_adaqat.model.modes import parameter_role
from napari_adaqat.model.mask_refiner import CLICK_SIGMA_FRACTION, click_maps
from napari_adaqat.model.qat import apply_qat

BOX = np.array([5, 8, 80, 66])
POINTS, LABELS = np.array([[30.0, 30.0], [60.0, 40.0]]), np.array([1, 0])


def _image() -> np.ndarray:
    return (np.random.default_rng(0).random((70, 90)) * 255).astype(np.uint8)


def _refiner_model(seed: int = 0):
    """hybrid_nano_refine with a non-identity refiner (its last conv starts at zero)."""
    torch.manual_seed(seed)
    sam = build_sam("hybrid_nano_refine")
    with torch.no_grad():
        for p in sam.mask_refiner.parameters():
            p.normal_(0, 0.5)
    return sam


def test_click_maps_put_a_unit_bump_on_each_click_in_its_own_channel():
    coords = torch.tensor([[[10.0, 20.0], [100.0, 50.0], [0.0, 0.0]]])
    maps = click_maps(coords, torch.tensor([[1, 0, -1]]), 2, (64, 128))
    assert maps.shape == (2, 2, 64, 128)  # one prompt's points shared by both rows
    assert maps[0, 0, 20, 10] == 1 and maps[0, 1, 50, 100] == 1
    assert maps[0, 0, 50, 100] < 1e-6 and maps[0, 1, 20, 10] < 1e-6  # each kind in its own channel
    assert maps[0, :, 0, 0].max() < 1e-3  # the padding point (-1) draws nothing
    sigma = CLICK_SIGMA_FRACTION * 128
    assert maps[0, 0, 20, 10 + round(sigma)].item() == pytest.approx(np.exp(-0.5), rel=0.05)
    assert not click_maps(None, None, 1, (8, 8)).any()


def test_adding_clicks_to_a_trained_refiner_changes_nothing_until_it_trains():
    sam = _refiner_model()
    image = _image()
    before = BoxPredictor(sam).set_image(image).predict(BOX, POINTS, LABELS).logits
    assert add_refiner_clicks(sam) and sam.spec.refiner_clicks and not add_refiner_clicks(sam)
    after = BoxPredictor(sam).set_image(image).predict(BOX, POINTS, LABELS).logits
    torch.testing.assert_close(after, before)
    with torch.no_grad():
        sam.mask_refiner.click_branch.weight.normal_(0, 1.0)
    trained = BoxPredictor(sam).set_image(image).predict(BOX, POINTS, LABELS).logits
    assert (trained - before).abs().max() > 1e-2  # now the clicks reach the refiner
    box_only = BoxPredictor(sam).set_image(image).predict(BOX).logits
    torch.testing.assert_close(box_only, BoxPredictor(_refiner_model()).set_image(image).predict(BOX).logits)
    with torch.no_grad():  # no clicks = all-zero maps, as in training: the branch's bias still counts
        sam.mask_refiner.click_branch.bias.fill_(0.5)
        features, logits = torch.rand(1, 4, 64, 64), torch.randn(1, 1, 64, 64)
        torch.testing.assert_close(sam.mask_refiner(logits, features),
                                   sam.mask_refiner(logits, features, torch.zeros(1, 2, 64, 64)))


def test_the_per_image_term_gives_the_joint_convolutions_logits():
    """The predictor keeps the image's share of the mask branch's first convolution per image; each prompt
    then convolves only its decision map: the same logits as the one convolution over both (with and
    without clicks, one or several prompt rows)."""
    sam = _refiner_model()
    add_refiner_clicks(sam)
    refiner = sam.mask_refiner
    with torch.no_grad():
        refiner.click_branch.weight.normal_(0, 1.0)
        features, logits = torch.rand(1, 4, 64, 64), torch.randn(3, 1, 16, 16) * 8
        clicks = torch.rand(3, 2, 64, 64)
        first, act, last = refiner.mask_branch
        decision = torch.tanh(torch.nn.functional.interpolate(logits, size=(64, 64), mode="bilinear") / 4)
        joint = first(torch.cat([features.expand(3, -1, -1, -1), decision], 1))
        upsampled = torch.nn.functional.interpolate(logits, size=(64, 64), mode="bilinear")
        expected = upsampled + last(act(joint + refiner.click_branch(clicks)))
        term = refiner.feature_term(features)
        torch.testing.assert_close(refiner(logits, features, clicks, term), expected)
        torch.testing.assert_close(refiner(logits, features, clicks), expected)  # the term made on the spot
        no_clicks = upsampled + last(act(joint + refiner.click_branch.bias.view(1, -1, 1, 1)))
        torch.testing.assert_close(refiner(logits, features, None, term), no_clicks)
    predictor = BoxPredictor(sam).set_image(_image())
    assert predictor._detail_term is not None and predictor._detail_term.shape == (1, 4, 64, 64)
    other = (np.random.default_rng(5).random((70, 90)) * 255).astype(np.uint8)
    predictor.set_image(other)  # a new image: a new term, as a fresh predictor of that image has
    torch.testing.assert_close(predictor.predict(BOX, POINTS, LABELS).logits,
                               BoxPredictor(sam).set_image(other).predict(BOX, POINTS, LABELS).logits)
    predictor.set_image(_image())  # and back, from the embedding cache
    torch.testing.assert_close(predictor.predict(BOX, POINTS, LABELS).logits,
                               BoxPredictor(sam).set_image(_image()).predict(BOX, POINTS, LABELS).logits)


def test_a_click_taking_refiner_survives_the_model_file_and_the_lean_path(tmp_path):
    sam = _refiner_model()
    add_refiner_clicks(sam)
    with torch.no_grad():
        sam.mask_refiner.click_branch.weight.normal_(0, 1.0)
    path = tmp_path / "m.safetensors"
    export_model(sam, path, profile="fp32")
    loaded = load_model(path)
    assert loaded.spec.refiner_clicks and loaded.mask_refiner.takes_clicks
    image = _image()
    want = BoxPredictor(sam, fast=False).set_image(image).predict(BOX, POINTS, LABELS).logits
    for fast in (True, False):
        got = BoxPredictor(loaded, fast=fast).set_image(image).predict(BOX, POINTS, LABELS).logits
        torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-4)
    apply_qat(sam, "full")  # the INT8 file: the click branch is quantized with the rest of the refiner
    export_model(sam, tmp_path / "d.safetensors", profile="deploy")
    deploy = load_model(tmp_path / "d.safetensors")
    assert deploy.mask_refiner.takes_clicks
    got = BoxPredictor(deploy).set_image(image).predict(BOX, POINTS, LABELS)
    assert (got.masks == BoxPredictor(sam).set_image(image).predict(BOX, POINTS, LABELS).masks).mean() > 0.99


def test_refiner_clicks_spec_round_trip_and_refusals():
    spec = PRESETS["hybrid_refine"]
    assert "refiner_clicks" not in spec.to_dict()  # files without it keep their metadata bytes
    with_clicks = {**spec.to_dict(), "refiner_clicks": True}
    assert spec_from_metadata("m", json.loads(json.dumps(with_clicks))).refiner_clicks
    for bad in ({**with_clicks, "refiner_clicks": "yes"}, {**PRESETS["hybrid_tiny"].to_dict(), "refiner_clicks": True}):
        with pytest.raises(ModelLoadError, match="refiner_clicks") as exc:
            spec_from_metadata("m.safetensors", bad)
        assert "\n" not in str(exc.value)


def test_training_gives_the_start_models_refiner_clicks_and_trains_them(dataset, tmp_path):
    from napari_adaqat.model.formats.checkpoint import load_checkpoint_model
    from napari_adaqat.train import train

    common = dict(data=dataset, preset="paper", model_type="hybrid_nano_refine", device="cpu", batch_size=2,
                  patience=0, max_steps_per_epoch=2)
    train(out=tmp_path / "base", mode="full", epochs=1, **common)
    start = tmp_path / "base/checkpoints/best.safetensors"
    assert not load_checkpoint_model(start).mask_refiner.takes_clicks
    train(out=tmp_path / "clicks", mode="decoder", epochs=1, checkpoint=str(start), refiner_clicks=True,
          train_prompt_encoder=True, click_rounds=2, **common)
    sam = load_checkpoint_model(tmp_path / "clicks/checkpoints/best.safetensors")
    assert sam.spec.refiner_clicks
    assert sam.mask_refiner.click_branch.weight.abs().sum() > 0  # it trained (it starts at zero)
    assert parameter_role("mask_refiner.click_branch.weight") == "prompt"  # with the prompt encoder, at lr_other
    with pytest.raises(ValueError, match="refiner_clicks needs"):  # a model without a refiner: said at once
        train(out=tmp_path / "no", mode="full", epochs=1, refiner_clicks=True, **{**common, "model_type": "hybrid_nano"})
