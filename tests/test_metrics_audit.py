"""Audit of every number `adaqat evaluate` prints, against independent references computed here:
brute-force boundary sets and pairwise distances (NSD, HD95), Dice/IoU by hand, scipy's Wilcoxon and
t-tests, skimage's SSIM, a hand-made click case, and real rows re-scored from the model's own masks."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from scipy.spatial.distance import cdist
from skimage.metrics import structural_similarity
from skimage.transform import resize

from napari_adaqat.io import read_mask
from napari_adaqat.metrics import dice, hd95, iou, nsd, rank_biserial, ssim_map, tost_paired, wilcoxon_paired
from napari_adaqat.metrics.clicks import next_click
from napari_adaqat.model import loading
from napari_adaqat.report.clicks import noc
from napari_adaqat.report.tables import verdict

MASKS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cxr" / "permissive_512" / "masks"
CXR_MASKS = Path(__file__).parent / "data" / "cxr" / "masks"


def _boundary_points(mask: np.ndarray) -> np.ndarray:
    """(N, 2) row, col of mask pixels with a 4-neighbour outside the mask or the image: by hand."""
    m = np.pad(mask.astype(bool), 1)
    inner = m[1:-1, 1:-1]
    touches = ~m[:-2, 1:-1] | ~m[2:, 1:-1] | ~m[1:-1, :-2] | ~m[1:-1, 2:]
    return np.argwhere(inner & touches)


def _brute(pred: np.ndarray, ref: np.ndarray, tol: float, spacing=(1.0, 1.0)) -> tuple[float, float]:
    """(NSD, HD95) from explicit boundary sets and every pairwise distance in physical units."""
    sp = np.asarray(spacing, dtype=float)
    bp, br = _boundary_points(pred) * sp, _boundary_points(ref) * sp
    d = cdist(bp, br)
    d_pr, d_rp = d.min(axis=1), d.min(axis=0)
    within = tol * (1 + 1e-9)  # a distance that is exactly the tolerance, up to float rounding, counts
    score = ((d_pr <= within).sum() + (d_rp <= within).sum()) / (len(d_pr) + len(d_rp))
    return float(score), float(np.percentile(np.concatenate([d_pr, d_rp]), 95))


def _real_masks(n: int) -> list[np.ndarray]:
    folder = MASKS if MASKS.is_dir() else CXR_MASKS
    return [read_mask(p) != 0 for p in sorted(folder.glob("*.png"))[:n]]


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.5, 0.25), (0.139, 0.2)])
def test_nsd_and_hd95_equal_a_brute_force_on_real_masks(spacing):
    from scipy import ndimage
    for ref in _real_masks(2):
        # a plausible prediction: shifted, one side eroded, a false blob
        pred = np.roll(ref, (3, -2), axis=(0, 1))
        pred[:, : ref.shape[1] // 2] = ndimage.binary_erosion(pred, iterations=4)[:, : ref.shape[1] // 2]
        pred[20:30, 20:35] = True
        for tol in (1.0, 2.0, 3.5):
            want_nsd, want_hd = _brute(pred, ref, tol, spacing)
            assert nsd(pred, ref, tol, spacing) == pytest.approx(want_nsd, abs=1e-12)
            assert hd95(pred, ref, spacing) == pytest.approx(want_hd, rel=1e-9)
        inter = np.logical_and(pred, ref).sum()
        assert dice(pred, ref) == pytest.approx(2 * inter / (pred.sum() + ref.sum()))
        assert iou(pred, ref) == pytest.approx(inter / np.logical_or(pred, ref).sum())


def test_nsd_counts_a_distance_equal_to_the_tolerance_in_mm():
    """3 px of 0.1 mm is 0.30000000000000004 in floats: at a 0.3 mm tolerance it must count, as 3 px at 3 px."""
    ref = np.zeros((20, 20), bool)
    ref[5:15, 5:15] = True
    pred = np.roll(ref, 3, axis=1)
    assert nsd(pred, ref, 3.0) == pytest.approx(1.0)
    for sp, tol in ((0.1, 0.3), (0.2, 0.6), (0.7, 2.1), (0.139, 0.417)):  # tolerance as a user types it
        assert nsd(pred, ref, tol, (sp, sp)) == pytest.approx(1.0), sp
        assert nsd(pred, ref, tol, (1.0, sp)) == pytest.approx(1.0), sp  # the shift is along the columns


def test_edge_cases_one_pixel_and_empty_masks():
    one = np.zeros((9, 9), bool)
    one[4, 4] = True
    other = np.zeros((9, 9), bool)
    other[4, 7] = True
    empty = np.zeros((9, 9), bool)
    assert dice(one, one) == 1.0 and nsd(one, one, 0.0) == 1.0 and hd95(one, one) == 0.0
    assert dice(one, other) == 0.0 and nsd(one, other, 2.0) == 0.0 and nsd(one, other, 3.0) == 1.0
    assert hd95(one, other) == 3.0 and hd95(one, other, (1.0, 0.5)) == 1.5  # columns 0.5 mm apart
    # empty prediction: Dice/IoU/NSD 0, HD95 undefined (inf); both empty: perfect agreement
    assert (dice(empty, one), iou(empty, one), nsd(empty, one, 5.0), hd95(empty, one)) == (0.0, 0.0, 0.0, np.inf)
    assert (dice(empty, empty), iou(empty, empty), nsd(empty, empty, 1.0), hd95(empty, empty)) == (1.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        dice(np.zeros((9, 8), bool), one)


def test_ssim_map_is_skimages():
    rng = np.random.default_rng(0)
    a = np.clip(rng.random((40, 33)), 0, 1)
    b = np.clip(a + 0.1 * rng.standard_normal(a.shape), 0, 1)
    mean, full = ssim_map(a, b)
    want, want_full = structural_similarity(a, b, data_range=1.0, full=True)
    assert mean == pytest.approx(want) and np.allclose(full, want_full, atol=1e-6)


def test_wilcoxon_equals_scipy_with_ties_zeros_and_nan():
    a = np.array([0.91, 0.92, 0.93, 0.90, 0.95, 0.96, np.nan, 0.97, 0.88, 0.90])
    b = np.array([0.90, 0.92, 0.91, 0.90, 0.93, 0.94, 0.95, 0.95, 0.89, 0.89])
    got = wilcoxon_paired(a, b)
    keep = ~np.isnan(a - b)
    want = sps.wilcoxon(a[keep], b[keep])  # scipy's defaults: zero_method="wilcox", two-sided
    assert got["n"] == 9 and got["p_value"] == pytest.approx(want.pvalue) and got["statistic"] == want.statistic
    assert wilcoxon_paired([0.9] * 5, [0.9] * 5)["p_value"] == 1.0  # all tied: no evidence, no scipy warning


def test_effect_size_counts_the_infinite_pairs_the_test_counts():
    """An empty prediction's HD95 is inf; scipy's Wilcoxon ranks that pair highest, so must the effect size."""
    model = np.array([1.0, 2.0, 3.0, np.inf, 5.0, 6.0, 7.0])
    base = np.array([1.5, 2.2, 3.1, 4.0, 5.5, 6.6, 7.7])
    test = wilcoxon_paired(model, base)
    d = model - base
    ranks = sps.rankdata(np.abs(d))
    w_plus, w_minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    assert test["statistic"] == min(w_plus, w_minus)  # scipy counted the inf pair
    assert test["effect_size"] == pytest.approx((w_plus - w_minus) / (w_plus + w_minus))  # -0.5, not -1
    assert rank_biserial([np.inf, -1.0]) == pytest.approx(1 / 3)


def test_verdict_direction_follows_the_tested_pairs_not_a_zero_median():
    """Many identical pairs make the median difference 0 while every differing pair favours the model."""
    model = np.array([0.95] * 10 + [0.95 + 0.01 * (i + 1) for i in range(8)])
    base = np.full(18, 0.95)
    test = wilcoxon_paired(model, base)
    assert test["median_diff"] == 0.0 and test["p_value"] < 0.05
    assert verdict(test, "dice").startswith("significantly higher") and "better" in verdict(test, "dice")
    assert "worse" in verdict(wilcoxon_paired(model, base), "hd95")


def test_verdict_says_when_too_few_pairs_can_never_be_significant():
    """With 5 differing pairs the smallest two-sided exact p is 2/32 = 0.0625: 'no difference' would mislead."""
    model, base = np.array([0.91, 0.92, 0.93, 0.94, 0.95, 0.90]), np.array([0.90] * 6)
    test = wilcoxon_paired(model, base)  # 5 differing pairs, all favour the model
    assert test["p_value"] == pytest.approx(0.0625)
    text = verdict(test, "dice")
    assert "cannot" in text and "6" in text
    ok = wilcoxon_paired(np.array([0.91, 0.92, 0.93, 0.94, 0.95, 0.96]), np.full(6, 0.90))
    assert ok["p_value"] == pytest.approx(0.03125) and "cannot" not in verdict(ok, "dice")


def test_tost_equals_two_scipy_ttests_and_the_90_percent_interval():
    rng = np.random.default_rng(1)
    b = rng.uniform(0.9, 0.97, 12)
    a = b + rng.normal(0.001, 0.002, 12)
    got = tost_paired(a, b, margin=0.005)
    d = a - b
    lo = sps.ttest_1samp(d, -0.005, alternative="greater").pvalue
    hi = sps.ttest_1samp(d, 0.005, alternative="less").pvalue
    ci = sps.t.interval(0.90, len(d) - 1, loc=d.mean(), scale=sps.sem(d))
    assert got["p_value"] == pytest.approx(max(lo, hi))
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(ci)
    assert got["equivalent"] == (max(lo, hi) < 0.05) == (-0.005 < ci[0] and ci[1] < 0.005)


def test_next_click_on_a_hand_made_case():
    ref = np.zeros((40, 40), bool)
    ref[5:35, 5:35] = True
    pred = ref.copy()
    pred[10:21, 10:21] = False  # an 11x11 hole: missed region, centre (15, 15)
    pred[36:39, 0:3] = True  # a 3x3 false blob, smaller
    assert next_click(pred, ref) == (15.0, 15.0, 1)
    pred[10:21, 10:21] = True
    pred[0:15, 36:40] = True  # false region 15x4 on the image edge: the border counts as boundary
    x, y, label = next_click(pred, ref)
    assert label == 0 and 37 <= x <= 38 and 1 <= y <= 13
    assert next_click(ref, ref) is None


def test_noc_is_capped_at_k():
    assert noc([0.80, 0.91, 0.96], 0.90) == 1 and noc([0.80, 0.91, 0.96], 0.95) == 2
    assert noc([0.80, 0.85, 0.89], 0.90) == 2  # never reached: K
    assert noc([0.97], 0.95) == 0


def _rows(path: Path) -> list[dict]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="bundled default model not installed")
def test_real_report_rows_equal_an_independent_rescoring(tmp_path, cxr_dir):
    """`evaluate` on the 4 shipped films: each row re-scored from the model's own masks (public API),
    each summary and Wilcoxon p recomputed from the rows, the clicks replayed."""
    from napari_adaqat.data import mask_box
    from napari_adaqat.inference.engine import Engine, model_ref
    from napari_adaqat.inference.postprocess import clip_probabilities
    from napari_adaqat.io import read_image
    from napari_adaqat.report.evaluate import evaluate

    summary = evaluate(cxr_dir, None, "default", tmp_path / "r", split="all", clicks=1)
    rows = _rows(tmp_path / "r" / "per_image.csv")
    engine, model = Engine(), model_ref(None)
    for row in rows:
        image = read_image(cxr_dir / "images" / f"{row['name']}.png")
        ref = read_mask(cxr_dir / "masks" / f"{row['name']}.png") != 0
        box = mask_box(ref)
        assert row["box"] == " ".join(f"{v:.0f}" for v in box)
        result = engine.predict(image.pixels, box, model, "cpu", clean=False)
        pred = result.mask
        want_nsd, want_hd = _brute(pred, ref, 2.0)
        assert float(row["model_dice"]) == pytest.approx(2 * (pred & ref).sum() / (pred.sum() + ref.sum()))
        assert float(row["model_iou"]) == pytest.approx((pred & ref).sum() / (pred | ref).sum())
        assert float(row["model_nsd"]) == pytest.approx(want_nsd)
        assert float(row["model_hd95"]) == pytest.approx(want_hd)
        small = [resize(m.astype(float), (256, 256), order=0, anti_aliasing=False) > 0.5 for m in (pred, ref)]
        want_nsd, want_hd = _brute(*small, 2.0)
        assert float(row["model_nsd_256"]) == pytest.approx(want_nsd)
        assert float(row["model_hd95_256"]) == pytest.approx(want_hd)
        # the maps read each model's own probabilities (a vote both files carry apart), cleared outside the box as
        # the mask is (nothing outside the box counts)
        own = clip_probabilities(result.p_own, box) if result.clipped else result.p_own
        want_ssim = structural_similarity(own.astype(float), ref.astype(float), data_range=1.0)
        assert float(row["ssim_model_ref"]) == pytest.approx(want_ssim, abs=1e-6)
        assert float(row["model_dice_click0"]) == pytest.approx(float(row["model_dice"]))
        x, y, label = next_click(pred, ref)
        after = engine.predict(image.pixels, box, model, "cpu", clean=False, point_coords=np.array([[x, y]]),
                               point_labels=np.array([label]), mask_input=result.low_res_logits).mask
        assert float(row["model_dice_click1"]) == pytest.approx(dice(after, ref))
    for metric in ("dice", "nsd_256", "hd95"):
        a = np.array([float(r[f"model_{metric}"]) for r in rows])
        b = np.array([float(r[f"baseline_{metric}"]) for r in rows])
        assert summary["model"][metric]["mean"] == pytest.approx(a.mean())
        assert summary["model"][metric]["std"] == pytest.approx(a.std(ddof=1))
        if np.any(a != b):
            assert summary["wilcoxon"]["model"][metric]["p_value"] == pytest.approx(sps.wilcoxon(a, b).pvalue)
    # what the printed table says of its units and conventions
    text = " ".join((tmp_path / "r" / "report.md").read_text().split())
    assert "NSD tolerance 2 px" in text and "in pixels of that grid" in text  # _256 is not native px
    assert "for HD95 higher is worse" in text and "cannot reach p < 0.05" in text  # n = 4 films
    assert "no HD95 (inf in per_image.csv)" in text


def test_noc_table_says_how_many_images_never_reached_the_threshold():
    """NoC is capped at K: an image that never reaches Dice 0.95 counts K, like one that reaches it at click K."""
    from napari_adaqat.report.clicks import click_columns, click_summary, click_table
    rows = [click_columns("model", [0.93, 0.94, 0.9386]),  # never reaches 0.95 (a real val film): NoC@95 = 2
            click_columns("model", [0.93, 0.94, 0.9545]),  # reaches it at click 2: also 2
            click_columns("model", [0.96, 0.96, 0.96])]
    assert [r["model_noc95"] for r in rows] == [2, 2, 0]
    summary = {"clicks": click_summary(rows, ["model"], 2)}
    assert summary["clicks"]["model"]["noc95"]["not_reached"] == 1
    assert summary["clicks"]["model"]["noc90"]["not_reached"] == 0
    head, body = click_table(summary)
    assert body[0][-1] == "1.33 / 2 (1 of 3 not reached)" and body[0][-2] == "0.00 / 0"
