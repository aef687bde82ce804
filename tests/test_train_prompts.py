"""Training prompts (issue 32): one-lung, partial, empty boxes, points alone, and simulated corrective clicks."""
import numpy as np
import pytest
import torch

from napari_adaqat.data.dataset import discover, load_pair
from napari_adaqat.metrics.clicks import next_click
from napari_adaqat.model.build import build_sam
from napari_adaqat.train.config import make_config
from napari_adaqat.train.dataset import LungDataset
from napari_adaqat.train.interactive import prompted_logits, sample_clicks
from napari_adaqat.train.losses import segmentation_loss
from napari_adaqat.train.progress import read_progress
from napari_adaqat.train.prompts import PromptMix, draw_prompt, lungs
from napari_adaqat.train.run import run as train


@pytest.fixture(scope="module")
def real_mask(cxr_dir):
    pairs, _ = discover(cxr_dir)
    return load_pair(next(iter(pairs.values())))[1]


def _draw(mask, mix, seed):
    return draw_prompt(mask, np.random.default_rng(seed), mix, jitter_px=40, jitter_in_px=6, full_box_prob=0.15)


def _inside(box, shape, margin=0):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx >= box[0] - margin) & (xx <= box[2] + margin) & (yy >= box[1] - margin) & (yy <= box[3] + margin)


def test_a_box_around_one_lung_asks_for_that_lung_only(real_mask):
    left, right = lungs(real_mask)
    for seed in range(5):
        drawn = _draw(real_mask, PromptMix(one_lung=1.0), seed)
        assert drawn.kind == "one_lung"
        lung = left if (drawn.target & left).any() else right
        assert np.array_equal(drawn.target, lung)  # the other lung is not asked for
        assert _inside(drawn.box, real_mask.shape, margin=16)[lung].all()  # the box is around it (jittered)


def test_partial_and_empty_boxes_ask_for_the_lung_inside_them(real_mask):
    drawn = _draw(real_mask, PromptMix(partial_box=1.0), 0)
    assert drawn.kind == "partial" and drawn.target.any()
    assert not (drawn.target & ~_inside(drawn.box, real_mask.shape)).any()
    assert drawn.target.sum() < real_mask.sum()
    drawn = _draw(real_mask, PromptMix(empty_box=1.0), 0)
    assert drawn.kind == "empty" and not drawn.target.any()
    assert not real_mask[_inside(drawn.box, real_mask.shape)].any()


def test_points_alone_put_one_positive_point_inside_each_wanted_lung(real_mask):
    drawn = _draw(real_mask, PromptMix(points_only=1.0), 0)
    assert drawn.kind == "lungs_points" and np.isnan(drawn.box).all()
    assert list(drawn.labels) == [1, 1]
    for x, y in drawn.points.astype(int):
        assert real_mask[y, x]
    hits = [next(i for i, lung in enumerate(lungs(real_mask)) if lung[y, x]) for x, y in drawn.points.astype(int)]
    assert sorted(hits) == [0, 1]  # one in each lung


def test_a_click_goes_into_the_error_with_the_right_label():
    target = torch.zeros(2, 1, 32, 32)
    target[:, :, 8:24, 8:24] = 1
    logits = torch.full((2, 1, 32, 32), -5.0)
    logits[0, :, 8:24, 8:16] = 5  # sample 0: the right half of the square missed
    logits[1] = torch.where(target[1] > 0, 5.0, -5.0)
    logits[1, :, 0:4, 0:4] = 5  # sample 1: a false region in the corner
    coords, labels = sample_clicks(logits, target, torch.tensor([[32, 32], [32, 32]]), torch.Generator().manual_seed(0))
    x, y = coords[0, 0].long().tolist()
    assert labels[0, 0] == 1 and 16 <= x < 24 and 8 <= y < 24
    x, y = coords[1, 0].long().tolist()
    assert labels[1, 0] == 0 and x < 4 and y < 4
    perfect = torch.where(target > 0, 5.0, -5.0)
    _, labels = sample_clicks(perfect, target, torch.tensor([[32, 32], [32, 32]]))
    assert (labels == -1).all()  # nothing to correct: a padding point
    padded = torch.where(target > 0, 5.0, -5.0)
    padded[:, :, 28:, :] = 5  # wrong, but in the padding below the image: never clicked
    _, labels = sample_clicks(padded, target, torch.tensor([[28, 32], [28, 32]]))
    assert (labels == -1).all()


