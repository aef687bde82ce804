"""The report's tables: Table 1 (scores against the baseline) and Table 2 (model files).

Rows are plain dicts of exact values (written to ``tables.json``); :func:`markdown_table` and
:func:`html_table` format them for ``report.md`` and ``index.html``.
"""
from __future__ import annotations

import html
import os
from pathlib import Path

from napari_adaqat.model.adalora import AdaLoRAConfig
from napari_adaqat.report.model_info import file_report, preset_report
from napari_adaqat.report.scores import BASELINE, METRICS, SIZES

ALPHA = 0.05
LABELS = {"dice": "Dice", "iou": "IoU", "nsd": "NSD", "hd95": "HD95"}


def verdict(test: dict, metric: str) -> str:
    """One plain sentence on a paired test: significant or not, and which way."""
    p, diff = test.get("p_value"), test.get("median_diff")
    if p is None or test.get("n", 0) < 2:
        return "too few pairs to test"
    better_is_lower = metric.startswith("hd95")
    if p >= ALPHA:
        ranked = test.get("n_nonzero", test["n"])
        if ranked < 6:  # the exact two-sided p is at least 2/2**ranked = 0.0625 for 5
            return (f"no significant difference (p = {p:.3g} ≥ {ALPHA}); with {ranked} differing pairs the test "
                    "cannot reach p < 0.05 (it needs at least 6)")
        return f"no significant difference (p = {p:.3g} ≥ {ALPHA})"
    effect = test.get("effect_size")  # the sign of the ranked pairs; the median is 0 when most pairs tie
    higher = effect > 0 if effect else (diff is not None and diff > 0)
    word = "higher" if higher else "lower"
    good = higher != better_is_lower
    return f"significantly {word} than the baseline ({'better' if good else 'worse'}; p = {p:.3g} < {ALPHA})"


def equivalence_verdict(test: dict) -> str:
    """One plain sentence on a paired TOST (:func:`~napari_adaqat.metrics.tost_paired`)."""
    if test.get("n", 0) < 2:
        return "too few pairs to test equivalence"
    points = f"±{test['margin'] * 100:g} Dice points"
    if test["equivalent"]:
        return f"equivalent within {points} (TOST p = {test['p_value']:.3g})"
    return f"not shown equivalent within {points} (TOST p = {test['p_value']:.3g} ≥ {test['alpha']:g})"


def summary_keys(stats: dict) -> list[str]:
    """The metric keys of one model's summary in table order: native HD95/NSD per unit (``hd95_mm``,
    ``hd95_px``) where the films mix mm and px (:func:`~napari_adaqat.report.scores.metric_keys`)."""
    keys = []
    for metric in METRICS:
        for size in SIZES:
            per_unit = [k for k in (f"{metric}_mm", f"{metric}_px") if k in stats] if not size else []
            keys += per_unit or [f"{metric}{size}"]
    return keys


def table1(summary: dict, tags: list[str]) -> list[dict]:
    """One row per model (then the baseline) and metric: mean ± std, median [IQR], n (of the pairs in the
    split), Wilcoxon p, rank-biserial effect size and the verdict, and on Dice the equivalence (TOST)
    verdict, at native resolution and at 256²."""
    rows = []
    names = {**summary.get("models", {}), BASELINE: summary.get("baseline_label", "baseline")}
    for tag in tags + ([BASELINE] if BASELINE in summary else []):
        for key in summary_keys(summary[tag]):
            stats = summary[tag][key]
            row = {"model": tag, "name": names.get(tag, tag), "metric": key, "n": stats["n"],
                   "n_total": summary.get("n_total", summary.get("n")), "equivalence": "", "equivalence_p": None,
                   "mean": stats["mean"], "std": stats["std"], "median": stats["median"], "q1": stats["q1"],
                   "q3": stats["q3"], "p_value": None, "effect_size": None, "verdict": ""}
            test = summary.get("wilcoxon", {}).get(tag, {}).get(key)
            if test is not None:  # (below 2 pairs no p or effect: only the verdict that says so)
                tested = test.get("n", 0) >= 2
                row.update(p_value=test["p_value"] if tested else None,
                           effect_size=test["effect_size"] if tested else None, verdict=verdict(test, key))
            tost = summary.get("equivalence", {}).get(tag, {}).get(key)
            if tost is not None:
                row.update(equivalence=equivalence_verdict(tost), equivalence_p=tost["p_value"])
            rows.append(row)
    return rows


