"""Metrics: expected values are derived by hand in the comments."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from skimage.metrics import structural_similarity

from napari_adaqat.metrics import (
    dice, hd95, iou, nsd, score_masks, score_masks_at, ssim_map, summarize,
    surface_distances, trust_maps, wilcoxon_paired,
)


def square(shape=(32, 32), r0=10, c0=10, side=10) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[r0:r0 + side, c0:c0 + side] = True
    return m


# --- overlap -----------------------------------------------------------------
def test_dice_iou_overlapping_squares():
    a = square((20, 20), 0, 0, 10)
    b = square((20, 20), 5, 5, 10)  # intersection 5x5 = 25, |A| = |B| = 100
    assert dice(a, b) == pytest.approx(2 * 25 / 200)  # 0.25
    assert iou(a, b) == pytest.approx(25 / 175)  # 1/7
    assert dice(a, a) == 1.0 and iou(a, a) == 1.0


def test_overlap_empty_cases():
    e, a = np.zeros((8, 8), bool), square((8, 8), 2, 2, 3)
    assert dice(e, e) == 1.0 and iou(e, e) == 1.0
    assert dice(a, e) == 0.0 and iou(e, a) == 0.0
    with pytest.raises(ValueError):
        dice(a, np.zeros((4, 4), bool))


# --- surface -----------------------------------------------------------------
# ref: 10x10 square rows/cols 10..19; pred: same shifted right by 3 (cols 13..22).
# Boundaries are 36-pixel rings. Pred boundary -> ref boundary distances (px):
#   top & bottom rows, cols 13..19: 0 (7 each), col 20: 1, col 21: 2, col 22: 3
#   left column (col 13), rows 11..18: min(3, r-10, 19-r) = 1,2,3,3,3,3,2,1
#   right column (col 22), rows 11..18: 3
# The geometry is symmetric, so ref -> pred gives the same multiset.
REF, PRED = square(), square(c0=13)


def test_surface_distances_shifted_square():
    d_pr, d_rp = surface_distances(PRED, REF)
    expected = sorted([0.0] * 14 + [1.0, 2.0, 3.0] * 2 + [1, 2, 3, 3, 3, 3, 2, 1] + [3.0] * 8)
    assert np.allclose(sorted(d_pr), expected)
    assert np.allclose(sorted(d_rp), expected)


@pytest.mark.parametrize("tol, expected", [
    (0.0, 14 / 36),   # only the overlapping top/bottom pixels
    (1.0, 18 / 36),   # + col 20 twice + left column rows 11, 18
    (2.0, 22 / 36),   # + col 21 twice + left column rows 12, 17
    (2.9, 22 / 36),
    (3.0, 1.0),       # tolerance >= shift: every boundary pixel matches
])
def test_nsd_shifted_square(tol, expected):
    assert nsd(PRED, REF, tol) == pytest.approx(expected)


def test_nsd_identical_and_empty():
    assert nsd(REF, REF, 0.0) == 1.0
    e = np.zeros_like(REF)
    assert nsd(e, e, 1.0) == 1.0
    assert nsd(REF, e, 1.0) == 0.0 and nsd(e, REF, 100.0) == 0.0


def test_anisotropic_spacing():
    # spacing (row 1.0 mm, col 0.5 mm): the 3-px column shift is 1.5 mm.
    sp = (1.0, 0.5)
    assert hd95(PRED, REF, sp) == pytest.approx(1.5)
    assert nsd(PRED, REF, 1.5, sp) == 1.0
    # tol 1.0 mm: top/bottom rows: 7 zeros + col 20 (0.5) + col 21 (1.0) = 9 each;
    # left column: min(1.5, r-10, 19-r) <= 1 only for rows 11, 18; right column 1.5 > 1.
    assert nsd(PRED, REF, 1.0, sp) == pytest.approx(20 / 36)
    # the same shift along rows is 3 mm with spacing (1.0, 0.5)
    assert hd95(square(r0=13), REF, sp) == pytest.approx(3.0)


def test_hd95():
    assert hd95(PRED, REF) == pytest.approx(3.0)
    assert hd95(REF, REF) == 0.0
    e = np.zeros_like(REF)
    assert hd95(e, e) == 0.0
    assert math.isinf(hd95(REF, e)) and math.isinf(hd95(e, REF))


# --- SSIM --------------------------------------------------------------------
def test_ssim_identical_is_one():
    rng = np.random.default_rng(0)
    a = rng.random((24, 20))
    mean, m = ssim_map(a, a)
    assert m.dtype == np.float32 and m.shape == (24, 20)
    assert mean == pytest.approx(1.0) and np.allclose(m, 1.0)
    mean_s, m_s = ssim_map(a[:5, :4], a[:5, :4])  # smaller than 7 px: window 3
    assert m_s.shape == (5, 4) and np.allclose(m_s, 1.0)
    with pytest.raises(ValueError):
        ssim_map(a[:2, :2], a[:2, :2])


def test_ssim_matches_skimage():
    rng = np.random.default_rng(1)
    a, b = rng.random((16, 16)), rng.random((16, 16))
    mean, m = ssim_map(a, b)
    ref_mean, ref_map = structural_similarity(a, b, full=True, data_range=1.0)
    assert mean == pytest.approx(ref_mean) and np.allclose(m, ref_map, atol=1e-6)


def test_trust_maps_with_reference():
    ref = square((32, 32), 8, 8, 16)
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 0.05, ref.shape)
    p_model = np.clip(ref * 0.95 + noise, 0, 1).astype(np.float32)
    p_base = np.clip(square((32, 32), 8, 12, 16) * 0.8 + 2 * noise, 0, 1).astype(np.float32)
    t = trust_maps(p_model, p_base, reference=ref.astype(np.uint8) * 3)  # label 3 -> foreground
    ref_f = ref.astype(np.float32)
    m_mean, m_map = ssim_map(p_model, ref_f)
    b_mean, b_map = ssim_map(p_base, ref_f)
    assert t.has_reference
    assert np.allclose(t.ssim, m_map) and np.allclose(t.delta, m_map - b_map)
    assert t.ssim_mean == pytest.approx(m_mean)
    assert t.delta_mean == pytest.approx(m_mean - b_mean)
    assert t.delta.dtype == np.float32 and t.ssim.dtype == np.float32
    assert t.ssim.min() >= -1 and t.ssim.max() <= 1 + 1e-6
    assert t.delta.min() >= -2 and t.delta.max() <= 2
    assert t.delta_mean > 0  # the model is closer to the reference than the shifted baseline
    # where the baseline misses the reference (cols 8..11 inside the square) the model wins
    assert t.delta[12:20, 8:11].mean() > 0.2


def test_trust_maps_without_reference():
    p_model = square((20, 20), 4, 4, 8).astype(np.float32) * 0.9     # rows/cols 4..11
    p_base = square((20, 20), 4, 6, 8).astype(np.float32) * 0.9      # cols 6..13
    t = trust_maps(p_model, p_base)
    assert not t.has_reference
    assert set(np.unique(t.delta).tolist()) == {-1.0, 0.0, 1.0}
    expected = np.zeros((20, 20), np.float32)
    expected[4:12, 4:6] = 1.0     # only the model
    expected[4:12, 12:14] = -1.0  # only the baseline
    assert np.array_equal(t.delta, expected)
    assert t.delta_mean == pytest.approx(0.0)  # 16 pixels each way
    assert np.allclose(t.ssim, ssim_map(p_model, p_base)[1])
    assert np.allclose(t.ssim[16:, :], 1.0)  # far from both squares the maps agree (zeros)
    # threshold: 0.9 is not above 0.95, so both masks are empty and agree everywhere
    assert not trust_maps(p_model, p_base, threshold=0.95).delta.any()


# --- stats -------------------------------------------------------------------
def test_score_masks_px_and_mm():
    s = score_masks(PRED, REF)
    assert s["units"] == "px" and s["nsd_tolerance"] == 2.0
    assert s["dice"] == pytest.approx(0.7)  # overlap 10x7 = 70 of 100 each
    assert s["iou"] == pytest.approx(70 / 130)
    assert s["nsd"] == pytest.approx(22 / 36) and s["hd95"] == pytest.approx(3.0)
    m = score_masks(PRED, REF, spacing=(1.0, 0.5), nsd_tolerance_mm=1.5)
    assert m["units"] == "mm" and m["nsd"] == 1.0 and m["hd95"] == pytest.approx(1.5)


def test_score_masks_at_256():
    # 128² masks upsampled x2 with nearest neighbour: the 3-px shift becomes 6 px;
    # Dice/IoU are scale invariant; with spacing 1 mm -> 0.5 mm the HD95 stays 3 mm.
    ref, pred = square((128, 128), 40, 40, 30), square((128, 128), 40, 43, 30)
    s = score_masks_at(pred, ref, size=256)
    assert s["size"] == 256 and s["units"] == "px"
    assert s["dice"] == pytest.approx(dice(pred, ref)) and s["iou"] == pytest.approx(iou(pred, ref))
    assert s["hd95"] == pytest.approx(6.0)
    mm = score_masks_at(pred, ref, size=256, spacing=(1.0, 1.0), nsd_tolerance_mm=3.0)
    assert mm["hd95"] == pytest.approx(3.0) and mm["nsd"] == 1.0


def test_wilcoxon_matches_scipy():
    a = [0.91, 0.88, 0.95, 0.90, 0.86, 0.93, 0.89, 0.97]
    b = [0.89, 0.85, 0.94, 0.91, 0.80, 0.90, 0.84, 0.93]
    for alt in ("two-sided", "greater"):
        r = wilcoxon_paired(a, b, alternative=alt)
        ref = sps.wilcoxon(a, b, alternative=alt)
        assert r["p_value"] == pytest.approx(ref.pvalue)
        assert r["statistic"] == pytest.approx(ref.statistic)
    assert r["n"] == 8
    assert r["median_diff"] == pytest.approx(np.median(np.subtract(a, b)))
    assert r["mean_a"] == pytest.approx(np.mean(a)) and r["mean_b"] == pytest.approx(np.mean(b))


def test_wilcoxon_degenerate():
    same = wilcoxon_paired([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert same["p_value"] == 1.0 and same["median_diff"] == 0.0 and same["n"] == 3
    assert wilcoxon_paired([0.9], [0.1])["p_value"] == 1.0
    nan_pair = wilcoxon_paired([0.9, np.nan, 0.5], [0.9, 0.2, 0.5])  # nan dropped, rest equal
    assert nan_pair["n"] == 2 and nan_pair["p_value"] == 1.0
    with pytest.raises(ValueError):
        wilcoxon_paired([1.0, 2.0], [1.0])


def test_summarize():
    s = summarize([1.0, 2.0, 3.0, 4.0, np.nan])
    assert s["n"] == 4 and s["mean"] == 2.5 and s["median"] == 2.5
    assert s["q1"] == 1.75 and s["q3"] == 3.25 and s["min"] == 1.0 and s["max"] == 4.0
    assert s["std"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    empty = summarize([np.nan])
    assert empty["n"] == 0 and math.isnan(empty["mean"])


def test_clean_lung_mask_keeps_two_lungs_and_fills_holes():
    from napari_adaqat.inference.postprocess import clean_lung_mask

    mask = np.zeros((60, 60), bool)
    mask[5:50, 5:25] = True  # right lung
    mask[5:50, 35:55] = True  # left lung
    mask[20:24, 10:14] = False  # a hole (opacity)
    mask[55:57, 55:57] = True  # a speck
    cleaned = clean_lung_mask(mask)
    assert cleaned[20:24, 10:14].all() and not cleaned[55:57, 55:57].any()
    assert cleaned.sum() == 2 * 45 * 20
    assert not clean_lung_mask(np.zeros((5, 5), bool)).any()
    specks = np.zeros((512, 512), bool)  # a box in an empty corner: a few pixels, no lung
    specks[2:4, 2:4] = specks[30:32, 20:23] = True
    assert not clean_lung_mask(specks).any()
    assert clean_lung_mask(specks, min_fraction=0).sum() == 10  # the specks, without the floor
    small_lung = np.zeros((512, 512), bool)
    small_lung[100:112, 100:112] = True  # 144 px ≥ 0.05 % of the film: kept
    assert clean_lung_mask(small_lung).sum() == 144


def test_clean_lung_mask_on_its_bounding_rectangle_equals_the_whole_film_rule():
    """The clean-up works on the mask's bounding rectangle (speed on hospital-size films); on random blobby
    masks, some touching the border, it equals the rule written with scipy on the whole film."""
    from scipy import ndimage

    from napari_adaqat.inference.postprocess import clean_lung_mask, fill_holes

    def whole_film_rule(mask, keep=2, min_ratio=0.1, min_fraction=5e-4):
        labels, n = ndimage.label(mask)
        if n == 0:
            return mask.copy()
        sizes = np.bincount(labels.ravel())[1:]
        order = np.argsort(sizes)[::-1][:keep]
        floor = max(min_ratio * sizes[order[0]], min_fraction * mask.size)
        return ndimage.binary_fill_holes(np.isin(labels, [i + 1 for i in order if sizes[i] >= floor]))

    rng = np.random.default_rng(0)
    for trial in range(200):
        h, w = rng.integers(5, 90, 2)
        blobs = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 3.0)) > rng.uniform(0.45, 0.55)
        if trial % 10 == 0:  # a ring: its hole is filled, wherever the ring sits
            blobs = np.zeros((h, w), bool)
            blobs[1:-1, 1:-1] = True
            blobs[h // 3:max(h // 3 + 1, 2 * h // 3), w // 3:max(w // 3 + 1, 2 * w // 3)] = False
        got = clean_lung_mask(blobs)
        if trial % 10 == 0 and min(h, w) > 4:
            assert got[h // 3, w // 3], trial  # the ring's hole was filled
        assert got.dtype == bool and got.shape == blobs.shape
        assert np.array_equal(got, whole_film_rule(blobs)), trial
        assert np.array_equal(fill_holes(blobs), ndimage.binary_fill_holes(blobs)), trial


def test_ssim_of_near_constant_probability_maps_stays_in_range_and_matches_float64():
    """Model and baseline agree almost everywhere (probabilities near 0 and 1): the float32 map stays within
    SSIM's [-1, 1] and its mean is skimage's float64 mean to 1e-6."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:300, 0:280]
    logits = 40.0 * (0.35 - np.hypot(yy / 300 - 0.5, xx / 280 - 0.5))  # saturated inside and outside
    p_model = 1.0 / (1.0 + np.exp(-logits))
    p_base = 1.0 / (1.0 + np.exp(-(logits + 0.3 + 0.05 * rng.standard_normal(logits.shape))))
    mean, full = ssim_map(p_model, p_base)
    want_mean, want_full = structural_similarity(p_model, p_base, full=True, data_range=1.0)
    assert full.dtype == np.float32 and -1.0 <= full.min() and full.max() <= 1.0
    assert mean == pytest.approx(want_mean, abs=1e-6)
    assert np.abs(full - want_full).max() < 1e-3


