"""Which quality score finds the bad masks? Candidates against the true Dice on a folder of films.

For every film (the default whole-image box, as ``adaqat segment`` uses it, cleaned masks) this measures
the candidates of issue 29: the IoU head, the soft Dice and uncertain fraction of the probability map,
box-jitter agreement (decoder only), flip test-time agreement (a second encoder forward), SSIM agreement
with the FP32 baseline (a second model), shape statistics, and a ridge regressor over the cheap ones
trained out of fold.  It prints Spearman with the true Dice and AUROC for Dice < 0.9 (and for the worst
decile), for all films and for the films held out of the bundled model's training (``--held-out``).

    python benchmarks/segment_quality.py /work/shared/data/cxr/permissive_512 --out benchmarks/results/quality.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata, spearmanr

from napari_adaqat.data.boxes import default_box
from napari_adaqat.inference.engine import Engine, ModelRef
from napari_adaqat.inference.postprocess import clean_lung_mask
from napari_adaqat.inference.quality import shape_features, soft_dice, uncertain_fraction
from napari_adaqat.io import read_image, read_mask
from napari_adaqat.metrics import dice

CHEAP = ["iou_pred", "soft_dice", "uncertain", "area_fraction", "regions", "lung_ratio", "touching_box",
         "raw_vs_clean"]


def features(engine: Engine, image: np.ndarray, truth: np.ndarray, tta: bool) -> dict[str, float]:
    model, base = ModelRef(), ModelRef(baseline=True)
    box = default_box(image.shape[:2])
    t0 = time.perf_counter()
    res = engine.predict(image, box, model, "cpu", clean=True)
    t1 = time.perf_counter()
    probs, mask = res.p_model, res.mask
    row = {"dice": float(dice(mask, truth)), "iou_pred": res.iou_pred, "model_s": t1 - t0}
    q0 = time.perf_counter()
    row["soft_dice"] = soft_dice(probs, mask)
    row["uncertain"] = uncertain_fraction(probs, mask)
    row["soft_s"] = time.perf_counter() - q0
    s0 = time.perf_counter()
    row.update(shape_features(mask, box))
    row["raw_vs_clean"] = float(dice(probs > 0.5, mask))
    row["shape_s"] = time.perf_counter() - s0
    if not tta:
        return row
    j0 = time.perf_counter()
    h, w = image.shape[:2]
    agree = []
    for dx, dy in ((0.04, 0.0), (0.0, 0.04), (-0.04, -0.04)):
        shifted = box + np.array([dx * w, dy * h, dx * w, dy * h])
        shifted = np.clip(shifted, 0, [w - 1, h - 1, w - 1, h - 1])
        agree.append(dice(engine.predict(image, shifted, model, "cpu", clean=True).mask, mask))
    row["jitter"] = float(np.mean(agree))
    row["jitter_s"] = time.perf_counter() - j0
    f0 = time.perf_counter()
    flipped = np.ascontiguousarray(image[:, ::-1])
    fbox = np.array([w - 1 - box[2], box[1], w - 1 - box[0], box[3]])
    row["flip"] = float(dice(engine.predict(flipped, fbox, model, "cpu", clean=True).mask[:, ::-1], mask))
    row["flip_s"] = time.perf_counter() - f0
    b0 = time.perf_counter()
    row["ssim_baseline"] = float(engine.add_maps(res, image, base, "cpu").ssim_mean)
    row["baseline_s"] = time.perf_counter() - b0
    return row


def auroc(score: np.ndarray, bad: np.ndarray) -> float:
    """AUROC of ``-score`` for finding ``bad`` (a low estimated Dice should mean a bad mask)."""
    pos, neg = int(bad.sum()), int((~bad).sum())
    if not pos or not neg:
        return float("nan")
    ranks = rankdata(-score)
    return float((ranks[bad].sum() - pos * (pos + 1) / 2) / (pos * neg))


def ridge_oof(x: np.ndarray, y: np.ndarray, folds: int = 5, alpha: float = 1.0, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions of a ridge regression on standardised features (no film predicts itself)."""
    order = np.random.default_rng(seed).permutation(len(y))
    out = np.zeros(len(y))
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-9
        a = (x[train] - mu) / sd
        coef = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (y[train] - y[train].mean()))
        out[test] = (x[test] - mu) / sd @ coef + y[train].mean()
    return out


def summarise(rows: list[dict], names: list[str]) -> dict:
    y = np.array([r["dice"] for r in rows])
    below = y < 0.9
    decile = y <= np.quantile(y, 0.1)
    table = {}
    for name in names:
        s = np.array([r[name] for r in rows], dtype=float)
        rho = float(spearmanr(s, y).statistic)
        table[name] = {"spearman": round(rho, 3), "auroc_below_0.9": round(auroc(s, below), 3),
                       "auroc_worst_decile": round(auroc(s, decile), 3)}
    return {"n": len(rows), "below_0.9": int(below.sum()), "mean_dice": round(float(y.mean()), 4),
            "median_dice": round(float(np.median(y)), 4), "candidates": table}


def review_table(rows: list[dict], name: str) -> list[dict]:
    """For each threshold: how many masks it flags and how many of the Dice < 0.9 ones it catches."""
    y = np.array([r["dice"] for r in rows])
    s = np.array([r[name] for r in rows])
    out = []
    for t in (0.90, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96):
        flag = s < t
        out.append({"threshold": t, "flagged": int(flag.sum()), "caught_below_0.9": int((flag & (y < 0.9)).sum()),
                    "below_0.9": int((y < 0.9).sum()), "flagged_mean_dice": round(float(y[flag].mean()), 4)
                    if flag.any() else None})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data", type=Path)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/segment_quality.json"))
    p.add_argument("--held-out", type=Path, help="JSON list (or split.json 'test' list) of held-out film names")
    p.add_argument("--no-tta", action="store_true", help="only the cheap candidates")
    args = p.parse_args()
    engine = Engine()
    rows = []
    for path in sorted((args.data / "images").glob("*.png")):
        image = read_image(path).pixels
        truth = read_mask(args.data / "masks" / path.name) != 0
        rows.append({"name": path.stem, **features(engine, image, truth, not args.no_tta)})
        print(f"{len(rows):3d} {path.stem[:40]:40s} dice {rows[-1]['dice']:.3f} soft {rows[-1]['soft_dice']:.3f}",
              flush=True)
    names = CHEAP + ([] if args.no_tta else ["jitter", "flip", "ssim_baseline"])
    x = np.array([[r[n] for n in CHEAP] for r in rows])
    y = np.array([r["dice"] for r in rows])
    for r, v in zip(rows, ridge_oof(x, y)):
        r["ridge_oof"] = float(v)
    names.append("ridge_oof")
    result = {"all": summarise(rows, names), "review_soft_dice": review_table(rows, "soft_dice"),
              "seconds_per_film": {k: round(float(np.mean([r[k] for r in rows])), 4)
                                   for k in rows[0] if k.endswith("_s")}, "rows": rows}
    if args.held_out:
        held = json.loads(args.held_out.read_text())
        held = set(held["test"] if isinstance(held, dict) else held)
        part = [r for r in rows if r["name"] in held]
        result["held_out"] = summarise(part, names)
        result["held_out"]["names"] = sorted(held)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()
