"""``report.md`` and ``index.html``: the paper's evidence in one self-contained folder.

Table 1 (scores with Wilcoxon p and effect size against the baseline), Table 2 (model files), the
Fig. 2 panels (best, median and worst image by the baseline's Dice, plus any asked for), the Fig. 3
quantization-error plots of each INT8 model, distributions, paired plots, the worst cases and the
provenance.  Every figure is a PNG next to the documents: ``report.md`` links it, ``index.html`` embeds it (so the
page alone, e-mailed, shows it).  ``tables.json`` holds the tables' exact values.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import json
import platform
from pathlib import Path
from typing import Sequence

import numpy as np

from napari_adaqat import __version__
from napari_adaqat.data import Pair
from napari_adaqat.inference.engine import Engine, ModelLike, ModelRef
from napari_adaqat.data.dataset import read_reference
from napari_adaqat.data.mask_grid import film_for_mask
from napari_adaqat.io import read_image
from napari_adaqat.model.formats.model_file import read_model_metadata
from napari_adaqat.report.quant_figures import quantization_report
from napari_adaqat.report.clicks import click_section
from napari_adaqat.report import figures
from napari_adaqat.report.scores import BASELINE, image_box, model_tags, write_json
from napari_adaqat.report.tables import (
    TABLE1_HEAD, TABLE2_HEAD, html_table, markdown_table, table1, table1_cells, table2, table2_cells,
)
from napari_adaqat.util.provenance import git_commit

N_WORST = 6
CSS = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
       "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
       "th{background:#f0f0f0}img{max-width:100%;border:1px solid #ddd}figure{margin:6px 0}"
       "figure.small{display:inline-block;vertical-align:top;width:32%;margin:0 4px 6px 0}"
       "figcaption{font-size:13px;color:#555}"
       "code{background:#f6f6f6}")


def _panel_picks(rows: list[dict], has_baseline: bool, show: Sequence[str]) -> list[tuple[str, str]]:
    """(image name, why) for Fig. 2: best, median and worst by the baseline's Dice (the model's
    without a baseline), then the names in ``show``."""
    key = f"{BASELINE}_dice" if has_baseline else "model_dice"
    ranked = sorted(rows, key=lambda r: (np.nan_to_num(r[key], nan=-1.0), r["name"]))
    picks = [(ranked[-1]["name"], "best"), (ranked[len(ranked) // 2]["name"], "median"), (ranked[0]["name"], "worst")]
    unique = list({name: why for name, why in reversed(picks)}.items())[::-1]  # one panel per image (few images)
    known = {r["name"] for r in rows}
    return unique + [(name, "asked for") for name in dict.fromkeys(show) if name in known]


def _panel(pair: Pair, why: str, models: list[ModelLike], base: ModelLike | None, engine: Engine, device: str,
           box_mode: str, clean: bool) -> figures.Panel:
    ref = read_reference(pair)
    film = film_for_mask(read_image(pair.image), ref.shape)
    image, box = film.pixels, image_box(ref, box_mode)
    ssim_models, deltas, ssim_base = {}, {}, None
    for tag, model in zip(model_tags(len(models)), models):
        result = engine.predict(film, box, model, device, clean=clean)
        engine.add_maps(result, film, base, device, reference=ref)
        ssim_models[tag] = result.ssim
        if base is not None:
            deltas[tag] = result.delta
            ssim_base = result.ssim - result.delta  # SSIM(baseline, GT): ΔSSIM = SSIM(model) - SSIM(baseline)
    return figures.Panel(pair.name, image, ref, ssim_base, ssim_models, deltas, why)


def _worst(rows: list[dict], pairs: dict[str, Pair], model: ModelLike, engine: Engine, device: str,
           box_mode: str, clean: bool, out: Path) -> str:
    """The strip of the ``N_WORST`` lowest-Dice images of the first model, masks overlaid."""
    lowest = sorted(rows, key=lambda r: np.nan_to_num(r["model_dice"], nan=-1.0))[:N_WORST]
    items = []
    for row in lowest:
        pair = pairs[row["name"]]
        ref = read_reference(pair)
        film = film_for_mask(read_image(pair.image), ref.shape)
        image, result = film.pixels, engine.predict(film, image_box(ref, box_mode), model, device, clean=clean)
        small = [figures.for_display(a, average=True) for a in (image, ref, result.mask)]  # (six films: GBs)
        items.append((row["name"], *small, float(row["model_dice"])))
    return figures.worst_cases(items, out)


def _model_files(models: list[ModelLike], base: ModelLike | None) -> dict[str, Path]:
    """{tag: model file} of the models given as files (predictor objects have none)."""
    named = dict(zip(model_tags(len(models)), models))
    if base is not None:
        named[BASELINE] = base
    return {tag: m.resolved() for tag, m in named.items() if isinstance(m, ModelRef) and m.resolved().suffix == ".safetensors"}


def _fig3(files: dict[str, Path], base: ModelLike | None, engine: Engine, device: str, out: Path) -> dict[str, list[str]]:
    """Quantization-error plots for each INT8 model file: the INT8 rounding error ``w - q·s`` of the FP32
    baseline's weights in the layers that model stores as INT8 (the baseline is its FP32 source)."""
    plots: dict[str, list[str]] = {}
    if base is None:
        return plots
    base_sam = engine.predictor(base, device).sam
    for tag, path in files.items():
        if tag == BASELINE:
            continue
        meta = read_model_metadata(path) if path.is_file() else {}
        if not meta.get("int8_layers"):
            continue
        variant = (meta.get("qat") or {}).get("variant", "full")
        folder = out / f"fig3_{tag}"
        result = quantization_report(base_sam, folder, variant=variant)
        plots[tag] = [f"{folder.name}/{name}" for name in result.get("figures", {}).values()]
    return plots


