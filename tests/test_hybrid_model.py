"""The hybrid conv/attention encoder (default model v3) keeps SAM's interfaces and both stages."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_adaqat.cli import main
from napari_adaqat.data.boxes import mask_box
from napari_adaqat.data.dataset import discover, load_pair
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.model.adalora import adalora_modules
from napari_adaqat.model.build import PRESETS, ModelLoadError, SamSpec, build_sam, spec_from_metadata
from napari_adaqat.model.formats.container import safetensors_metadata
from napari_adaqat.model.forward import decode_boxes, embed
from napari_adaqat.model.loading import load_model
from napari_adaqat.model.logit_grid import FRESH_MODEL_OFFSET
from napari_adaqat.train import train


def test_hybrid_gives_full_resolution_logits():
    sam = build_sam("hybrid_nano")
    with torch.no_grad():
        features = embed(sam, torch.zeros(2, 3, 64, 64))
        logits, iou = decode_boxes(sam, features, torch.tensor([[4.0, 4, 60, 60], [10, 10, 50, 50]]))
    assert features.shape == (2, 32, 16, 16)  # stride 4, prompt_dim channels
    assert logits.shape == (2, 1, 64, 64) and iou.shape == (2, 1)  # logits at the input size


def test_fine_fusion_keeps_the_embedding_shape_and_sees_the_stride2_features():
    plain, fine = build_sam("hybrid_nano"), build_sam("hybrid_nano_fine")
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        assert fine.image_encoder(x).shape == plain.image_encoder(x).shape == (1, 32, 16, 16)
        # the stride-2 level reaches the embedding: changing only its fusion changes the output
        before = fine.image_encoder(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
        fine.image_encoder.fuse2[0][0].weight.add_(torch.randn_like(fine.image_encoder.fuse2[0][0].weight))
        after = fine.image_encoder(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    assert (before - after).abs().max() > 1e-3
    w2, w4 = PRESETS["hybrid_nano_fine"].conv_widths[:2]
    assert fine.image_encoder.neck[0].in_channels == w4 + 4 * w2
    assert not hasattr(plain.image_encoder, "fuse2")


def test_fine_fusion_spec_round_trip_and_refusals():
    spec = PRESETS["hybrid_fine"]
    assert spec_from_metadata("m", json.loads(json.dumps(spec.to_dict()))) == spec
    assert "fine_fusion" not in PRESETS["hybrid_tiny"].to_dict()  # v3 files keep their metadata bytes
    assert spec_from_metadata("m", PRESETS["hybrid_tiny"].to_dict()).fine_fusion is False
    for bad in ({"fine_fusion": "yes"}, {"fine_fusion": 1}):
        with pytest.raises(ModelLoadError, match="fine_fusion"):
            spec_from_metadata("m.safetensors", {**spec.to_dict(), **bad})
    with pytest.raises(ModelLoadError, match="fine_fusion"):
        spec_from_metadata("m.safetensors", {**PRESETS["vit_tiny"].to_dict(), "fine_fusion": True})


def test_hybrid_spec_round_trip_and_old_vit_metadata_unchanged():
    spec = PRESETS["hybrid_tiny"]
    assert spec_from_metadata("m", json.loads(json.dumps(spec.to_dict()))) == spec
    assert "encoder" not in PRESETS["vit_tiny"].to_dict()  # ViT files keep their metadata bytes
    assert spec_from_metadata("m", PRESETS["vit_tiny"].to_dict()).encoder == "vit"
    for bad in ({"conv_widths": [8, 8, 16]}, {"encoder": "resnet"}, {"patch_size": 16}, {"conv_widths": [8, 8, 16, 33]}):
        with pytest.raises(ModelLoadError, match="invalid model spec") as exc:
            spec_from_metadata("m.safetensors", {**spec.to_dict(), **bad})
        assert "\n" not in str(exc.value)


@pytest.mark.parametrize("model_type", ["hybrid_nano", "hybrid_nano_fine", "hybrid_nano_refine"])
def test_hybrid_runs_full_stage1_stage2_and_int8_export(model_type, dataset, tmp_path, cxr_dir, capsys):
    common = dict(data=dataset, preset="paper", model_type=model_type, device="cpu", batch_size=2,
                  patience=0, max_steps_per_epoch=2, augment=True, augment_preset="clinic", jitter_in_px=6)
    base = train(out=tmp_path / "base", mode="full", epochs=1, **common)
    assert base["epochs_run"] == 1
    stage1 = tmp_path / "stage1"
    train(out=stage1, mode="adalora", epochs=1, checkpoint=str(tmp_path / "base/checkpoints/best.safetensors"),
          adalora={"r_init": 8, "r_target": 4}, **common)
    assert json.loads((stage1 / "config.json").read_text())["augment_preset"] == "clinic"
    assert main(["train", "--stage", "2", "--from", str(stage1), "--data", str(dataset), "--out", str(tmp_path / "s2"),
                 "--epochs", "1", "--device", "cpu", "--batch-size", "2", "--set", "max_steps_per_epoch=2"]) == 0
    out = tmp_path / "model.safetensors"
    scores = tmp_path / "oof.json"
    scores.write_text(json.dumps({"none": {"v3": {"dice": 0.95, "n": 93}}}))
    recipe = Path(__file__).parents[1] / "training" / "default_model.yaml"
    assert main(["export", str(tmp_path / "s2"), "--out", str(out), "--profile", "deploy",
                 "--recipe", str(recipe), "--scores", str(scores)]) == 0
    meta = json.loads(safetensors_metadata(out)["adaqat"])
    assert meta["spec"]["encoder"] == "hybrid"
    assert meta["provenance"]["scores"]["none"]["v3"]["dice"] == 0.95
    assert meta["provenance"]["recipe"]["text"] == recipe.read_text()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["export", str(tmp_path / "s2"), "--out", str(tmp_path / "x.safetensors"), "--scores", str(bad)]) != 0
    assert "not a JSON file of scores" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    sam = load_model(out)
    assert sam.spec == dataclasses.replace(PRESETS[model_type], logit_offset=FRESH_MODEL_OFFSET)  # trained here
    int8 = [k for k in meta["int8_layers"] if k.startswith("image_encoder.blocks.")]
    assert int8, "the encoder's attention blocks are stored INT8"
    pairs, _ = discover(cxr_dir)
    image, ref = load_pair(next(iter(pairs.values())))
    pred = BoxPredictor(sam).set_image(image).predict(mask_box(ref))
    assert pred.masks.shape == (1, *image.shape)
    kept = load_model(out, keep_int8=True)  # INT8 weights kept INT8 in memory: the same masks
    assert (BoxPredictor(kept).set_image(image).predict(mask_box(ref)).masks == pred.masks).mean() > 0.999


def test_adapters_sit_on_the_hybrid_attention_blocks():
    from napari_adaqat.model.adalora import AdaLoRAConfig, inject_adalora

    sam = build_sam("hybrid_tiny")
    names = inject_adalora(sam, AdaLoRAConfig())
    assert names == [f"image_encoder.blocks.{i}.attn.qkv" for i in range(PRESETS["hybrid_tiny"].depth)]
