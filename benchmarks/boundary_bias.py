"""Is a model's boundary biased inward or outward, out of fold?  For each fold's out-of-fold films (its split's
``test`` names), with a tight box: the mask's area against the reference's, the wrong pixels split into false
positives and false negatives, and Dice / NSD@2px of the mask as predicted, dilated by 1 px and eroded by 1 px.
A mask drawn too small gains from the dilation, one too large from the erosion; a mask whose boundary is only
noisy loses from both (issue 32: where the box's NSD lags the U-Net's).

Usage: python benchmarks/boundary_bias.py FOLDS OUT.json --model 0=PATH --model 1=PATH --model 2=PATH
(FOLDS holds fold<k>/{images,masks,split.json} from benchmarks/cv_folds.py; the model of fold k never trained on
its films).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from napari_adaqat import open_model
from napari_adaqat.data import mask_box
from napari_adaqat.metrics import score_masks

VARIANTS = {"as_is": lambda m: m, "dilate1": ndi.binary_dilation, "erode1": ndi.binary_erosion}


def film_row(model, image: np.ndarray, reference: np.ndarray) -> dict:
    """Area ratio, FP / FN pixels and Dice / NSD@2px of each variant for one film (reference (H, W) bool)."""
    mask = model.segment(image, mask_box(reference))
    row = {"area_ratio": float(mask.sum() / reference.sum()), "fp": int((mask & ~reference).sum()),
           "fn": int((~mask & reference).sum())}
    for tag, change in VARIANTS.items():
        scores = score_masks(change(mask), reference, nsd_tolerance_px=2)
        row[f"dice_{tag}"], row[f"nsd_{tag}"] = round(float(scores["dice"]), 5), round(float(scores["nsd"]), 5)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folds", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", action="append", required=True, metavar="K=PATH", help="fold k's model file")
    args = parser.parse_args()
    rows = []
    for spec in args.model:
        k, path = spec.split("=", 1)
        data = args.folds / f"fold{k}"
        model = open_model(path, device="cpu")
        for name in json.loads((data / "split.json").read_text())["test"]:
            image = np.array(Image.open(data / "images" / f"{name}.png"))
            reference = np.array(Image.open(data / "masks" / f"{name}.png")) > 127
            rows.append({"fold": int(k), "name": name, **film_row(model, image, reference)})
    summary = {"n": len(rows), "area_ratio_median": float(np.median([r["area_ratio"] for r in rows])),
               "fp_per_film": float(np.mean([r["fp"] for r in rows])),
               "fn_per_film": float(np.mean([r["fn"] for r in rows]))}
    for tag in VARIANTS:
        summary[tag] = [round(float(np.mean([r[f"dice_{tag}"] for r in rows])), 4),
                        round(float(np.mean([r[f"nsd_{tag}"] for r in rows])), 4)]
    args.out.write_text(json.dumps({"summary": summary, "models": args.model, "rows": rows}, indent=0))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