def test_surface_distances_on_the_boundaries_window_equal_the_whole_film_transform():
    """The distance transforms run on the window holding both boundaries (speed at native resolution); the
    distances, NSD and HD95 equal those of the transform over the whole film, with and without a spacing."""
    from scipy import ndimage

    from napari_adaqat.metrics.surface import boundary, nsd_and_hd95

    def whole_film(pred, ref, spacing):
        bp, br = boundary(pred), boundary(ref)
        return (ndimage.distance_transform_edt(~br, sampling=spacing)[bp],
                ndimage.distance_transform_edt(~bp, sampling=spacing)[br])

    rng = np.random.default_rng(5)
    for trial in range(60):
        h, w = rng.integers(20, 120, 2)
        pred = ndimage.gaussian_filter(rng.random((h, w)), 3.0) > 0.5
        ref = ndimage.gaussian_filter(rng.random((h, w)), 3.0) > 0.5
        if trial % 6 == 0:
            pred[:] = False
            pred[h // 4:h // 2, w // 4:w // 2] = True  # far from the image border
        if not (boundary(pred).any() and boundary(ref).any()):
            continue
        spacing = (1.0, 1.0) if trial % 2 else (0.14, 0.2)
        got, want = surface_distances(pred, ref, spacing), whole_film(pred, ref, spacing)
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), trial
        assert nsd_and_hd95(pred, ref, 2.0, spacing) == (nsd(pred, ref, 2.0, spacing), hd95(pred, ref, spacing))
