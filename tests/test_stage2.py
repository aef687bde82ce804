"""Stage 2 through the CLI: what changes under each preset, export round trip, info."""
import json

import numpy as np
import pytest
import torch

from napari_adaqat.cli import main
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.io import read_image
from napari_adaqat.model.formats.checkpoint import load_checkpoint_model
from napari_adaqat.model.loading import load_model
from napari_adaqat.model.qat import QuantLinear


@pytest.fixture(scope="module")
def stage1_run(tmp_path_factory, cxr_dir, nano_pth):
    out = tmp_path_factory.mktemp("s1") / "run"
    code = main(["train", "--stage", "1", "--mode", "adalora", "--model-type", "vit_nano", "--checkpoint",
                 str(nano_pth), "--data", str(cxr_dir), "--out", str(out), "--epochs", "2", "--batch-size", "2",
                 "--device", "cpu", "--lr-adapter", "1e-3", "--set", "r_init=8", "--set", "r_target=4",
                 "--set", "prune_epochs=[1]"])
    assert code == 0
    return out


def _stage2(stage1_run, cxr_dir, out, preset):
    code = main(["train", "--stage", "2", "--from", str(stage1_run), "--data", str(cxr_dir), "--out", str(out),
                 "--preset", preset, "--epochs", "1", "--batch-size", "2", "--device", "cpu",
                 "--set", "lr_adapter=1e-3", "--set", "lr_decoder=1e-3", "--set", "lr_other=1e-3"])
    assert code == 0
    before = load_checkpoint_model(stage1_run / "checkpoints" / "best.safetensors")
    after = load_checkpoint_model(out / "checkpoints" / "last.safetensors")
    meta = after.meta
    return before.state_dict(), after, meta


def test_paper_preset_changes_only_lambda(stage1_run, cxr_dir, tmp_path):
    before, after, meta = _stage2(stage1_run, cxr_dir, tmp_path / "s2", "paper")
    assert meta["model"]["qat"]["variant"] == "full"
    assert isinstance(after.image_encoder.blocks[0].mlp.lin1, QuantLinear)
    assert not isinstance(after.image_encoder.blocks[0].attn.qkv, QuantLinear)
    changed = [k for k, v in after.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.endswith("lora_lambda") or k.endswith("importance") for k in changed)
    assert any(k.endswith("lora_lambda") for k in changed)
    masks = {k: v for k, v in after.state_dict().items() if k.endswith("rank_mask")}
    assert all(torch.equal(v, before[k]) for k, v in masks.items())  # frozen in Stage 2
    assert sum(int(v.sum()) for v in masks.values()) == 4 * len(masks)  # global budget r_target x modules


def test_authors_preset_freezes_lambda(stage1_run, cxr_dir, tmp_path):
    before, after, _ = _stage2(stage1_run, cxr_dir, tmp_path / "s2a", "authors")
    state = after.state_dict()
    changed = {k for k, v in state.items() if not torch.equal(v, before[k])}
    assert not any(k.endswith("lora_lambda") or k.endswith("rank_mask") for k in changed)
    assert any(k.endswith("lora_P") for k in changed) and any(k.startswith("mask_decoder.") for k in changed)
    assert not any(k.startswith("image_encoder.") and "lora_" not in k for k in changed)


def test_export_round_trip_and_info(stage1_run, cxr_dir, tmp_path, capsys):
    s2 = tmp_path / "s2"
    _stage2(stage1_run, cxr_dir, s2, "paper")
    model_file = tmp_path / "m.safetensors"
    assert main(["export", str(s2), "--out", str(model_file), "--checkpoint", "last"]) == 0
    assert main(["export", str(s2), "--out", str(model_file)]) == 2  # never overwrites silently
    fake_quant = load_checkpoint_model(s2 / "checkpoints" / "last.safetensors")
    loaded = load_model(model_file)
    meta = loaded.meta
    assert meta["profile"] == "paper" and meta["int8_layers"] and meta["provenance"]["epoch"] == 1
    image = read_image(next((cxr_dir / "images").glob("*.png"))).pixels
    box = np.array([30, 40, 400, 450])
    outs = []
    for sam in (fake_quant, loaded):
        p = BoxPredictor(sam)
        p.set_image(image)
        outs.append(p.predict(box).probs)
    assert np.abs(outs[0] - outs[1]).max() <= 1e-5
    capsys.readouterr()
    assert main(["info", str(model_file)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["compression"]["file_bytes"] == model_file.stat().st_size
    assert report["compression"]["ratio_vs_own_fp32"] > 1.5


def test_int8_round_trip_on_vit_tiny(tmp_path):
    """The INT8 file reloads to exactly the fake-quant weights: logits agree to ≤ 1e-5."""
    from napari_adaqat.model.adalora import AdaLoRAConfig, adalora_modules, inject_adalora
    from napari_adaqat.model.build import build_sam
    from napari_adaqat.model.formats.model_file import export_model, load_model_file
    from napari_adaqat.model.forward import decode_boxes, encode
    from napari_adaqat.model.qat import apply_qat

    torch.manual_seed(0)
    sam = build_sam("vit_tiny")
    inject_adalora(sam.image_encoder, AdaLoRAConfig())
    for module in adalora_modules(sam).values():
        with torch.no_grad():
            module.lora_lambda.normal_(0, 0.2)
            module.rank_mask[::3] = 0
    apply_qat(sam, "full")
    path = tmp_path / "tiny.safetensors"
    export_model(sam, path, profile="paper")
    loaded = load_model_file(path)
    meta = loaded.meta
    assert len(meta["int8_layers"]) == 6 * 3 + 47  # proj, lin1, lin2 per block + every decoder Linear
    x = torch.rand(1, 3, 256, 256) * 255
    box = torch.tensor([[20.0, 30.0, 230.0, 240.0]])
    with torch.no_grad():
        a, _ = decode_boxes(sam.eval(), encode(sam, x), box)
        b, _ = decode_boxes(loaded, encode(loaded, x), box)
    assert (a - b).abs().max() <= 1e-5
