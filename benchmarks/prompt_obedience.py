"""Does a model take instructions? Boxes around one lung, boxes in an empty corner, and corrective clicks
(issue 32), through the public API (``open_model`` → ``Segmenter.predict``, clipping on, as users get it).

Films: a split of ``--data`` (default: the ``val`` films recorded in the model file's provenance, which the
model never trained on; ``--split train`` are films it trained on: say so when quoting them).  Per film:

* **one lung**: for each of the reference mask's two largest regions (its lungs), the box around it (tight,
  or pushed out by ``--jitter`` px per side): Dice against that lung, and the mask pixels outside the box
  plus the clipping margin (0 by construction with clipping; ``--no-clip`` shows what the model does);
* **corner**: a 40 x 40 box in the film's top-left corner with no lung in it: mask pixels returned;
* **clicks**: ``report.evaluate(..., clicks=K)``, the standard corrective-click rule (Dice after 0..K clicks,
  NoC@90/95), for the model and its FP32 baseline.

    python benchmarks/prompt_obedience.py --model runs/v4/model_int8.safetensors \
        --baseline runs/v4/baseline_fp32.safetensors --work /tmp/obey [--split val] [--clicks 3]

Prints one JSON summary (also WORK/summary.json).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from napari_adaqat import open_model
from napari_adaqat.data.boxes import mask_box
from napari_adaqat.inference.postprocess import clip_margin
from napari_adaqat.metrics import dice
from napari_adaqat.model.formats.container import read_adaqat_metadata
from napari_adaqat.report.evaluate import evaluate
from napari_adaqat.train.prompts import lungs

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr" / "permissive_512"


def films(model: str, split: str, data: Path) -> list[str]:
    """The ``split`` films recorded in ``model``'s provenance (the bundled default's when "default")."""
    from napari_adaqat.model.loading import DEFAULT_BASELINE
    meta = read_adaqat_metadata(DEFAULT_BASELINE if model == "default" else model)
    names = meta["provenance"].get("split", {}).get(split)
    if not names:
        raise SystemExit(f"{model}: no '{split}' split recorded in its provenance")
    return sorted(n for n in names if (data / "images" / f"{n}.png").is_file())


def outside(mask: np.ndarray, box: np.ndarray) -> int:
    """Mask pixels outside ``box`` grown by the clipping margin."""
    m = clip_margin(mask.shape)
    yy, xx = np.mgrid[: mask.shape[0], : mask.shape[1]]
    inside = (xx >= box[0] - m) & (xx <= box[2] + m) & (yy >= box[1] - m) & (yy <= box[3] + m)
    return int((mask & ~inside).sum())


def obedience(model: str, names: list[str], data: Path, jitter: float, clip: bool) -> dict:
    """One-lung and corner-box figures of ``model`` on ``names``."""
    segmenter = open_model(model, device="cpu", clip=clip)
    one_lung, spill, corner = [], [], []
    for name in names:
        image = np.array(Image.open(data / "images" / f"{name}.png"))
        reference = np.array(Image.open(data / "masks" / f"{name}.png")) > 127
        segmenter.set_image(image)
        h, w = reference.shape
        for lung in lungs(reference):
            box = mask_box(lung) + np.array([-jitter, -jitter, jitter, jitter])
            box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
            mask, _ = segmenter.predict(boxes=box)
            one_lung.append(dice(mask, lung))
            spill.append(outside(mask, box))
        corner_box = np.array([0, 0, 39, 39], dtype=float)
        if not reference[:40, :40].any():
            corner.append(int(segmenter.predict(boxes=corner_box)[0].sum()))
    return {"one_lung_dice_mean": round(float(np.mean(one_lung)), 4),
            "one_lung_dice_min": round(float(np.min(one_lung)), 4),
            "one_lung_ge_0.93": f"{int(np.sum(np.array(one_lung) >= 0.93))} of {len(one_lung)}",
            "one_lung_pixels_outside_box_max": int(max(spill)),
            "corner_box_mask_pixels": corner}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="default", help="INT8 model file (default: the bundled model)")
    p.add_argument("--baseline", default=None, help="its FP32 baseline (default: the bundled one with default)")
    p.add_argument("--data", type=Path, default=DATA, help="images/ + masks/ (default permissive_512)")
    p.add_argument("--split", default="val", help="which recorded split of the model (default val)")
    p.add_argument("--work", type=Path, required=True, help="scratch folder (the film set, the report)")
    p.add_argument("--clicks", type=int, default=3, help="simulated corrective clicks (default 3)")
    p.add_argument("--jitter", type=float, default=0.0, help="one-lung boxes pushed out by this many px per side")
    p.add_argument("--no-clip", action="store_true", help="score the model's own masks, without box clipping")
    args = p.parse_args(argv)
    baseline = args.baseline or ("default" if args.model == "default" else None)
    names = films(args.model, args.split, args.data)
    folder = args.work / "films"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for name in names:
            target = folder / sub / f"{name}.png"
            if not target.exists():
                os.link(args.data / sub / f"{name}.png", target)
    (folder / "split.json").write_text(json.dumps({"train": [], "val": [], "test": names}))
    summary = {"model": args.model, "baseline": baseline, "split": args.split, "n": len(names),
               "clip": not args.no_clip, "jitter_px": args.jitter,
               "int8": obedience(args.model, names, args.data, args.jitter, not args.no_clip)}
    if baseline:
        summary["fp32"] = obedience(baseline, names, args.data, args.jitter, not args.no_clip)
    report = evaluate(folder, model=args.model, baseline=baseline, out_dir=args.work / "report", split="test",
                      document=False, device="cpu", clicks=args.clicks)
    summary["clicks"] = report.get("clicks")
    (args.work / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
