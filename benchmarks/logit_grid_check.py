"""Where a model's mask lies: its logits read on the grid it was trained on (``logit_offset``,
model/logit_grid.py) against the same file read as SAM's centred grid (the inference before 2026-12-06);
with ``--unet``, the U-Net reference read both ways too, and each reading of the model against the U-Net's.

Tight boxes on one split of a data folder, Dice and NSD at 2 px, at the films' own size and, with ``--scale``,
upscaled (bilinear film, nearest mask: a hospital-size film with the same anatomy).

    python benchmarks/logit_grid_check.py --split val --scale 6 --out benchmarks/results/twelfth/logit_grid_val.json
    python benchmarks/logit_grid_check.py --data /tmp/cv/fold0 --split test --scale 1 \\
        --model RUNS/fold0/runs/base/checkpoints/best.safetensors --unet UNET/fold0/unet.safetensors --out F.json
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
from unet_reference import load_unet, predict_mask  # noqa: E402

from napari_adaqat import open_model  # noqa: E402
from napari_adaqat.data.boxes import mask_box  # noqa: E402
from napari_adaqat.data.dataset import discover, load_pair  # noqa: E402
from napari_adaqat.metrics import score_masks, wilcoxon_paired  # noqa: E402
from napari_adaqat.model.formats.container import META_KEY, write_safetensors  # noqa: E402
from napari_adaqat.model.formats.vote_file import remove_vote  # noqa: E402
from napari_adaqat.model.loading import DEFAULT_MODEL  # noqa: E402

ON_GRID, AS_SAM = "on its grid", "as SAM's grid (before)"


def own_and_centred(model: Path, folder: Path) -> tuple[Path, Path]:
    """The model's own tensors (a vote left out: its logits lie on the vote's own grid), as they are and with
    ``logit_offset`` taken out of the spec (read as SAM's grid)."""
    with safe_open(str(model), "pt") as f:
        meta = json.loads(f.metadata()[META_KEY])
    if "spec" in meta:  # a model file
        return (remove_vote(model, folder / "own.safetensors"),
                remove_vote(model, folder / "centred.safetensors", spec_drop=("logit_offset",)))
    meta["model"]["spec"].pop("logit_offset", None)  # a run's checkpoint (a stage never carries a vote)
    return model, write_safetensors(folder / "centred.safetensors", load_file(str(model)), meta)


def segmenters(model: Path | None, unet: Path | None) -> dict:
    """Reading name → a function (film, box) → mask."""
    out = {}
    if model is not None:
        with tempfile.TemporaryDirectory() as tmp:
            grid, sam = (open_model(path, device="cpu") for path in own_and_centred(model, Path(tmp)))
        out = {f"model {ON_GRID}": grid.segment, f"model {AS_SAM}": sam.segment}
    if unet is not None:
        net = load_unet(unet)
        out[f"U-Net {ON_GRID}"] = lambda film, box: predict_mask(net, film)
        out[f"U-Net {AS_SAM}"] = lambda film, box: predict_mask(net, film, offset=0.0)
    return out


def compare(rows: list[dict], size: str, a: str, b: str) -> dict:
    """Paired Dice and NSD of reading ``a`` against reading ``b`` on the films of one size."""
    sel = {m: sorted((r["name"], r["dice"], r["nsd2"]) for r in rows if r["size"] == size and r["model"] == m)
           for m in (a, b)}
    out = {}
    for i, metric in ((1, "dice"), (2, "nsd2")):
        x, y = [r[i] for r in sel[a]], [r[i] for r in sel[b]]
        test = wilcoxon_paired(x, y)
        out[metric] = {"a": float(np.mean(x)), "b": float(np.mean(y)), "median_diff": test["median_diff"],
                       "a_better": int(np.sum(np.subtract(x, y) > 0)), "n": len(x), "p": test["p_value"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/cxr/permissive_512", help="images/ + masks/ (+ split.json)")
    parser.add_argument("--split", default="val", help="train / val, or a fold's test (never the 9-film test split "
                        "of the default data for a choice)")
    parser.add_argument("--model", default=str(DEFAULT_MODEL), help="a model file or a run's checkpoint ('none': "
                        "the U-Net alone)")
    parser.add_argument("--unet", type=Path, help="a U-Net reference (benchmarks/unet_reference.py) to read both ways")
    parser.add_argument("--scale", type=int, default=6, help="also score the films upscaled this many times (1: not)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pairs, split = discover(args.data)
    model = None if args.model == "none" else Path(args.model)
    readings = segmenters(model, args.unet)
    rows = []
    for name in split[args.split]:
        image, mask = load_pair(pairs[name])
        sizes = {"native": (image, mask)}
        if args.scale > 1:
            big = Image.fromarray(np.uint8(np.clip(image, 0, 1) * 255))
            big = np.asarray(big.resize((image.shape[1] * args.scale, image.shape[0] * args.scale), Image.BILINEAR))
            sizes[f"x{args.scale}"] = (big, np.kron(mask, np.ones((args.scale, args.scale), bool)))
        for size, (film, ref) in sizes.items():
            for reading, segment in readings.items():
                s = score_masks(segment(film, mask_box(ref)), ref, nsd_tolerance_px=2.0)
                rows.append({"name": name, "size": size, "model": reading, "dice": s["dice"], "nsd2": s["nsd"]})
    pairs_to_compare = [(f"model {ON_GRID}", f"model {AS_SAM}")] if model is not None else []
    if args.unet is not None:
        pairs_to_compare.append((f"U-Net {ON_GRID}", f"U-Net {AS_SAM}"))
        if model is not None:
            pairs_to_compare += [(f"model {ON_GRID}", f"U-Net {ON_GRID}"), (f"model {AS_SAM}", f"U-Net {AS_SAM}")]
    summary = {}
    for size in dict.fromkeys(r["size"] for r in rows):
        for a, b in pairs_to_compare:
            c = summary.setdefault(size, {})[f"{a} - {b}"] = compare(rows, size, a, b)
            print(f"{args.split} {size}, {a} against {b} ({c['dice']['n']} films): " + "; ".join(
                f"{m} {v['a']:.4f} vs {v['b']:.4f} (median diff {v['median_diff']:+.4f}, better on {v['a_better']}, "
                f"p = {v['p']:.2g})" for m, v in c.items()))
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": summary,
                                        "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
