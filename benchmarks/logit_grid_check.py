"""Where the bundled model's mask lies: its logits read on the grid it was trained on (``logit_offset``,
model/logit_grid.py) against the same file read as SAM's centred grid (the inference before 2026-12-06).

Tight boxes on one split of the default data, Dice and NSD at 2 px, at the films' own size (512 px) and
upscaled ``--scale`` times (bilinear film, nearest mask: a hospital-size film with the same anatomy).

    python benchmarks/logit_grid_check.py --split val --scale 6 --out benchmarks/results/twelfth/logit_grid_val.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from scipy.stats import wilcoxon

from napari_adaqat import open_model
from napari_adaqat.data.boxes import mask_box
from napari_adaqat.data.dataset import discover, load_pair
from napari_adaqat.metrics import score_masks
from napari_adaqat.model.formats.container import META_KEY, write_safetensors
from napari_adaqat.model.loading import DEFAULT_MODEL


def centred_copy(model: Path, folder: Path) -> Path:
    """The same tensors with ``logit_offset`` taken out of the spec: read as SAM's grid."""
    with safe_open(str(model), "pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    meta["spec"].pop("logit_offset", None)
    return write_safetensors(folder / "centred.safetensors", load_file(str(model)), meta)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/cxr/permissive_512")
    parser.add_argument("--split", default="val", help="train / val (never the test split for a choice)")
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--scale", type=int, default=6, help="also score the films upscaled this many times (1: not)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pairs, split = discover(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        models = {"on its grid": open_model(args.model, device="cpu"),
                  "as SAM's grid (before)": open_model(centred_copy(args.model, Path(tmp)), device="cpu")}
    rows = []
    for name in split[args.split]:
        image, mask = load_pair(pairs[name])
        big = None if args.scale <= 1 else np.asarray(Image.fromarray(np.uint8(np.clip(image, 0, 1) * 255)).resize(
            (image.shape[1] * args.scale, image.shape[0] * args.scale), Image.BILINEAR))
        big_mask = np.kron(mask, np.ones((args.scale, args.scale), bool))
        sizes = {"512": (image, mask), f"x{args.scale}": (big, big_mask)} if args.scale > 1 else {"512": (image, mask)}
        for size, (film, ref) in sizes.items():
            for model, seg in models.items():
                s = score_masks(seg.segment(film, mask_box(ref)), ref, nsd_tolerance_px=2.0)
                rows.append({"name": name, "size": size, "model": model, "dice": s["dice"], "nsd2": s["nsd"]})
    summary = {}
    for size in dict.fromkeys(r["size"] for r in rows):
        per = {m: np.array([[r["dice"], r["nsd2"]] for r in rows if r["size"] == size and r["model"] == m])
               for m in models}
        a, b = per["on its grid"], per["as SAM's grid (before)"]
        summary[size] = {"films": len(a), "dice": [a[:, 0].mean(), b[:, 0].mean()],
                         "nsd2": [a[:, 1].mean(), b[:, 1].mean()],
                         "nsd_better": int((a[:, 1] > b[:, 1]).sum()), "dice_better": int((a[:, 0] > b[:, 0]).sum()),
                         "p_nsd": float(wilcoxon(a[:, 1], b[:, 1]).pvalue) if (a != b).any() else 1.0}
        print(f"{args.split} {size}: {len(a)} films; Dice {a[:, 0].mean():.4f} (before {b[:, 0].mean():.4f}, better on "
              f"{summary[size]['dice_better']}); NSD@2px {a[:, 1].mean():.4f} (before {b[:, 1].mean():.4f}, better on "
              f"{summary[size]['nsd_better']}, Wilcoxon p = {summary[size]['p_nsd']:.2g})")
    if args.out:
        args.out.write_text(json.dumps({"command_args": vars(args) | {"out": str(args.out), "model": str(args.model)},
                                        "summary": summary, "rows": rows}, indent=1, default=float))


if __name__ == "__main__":
    main()
