"""Per-image scores of models against a reference, their summaries and paired tests.

One row per image: metrics at native resolution and at 256² per model tag (``model``,
``model2``, …, ``baseline``), and SSIM/ΔSSIM against the baseline.  Shared by
:mod:`.evaluate` (the pass over a dataset) and :mod:`.document` (the report).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from napari_adaqat.data import Pair, default_box, mask_box
from napari_adaqat.data.check import INVERTED_WHY, looks_inverted
from napari_adaqat.data.dataset import DataError, read_reference
from napari_adaqat.data.mask_grid import film_for_mask
from napari_adaqat.inference.engine import ONE_SHOT, Engine, ModelLike
from napari_adaqat.io import ImageData, read_image
from napari_adaqat.metrics import (
    EQUIVALENCE_MARGIN, score_masks, score_masks_at, summarize, tost_paired, wilcoxon_paired,
)

METRICS = ("dice", "iou", "nsd", "hd95")
SIZES = ("", "_256")  # native resolution, and 256² as the paper reports
BASELINE = "baseline"


def model_tags(n: int) -> list[str]:
    """Column tags of ``n`` models: ``model``, ``model2``, ``model3``, …"""
    return ["model" if i == 0 else f"model{i + 1}" for i in range(n)]


def ssim_columns(tag: str) -> tuple[str, str]:
    """(SSIM vs reference, ΔSSIM vs baseline) column names of a model tag."""
    return ("ssim_model_ref", "delta_ssim") if tag == "model" else (f"ssim_{tag}_ref", f"delta_ssim_{tag}")


def image_box(ref: np.ndarray, box_mode: str) -> np.ndarray:
    """The evaluation box: ``tight`` = the reference mask's bounding box (fixed, no jitter, as in the
    paper's evaluation); ``default`` = the whole image minus a 2 % margin."""
    return mask_box(ref) if box_mode == "tight" else default_box(ref.shape)


def score_pair(pair: Pair, models: ModelLike | Sequence[ModelLike], baseline: ModelLike | None,
               box_mode: str = "tight", nsd_tolerance: float = 2.0, clean: bool = False,
               engine: Engine | None = None, device: str = "cpu", image: ImageData | None = None,
               masks_as_given: bool = False) -> dict:
    """One image's row: metrics at native resolution (NSD tolerance and HD95 in mm when the image has
    a pixel spacing, else px; see ``units``) and at 256² (px), per model, then the baseline.
    ``image``: ``pair.image`` already read (else it is read here).  A mask that looks inverted (lung = black:
    :func:`~napari_adaqat.data.check.looks_inverted`) is refused (:class:`DataError`), unless ``masks_as_given``."""
    models = list(models) if isinstance(models, (list, tuple)) else [models]
    engine = engine or Engine(max_loaded=len(models) + 1, recheck_seconds=ONE_SHOT)
    ref = read_reference(pair)
    if not masks_as_given and looks_inverted(ref != 0):  # its scores would be of the background
        raise DataError(f"its mask {pair.mask.name} looks inverted ({INVERTED_WHY}): not scored; masks need lung = "
                        "white on black: invert it, or, if it is right as it is, score it with --masks-as-given")
    image = image if image is not None else read_image(pair.image)
    image = film_for_mask(image, ref.shape)  # (masks saved at another size of the film: on their grid)
    box = image_box(ref, box_mode)
    row: dict = {"name": pair.name, "box": " ".join(f"{v:.0f}" for v in box),
                 "units": "mm" if image.spacing is not None else "px"}
    results = {}
    for tag, model in zip(model_tags(len(models)), models):
        result = engine.predict(image, box, model, device, clean=clean)
        if baseline is not None:  # with a reference: SSIM(model, ref) and ΔSSIM against the baseline
            engine.add_maps(result, image, baseline, device, reference=ref)
        results[tag] = (result.mask, result.model_seconds)
        if baseline is not None and BASELINE not in results:
            results[BASELINE] = (result.baseline_mask, result.baseline_seconds)
        if baseline is not None:
            ssim_col, delta_col = ssim_columns(tag)
            results[tag] += (float(result.ssim_mean), float(result.delta_mean), ssim_col, delta_col)
    for tag, (mask, seconds, *ssim) in results.items():
        row[f"{tag}_seconds"] = round(seconds, 4)
        native = score_masks(mask, ref, spacing=image.spacing, nsd_tolerance_mm=nsd_tolerance,
                             nsd_tolerance_px=nsd_tolerance)
        small = score_masks_at(mask, ref, size=256, nsd_tolerance_px=nsd_tolerance)
        for m in METRICS:
            row[f"{tag}_{m}"] = native[m]
            row[f"{tag}_{m}_256"] = small[m]
    for tag, (_mask, _seconds, *ssim) in results.items():
        if ssim:
            row[ssim[2]], row[ssim[3]] = ssim[0], ssim[1]
    return row


def json_safe(value):
    """inf/nan → None (``null``), so the report is strict JSON that jq and browsers accept."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(json_safe(data), indent=1, allow_nan=False))


UNIT_METRICS = ("nsd", "hd95")  # native NSD (its tolerance) and HD95 are in mm or px, as each film's spacing


def metric_keys(rows: list[dict]) -> list[tuple[str, str, str | None]]:
    """(summary key, per_image.csv metric, unit or None) of every metric summarised and tested: native HD95 and
    NSD once per unit when films in mm and in px are mixed (``hd95_mm``, ``hd95_px``: one mean or test over mm
    and px values would mean nothing), else once."""
    units = sorted({r["units"] for r in rows})
    keys = []
    for m in METRICS:
        for s in SIZES:
            if not s and m in UNIT_METRICS and len(units) > 1:
                keys += [(f"{m}_{u}", m, u) for u in units]
            else:
                keys.append((f"{m}{s}", f"{m}{s}", None))
    return keys


def _values(rows: list[dict], tag: str, metric: str, unit: str | None) -> list[float]:
    return [r[f"{tag}_{metric}"] for r in rows if unit is None or r["units"] == unit]


def summaries(rows: list[dict], tag: str) -> dict:
    """Per-metric summaries (:func:`metric_keys`); with mixed units the native ``hd95``/``nsd`` are empty."""
    out = {key: summarize(_values(rows, tag, metric, unit)) for key, metric, unit in metric_keys(rows)}
    for m in UNIT_METRICS:
        out.setdefault(m, summarize([]))  # mixed units: no summary over both (the per-unit ones are there)
    return out


def paired_tests(rows: list[dict], tag: str) -> dict:
    """Wilcoxon signed-rank (with the rank-biserial effect size) of ``tag`` against the baseline, per metric
    (:func:`metric_keys`: with mixed units, native HD95/NSD per unit)."""
    tests = {key: wilcoxon_paired(_values(rows, tag, metric, unit), _values(rows, BASELINE, metric, unit))
             for key, metric, unit in metric_keys(rows)}
    for m in UNIT_METRICS:  # mixed units: no test over both (n 0), as summaries() keeps an empty summary
        tests.setdefault(m, wilcoxon_paired([], []))
    return tests


def equivalence_tests(rows: list[dict], tag: str, margin: float = EQUIVALENCE_MARGIN) -> dict:
    """Paired TOST (:func:`~napari_adaqat.metrics.tost_paired`) of ``tag`` against the baseline on Dice,
    native and at 256², within ±``margin``."""
    return {f"dice{s}": tost_paired([r[f"{tag}_dice{s}"] for r in rows], [r[f"{BASELINE}_dice{s}"] for r in rows],
                                    margin) for s in SIZES}
