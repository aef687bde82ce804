"""Score a model (and optionally a baseline) on a dataset split: the paper's statistics."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from napari_adaqat.inference.postprocess import clean_lung_mask
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.inference.transforms import default_box, mask_box
from napari_adaqat.io import read_image, read_mask
from napari_adaqat.metrics import score_masks, score_masks_at, summarize, trust_maps, wilcoxon_paired
from napari_adaqat.train.data import check_pairs, discover
from napari_adaqat.train.split import load_split

METRICS = ("dice", "iou", "nsd", "hd95")


def iter_scores(pairs: list, model: BoxPredictor, baseline: BoxPredictor | None, box_mode: str = "tight",
                nsd_tolerance: float = 2.0, clean: bool = False) -> Iterator[dict]:
    """One row per image: metrics at native resolution and at 256², per model.

    box_mode ``tight`` uses the reference mask's bounding box (fixed, no jitter, as in the
    paper's evaluation); ``default`` uses the whole image minus a 2 % margin.
    """
    for pair in pairs:
        image = read_image(pair.image)
        ref = read_mask(pair.mask)
        box = mask_box(ref) if box_mode == "tight" else default_box(ref.shape)
        row: dict = {"name": pair.name, "box": " ".join(f"{v:.0f}" for v in box)}
        probs = {}
        for tag, predictor in (("model", model), ("baseline", baseline)):
            if predictor is None:
                continue
            start = time.perf_counter()
            predictor.set_image(image.pixels)
            pred = predictor.predict(box)
            row[f"{tag}_seconds"] = round(time.perf_counter() - start, 4)
            probs[tag] = pred.probs[0]
            mask = clean_lung_mask(pred.masks[0]) if clean else pred.masks[0]
            native = score_masks(mask, ref, spacing=image.spacing, nsd_tolerance_mm=nsd_tolerance,
                                 nsd_tolerance_px=nsd_tolerance)
            small = score_masks_at(mask, ref, size=256, nsd_tolerance_px=nsd_tolerance)
            for m in METRICS:
                row[f"{tag}_{m}"] = native[m]
                row[f"{tag}_{m}_256"] = small[m]
        if baseline is not None:
            maps = trust_maps(probs["model"], probs["baseline"], reference=ref)
            row["ssim_model_ref"] = float(maps.ssim_mean)
            row["delta_ssim"] = float(maps.delta_mean)
        yield row


def evaluate(data_dir: str | Path, model: BoxPredictor, baseline: BoxPredictor | None, out_dir: str | Path,
             split: str = "test", box_mode: str = "tight", progress=None, split_file: str | Path | None = None,
             clean: bool = False) -> dict:
    """Write ``per_image.csv``, ``summary.json``, ``wilcoxon.json`` and figures; return the summary.

    ``split_file`` (e.g. a training run's ``split.json``) overrides the dataset's own split.
    Bad pairs (missing, empty or mismatched masks) are skipped and listed in the summary.
    """
    out = Path(out_dir)
    data = Path(data_dir).resolve()
    if out.resolve() == data or data in out.resolve().parents:
        raise ValueError(f"--out {out_dir} is inside the data folder {data_dir}; choose another folder")
    pairs, parts = discover(data_dir)
    if split_file:
        parts = load_split(split_file)
    names = sorted(pairs) if split == "all" else parts[split]
    chosen, skipped = check_pairs([pairs[n] for n in names if n in pairs])
    out.mkdir(parents=True, exist_ok=True)
    if not chosen:
        raise ValueError(f"{data_dir}: no image/mask pairs in the {split!r} split")
    rows = []
    for row in iter_scores(chosen, model, baseline, box_mode, clean=clean):
        rows.append(row)
        if progress:
            progress(len(rows), len(chosen))
    with (out / "per_image.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary: dict = {"data": str(data_dir), "split": split, "n": len(rows), "box": box_mode, "clean": clean, "skipped": skipped,
                     "split_file": str(split_file) if split_file else None}
    tags = ["model"] + (["baseline"] if baseline is not None else [])
    for tag in tags:
        summary[tag] = {f"{m}{s}": summarize([r[f"{tag}_{m}{s}"] for r in rows]) for m in METRICS for s in ("", "_256")}
    if baseline is not None:
        tests = {f"{m}{s}": wilcoxon_paired([r[f"model_{m}{s}"] for r in rows], [r[f"baseline_{m}{s}"] for r in rows])
                 for m in METRICS for s in ("", "_256")}
        (out / "wilcoxon.json").write_text(json.dumps(tests, indent=1, default=float))
        summary["wilcoxon_dice_p"] = tests["dice"]["p_value"]
        summary["mean_delta_ssim"] = float(np.mean([r["delta_ssim"] for r in rows]))
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    _figures(rows, tags, out)
    return summary


def _figures(rows: list[dict], tags: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, metric in zip(axes, ("dice", "nsd")):
        ax.boxplot([[r[f"{t}_{metric}"] for r in rows] for t in tags], tick_labels=tags)
        ax.set_title(metric.upper())
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "scores_boxplot.png", dpi=100)
    plt.close(fig)