def _trainable(meta_report: dict, spec_name: str, image_size: int) -> int | None:
    """Trainable parameters of the run that made a file, from its recorded training config."""
    cfg = (meta_report.get("provenance") or {}).get("train_config") or {}
    mode, stage = cfg.get("mode"), cfg.get("stage")
    if not mode:
        return None
    try:
        adapters = AdaLoRAConfig.from_dict(cfg["adalora"]) if isinstance(cfg.get("adalora"), dict) else None
        if stage == 2:
            choice = (cfg.get("qat") or {}).get("trainable") or cfg.get("preset", "paper")
            report = preset_report(spec_name, mode="qat", image_size=image_size, config=adapters)
            return report.get(f"stage2_trainable_{choice}")
        return preset_report(spec_name, mode=mode, image_size=image_size, config=adapters)["trainable"]["effective"]
    except (KeyError, TypeError, ValueError):
        return None


def table2(files: dict[str, Path]) -> list[dict]:
    """One row per model file: total and trainable parameters, reduction factor, size on disk,
    measured compression against FP32, the paper's arithmetic ratio and the INT8 layer count."""
    rows = []
    for tag, path in files.items():
        info = file_report(path)
        total = info["parameters"]["total"]
        cfg = (info.get("provenance") or {}).get("train_config") or {}
        compression = info.get("compression", {})
        name = cfg.get("model_type")
        trainable = _trainable(info, name, cfg.get("image_size")) if name else None
        if trainable:  # a vote (model/vote_unet.py) is trained whole, apart from the model: its parameters count
            trainable += info["parameters"].get("vote_unet", 0)
        rows.append({
            "model": tag, "file": str(path), "bytes": os.path.getsize(path), "total_params": total,
            "trainable_params": trainable, "reduction": (total / trainable) if trainable else None,
            "ratio_vs_official_fp32": compression.get("ratio_vs_official"),
            "ratio_vs_own_fp32": compression.get("ratio_vs_own_fp32"),
            "arithmetic_ratio": (info.get("paper_arithmetic_compression") or {}).get("ratio")
            if info.get("int8_layers") else None,  # the paper's arithmetic describes INT8 files only
            "int8_layers": info.get("int8_layers", 0) or 0, "profile": info.get("profile"),
        })
    return rows


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None, or nan (e.g. the std of one value)
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) >= 1e4 or (value and abs(value) < 1e-3) else f"{value:.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table1_cells(row: dict) -> list[str]:
    n = f"{row['n']} of {row['n_total']}" if row.get("n_total") is not None else str(row["n"])
    return [row["name"], row["metric"], n, f"{_fmt(row['mean'])} ± {_fmt(row['std'])}",
            f"{_fmt(row['median'])} [{_fmt(row['q1'])}, {_fmt(row['q3'])}]", _fmt(row["p_value"], 3),
            _fmt(row["effect_size"], 3), row["verdict"], row.get("equivalence", "")]


TABLE1_HEAD = ["model", "metric", "n", "mean ± std", "median [IQR]", "Wilcoxon p", "effect r", "vs baseline",
               "equivalence (TOST)"]
TABLE2_HEAD = ["model", "file", "MB on disk", "parameters", "trainable", "reduction", "× vs official FP32",
               "× vs own FP32", "paper arithmetic ×", "INT8 layers"]


def table2_cells(row: dict) -> list[str]:
    return [row["model"], Path(row["file"]).name, f"{row['bytes'] / 1e6:.2f}", _fmt(row["total_params"]),
            _fmt(row["trainable_params"]), _fmt(row["reduction"], 3), _fmt(row["ratio_vs_official_fp32"], 3),
            _fmt(row["ratio_vs_own_fp32"], 3), _fmt(row["arithmetic_ratio"], 4), str(row["int8_layers"])]


def markdown_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in cells) + " |" for cells in body]
    return "\n".join(lines)


def html_table(head: list[str], body: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"