def test_click_deepest_prob_sets_the_share_of_clicks_placed_by_the_evaluation_rule():
    target = torch.zeros(16, 1, 32, 32)
    target[:, :, 4:28, 4:28] = 1
    logits = torch.where(target > 0, 5.0, -5.0)
    logits[:, :, 4:28, 4:8] = -5  # a missed strip along the left side: its deepest point is at x 5..6
    logits[:, :, 0:2, 10:12] = 5  # and a 4-px false speck, smaller: never the rule's choice
    valid = torch.tensor([[32, 32]] * 16)
    coords, labels = sample_clicks(logits, target, valid, torch.Generator().manual_seed(0), deepest_prob=1.0)
    rule = next_click((logits[0, 0] > 0).numpy(), (target[0, 0] > 0).numpy())
    assert (labels == 1).all() and (coords[:, 0] == torch.tensor(rule[:2], dtype=torch.float32)).all()
    on_rule = {}
    for share in (0.0, 0.5):
        coords, labels = sample_clicks(logits, target, valid, torch.Generator().manual_seed(0), deepest_prob=share)
        on_rule[share] = int((coords[:, 0] == torch.tensor(rule[:2], dtype=torch.float32)).all(1).sum())
    assert on_rule[0.0] <= 1 and 4 <= on_rule[0.5] <= 12  # uniform over the 100 wrong pixels / about half by the rule
    with pytest.raises(ValueError, match="click_deepest_prob"):
        make_config(None, 1, dict(data=".", out="o", click_deepest_prob=1.5))


def test_the_click_rounds_decode_with_points_and_the_previous_mask_and_all_get_gradients(cxr_dir):
    pairs, _ = discover(cxr_dir)
    sam = build_sam("hybrid_nano_refine").train()
    spec = sam.spec
    data = LungDataset(list(pairs.values())[:2], image_size=spec.image_size, pixel_mean=spec.pixel_mean,
                       pixel_std=spec.pixel_std, train=True, prompts=PromptMix(points_only=0.5))
    batch = {k: torch.stack([data[i][k] for i in range(2)]) for k in ("image", "mask", "box", "points", "point_labels", "valid")}
    outputs, coarse = prompted_logits(sam, batch["image"], batch, "cpu", rounds=2, generator=torch.Generator().manual_seed(0))
    assert len(outputs) == 3 and all(o.shape == (2, 1, spec.image_size, spec.image_size) for o in outputs)
    assert not torch.equal(outputs[0], outputs[1])  # the click and the mask prompt changed the decoding
    sum(segmentation_loss(o, batch["mask"]) for o in outputs).backward()
    assert sam.mask_decoder.output_hypernetworks_mlps[0].layers[0].weight.grad.abs().sum() > 0


def test_a_training_run_with_clicks_and_one_lung_boxes(cxr_dir, tmp_path):
    cfg = make_config(None, 1, dict(data=str(cxr_dir), out=str(tmp_path / "run"), model_type="hybrid_nano_refine",
                                    mode="full", device="cpu", batch_size=2, epochs=1, patience=0, click_rounds=2,
                                    one_lung_prob=0.5, partial_box_prob=0.1, empty_box_prob=0.1, points_only_prob=0.2,
                                    train_clipped=True))
    summary = train(cfg)
    assert summary["epochs_run"] == 1
    steps = [r for r in read_progress(tmp_path / "run" / "progress.jsonl") if r["kind"] == "step"]
    assert steps and all(np.isfinite(r["loss"]) for r in steps)


def test_the_training_loop_passes_click_deepest_prob_to_the_click_sampler(cxr_dir, tmp_path, monkeypatch):
    import napari_adaqat.train.interactive as interactive
    seen = []
    original = interactive.sample_clicks

    def recording(*args, deepest_prob=interactive.DEEPEST_CLICK_PROB, **kwargs):
        seen.append(deepest_prob)
        return original(*args, deepest_prob=deepest_prob, **kwargs)

    monkeypatch.setattr(interactive, "sample_clicks", recording)
    cfg = make_config(None, 1, dict(data=str(cxr_dir), out=str(tmp_path / "run"), model_type="hybrid_nano_refine",
                                    mode="full", device="cpu", batch_size=2, epochs=1, patience=0, click_rounds=1,
                                    click_deepest_prob=0.9, max_steps_per_epoch=1))
    train(cfg)
    assert 0.9 in seen and 1.0 in seen  # training draws with the config's share; validation by the rule only
    assert set(seen) == {0.9, 1.0}


