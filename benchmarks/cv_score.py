"""Out-of-fold scores of box-prompted models and the U-Net reference, clean and under the shift suite.

For every fold folder (benchmarks/cv_folds.py), every ``test`` image of that fold is scored by
the models trained without it: tight boxes (the expert mask's bounding box), masks at the
image's native size, Dice and NSD at 2 px.  Writes OUT/oof_rows.csv, OUT/oof_summary.json and
OUT/oof_table.md.

    python benchmarks/cv_score.py /work/cv OUT --model v3=/work/cvruns/v3/fold{k}/default_int8.safetensors \
        --model v2=/work/cvruns/v2/fold{k}/int8.safetensors --unet /work/cvruns/unet/fold{k}/unet.safetensors
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from shift_suite import SHIFTS, apply_shift  # noqa: E402
from unet_reference import load_unet, predict_mask  # noqa: E402

from napari_adaqat import Segmenter, open_model  # noqa: E402
from napari_adaqat.data.boxes import mask_box  # noqa: E402
from napari_adaqat.data.dataset import discover, load_pair  # noqa: E402
from napari_adaqat.inference.postprocess import clean_lung_mask  # noqa: E402
from napari_adaqat.metrics import score_masks, summarize as summarize_values, wilcoxon_paired  # noqa: E402


def flip_tta(model: Segmenter, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Mean probability of the image and its left-right mirror (box mirrored too) > 0.5."""
    w = image.shape[1]
    probs = model.set_image(image).prompt(box)[1].probs[0]
    mirrored = np.array([w - 1 - box[2], box[1], w - 1 - box[0], box[3]])
    probs_m = model.set_image(np.ascontiguousarray(image[:, ::-1])).prompt(mirrored)[1].probs[0][:, ::-1]
    return (probs + probs_m) / 2 > 0.5


def score_folds(folds: list[Path], models: dict[str, str], unet: str | None, shifts: list[str],
                tta: tuple[str, ...] = (), limit: int | None = None, clean: bool = False) -> list[dict]:
    """One row per (fold, test image, shift, model); ``clean``: every model's mask (the U-Net's too)
    goes through the clean-up that ``adaqat segment`` and the dock apply, and its name gets " (clean)"."""
    rows = []
    for fold in folds:
        k = int(fold.name.removeprefix("fold"))
        pairs, split = discover(fold)
        # raw masks (clean=False): with --clean every model's mask, the U-Net's too, is cleaned below by the rule
        # the segmenters apply (the CPU, as the published numbers)
        predictors = {name: open_model(pattern.format(k=k), device="cpu", clean=False) for name, pattern in models.items()}
        net = load_unet(Path(unet.format(k=k))) if unet else None
        for name in tqdm(split["test"][:limit], desc=f"fold {k}", unit="image"):
            image, mask = load_pair(pairs[name])
            for shift in shifts:
                f, m = apply_shift(shift, image, mask, name)
                box = mask_box(m)
                preds = {model: p.segment(f, box) for model, p in predictors.items()}
                for model in tta:
                    preds[f"{model} + flip TTA"] = flip_tta(predictors[model], f, box)
                if net is not None:
                    preds["U-Net (no box)"] = predict_mask(net, f)
                for model, pred in preds.items():
                    if clean:
                        model, pred = f"{model} (clean)", clean_lung_mask(pred)
                    scores = score_masks(pred, m, nsd_tolerance_px=2.0)  # the report's per-image metrics, in px
                    rows.append({"fold": k, "name": name, "shift": shift, "model": model,
                                 "dice": scores["dice"], "nsd2": scores["nsd"]})
    return rows


