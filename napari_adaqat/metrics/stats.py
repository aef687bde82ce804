"""Per-image scoring, summaries, the paired Wilcoxon test and the paired equivalence test (TOST) between two models."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import stats as sps
from skimage.transform import resize

from napari_adaqat.util.defaults import EQUIVALENCE_MARGIN  # ±0.5 Dice points

from .overlap import _pair, dice, iou
from .surface import nsd_and_hd95


@dataclass
class SegmentationScores:
    """Scores of one predicted mask against its reference."""

    dice: float
    iou: float
    nsd: float
    hd95: float


def score_masks(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: Optional[Sequence[float]] = None,
    nsd_tolerance_mm: float = 2.0,
    nsd_tolerance_px: float = 2.0,
) -> dict:
    """Dice, IoU, NSD and HD95 of (H, W) masks at native resolution.

    With ``spacing`` (row, col) in mm, NSD tolerance and HD95 are in mm; else in px.
    Returns {"dice", "iou", "nsd", "hd95", "nsd_tolerance", "units"}.
    """
    p, r = _pair(pred, ref)
    if spacing is None:
        sp, tol, units = (1.0, 1.0), float(nsd_tolerance_px), "px"
    else:
        sp, tol, units = tuple(float(s) for s in spacing), float(nsd_tolerance_mm), "mm"
    surface_dice, hausdorff95 = nsd_and_hd95(p, r, tol, sp)
    scores = SegmentationScores(dice=dice(p, r), iou=iou(p, r), nsd=surface_dice, hd95=hausdorff95)
    return {**asdict(scores), "nsd_tolerance": tol, "units": units}


def score_masks_at(
    pred: np.ndarray,
    ref: np.ndarray,
    size: int = 256,
    spacing: Optional[Sequence[float]] = None,
    nsd_tolerance_mm: float = 2.0,
    nsd_tolerance_px: float = 2.0,
) -> dict:
    """``score_masks`` after nearest-neighbour resizing both masks to (size, size).

    For comparison with the paper, which reports scores at 256². A given ``spacing``
    is rescaled to the new pixel size, so mm results stay physical. Adds "size".
    """
    p, r = _pair(pred, ref)
    out = (int(size), int(size))

    def _rs(m: np.ndarray) -> np.ndarray:
        return resize(m.astype(np.float32), out, order=0, anti_aliasing=False,
                      preserve_range=True) > 0.5

    new_spacing = None
    if spacing is not None:
        new_spacing = (float(spacing[0]) * p.shape[0] / size, float(spacing[1]) * p.shape[1] / size)
    res = score_masks(_rs(p), _rs(r), new_spacing, nsd_tolerance_mm, nsd_tolerance_px)
    res["size"] = int(size)
    return res


def wilcoxon_paired(
    a: Sequence[float], b: Sequence[float], alternative: str = "two-sided"
) -> dict:
    """Paired Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) of per-image scores a vs b.

    Pairs whose difference a-b is nan (a nan score, or inf-inf) are dropped; ``n`` counts
    the pairs kept. If fewer than 2 pairs remain, or every difference is zero, there is
    no evidence of a difference and scipy would warn or return nan, so p_value is 1.0
    and statistic 0.0. Unequal lengths raise ValueError.
    ``effect_size`` is the matched-pairs rank-biserial correlation (:func:`rank_biserial`); its sign,
    not ``median_diff`` (0 when most pairs tie), tells which way the tested pairs lean.  ``n_nonzero``
    counts the pairs the test ranks: below 6 a two-sided p cannot fall below 0.05 (at best 2/2**n_nonzero).
    Returns {"n", "n_nonzero", "statistic", "p_value", "effect_size", "median_diff", "mean_a", "mean_b"}.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired scores need equal 1-D lengths, got {x.shape} and {y.shape}")
    d = x - y
    keep = ~np.isnan(d)
    x, y, d = x[keep], y[keep], d[keep]
    n = int(d.size)
    out = {
        "n": n,
        "n_nonzero": int(np.count_nonzero(d)),
        "statistic": 0.0,
        "p_value": 1.0,
        "effect_size": rank_biserial(d),
        "median_diff": float(np.median(d)) if n else float("nan"),
        "mean_a": float(np.mean(x)) if n else float("nan"),
        "mean_b": float(np.mean(y)) if n else float("nan"),
    }
    if n < 2 or not np.any(d != 0):
        return out
    res = sps.wilcoxon(x, y, alternative=alternative)
    out["statistic"] = float(res.statistic)
    out["p_value"] = float(res.pvalue)
    return out


