"""Other sites' mask conventions (data/conventions.py) and training on them with their clicks only (issue 32)."""
import numpy as np
import pytest
import torch

from napari_adaqat.data.conventions import CONVENTIONS, changed_mask, random_convention
from napari_adaqat.data.dataset import discover, load_pair
from napari_adaqat.train.config import TrainConfig
from napari_adaqat.train.dataset import LungDataset
from napari_adaqat.train.losses import segmentation_loss


@pytest.fixture(scope="module")
def real_mask(cxr_dir):
    pairs, _ = discover(cxr_dir)
    return load_pair(next(iter(pairs.values())))[1] > 0


def test_each_convention_changes_the_mask_its_own_way(real_mask):
    area = real_mask.sum()
    eroded, dilated = changed_mask(real_mask, "erode", erode_px=4), changed_mask(real_mask, "dilate", erode_px=4)
    assert eroded.sum() < area < dilated.sum() and not (eroded & ~real_mask).any() and not (real_mask & ~dilated).any()
    cut = changed_mask(real_mask, "above-line", keep=0.8)
    rows = np.flatnonzero(real_mask.any(1))
    assert not cut[int(rows[0] + 0.85 * (rows[-1] - rows[0])):].any() and cut.sum() < area
    no_heart = changed_mask(real_mask, "no-heart", heart_scale=1.4)
    removed = real_mask & ~no_heart
    assert removed.any() and not (no_heart & ~real_mask).any()
    ys, xs = np.nonzero(removed)  # behind the heart: the lower half, right of the middle of the film
    assert ys.mean() > rows.mean() and xs.mean() > np.nonzero(real_mask)[1].mean()
    assert not changed_mask(np.zeros((8, 8), bool), "no-heart").any()
    with pytest.raises(ValueError, match="unknown convention"):
        changed_mask(real_mask, "mediastinum")
    assert set(CONVENTIONS) == {"erode", "dilate", "above-line", "no-heart"}


def test_random_conventions_differ_from_ours(real_mask):
    for seed in range(6):
        other = random_convention(real_mask, np.random.default_rng(seed))
        assert other.shape == real_mask.shape and other.dtype == bool
        assert not np.array_equal(other, real_mask)


def test_a_sample_in_another_convention_scores_its_clicks_only(cxr_dir):
    pairs, _ = discover(cxr_dir)
    common = dict(image_size=64, pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1), train=True)
    ours = LungDataset(list(pairs.values())[:1], **common)[0]
    other = LungDataset(list(pairs.values())[:1], convention_prob=1.0, **common)[0]
    assert ours["box_weight"] == 1 and other["box_weight"] == 0
    assert not torch.equal(ours["mask"], other["mask"])
    logits, target = torch.randn(2, 1, 8, 8, requires_grad=True), (torch.rand(2, 1, 8, 8) > 0.5).float()
    torch.testing.assert_close(segmentation_loss(logits, target, torch.tensor([1.0, 0.0])),
                               segmentation_loss(logits[:1], target[:1]))
    torch.testing.assert_close(segmentation_loss(logits, target, torch.ones(2)), segmentation_loss(logits, target))
    none = segmentation_loss(logits, target, torch.zeros(2))
    none.backward()
    assert none.item() == 0 and not logits.grad.any()
    with pytest.raises(ValueError, match="needs click_rounds"):
        TrainConfig(stage=1, convention_prob=0.3)