def test_a_reset_mask_prompt_embeds_any_mask_as_no_mask_and_frozen_prefixes_stay_frozen(cxr_dir, tmp_path, nano_pth):
    from napari_adaqat.train.start_model import build_stage1, reset_mask_prompt

    sam = build_sam("hybrid_nano_refine").eval()
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    size = tuple(sam.prompt_encoder.mask_input_size)
    with torch.no_grad():
        _, before = sam.prompt_encoder(points=None, boxes=box, masks=torch.randn(1, 1, *size) * 10)
        reset_mask_prompt(sam)
        _, dense = sam.prompt_encoder(points=None, boxes=box, masks=torch.randn(1, 1, *size) * 10)
        _, none = sam.prompt_encoder(points=None, boxes=box, masks=None)
    assert not torch.allclose(before, none)
    torch.testing.assert_close(dense, none)
    frozen = ("mask_decoder.iou_prediction_head", "prompt_encoder.point_embeddings.2")
    cfg = make_config(None, 1, dict(data=str(cxr_dir), out=str(tmp_path / "r"), model_type="vit_nano",
                                    checkpoint=str(nano_pth), mode="decoder", device="cpu", train_prompt_encoder=True,
                                    reset_mask_prompt=True, freeze=list(frozen)))
    sam, _, _ = build_stage1(cfg)
    trains = {n: p.requires_grad for n, p in sam.named_parameters()}
    assert not any(v for n, v in trains.items() if n.startswith(frozen))
    assert trains["prompt_encoder.point_embeddings.0.weight"] and trains["mask_decoder.output_upscaling.0.weight"]
    assert not sam.prompt_encoder.mask_downscaling[-1].weight.any()  # reset by the option


def test_training_clips_its_predictions_as_the_inference_clips_the_mask(cxr_dir):
    from napari_adaqat.inference.postprocess import clip_margin, clip_rectangle
    from napari_adaqat.train.interactive import OUTSIDE_LOGIT, box_region

    shape, box = (60, 80), np.array([10.3, 12.7, 40.2, 44.9])
    r0, r1, c0, c1 = clip_rectangle(shape, box, np.array([[50.0, 20.0]]))  # the positive point widens it
    region = box_region(torch.tensor(box[None], dtype=torch.float32), torch.tensor([[[50.0, 20.0], [5.0, 5.0]]]),
                        torch.tensor([[1, 0]]), torch.tensor([clip_margin(shape)]), shape)
    expected = np.zeros(shape, bool)
    expected[r0:r1, c0:c1] = True
    assert np.array_equal(region[0, 0].numpy(), expected)  # the same rectangle as the inference's clipping

    pairs, _ = discover(cxr_dir)
    torch.manual_seed(0)
    sam = build_sam("hybrid_nano_refine").eval()
    spec = sam.spec
    data = LungDataset(list(pairs.values())[:2], image_size=spec.image_size, pixel_mean=spec.pixel_mean,
                       pixel_std=spec.pixel_std, train=True, prompts=PromptMix(one_lung=1.0))
    batch = {k: torch.stack([data[i][k] for i in range(2)])
             for k in ("image", "mask", "box", "points", "point_labels", "valid", "clip_margin")}
    with torch.no_grad():
        plain, _ = prompted_logits(sam, batch["image"], batch, "cpu")
        clipped, _ = prompted_logits(sam, batch["image"], batch, "cpu", clip_to_box=True)
    inside = box_region(batch["box"], batch["points"], batch["point_labels"], batch["clip_margin"], (64, 64))
    assert 0 < inside.float().mean() < 1
    torch.testing.assert_close(clipped[0][inside], plain[0][inside])
    assert (clipped[0][~inside] == OUTSIDE_LOGIT).all()


def test_validation_of_a_click_training_scores_the_box_and_the_clicks_deterministically(cxr_dir):
    from napari_adaqat.train.loop import evaluate_dice

    pairs, _ = discover(cxr_dir)
    torch.manual_seed(0)
    sam = build_sam("hybrid_nano_refine")
    with torch.no_grad():
        for p in sam.mask_refiner.parameters():
            p.normal_(0, 0.5)
    spec = sam.spec
    val = LungDataset(list(pairs.values())[:2], image_size=spec.image_size, pixel_mean=spec.pixel_mean,
                      pixel_std=spec.pixel_std, train=False)

    def score(rounds: int) -> float:
        cfg = make_config(None, 1, dict(data=str(cxr_dir), out="unused", model_type="hybrid_nano_refine",
                                        device="cpu", batch_size=2, click_rounds=rounds))
        return evaluate_dice(sam, val, cfg, "cpu", False, 0, 1)

    box_only, with_clicks = score(0), score(2)
    assert with_clicks != box_only  # the clicks' Dice counts too
    torch.manual_seed(123)
    assert score(2) == with_clicks  # the evaluation's rule, always the mask prompt: no chance involved
