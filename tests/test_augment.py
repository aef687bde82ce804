"""Training augmentation: the v3 'clinic' preset and inward box jitter, on a real radiograph."""
import numpy as np
import pytest

from napari_adaqat.data.boxes import mask_box
from napari_adaqat.data.dataset import discover, load_pair
from napari_adaqat.train.augment import CLINIC_AFFINE, CLINIC_AFFINES, _affine, augment_pair
from napari_adaqat.train.dataset import LungDataset


@pytest.fixture(scope="module")
def pair(cxr_dir):
    pairs, _ = discover(cxr_dir)
    return load_pair(next(iter(pairs.values())))


def test_clinic_preset_is_seeded_and_keeps_image_and_mask_aligned(pair):
    image, mask = pair
    a = augment_pair(image, mask, np.random.default_rng(3), "clinic")
    b = augment_pair(image, mask, np.random.default_rng(3), "clinic")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])  # the same draw, the same result
    means, inverted = [], 0
    for seed in range(40):
        out, m = augment_pair(image, mask, np.random.default_rng(seed), "clinic")
        assert out.shape == image.shape and m.shape == mask.shape and m.dtype == bool
        assert out.dtype == np.float32 and 0.0 <= out.min() and out.max() <= 1.0
        assert 0.5 < m.sum() / mask.sum() < 2.0  # the mask moved with the image, not lost
        # the same draw's geometry alone (the affine is drawn first); inverted draws anti-correlate
        warped, _ = _affine(image, mask, np.random.default_rng(seed), **CLINIC_AFFINE)
        inside = warped > 0
        inverted += np.corrcoef(out[inside], warped[inside])[0, 1] < 0
        means.append(out.mean())
    assert 1 <= inverted <= 12  # some, not most, draws invert the polarity (p = 0.1)
    assert np.std(means) > 0.03  # intensities really vary


@pytest.mark.parametrize("preset, lo, hi", [("clinic_wide", 0.6, 1.2), ("clinic_zoom", 0.7, 1.35)])
def test_zoom_presets_draw_their_scale_range(pair, preset, lo, hi):
    image, mask = pair
    assert CLINIC_AFFINES[preset]["scale_range"] == (lo, hi)
    ratios = [_affine(image, mask, np.random.default_rng(s), **CLINIC_AFFINES[preset])[1].sum() / mask.sum()
              for s in range(30)]  # mask area ~ scale²; the aspect change keeps the area
    assert (lo * 0.9) ** 2 < min(ratios) and max(ratios) < (hi * 1.1) ** 2
    assert min(ratios) < 0.75 ** 2  # it zooms out ...
    if hi > 1.3:
        assert max(ratios) > 1.2 ** 2  # ... and clinic_zoom also zooms in
    out, m = augment_pair(image, mask, np.random.default_rng(1), preset)
    assert out.shape == image.shape and m.any()


def test_basic_preset_unchanged_and_unknown_preset_refused(pair):
    image, mask = pair
    out, m = augment_pair(image, mask, np.random.default_rng(0))
    assert out.shape == image.shape and m.any()
    with pytest.raises(ValueError, match="unknown augmentation preset"):
        augment_pair(image, mask, np.random.default_rng(0), "strong")


def test_training_boxes_can_move_inward(cxr_dir):
    pairs, _ = discover(cxr_dir)
    items = list(pairs.values())
    ds = LungDataset(items, 256, (0, 0, 0), (1, 1, 1), train=True, jitter_px=10, jitter_in_px=8)
    outward = LungDataset(items, 256, (0, 0, 0), (1, 1, 1), train=True, jitter_px=10)
    inside = 0
    for epoch in range(5):
        ds.set_epoch(epoch)
        outward.set_epoch(epoch)
        for i in range(len(items)):
            box, tight = ds[i]["box"].numpy(), outward[i]["box"].numpy()
            _, mask = load_pair(items[i])
            ref = mask_box(mask) * 256 / max(mask.shape)
            inside += int(box[0] > ref[0] + 0.5 or box[1] > ref[1] + 0.5 or box[2] < ref[2] - 0.5)
            assert tight[0] <= ref[0] + 1e-3 and tight[2] >= ref[2] - 1e-3  # default: never inside
    assert inside > 0
