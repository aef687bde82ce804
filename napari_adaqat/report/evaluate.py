"""Score a model (and optionally a baseline) on a dataset split: the paper's statistics.

Every image goes through the one :class:`~napari_adaqat.inference.engine.Engine` (model, baseline,
SSIM/ΔSSIM), with fixed, deterministic boxes."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from napari_adaqat.data import check_output_folder, check_pairs, default_box, discover, load_split, mask_box
from napari_adaqat.inference.engine import Engine, ModelLike, model_ref
from napari_adaqat.io import read_image, read_mask
from napari_adaqat.metrics import score_masks, score_masks_at, summarize, wilcoxon_paired

METRICS = ("dice", "iou", "nsd", "hd95")


def score_pair(pair, model: ModelLike, baseline: ModelLike | None, box_mode: str = "tight",
               nsd_tolerance: float = 2.0, clean: bool = False, engine: Engine | None = None,
               device: str = "cpu") -> dict:
    """One image's row: metrics at native resolution (mm when the image has a pixel spacing,
    else px; see ``units``) and at 256² (px), per model.

    box_mode ``tight`` uses the reference mask's bounding box (fixed, no jitter, as in the
    paper's evaluation); ``default`` uses the whole image minus a 2 % margin.
    """
    engine = engine or Engine()
    image = read_image(pair.image)
    ref = read_mask(pair.mask)
    box = mask_box(ref) if box_mode == "tight" else default_box(ref.shape)
    row: dict = {"name": pair.name, "box": " ".join(f"{v:.0f}" for v in box),
                 "units": "mm" if image.spacing is not None else "px"}
    result = engine.predict(image.pixels, box, model, device, clean=clean)
    if baseline is not None:  # with a reference: SSIM(model, ref) and ΔSSIM against the baseline
        engine.add_maps(result, image.pixels, baseline, device, reference=ref)
    masks = {"model": (result.mask, result.model_seconds), "baseline": (result.baseline_mask, result.baseline_seconds)}
    for tag in ("model", "baseline") if baseline is not None else ("model",):
        mask, seconds = masks[tag]
        row[f"{tag}_seconds"] = round(seconds, 4)
        native = score_masks(mask, ref, spacing=image.spacing, nsd_tolerance_mm=nsd_tolerance,
                             nsd_tolerance_px=nsd_tolerance)
        small = score_masks_at(mask, ref, size=256, nsd_tolerance_px=nsd_tolerance)
        for m in METRICS:
            row[f"{tag}_{m}"] = native[m]
            row[f"{tag}_{m}_256"] = small[m]
    if baseline is not None:
        row["ssim_model_ref"] = float(result.ssim_mean)
        row["delta_ssim"] = float(result.delta_mean)
    return row


def _json_safe(value):
    """inf/nan → None (``null``), so the report is strict JSON that jq and browsers accept."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(_json_safe(data), indent=1, allow_nan=False))


def _summaries(rows: list[dict], tag: str) -> dict:
    """Per-metric summaries; native HD95/NSD are split by units when mm and px rows are mixed."""
    out = {f"{m}{s}": summarize([r[f"{tag}_{m}{s}"] for r in rows]) for m in METRICS for s in ("", "_256")}
    units = sorted({r["units"] for r in rows})
    if len(units) > 1:
        for m in ("hd95", "nsd"):
            out[m] = summarize([])  # one mean over mm and px values would mean nothing
            for u in units:
                out[f"{m}_{u}"] = summarize([r[f"{tag}_{m}"] for r in rows if r["units"] == u])
    return out


