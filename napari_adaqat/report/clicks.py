"""Simulated corrective clicks (``adaqat evaluate --clicks K``): Dice after 0..K clicks and NoC.

The standard click rule of interactive segmentation (RITM, SAM §A, micro-sam): after the box, each
next click goes to the point farthest from the boundary of the largest error region of the mask the
user sees (after clipping and clean-up) — positive (1 = lung) in a missed region, negative (0 = not
lung) in a false one — and every call passes all clicks so far plus the previous prediction's
``low_res_logits`` as ``mask_input``.  The calls go through the public API
(:meth:`~napari_adaqat.inference.engine.Engine.predict` → :meth:`Segmenter.predict
<napari_adaqat.inference.segmenter.Segmenter.predict>`), as a user's clicks would.

NoC@t (number of clicks): the fewest clicks after which Dice ≥ t (0: the box alone), capped at K: an image
that never reaches t counts K, and the summary counts such images (``not_reached``).
"""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np

from napari_adaqat.inference.engine import Engine, ModelLike
from napari_adaqat.inference.predictor import FilmLike
from napari_adaqat.metrics import dice
from napari_adaqat.metrics.clicks import next_click
from napari_adaqat.metrics.stats import summarize

NOC_THRESHOLDS = (0.90, 0.95)


def noc(dices: list[float], threshold: float) -> int:
    """Clicks needed to reach ``threshold`` Dice (index into ``dices``: after 0, 1, …, K clicks), capped at K."""
    return next((i for i, d in enumerate(dices) if d >= threshold), len(dices) - 1)


def click_masks(engine: Engine, image: FilmLike, reference: np.ndarray, box: Optional[np.ndarray], model: ModelLike,
                clicks: int, device: str = "cpu", clean: bool = False, clip: Optional[bool] = None
                ) -> Iterator[np.ndarray]:
    """``model``'s masks (H, W) bool on ``image`` after 0 (``box`` alone), 1, …, ``clicks`` simulated clicks
    (:func:`next_click` against ``reference`` (H, W)), each call with all clicks so far and the previous
    ``low_res_logits`` as ``mask_input``.  Once the mask equals the reference, no more clicks are made."""
    reference = reference != 0
    result = engine.predict(image, box, model, device, clean=clean, clip=clip)
    yield result.mask
    coords: list[tuple[float, float]] = []
    labels: list[int] = []
    for _ in range(clicks):
        click = next_click(result.mask, reference)
        if click is not None:
            coords.append(click[:2])
            labels.append(click[2])
            result = engine.predict(image, box, model, device, clean=clean, clip=clip,
                                    point_coords=np.array(coords), point_labels=np.array(labels),
                                    mask_input=result.low_res_logits)
        yield result.mask


def click_dices(engine: Engine, image: FilmLike, reference: np.ndarray, box: Optional[np.ndarray], model: ModelLike,
                clicks: int, device: str = "cpu", clean: bool = False, clip: Optional[bool] = None) -> list[float]:
    """Dice against ``reference`` (H, W) of each mask of :func:`click_masks` (after 0, 1, …, ``clicks`` clicks)."""
    return [float(dice(mask, reference != 0))
            for mask in click_masks(engine, image, reference, box, model, clicks, device, clean, clip)]


def click_columns(tag: str, dices: list[float]) -> dict:
    """``per_image.csv`` columns of one model: ``{tag}_dice_click0..K``, ``{tag}_noc90``, ``{tag}_noc95``."""
    row = {f"{tag}_dice_click{i}": d for i, d in enumerate(dices)}
    for t in NOC_THRESHOLDS:
        row[f"{tag}_noc{round(t * 100)}"] = noc(dices, t)
    return row


def click_summary(rows: list[dict], tags: list[str], clicks: int) -> dict:
    """``summary["clicks"]``: per tag, the mean Dice after each click and NoC@90/95 (mean, median, and
    ``not_reached``: the images whose Dice is below the threshold after every one of 0..K clicks)."""
    out: dict = {"k": clicks, "thresholds": list(NOC_THRESHOLDS)}
    for tag in tags:
        if f"{tag}_dice_click0" not in rows[0]:
            continue
        entry = {"n": len(rows), "dice_by_click": [summarize([r[f"{tag}_dice_click{i}"] for r in rows])["mean"]
                                                   for i in range(clicks + 1)]}
        for t in NOC_THRESHOLDS:
            values = [r[f"{tag}_noc{round(t * 100)}"] for r in rows]
            unreached = sum(max(r[f"{tag}_dice_click{i}"] for i in range(clicks + 1)) < t for r in rows)
            entry[f"noc{round(t * 100)}"] = {"mean": float(np.mean(values)), "median": float(np.median(values)),
                                             "not_reached": int(unreached)}
        out[tag] = entry
    return out


def click_table(summary: dict) -> tuple[list[str], list[list[str]]]:
    """(head, body) of the clicks table: one row per model, mean Dice after 0..K clicks, NoC@90/95."""
    clicks = summary["clicks"]
    k = clicks["k"]
    head = ["model", *[f"Dice {i} click{'s' if i != 1 else ''}" for i in range(k + 1)],
            "NoC@90 mean / median", "NoC@95 mean / median"]
    body = []
    for tag, entry in clicks.items():
        if not isinstance(entry, dict):
            continue
        cells = [tag, *[f"{d:.4f}" for d in entry["dice_by_click"]]]
        for n in ("noc90", "noc95"):
            missed = entry[n].get("not_reached", 0)
            cells.append(f"{entry[n]['mean']:.2f} / {entry[n]['median']:g}"
                         + (f" ({missed} of {entry['n']} not reached)" if missed else ""))
        body.append(cells)
    return head, body


def click_section(summary: dict) -> list[tuple[str, str, list[str], list[list[str]], list[str]]]:
    """The report section of the clicks table (none without ``--clicks``)."""
    if "clicks" not in summary:
        return []
    k = summary["clicks"]["k"]
    text = (f"After the box, up to {k} simulated corrective clicks per image: each goes to the point farthest from "
            "the boundary of the largest error region (positive in a missed region, negative in a false one), with "
            "all clicks so far and the previous low-resolution logits as mask_input, through the public API. "
            f"NoC@90 / NoC@95: clicks needed to reach Dice 0.90 / 0.95, capped at {k}: an image that never reaches it "
            f"counts {k}, and how many did not is in brackets. Per image: per_image.csv.")
    head, body = click_table(summary)
    return [("Corrective clicks", text, head, body, [])]
