"""Where a model's error lies after 0..K simulated clicks (issue 32): wrong pixels within 2 px, 2-6 px and
over 6 px of the expert boundary, per film, on the ``test`` films of a data folder's split (a fold folder of
``benchmarks/cv_folds.py``: that fold's out-of-fold films).

The clicks follow the evaluation's rule (:func:`~napari_adaqat.metrics.clicks.next_click`, all clicks so far and
the previous ``low_res_logits`` as ``mask_input``) through the public API, with its default clip and clean-up.
Error within 2 px of the boundary is what NSD@2px forgives; clicks mostly remove the error over 6 px away.

    python benchmarks/click_error_bands.py /work/cvruns/v41/fold0/default_int8.safetensors /work/cv/fold0 \\
        [--clicks 3] [--out bands.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from napari_adaqat.data.boxes import mask_box
from napari_adaqat.data.dataset import discover
from napari_adaqat.inference.engine import Engine
from napari_adaqat.inference.segmenter import model_ref
from napari_adaqat.io import read_image, read_mask
from napari_adaqat.metrics import dice
from napari_adaqat.report.clicks import click_masks

BANDS = ((0.0, 2.0), (2.0, 6.0), (6.0, np.inf))  # distance to the expert boundary, px: (low, high]


def error_bands(wrong: np.ndarray, distance: np.ndarray) -> list[int]:
    """The count of ``wrong`` (H, W) bool pixels in each band of :data:`BANDS` of ``distance`` (H, W), each
    pixel's distance in px to the expert boundary."""
    return [int(np.sum(wrong & (distance > lo) & (distance <= hi))) for lo, hi in BANDS]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="model file")
    p.add_argument("data", type=Path, help="data folder whose split's 'test' films are scored (e.g. /work/cv/fold0)")
    p.add_argument("--clicks", type=int, default=3)
    p.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = p.parse_args(argv)
    found, split = discover(args.data)
    pairs = [(found[name].image, found[name].mask) for name in split["test"]]
    engine, model = Engine(), model_ref(args.model)
    bands = np.zeros((args.clicks + 1, len(BANDS)))
    dices = np.zeros(args.clicks + 1)
    area = 0
    for image_path, mask_path in tqdm(pairs, unit="film"):
        image, ref = read_image(image_path).pixels, read_mask(mask_path) != 0
        distance = np.where(ref, ndimage.distance_transform_edt(ref), ndimage.distance_transform_edt(~ref))
        masks = click_masks(engine, image, ref, mask_box(ref), model, args.clicks, clean=True, clip=True)
        for k, mask in enumerate(masks):
            bands[k] += error_bands(mask != ref, distance)
            dices[k] += dice(mask, ref)
        area += int(ref.sum())
    n = len(pairs)
    summary = {"model": args.model, "films": n, "mean_lung_px": area / n, "bands_px": ["0-2", "2-6", ">6"],
               "by_click": [{"clicks": k, "dice": dices[k] / n, "error_px_per_film": list(bands[k] / n)}
                            for k in range(args.clicks + 1)]}
    for row in summary["by_click"]:
        e = row["error_px_per_film"]
        print(f"{row['clicks']} clicks: Dice {row['dice']:.4f}; wrong px per film ≤2 px {e[0]:.0f}, 2-6 px {e[1]:.0f}, "
              f">6 px {e[2]:.0f}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
