"""Figures of the quantization error report (matplotlib, Agg backend, imported lazily): a Q-Q plot,
an error histogram, error vs |w|, per-layer errors and FP32 vs INT8 weights, next to ``report.json``.
The numbers are :func:`napari_adaqat.model.quant_report.quantization_error`'s."""
from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from napari_adaqat.model.quant_report import quantization_error

__all__ = ["quantization_report"]


def quantization_report(model: nn.Module, out_dir: str | Path, variant: str = "full",
                        max_points: int = 200_000, seed: int = 0) -> dict:
    """Write ``out_dir/report.json`` and the PNG figures; return the report dict (see
    :func:`~napari_adaqat.model.quant_report.quantization_error`), with ``figures`` (their file names)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report, sample = quantization_error(model, variant, max_points, seed)
    osm, osr, edges, sw, se = sample["osm"], sample["osr"], sample["edges"], sample["w"], sample["e"]
    slope, intercept, r = report["qq"]["slope"], report["qq"]["intercept"], report["qq"]["r"]
    bins, layers = report["error_vs_abs_w"], report["layers"]
    figs = {}
    step = max(1, osm.size // 20000)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(osm[::step], osr[::step], ".", ms=2, label="errors")
    ax.plot(osm[[0, -1]], slope * osm[[0, -1]] + intercept, "r-", label=f"fit (r={r:.3f})")
    ax.set(xlabel="normal theoretical quantiles", ylabel="ordered errors w - q(w)", title="Q-Q plot of INT8 errors")
    ax.legend()
    figs["qq_plot"] = _save(fig, out / "qq_plot.png", plt)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(se, bins=100)
    ax.set(xlabel="w - q(w)", ylabel="count (sample)", title="Quantization error")
    figs["error_hist"] = _save(fig, out / "error_hist.png", plt)

    centers = (edges[:-1] + edges[1:]) / 2
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(centers, bins["error_mean"], yerr=bins["error_std"], fmt="o-", ms=3, label="mean ± std")
    ax.plot(centers, bins["abs_error_mean"], "s--", ms=3, label="mean |error|")
    ax.set(xlabel="|w| (equal-count bins)", ylabel="error", title="Error vs |w|")
    ax.legend()
    figs["error_vs_abs_w"] = _save(fig, out / "error_vs_abs_w.png", plt)

    names = list(layers)
    fig, ax = plt.subplots(figsize=(max(6, len(names) * 0.12), 4))
    ax.errorbar(range(len(names)), [layers[n]["error_mean"] for n in names],
                yerr=[layers[n]["error_std"] for n in names], fmt="o", ms=2)
    ax.set(xlabel="layer index (see report.json)", ylabel="error mean ± std", title="Per-layer INT8 error")
    figs["per_layer_error"] = _save(fig, out / "per_layer_error.png", plt)

    fig, ax = plt.subplots(figsize=(5, 5))
    pick = slice(None, None, max(1, sw.size // 20000))
    ax.plot(sw[pick], (sw - se)[pick], ".", ms=1)
    ax.set(xlabel="FP32 weight", ylabel="INT8 weight (dequantized)",
           title=f"FP32 vs INT8 (r={report['overall']['pearson_r']:.6f})")
    figs["fp32_vs_int8"] = _save(fig, out / "fp32_vs_int8.png", plt)

    report["figures"] = figs
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _save(fig, path: Path, plt) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path.name