def _provenance(summary: dict, command: str | None, device: str) -> dict:
    return {"command": command, "data": summary["data"], "split": summary["split"],
            "split_file": summary.get("split_file"), "box rule": summary["box"] + (
                " (the reference mask's bounding box, fixed)" if summary["box"] == "tight" else
                " (the whole image minus 2 %)"), "masks cleaned": summary["clean"],
            "NSD tolerance": _tolerance_text(summary),
            "napari-adaqat": __version__, "commit": git_commit(), "device": device,
            "python": platform.python_version(), "date": dt.datetime.now().isoformat(timespec="seconds")}


def _tolerance_text(summary: dict) -> str:
    """The NSD tolerance with its unit; ``mm|px`` (films with and without a pixel spacing) spelt out."""
    tol, units = f"{summary['nsd_tolerance']:g}", summary["nsd_tolerance_units"]
    return f"{tol} mm on films with a pixel spacing, {tol} px on the others" if units == "mm|px" else f"{tol} {units}"


def _figure_names(value) -> list[str]:
    """The file names in a report's ``figures`` part (strings, lists and dicts of them)."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return [name for item in items for name in _figure_names(item)]


REPORT_FILES = ("per_image.csv", "skipped.csv", "summary.json", "wilcoxon.json", "tables.json", "report.md", "index.html",
                "scores_boxplot.png", "worst_cases.png")  # what every report may write, under common names


def _ours(out: Path) -> bool:
    """Whether ``out`` holds a report of ``adaqat evaluate`` (finished: its summary; or stopped: its table)."""
    try:
        if "n_total" in json.loads((out / "summary.json").read_text()):
            return True
    except (OSError, ValueError, TypeError):
        pass
    try:
        with (out / "per_image.csv").open() as fh:
            return fh.readline().startswith("name,box,units,")
    except (OSError, UnicodeDecodeError):
        return False


def check_report_folder(out: Path) -> None:
    """Refuse, before any work, a folder that holds files a report would replace but that no report wrote
    (a user's own ``index.html`` or ``summary.json``); an earlier report of ours is replaced."""
    clashes = [name for name in REPORT_FILES if (out / name).exists() and (out / name).stat().st_size]
    if clashes and not _ours(out):
        raise ValueError(f"--out {out} holds {', '.join(clashes)}, not written by adaqat evaluate, which a report "
                         "would replace; choose another --out folder")


SCORE_FILES = ("per_image.csv", "skipped.csv", "summary.json", "wilcoxon.json")  # what a run without the documents writes


def clear_earlier_report(out: Path, documents: bool = True) -> bool:
    """Remove an earlier report of ours in ``out`` before a new one is scored, so that a run stopped midway never
    leaves the old documents beside the new scores (:func:`check_report_folder` has made sure they are ours): the
    files this run writes (``documents``: also the documents, tables and figures; else only :data:`SCORE_FILES`).
    Returns whether there was one."""
    earlier = [out / name for name in (REPORT_FILES if documents else SCORE_FILES) if (out / name).is_file()]
    if not earlier:
        return False
    if documents:
        remove_earlier_figures(out)
    for path in earlier:
        path.unlink(missing_ok=True)
    return True


def remove_earlier_figures(out: Path) -> None:
    """Delete the figures that an earlier report in ``out`` listed in its ``tables.json`` (a new report may
    show other films or models, and must not leave the old panels beside its own); nothing else is touched,
    and nothing outside ``out``."""
    try:
        figs = json.loads((out / "tables.json").read_text()).get("figures")
    except (OSError, ValueError, AttributeError):
        return
    root = out.resolve()
    for name in _figure_names(figs):
        path = (out / name).resolve()
        if path.suffix == ".png" and root in path.parents and path.is_file():
            path.unlink()
            leftover = path.parent / "report.json"  # fig3_TAG/ also holds its quantization report
            if path.parent != root and path.parent.name.startswith("fig3_") and leftover.is_file():
                leftover.unlink()
            if path.parent != root and not any(path.parent.iterdir()):
                path.parent.rmdir()


def write_report(out: Path, rows: list[dict], summary: dict, models: list[ModelLike], base: ModelLike | None,
                 chosen: list[Pair], *, engine: Engine, device: str = "cpu", show: Sequence[str] = (),
                 command: str | None = None) -> dict:
    """Write the figures, ``tables.json``, ``report.md`` and ``index.html`` into ``out``; return the
    document's parts (tables, figure names, provenance).  An earlier report's figures are removed first."""
    remove_earlier_figures(out)
    tags = model_tags(len(models))
    scored = tags + ([BASELINE] if base is not None else [])
    pairs = {p.name: p for p in chosen}
    box_mode, clean = summary["box"], summary["clean"]
    figs = {"distributions": figures.distributions(rows, scored, out)}
    if base is not None:
        figs["paired"] = [figures.paired(rows, tag, out) for tag in tags]
    figs["fig2"] = [figures.fig2_panel(_panel(pairs[name], why, models, base, engine, device, box_mode, clean), out)
                    for name, why in _panel_picks(rows, base is not None, show)]
    figs["worst"] = _worst(rows, pairs, models[0], engine, device, box_mode, clean, out)
    files = _model_files(models, base)
    figs["fig3"] = _fig3(files, base, engine, device, out)
    parts = {"table1": table1(summary, tags), "table2": table2(files),
             "provenance": _provenance(summary, command, device), "figures": figs, "models": summary.get("models")}
    write_json(out / "tables.json", parts)
    (out / "report.md").write_text(_markdown(parts, summary))
    (out / "index.html").write_text(_html(parts, summary, out))
    return parts


def _sections(parts: dict, summary: dict) -> list[tuple[str, str, list[str], list[list[str]] | None, list[str]]]:
    """(title, text, table head, table body or None, images) of every section, for both documents."""
    figs = parts["figures"]
    tolerance = _tolerance_text(summary)
    names = ", ".join(f"{t} = {n}" for t, n in (parts.get("models") or {}).items())
    baseline = summary.get("baseline_label")
    return [
        ("Table 1: segmentation scores", f"{_n_of(summary)} images; models: {names}"
         + (f"; baseline = {baseline}" if baseline else "") + f". NSD tolerance {tolerance}; "
         "HD95 in mm for images with a pixel spacing, else px (where both kinds are scored, native NSD and HD95 have "
         "a row per unit, `_mm` and `_px`, each over its own films). Metrics without a suffix are at native resolution, "
         "`_256` at 256² as in the paper: both masks resized to 256 × 256 (nearest neighbour), and there the NSD "
         f"tolerance ({summary['nsd_tolerance']:g}) and HD95 are in pixels of that grid (one is two native pixels of "
         "a 512² film), never mm. NSD: the share of both masks' boundary pixels within the tolerance of the other "
         "boundary; HD95: 95th percentile of the boundary-to-boundary distances of both directions pooled. An "
         "empty prediction scores Dice, IoU and NSD 0 and has no HD95 (inf in per_image.csv): the HD95 "
         "rows leave it out, so their n is smaller (the Wilcoxon test counts it as the largest difference). "
         "p: paired Wilcoxon signed-rank test against the baseline (scipy, pairs with equal scores dropped; "
         "below 6 differing pairs it cannot reach p < 0.05); effect r: matched-pairs rank-biserial correlation (+1: "
         "the model's score is higher on every image that differs; for HD95 higher is worse)." + _tost_text(summary),
         TABLE1_HEAD, [table1_cells(r) for r in parts["table1"]], []),
        *click_section(summary),
        ("Skipped pairs", _skipped_text(summary), ["pair", "reason"] if summary.get("skipped") else [],
         [list(split_reason(line)) for line in summary.get("skipped", [])] or None, []),
        ("Table 2: model files", "Parameters from each file; trainable parameters from the training run it "
         "records; reduction: parameters ÷ trainable (the paper's 16.6×). Compression measured on disk: "
         "× vs official FP32 = the official SAM checkpoint's size ÷ the file's (– where the architecture has "
         "none), × vs own FP32 = the same network's FP32 weights (4 bytes each) ÷ the file's; paper arithmetic × "
         "= the paper's ratio from the Linear layers only (INT8 files); INT8 layers: layers stored as INT8.",
         TABLE2_HEAD, [table2_cells(r) for r in parts["table2"]], []),
        ("Fig. 2: SSIM maps", f"Best, median and worst image by the {'baseline' if baseline else 'model'}'s Dice "
         "(plus any asked for with --show): the film, the ground truth (green outline), the local SSIM between each "
         "model's probability map and the ground-truth mask (yellow: they agree, dark: they differ)"
         + (", and ΔSSIM = the model's SSIM − the baseline's (green: the model is closer to the ground truth, red: "
            "the baseline is closer, pale: the same)." if baseline else ". (No baseline: no ΔSSIM.)"),
         [], None, figs["fig2"]),
        ("Fig. 3: quantization error", "For each INT8 model: the INT8 rounding error of its FP32 baseline's "
         "weights in the layers it stores as INT8." + ("" if figs["fig3"] else " (No INT8 model with a baseline.)"),
         [], None, [f for plots in figs["fig3"].values() for f in plots]),
        ("Distributions", "Every image is a point: a box per model and metric (median and quartiles), then "
         "each model's Dice against the baseline's.", [], None, [figs["distributions"], *figs.get("paired", [])]),
        ("Worst cases", f"The {N_WORST} lowest-Dice images of the first model: look here first.", [], None,
         [figs["worst"]]),
        ("Provenance", "", ["", ""], [[k, "" if v is None else str(v)] for k, v in parts["provenance"].items()], []),
    ]


CAPTIONS = {  # file stem (Fig. 3: in fig3_TAG/) -> what the figure shows
    "qq_plot": "Q-Q plot of the INT8 rounding errors w − q(w) against a normal distribution (on the red line: "
               "normally distributed errors)",
    "error_hist": "histogram of the rounding errors w − q(w) of a sample of the weights",
    "error_vs_abs_w": "the error against |w| (equal-count bins): mean ± std and mean |error|",
    "per_layer_error": "the error per layer, mean ± std (layer names in report.json beside it)",
    "fp32_vs_int8": "each sampled FP32 weight against its INT8 value, dequantized (r near 1: little is lost)",
    "scores_boxplot": "Dice, IoU, NSD and HD95 per model: box = median and quartiles, a dot per image",
    "worst_cases": "the lowest-Dice images of the first model: ground truth green, model red",
}


def caption(image: str) -> str:
    """One line under each figure of the report, from its file name."""
    path = Path(image)
    if path.parent.name.startswith("fig3_"):
        return f"{path.parent.name[5:]}: {CAPTIONS.get(path.stem, path.stem)}"
    if path.stem.startswith("paired_"):
        tag = path.stem[len("paired_"):].rsplit("_", 1)[0]
        return f"{tag}'s Dice against the baseline's, a dot per image: above the diagonal, {tag} is better"
    for why in ("best", "median", "worst", "asked_for"):
        if path.stem.startswith(f"fig2_{why}_"):
            name = path.stem[len(f"fig2_{why}_"):]
            return f"{name}: asked for with --show" if why == "asked_for" else f"{name}: the {why} image by Dice"
    return CAPTIONS.get(path.stem, path.stem)


def _n_of(summary: dict) -> str:
    """``"5 of 6"``: the pairs scored of the pairs in the split."""
    return f"{summary['n']} of {summary.get('n_total', summary['n'])}"


def _tost_text(summary: dict) -> str:
    if "equivalence" not in summary:
        return ""
    margin = summary["equivalence_margin"]
    return (f" Equivalence (Dice only): paired two one-sided t-tests (TOST) against the baseline with a margin of "
            f"±{margin:g} Dice (±{margin * 100:g} Dice points; --equivalence-margin): 'equivalent' when both "
            "one-sided p < 0.05, i.e. the 90 % confidence interval of the mean difference lies inside the margin. "
            "A Wilcoxon p < 0.05 says the models differ; only the TOST says by how little.")


def _skipped_text(summary: dict) -> str:
    skipped = summary.get("skipped") or []
    notes = "".join(f" Note: {line}." for line in summary.get("notes") or [])
    if not skipped:
        return f"None: every pair of the split was scored ({_n_of(summary)}).{notes}"
    return (f"{len(skipped)} of the {summary.get('n_total')} pairs of the split were not scored; Table 1 counts "
            f"only the others.{notes}")


def split_reason(line: str) -> tuple[str, str]:
    """(file, reason) of a skip line ``"PATH: reason"``."""
    path, sep, reason = line.partition(": ")
    return (path, reason) if sep else ("", line)


def _markdown(parts: dict, summary: dict) -> str:
    lines = ["# Segmentation report", ""]
    for title, text, head, body, images in _sections(parts, summary):
        lines += [f"## {title}", ""] + ([text, ""] if text else [])
        if body is not None:
            lines += [markdown_table(head, body), ""]
        lines += [f"![{Path(i).stem}]({i})  \n*{caption(i)}*\n" for i in images]
    return "\n".join(lines)


def _figure(image: str, kind: str = "", out: Path | None = None) -> str:
    """An image with its caption (:func:`caption`) under it; its PNG is embedded (a data URI) when it is in ``out``,
    so that ``index.html`` alone, e-mailed or moved, still shows every figure."""
    text = html.escape(caption(image))
    path = None if out is None else out / image
    src = (f"data:image/png;base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
           if path is not None and path.suffix == ".png" and path.is_file() else html.escape(image))
    return (f'<figure class="{kind}"><img src="{src}" alt="{text}" title="{html.escape(image)}">'
            f"<figcaption>{text}</figcaption></figure>")


def _html(parts: dict, summary: dict, out: Path | None = None) -> str:
    body = ["<h1>Segmentation report</h1>"]
    for title, text, head, rows, images in _sections(parts, summary):
        body.append(f"<h2>{html.escape(title)}</h2>")
        if text:
            body.append(f"<p>{html.escape(text)}</p>")
        if rows is not None:
            body.append(html_table(head, rows))
        small = [i for i in images if i.startswith(("fig3_", "paired_"))]  # side by side
        body += [_figure(i, "", out) for i in images if i not in small]
        if small:
            body.append("<div>" + "".join(_figure(i, "small", out) for i in small) + "</div>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>Segmentation report</title>"
            f"<style>{CSS}</style></head><body>" + "\n".join(body) + "</body></html>\n")
