"""Small pieces of the training engine: config, schedule, losses, dataset boxes, checkpointing."""
import dataclasses

import pytest
import torch

from napari_adaqat.model.build import build_sam
from napari_adaqat.train.config import TrainConfig, make_config
from napari_adaqat.data.dataset import discover
from napari_adaqat.train.dataset import LungDataset
from napari_adaqat.train.loop import _forward, lr_factor
from napari_adaqat.train.losses import batch_dice, segmentation_loss, soft_dice_loss


def test_presets_differ_where_paper_and_code_differ():
    paper, authors = make_config("paper", 1, {}), make_config("authors", 1, {})
    assert (paper.budget, authors.budget) == ("global", "per_block")
    assert (paper.prune_epochs, authors.prune_epochs) == ([3, 7, 12], [3])
    assert not paper.train_prompt_encoder and authors.train_prompt_encoder
    p2, a2 = make_config("paper", 2, {}), make_config("authors", 2, {})
    assert p2.lr_adapter == 1e-6 and a2.lr_adapter == 5e-7 and a2.epochs == 10
    assert make_config("paper", 1, {"epochs": 3, "lr_adapter": "2e-4"}).lr_adapter == 2e-4
    with pytest.raises(ValueError, match="unknown training options"):
        TrainConfig.from_dict({"epochz": 3})


def test_cosine_schedule_with_warmup():
    cfg = dataclasses.replace(TrainConfig(), epochs=10, lr_schedule="cosine", warmup_epochs=2)
    factors = [lr_factor(cfg, e) for e in range(1, 11)]
    assert factors[0] < factors[1] < factors[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[2:], factors[3:])) and factors[-1] < 0.1
    assert lr_factor(TrainConfig(), 7) == 1.0


def test_losses_perfect_and_wrong_predictions():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:6, 2:6] = 1
    good = (target * 2 - 1) * 20
    assert soft_dice_loss(good, target) < 1e-3 and segmentation_loss(good, target) < 0.01
    assert soft_dice_loss(-good, target) > 0.99
    valid = torch.tensor([[8, 8], [4, 4]])
    assert torch.allclose(batch_dice(good, target, valid), torch.ones(2))


def test_dataset_boxes_jitter_outward_only_in_training(cxr_dir):
    pairs, _ = discover(cxr_dir)
    spec = build_sam("vit_nano").spec
    kw = dict(image_size=128, pixel_mean=spec.pixel_mean, pixel_std=spec.pixel_std, seed=3)
    fixed = LungDataset(list(pairs.values()), train=False, **kw)
    jittered = LungDataset(list(pairs.values()), train=True, jitter_px=20, **kw)
    a, b = fixed[0], jittered[0]
    assert a["image"].shape == (3, 128, 128) and a["mask"].shape == (1, 128, 128)
    assert torch.equal(fixed[0]["box"], a["box"])  # evaluation boxes are fixed
    assert (b["box"][:2] <= a["box"][:2]).all() and (b["box"][2:] >= a["box"][2:]).all()
    assert torch.equal(jittered[0]["box"], b["box"])  # same (seed, epoch, index) → same draw
    jittered.set_epoch(1)
    assert not torch.equal(jittered[0]["box"], b["box"])


def test_gradient_checkpointing_gives_the_same_gradients(cxr_dir):
    pairs, _ = discover(cxr_dir)
    sam = build_sam("vit_nano").train()
    spec = sam.spec
    data = LungDataset(list(pairs.values())[:2], image_size=128, pixel_mean=spec.pixel_mean,
                       pixel_std=spec.pixel_std, train=False)
    batch = {k: torch.stack([data[i][k] for i in range(2)]) for k in ("image", "mask", "box", "valid")}
    grads = []
    for ckpt in (False, True):
        sam.zero_grad()
        segmentation_loss(_forward(sam, batch, "cpu", False, ckpt)[0][0], batch["mask"]).backward()
        grads.append(sam.image_encoder.blocks[0].mlp.lin1.weight.grad.clone())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_a_recipe_section_for_one_mode_applies_to_that_mode_only(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stage1:\n  lr_decoder: 1.0e-3\n  epochs: 5\nstage1_adalora:\n  lr_decoder: 1.0e-4\n")
    full = make_config(str(recipe), 1, {"mode": "full"})
    adalora = make_config(str(recipe), 1, {"mode": "adalora"})
    assert (full.lr_decoder, full.epochs) == (1e-3, 5)
    assert (adalora.lr_decoder, adalora.epochs) == (1e-4, 5)
    assert make_config(str(recipe), 2, {"mode": "adalora"}).lr_decoder != 1e-4  # Stage 2 ignores it