def evaluate(data_dir: str | Path, model: ModelLike | str | Path | None = None, baseline: ModelLike | str | Path | None = None,
             out_dir: str | Path = "report", split: str = "test", box_mode: str = "tight", progress=None,
             split_file: str | Path | None = None, clean: bool = False, seed: int = 0, device: str = "cpu") -> dict:
    """Write ``per_image.csv``, ``summary.json``, ``wilcoxon.json`` and figures; return the summary.

    ``split_file`` (e.g. a training run's ``split.json``) overrides the dataset's own split;
    without it and without ``DIR/split.json`` the split is the 80:10:10 cut seeded by ``seed``.
    Bad pairs (missing, empty or mismatched masks) and images that fail are skipped and listed
    in the summary. Non-finite values (HD95 of an empty mask) are written as ``null``.
    ``model``/``baseline``: a :class:`ModelRef`, a :class:`BoxPredictor`, or a model file path
    (``None``/``"default"``: the bundled model; pass ``baseline="default"`` for its FP32 baseline).
    """
    out = Path(out_dir)
    check_output_folder(out, [data_dir], what="data folder")
    model, baseline = model_ref(model), (model_ref(baseline, baseline=True) if baseline is not None else None)
    engine = Engine()
    engine.predictor(model, device)  # a bad model file fails here with its one-line error
    if baseline is not None:
        engine.predictor(baseline, device)
    pairs, parts = discover(data_dir, seed=seed)
    if split_file:
        parts = load_split(split_file)
    names = sorted(pairs) if split == "all" else parts[split]
    chosen, skipped = check_pairs([pairs[n] for n in names if n in pairs])
    if not chosen:
        raise ValueError(f"{data_dir}: no image/mask pairs in the {split!r} split")
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    with (out / "per_image.csv").open("w", newline="") as fh:
        writer = None
        for done, pair in enumerate(chosen, start=1):
            try:
                row = score_pair(pair, model, baseline, box_mode, clean=clean, engine=engine, device=device)
            except Exception as exc:  # one failing image (decoder error, out of memory) must not lose the rest
                skipped.append(f"{pair.image}: {(str(exc).splitlines() or [type(exc).__name__])[0]}")
            else:
                rows.append(row)
                writer = writer or csv.DictWriter(fh, fieldnames=list(row))
                if len(rows) == 1:
                    writer.writeheader()
                writer.writerow(row)
                fh.flush()  # rows on disk as they come
            if progress:
                progress(done, len(chosen))
    if not rows:
        raise ValueError(f"{data_dir}: every image of the {split!r} split failed; first: {skipped[-1]}")
    units = sorted({r["units"] for r in rows})
    summary: dict = {"data": str(data_dir), "split": split, "n": len(rows), "box": box_mode, "clean": clean,
                     "skipped": skipped, "split_file": str(split_file) if split_file else None,
                     "units": units[0] if len(units) == 1 else "mixed (native hd95/nsd summarised per unit)"}
    tags = ["model"] + (["baseline"] if baseline is not None else [])
    for tag in tags:
        summary[tag] = _summaries(rows, tag)
    (out / "wilcoxon.json").unlink(missing_ok=True)  # never leave a comparison from an earlier report
    if baseline is not None:
        tests = {f"{m}{s}": wilcoxon_paired([r[f"model_{m}{s}"] for r in rows], [r[f"baseline_{m}{s}"] for r in rows])
                 for m in METRICS for s in ("", "_256")}
        _write_json(out / "wilcoxon.json", tests)
        summary["wilcoxon_dice_p"] = tests["dice"]["p_value"]
        summary["mean_delta_ssim"] = float(np.mean([r["delta_ssim"] for r in rows]))
    _write_json(out / "summary.json", summary)
    _figures(rows, tags, out)
    return summary


def _figures(rows: list[dict], tags: list[str], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.5))
    for ax, metric in zip(axes, ("dice", "nsd")):
        ax.boxplot([[r[f"{t}_{metric}"] for r in rows] for t in tags])
        ax.set_xticks(range(1, len(tags) + 1), tags)  # not boxplot(tick_labels=): matplotlib < 3.9
        ax.set_title(metric.upper())
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "scores_boxplot.png", dpi=100)
    plt.close(fig)