def summarize(rows: list[dict], first: str) -> tuple[dict, str]:
    """Mean Dice / NSD per shift and model; the judged model ``first`` against every model of another
    family (name not starting with ``first``'s first word): mean and median paired difference, the films
    where ``first`` is better, and the Wilcoxon p (two-sided: its direction is the median's, not the mean's).

    The statistics are the report's (:func:`napari_adaqat.metrics.summarize`,
    :func:`napari_adaqat.metrics.wilcoxon_paired`), so these tables and ``adaqat evaluate`` agree."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    shifts = list(dict.fromkeys(r["shift"] for r in rows))
    family = first.split()[0]
    others = [m for m in models if not m.startswith(family)]
    summary, lines = {}, []
    lines.append("| shift | " + " | ".join(f"{m} Dice | {m} NSD@2px" for m in models) + " | "
                 + " | ".join(f"{first} − {m} (Dice), p" for m in others) + " |")
    lines.append("|---" + "|---:" * (2 * len(models) + len(others)) + "|")
    for shift in shifts:
        cells, per = [], {}
        for m in models:
            sel = sorted((r["fold"], r["name"], r["dice"], r["nsd2"]) for r in rows if r["model"] == m and r["shift"] == shift)
            if not sel:  # a model scored clean only (e.g. a reference without the shift suite)
                cells.append("— | —")
                continue
            per[m] = np.array([s[2] for s in sel])
            dice_stats, nsd_stats = summarize_values(per[m]), summarize_values([s[3] for s in sel])
            summary.setdefault(shift, {})[m] = {"dice": dice_stats["mean"], "nsd2": nsd_stats["mean"], "n": len(sel)}
            cells.append(f"{dice_stats['mean']:.4f} | {nsd_stats['mean']:.3f}")
        for m in others:
            if m not in per or first not in per:  # either side scored without this shift
                cells.append("—")
                continue
            diff = per[first] - per[m]
            test = wilcoxon_paired(per[first], per[m])
            p, better = test["p_value"], int((diff > 0).sum())
            # the signed-rank test follows the median and the ranks, not the mean: a few large failures of one
            # model can put its mean behind while it wins most films, so the cell gives both and the film count
            summary[shift][f"{first} - {m}"] = {"dice_diff": float(diff.mean()), "median_diff": test["median_diff"],
                                               "better_on": better, "n": len(diff), "wilcoxon_p": p,
                                               "effect_size": test["effect_size"]}
            cells.append(f"{diff.mean():+.4f} (median {test['median_diff']:+.4f}, better on {better} of {len(diff)}), "
                         f"p = {p:.2g}")
        lines.append(f"| {shift} | " + " | ".join(cells) + " |")
    return summary, "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folds", type=Path, help="folder of fold0, fold1, ... (benchmarks/cv_folds.py)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH with {k} for the fold; first = judged")
    parser.add_argument("--unet", help="U-Net reference weights with {k} for the fold")
    parser.add_argument("--shifts", default="all", help="comma-separated shift names, or all")
    parser.add_argument("--limit", type=int, help="score only the first N test images of each fold (a smoke run)")
    parser.add_argument("--tta", action="append", default=[], help="also score NAME with flip test-time augmentation")
    parser.add_argument("--clean", action="store_true",
                        help="score every mask after the product's clean-up (two largest regions, holes filled)")
    parser.add_argument("--only", type=int, action="append", help="score only fold K (repeatable)")
    parser.add_argument("--rows", type=Path, action="append",
                        help="no scoring: summarize these oof_rows.csv files (e.g. one per fold) together")
    args = parser.parse_args()
    if args.rows:
        rows = []
        for path in args.rows:
            with path.open() as fh:
                rows += [{**r, "fold": int(r["fold"]), "dice": float(r["dice"]), "nsd2": float(r["nsd2"])}
                         for r in csv.DictReader(fh)]
        first = rows[0]["model"]
    else:
        models = dict(item.split("=", 1) for item in args.model)
        folds = sorted(p for p in args.folds.glob("fold*") if (p / "split.json").is_file()
                       and (not args.only or int(p.name.removeprefix("fold")) in args.only))
        shifts = list(SHIFTS) if args.shifts == "all" else args.shifts.split(",")
        rows = score_folds(folds, models, args.unet, shifts, tuple(args.tta), args.limit, args.clean)
        first = rows[0]["model"]
    args.out.mkdir(parents=True, exist_ok=True)
    with (args.out / "oof_rows.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary, table = summarize(rows, first)
    (args.out / "oof_summary.json").write_text(json.dumps(summary, indent=1))
    (args.out / "oof_table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
