"""The report's figures (matplotlib, Agg): distributions, paired plots, Fig. 2 panels, worst cases.

Each function writes one PNG into the report folder and returns its file name (relative links).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from napari_adaqat.report.scores import BASELINE, METRICS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


SHOWN_SIDE = 1024  # a panel is ~300 px wide at 100 dpi: more pixels only cost time and memory


def for_display(array: np.ndarray, side: int = SHOWN_SIDE, average: bool = False) -> np.ndarray:
    """(H, W[, C]) → at most ``side`` px a side, for a small panel (a native 3000-4000 px film in a fraction of the
    time and memory): every k-th row and column (a view), or with ``average`` the mean of each k × k block
    (float32; a film's fine patterns, e.g. a 3-px anti-scatter grid, would alias to false stripes)."""
    step = max(1, -(-max(array.shape[:2]) // side))
    if step == 1 or not average:
        return array[::step, ::step]
    h, w = array.shape[0] // step * step, array.shape[1] // step * step  # (the last partial block: left out)
    blocks = np.asarray(array[:h, :w], dtype=np.float32).reshape(h // step, step, w // step, step, *array.shape[2:])
    return blocks.mean(axis=(1, 3))


def _save(fig, out: Path, name: str) -> str:
    if fig.get_layout_engine() is None:  # (a figure made with layout="constrained" places its own title)
        fig.tight_layout()
    fig.savefig(out / name, dpi=100)
    _plt().close(fig)
    return name


def distributions(rows: list[dict], tags: list[str], out: Path, name: str = "scores_boxplot.png") -> str:
    """Per-metric boxplots with every image's point on top (jittered), one box per model.  Where the films mix mm
    and px, NSD and HD95 are shown at 256² (px of that grid for every film: one axis of mm and px would mix them)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.2 * len(METRICS), 3.6))
    rng = np.random.default_rng(0)
    mixed = len({r["units"] for r in rows}) > 1
    for ax, shown in zip(axes, METRICS):
        metric = f"{shown}_256" if mixed and shown in ("nsd", "hd95") else shown
        data = [np.array([r[f"{t}_{metric}"] for r in rows], dtype=float) for t in tags]
        data = [d[np.isfinite(d)] for d in data]
        ax.boxplot(data, showfliers=False)
        for i, d in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.12, 0.12, d.size), d, s=10, alpha=0.6, color="black", zorder=3)
        ax.set_xticks(range(1, len(tags) + 1), tags, rotation=20)  # not boxplot(tick_labels=): matplotlib < 3.9
        ax.set_title(shown.upper() + (" at 256²" if metric != shown else "")
                     + (" (lower is better)" if shown == "hd95" else ""), fontsize=10)
        ax.grid(alpha=0.3)
    return _save(fig, out, name)


def paired(rows: list[dict], tag: str, out: Path, metric: str = "dice") -> str:
    """Per-image ``metric`` of a model against the baseline, with the line y = x."""
    plt = _plt()
    x = np.array([r[f"{BASELINE}_{metric}"] for r in rows], dtype=float)
    y = np.array([r[f"{tag}_{metric}"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.scatter(x, y, s=14)
    finite = np.concatenate([x[np.isfinite(x)], y[np.isfinite(y)]])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    pad = 0.02 * (hi - lo or 1.0)
    ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="grey", lw=1, ls="--", label="y = x")
    ax.set_xlabel(f"baseline {metric}")
    ax.set_ylabel(f"{tag} {metric}")
    ax.set_title(f"{tag} vs baseline\nabove the line: {tag} better", fontsize=10)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, out, f"paired_{tag}_{metric}.png")


@dataclass
class Panel:
    """One image of Fig. 2: the film, its reference, and SSIM maps (H, W) in [-1, 1]."""

    name: str
    image: np.ndarray
    reference: np.ndarray
    ssim_baseline: Optional[np.ndarray]
    ssim_models: dict[str, np.ndarray]  # tag -> SSIM(model, reference)
    delta_models: dict[str, np.ndarray]  # tag -> SSIM(model, ref) - SSIM(baseline, ref)
    why: str  # "best", "median", "worst" (by the baseline's Dice) or "asked for"


def fig2_panel(panel: Panel, out: Path) -> str:
    """Image, ground truth, SSIM(baseline, GT), SSIM(model, GT) and ΔSSIM (diverging, centred at 0),
    each map with its colorbar."""
    plt = _plt()
    maps = []
    if panel.ssim_baseline is not None:
        maps.append(("SSIM(baseline, GT)", panel.ssim_baseline, "viridis", 0.0, 1.0))
    for tag, ssim in panel.ssim_models.items():
        maps.append((f"SSIM({tag}, GT)", ssim, "viridis", 0.0, 1.0))
        if tag in panel.delta_models:
            delta = panel.delta_models[tag]
            m = max(0.05, float(np.nanmax(np.abs(delta))))
            maps.append((f"ΔSSIM {tag} − baseline\n(green: {tag} better)", delta, "RdYlGn", -m, m))
    n = 2 + len(maps)
    fig, axes = plt.subplots(1, n, figsize=(3.0 * n, 3.4))
    image = for_display(panel.image, average=True)
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title(f"{panel.name}\n({panel.why})", fontsize=8)
    axes[1].imshow(image, cmap="gray")
    axes[1].contour(for_display(panel.reference, average=True), levels=[0.5], colors="lime", linewidths=1)
    axes[1].set_title("ground truth", fontsize=9)
    for ax, (title, data, cmap, vmin, vmax) in zip(axes[2:], maps):
        im = ax.imshow(for_display(data), cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    for ax in axes:
        ax.set_axis_off()
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in panel.name)
    return _save(fig, out, f"fig2_{panel.why.replace(' ', '_')}_{safe}.png")


def worst_cases(items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray, float]], out: Path) -> str:
    """A strip of the lowest-Dice images: (name, image, reference, prediction, Dice) each (the arrays may
    be :func:`for_display` views), with the reference outlined in green and the prediction in red."""
    plt = _plt()
    fig, axes = plt.subplots(1, max(1, len(items)), figsize=(2.6 * max(1, len(items)), 3.2), squeeze=False,
                             layout="constrained")  # (tight_layout puts the panels' titles under the figure's)
    for ax, (name, image, ref, pred, score) in zip(axes[0], items):
        image, ref, pred = (for_display(a, average=True) for a in (image, ref, pred))  # (one grid: contours on it)
        ax.imshow(image, cmap="gray")
        ax.contour(ref, levels=[0.5], colors="lime", linewidths=1)
        if pred.any():
            ax.contour(pred, levels=[0.5], colors="red", linewidths=1)
        ax.set_title(f"{name[:24]}\nDice {score:.3f}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle("lowest Dice first — green: ground truth, red: model", fontsize=9)
    return _save(fig, out, "worst_cases.png")