def tost_paired(a: Sequence[float], b: Sequence[float], margin: float = EQUIVALENCE_MARGIN,
                alpha: float = 0.05) -> dict:
    """Paired equivalence test (two one-sided t-tests, TOST) of per-image scores a vs b within ±``margin``.

    With d = a - b (nan pairs dropped): H0₁ mean(d) ≤ -margin is tested with
    ``scipy.stats.ttest_1samp(d, -margin, alternative="greater")``, H0₂ mean(d) ≥ +margin with
    ``ttest_1samp(d, margin, alternative="less")``; ``p_value`` = max of the two, and a and b are
    shown equivalent when it is below ``alpha`` (equally: the (1 - 2·alpha) confidence interval of the
    mean difference lies inside ±margin).  With identical differences (no spread) p is 0 inside the
    margin and 1 outside; with fewer than 2 pairs, 1.
    Returns {"n", "margin", "alpha", "mean_diff", "ci_low", "ci_high", "p_lower", "p_upper", "p_value",
    "equivalent"} (``ci_*``: the (1 - 2·alpha) interval).
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired scores need equal 1-D lengths, got {x.shape} and {y.shape}")
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")
    d = (x - y)[~np.isnan(x - y)]
    n = int(d.size)
    mean = float(d.mean()) if n else float("nan")
    out = {"n": n, "margin": float(margin), "alpha": float(alpha), "mean_diff": mean, "ci_low": float("nan"),
           "ci_high": float("nan"), "p_lower": 1.0, "p_upper": 1.0, "p_value": 1.0, "equivalent": False}
    if n < 2:
        return out
    sd = float(d.std(ddof=1))
    if sd == 0.0:  # every pair differs by the same amount: scipy's t would divide by zero
        inside = float(-margin < mean < margin)
        out.update(ci_low=mean, ci_high=mean, p_lower=1.0 - inside, p_upper=1.0 - inside, p_value=1.0 - inside)
    else:
        p_lower = float(sps.ttest_1samp(d, -margin, alternative="greater").pvalue)
        p_upper = float(sps.ttest_1samp(d, margin, alternative="less").pvalue)
        half = float(sps.t.ppf(1.0 - alpha, n - 1)) * sd / np.sqrt(n)
        out.update(ci_low=float(mean - half), ci_high=float(mean + half), p_lower=p_lower, p_upper=p_upper,
                   p_value=max(p_lower, p_upper))
    out["equivalent"] = bool(out["p_value"] < alpha)
    return out


def rank_biserial(differences: Sequence[float]) -> float:
    """Matched-pairs rank-biserial correlation of paired differences (Kerby 2014), in [-1, 1]:
    ``(W+ - W-) / (W+ + W-)`` with W± the rank sums of the positive/negative differences, ranked by
    |d| with ties averaged; zero and nan differences are dropped, as ``scipy.stats.wilcoxon`` does by default,
    and an infinite one (HD95 of an empty mask) ranks highest, as there.
    +1: a is higher on every pair; 0 with no non-zero difference."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[~np.isnan(d) & (d != 0)]
    if d.size == 0:
        return 0.0
    ranks = sps.rankdata(np.abs(d))
    plus, minus = float(ranks[d > 0].sum()), float(ranks[d < 0].sum())
    return (plus - minus) / (plus + minus)


def summarize(values: Sequence[float]) -> dict:
    """mean, std (sample, ddof=1; nan, undefined, when n == 1: the report shows "–", not a spread of 0), median, q1, q3, min, max over the finite values;
    ``n`` counts them and ``n_inf`` the infinite ones (HD95 with an empty mask); nan is ignored.

    With no finite values every statistic is nan and n is 0.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    n_inf = int(np.isinf(v).sum())
    v = v[np.isfinite(v)]
    if v.size == 0:
        nan = float("nan")
        return {"mean": nan, "std": nan, "median": nan, "q1": nan, "q3": nan,
                "min": nan, "max": nan, "n": 0, "n_inf": n_inf}
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
        "median": float(med),
        "q1": float(q1),
        "q3": float(q3),
        "min": float(v.min()),
        "max": float(v.max()),
        "n": int(v.size),
        "n_inf": n_inf,
    }
