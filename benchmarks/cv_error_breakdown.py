"""Where a box-prompted model's out-of-fold errors are, beside the U-Net reference's (issue 14).

For every test image of every fold (tight boxes, native resolution): missed lung (FN) and extra
mask (FP) pixels, split into those within 8 px of the box's border and those more than 4 px from the
expert boundary (whole missed or added regions, not a boundary a pixel off); and the box model's
Dice when its logits are thresholded at a few offsets from 0 (is it biased small or large?).

    python benchmarks/cv_error_breakdown.py /work/cv OUT.json --model "/work/cvruns/v3e/fold{k}/default_int8.safetensors" \
        --unet "/work/cvruns/unet140/fold{k}/unet.safetensors"
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).parent))
from unet_reference import load_unet, predict_mask  # noqa: E402

from napari_adaqat import open_model  # noqa: E402
from napari_adaqat.data.boxes import mask_box  # noqa: E402
from napari_adaqat.data.dataset import discover, load_pair  # noqa: E402
from napari_adaqat.metrics.overlap import dice  # noqa: E402

LOGIT_OFFSETS = (-1.0, -0.5, 0.0, 0.5, 1.0)
COUNTS = ("fn", "fp", "fn_at_box_edge", "fp_at_box_edge", "fn_deep", "fp_far")


def error_counts(pred: np.ndarray, ref: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(H, W) bool masks and an XYXY box → the pixel counts named in COUNTS."""
    yy, xx = np.mgrid[:ref.shape[0], :ref.shape[1]]
    near_box_edge = np.abs(np.minimum.reduce([xx - box[0], box[2] - xx, yy - box[1], box[3] - yy])) <= 8
    deep_inside = ndimage.distance_transform_edt(ref) > 4
    far_outside = ndimage.distance_transform_edt(~ref) > 4
    fn, fp = ref & ~pred, pred & ~ref
    return np.array([fn.sum(), fp.sum(), (fn & near_box_edge).sum(), (fp & near_box_edge).sum(),
                     (fn & deep_inside).sum(), (fp & far_outside).sum()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folds", type=Path, help="folder of fold0, fold1, ... (benchmarks/cv_folds.py)")
    parser.add_argument("out", type=Path, help="JSON to write")
    parser.add_argument("--model", required=True, help="box model's file, {k} for the fold")
    parser.add_argument("--unet", help="U-Net reference weights, {k} for the fold")
    args = parser.parse_args()
    totals = {"box model": np.zeros(len(COUNTS))} | ({"U-Net": np.zeros(len(COUNTS))} if args.unet else {})
    dice_at_offset, area_ratio = [], []
    for fold in sorted(p for p in args.folds.glob("fold*") if (p / "split.json").is_file()):
        k = int(fold.name.removeprefix("fold"))
        pairs, split = discover(fold)
        model = open_model(args.model.format(k=k), device="cpu", clean=False)
        net = load_unet(Path(args.unet.format(k=k))) if args.unet else None
        for name in tqdm(split["test"], desc=f"fold {k}", unit="image"):
            image, ref = load_pair(pairs[name])
            ref = ref > 0
            box = mask_box(ref)
            logits = model.set_image(image).prompt(box)[1].logits[0].numpy()
            totals["box model"] += error_counts(logits > 0, ref, box)
            if net is not None:
                totals["U-Net"] += error_counts(predict_mask(net, image), ref, box)
            dice_at_offset.append([dice(logits > t, ref) for t in LOGIT_OFFSETS])
            area_ratio.append(float((logits > 0).sum() / ref.sum()))
    result = {"counts": {m: dict(zip(COUNTS, map(int, c))) for m, c in totals.items()},
              "box_model_dice_at_logit_threshold": dict(zip(map(str, LOGIT_OFFSETS),
                                                            np.mean(dice_at_offset, 0).round(4).tolist())),
              "box_model_area_ratio": {"mean": float(np.mean(area_ratio)), "median": float(np.median(area_ratio))},
              "images": len(area_ratio), "model": args.model, "unet": args.unet}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
