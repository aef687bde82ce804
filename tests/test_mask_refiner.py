"""The full-resolution boundary refiner behind the mask decoder (model/mask_refiner.py)."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from napari_adaqat.inference.predictor import BoxPredictor, EmbeddingCache
from napari_adaqat.model.build import PRESETS, ModelLoadError, attach_mask_refiner, build_sam, spec_from_metadata
from napari_adaqat.model.forward import decode_boxes, embed, image_detail
from napari_adaqat.model.modes import parameter_role

BOXES = torch.tensor([[4.0, 6, 58, 60], [12, 10, 40, 52]])


def _trained_refiner(model_type: str = "hybrid_nano_refine"):
    """A refiner-carrying model whose refiner is not the identity (its last conv is zero at init)."""
    torch.manual_seed(0)
    sam = build_sam(model_type)
    with torch.no_grad():
        for p in sam.mask_refiner.parameters():
            p.normal_(0, 0.5)
    return sam


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((70, 90)) * 255).astype(np.uint8)


def test_a_fresh_refiner_returns_the_decoders_logits():
    torch.manual_seed(0)
    plain, refined = build_sam("hybrid_nano"), build_sam("hybrid_nano_refine")
    refined.load_state_dict(plain.state_dict(), strict=False)  # same encoder and decoder
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        before, _ = decode_boxes(plain, embed(plain, x), BOXES)
        after, _ = decode_boxes(refined, embed(refined, x), BOXES, image_detail(refined, x))
    assert after.shape == (2, 1, 64, 64)
    torch.testing.assert_close(after, before)


def test_the_refiner_changes_the_logits_and_needs_the_image():
    sam = _trained_refiner()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        features = embed(sam, x)
        refined, _ = decode_boxes(sam, features, BOXES, image_detail(sam, x))
        # the image's detail matters, not only the decoder's logits
        other, _ = decode_boxes(sam, features, BOXES, image_detail(sam, torch.rand(1, 3, 64, 64)))
        with pytest.raises(ValueError, match="mask refiner"):
            decode_boxes(sam, features, BOXES)
    assert (refined - other).abs().max() > 1e-3
    assert parameter_role("mask_refiner.mask_branch.0.weight") == "decoder"  # trains with the decoder


def test_a_refiner_behind_a_vit_decoder_upsamples_its_coarse_logits():
    spec = dataclasses.replace(PRESETS["vit_nano"], mask_refiner=4)
    sam = build_sam(spec)
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        logits, _ = decode_boxes(sam, embed(sam, x), BOXES, image_detail(sam, x))
    assert logits.shape == (2, 1, 128, 128)  # the decoder gives 32x32; the refiner works at input size


def test_lean_and_reference_predictors_agree_with_a_refiner():
    sam = _trained_refiner()
    image = _image()
    box = np.array([[5, 8, 80, 66], [20, 10, 60, 50]])
    lean = BoxPredictor(sam).set_image(image).predict(box)
    ref = BoxPredictor(sam, fast=False).set_image(image).predict(box)
    assert lean.logits.shape == (2, 70, 90)
    torch.testing.assert_close(lean.logits, ref.logits, atol=1e-3, rtol=1e-4)
    assert (lean.masks == ref.masks).mean() > 0.999


def test_the_refiner_sees_the_current_image_after_a_cache_round_trip(tmp_path):
    sam = _trained_refiner()
    box = np.array([5, 8, 80, 66])
    a, b = _image(0), _image(1)
    fresh_a = BoxPredictor(sam).set_image(a).predict(box).logits
    predictor = BoxPredictor(sam, cache=EmbeddingCache(directory=tmp_path))
    predictor.set_image(a).predict(box)
    predictor.set_image(b).predict(box)
    again = predictor.set_image(a).predict(box).logits  # the embedding from the cache, the detail recomputed
    assert predictor.last_embed_from_cache
    torch.testing.assert_close(again, fresh_a)
    from_disk = BoxPredictor(sam, cache=EmbeddingCache(directory=tmp_path)).set_image(a)
    assert from_disk.last_embed_from_cache
    torch.testing.assert_close(from_disk.predict(box).logits, fresh_a)


def test_mask_refiner_spec_round_trip_and_refusals():
    spec = PRESETS["hybrid_refine"]
    assert spec_from_metadata("m", json.loads(json.dumps(spec.to_dict()))) == spec
    assert "mask_refiner" not in PRESETS["hybrid_tiny"].to_dict()  # v3 files keep their metadata bytes
    assert spec_from_metadata("m", PRESETS["hybrid_tiny"].to_dict()).mask_refiner == 0
    for bad in ("8", True, -1, 65, 2.0):
        with pytest.raises(ModelLoadError, match="mask_refiner") as exc:
            spec_from_metadata("m.safetensors", {**spec.to_dict(), "mask_refiner": bad})
        assert "\n" not in str(exc.value)
    deep = dataclasses.replace(spec, refiner_levels=5)  # the U-Net reference's depth
    assert "refiner_levels" not in spec.to_dict() and deep.to_dict()["refiner_levels"] == 5
    assert spec_from_metadata("m", json.loads(json.dumps(deep.to_dict()))) == deep
    assert len(build_sam(dataclasses.replace(PRESETS["hybrid_nano_refine"], refiner_levels=5)).mask_refiner.image_branch.down) == 5
    with pytest.raises(ValueError, match="multiple of 32"):  # a 48-px input cannot take 6 levels' pooling
        attach_mask_refiner(build_sam("hybrid_nano", image_size=48), 4, levels=6)
    for bad in (1, 7, "5", 4.0):
        with pytest.raises(ModelLoadError, match="refiner_levels"):
            spec_from_metadata("m.safetensors", {**spec.to_dict(), "refiner_levels": bad})


def test_training_adds_a_refiner_to_a_start_model_without_one(dataset, tmp_path):
    from napari_adaqat.model.formats.checkpoint import load_checkpoint_model
    from napari_adaqat.train import train
    from napari_adaqat.train.config import TrainConfig

    common = dict(data=dataset, preset="paper", model_type="hybrid_nano", device="cpu", batch_size=2,
                  patience=0, max_steps_per_epoch=2)
    train(out=tmp_path / "base", mode="full", epochs=1, **common)
    start = tmp_path / "base/checkpoints/best.safetensors"
    assert not hasattr(load_checkpoint_model(start), "mask_refiner")
    train(out=tmp_path / "refined", mode="adalora", epochs=1, checkpoint=str(start), mask_refiner=4,
          mask_refiner_levels=5, adalora={"r_init": 8, "r_target": 4}, **common)
    sam = load_checkpoint_model(tmp_path / "refined/checkpoints/best.safetensors")
    assert sam.spec.mask_refiner == 4 and sam.mask_refiner.width == 4
    assert sam.spec.refiner_levels == 5 and len(sam.mask_refiner.image_branch.down) == 5
    trained = sam.mask_refiner.mask_branch[-1].weight
    assert trained.abs().sum() > 0  # it trained with the decoder (it starts at zero)
    for bad in (-1, 65, "4"):
        with pytest.raises(ValueError, match="mask_refiner"):
            TrainConfig(stage=1, mask_refiner=bad)
    with pytest.raises(ValueError, match="mask_refiner_levels"):
        TrainConfig(stage=1, mask_refiner=4, mask_refiner_levels=7)


def test_the_training_forward_returns_the_decoders_own_logits_beside_the_refined_ones():
    import torch.nn.functional as F

    from napari_adaqat.model.forward import decode_coarse
    from napari_adaqat.train.loop import _forward

    sam = _trained_refiner().eval()
    batch = {"image": torch.rand(2, 3, 64, 64), "box": BOXES}
    with torch.no_grad():
        (logits,), coarse = _forward(sam, batch, "cpu", False, False, keep_coarse=True)
        assert _forward(sam, batch, "cpu", False, False)[1] is None  # only computed on request
        features = embed(sam, batch["image"])
        expected_coarse = F.interpolate(decode_coarse(sam, features, BOXES)[0], size=(64, 64), mode="bilinear",
                                        align_corners=False)
        expected, _ = decode_boxes(sam, features, BOXES, image_detail(sam, batch["image"]))
    assert logits.shape == coarse.shape == (2, 1, 64, 64)
    torch.testing.assert_close(coarse, expected_coarse)
    torch.testing.assert_close(logits, expected)
    assert (logits - coarse).abs().max() > 1e-3  # the (non-identity) refiner sits between them
    plain = build_sam("hybrid_nano").eval()
    with torch.no_grad():
        assert _forward(plain, batch, "cpu", False, False, keep_coarse=True)[1] is None


def test_deep_supervision_adds_the_decoders_own_loss(dataset, tmp_path):
    """A fresh refiner is the identity, so at the first step the decoder's own loss equals the refined
    one: with refiner_aux_loss = 1 the first step's loss is exactly twice the loss without it."""
    from napari_adaqat.train import train
    from napari_adaqat.train.config import TrainConfig
    from napari_adaqat.train.progress import read_progress

    def first_step_loss(weight: float) -> float:
        out = tmp_path / f"aux{weight}"
        train(data=dataset, preset="paper", model_type="hybrid_nano_refine", device="cpu", batch_size=2,
              patience=0, max_steps_per_epoch=1, out=out, mode="full", epochs=1, refiner_aux_loss=weight)
        return next(r["loss"] for r in read_progress(out / "progress.jsonl") if r["kind"] == "step")

    without, with_aux = first_step_loss(0.0), first_step_loss(1.0)
    assert with_aux == pytest.approx(2 * without, rel=1e-3)
    for bad in (-0.5, float("nan")):
        with pytest.raises(ValueError, match="refiner_aux_loss"):
            TrainConfig(stage=1, refiner_aux_loss=bad)
