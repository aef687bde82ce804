"""The U-Net vote probe (issue 32; BENCHMARKS.md, thirteenth and fourteenth sessions), out of fold.

Per film of a fold's test split, tight box around the reference: the model alone (the product's clip and clean-up,
then K standard corrective clicks, each passing the previous ``low_res_logits`` back), and the model with a U-Net's
vote, as a model file with that vote predicts (``napari_adaqat.model.vote_unet.combine``: the mean of the two
networks' logits, the model alone where the clicks flipped or pushed its answer), clipped and cleaned as the product
does.  The U-Net reference (``REF``, clip + clean-up) is scored beside them.

    python benchmarks/vote_probe.py FOLDS OUT.json --fold 1 2 --model "FOLDS_RUNS/fold{k}/default_int8.safetensors" \
        --vote "UNETS/fold{k}/unet.safetensors" --ref "UNETS/fold{k}/unet.safetensors" [--clicks 3] [--no-heart]

Prints each pooled comparison (paired Wilcoxon over all films of the folds given) and the pre-written rule's
verdict; writes every film's row to OUT.json.  ``--pool A.json B.json`` scores nothing: it pools the rows of earlier
outputs (e.g. fold 0 with folds 1 and 2) and summarizes them the same way (FOLDS, --fold, --model … unused).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from unet_reference import load_unet  # noqa: E402

from napari_adaqat import open_model  # noqa: E402
from napari_adaqat.data.boxes import mask_box  # noqa: E402
from napari_adaqat.data.conventions import changed_mask  # noqa: E402
from napari_adaqat.data.dataset import discover, load_pair  # noqa: E402
from napari_adaqat.metrics import score_masks, wilcoxon_paired  # noqa: E402
from napari_adaqat.metrics.clicks import next_click  # noqa: E402
from napari_adaqat.model.vote_unet import combine, vote_logits  # noqa: E402


def film_rows(seg, vote_net, ref_net, img: np.ndarray, ref: np.ndarray, k: int) -> dict[str, list[np.ndarray]]:
    """Masks after 0..k clicks per reading ('model', 'vote'), and the reference U-Net's mask ('unet')."""
    seg.set_image(img)
    box = mask_box(ref)
    vote = vote_logits(vote_net, img).numpy()
    first, pred = seg.predict(box)
    alone = pred.logits[0].numpy()
    out = {"unet": [seg.clean_mask(vote_logits(ref_net, img).numpy() > 0, box=box)]}
    for reading in ("model", "vote"):
        mask = first if reading == "model" else seg.clean_mask(alone + vote > 0, box=box)
        masks, coords, labels, mask_input = [mask], [], [], pred.low_res_logits
        for _ in range(k):
            click = next_click(mask, ref)
            if click is not None:
                coords.append(click[:2])
                labels.append(click[2])
                mask, now = seg.predict(box, np.array(coords), np.array(labels), mask_input)
                mask_input = now.low_res_logits
                if reading == "vote":  # the product's rule (model/vote_unet.py), on the model alone's logits
                    logits = combine(now.logits, torch.from_numpy(vote), torch.from_numpy(alone)[None])[0].numpy()
                    mask = seg.clean_mask(logits > 0, box=box, point_coords=np.array(coords),
                                          point_labels=np.array(labels))
            masks.append(mask)
        out[reading] = masks
    return out


def compare(rows: list[dict], a: str, b: str, key: str) -> dict:
    """Paired comparison of readings ``a`` and ``b`` on ``key``, film by film (the same films, each once)."""
    films_a = [(r["fold"], r["name"]) for r in rows if r["reading"] == a]
    films_b = [(r["fold"], r["name"]) for r in rows if r["reading"] == b]
    if films_a != films_b or len(set(films_a)) != len(films_a):
        raise SystemExit(f"{a} and {b} are not scored on the same films, each once (pooled the same file twice?)")
    x = [r[key] for r in rows if r["reading"] == a]
    y = [r[key] for r in rows if r["reading"] == b]
    t = wilcoxon_paired(x, y)
    return dict(mean=float(np.mean(x) - np.mean(y)), median=t["median_diff"], p=t["p_value"],
                better=int(np.sum(np.subtract(x, y) > 0)), n=len(x))


def summarize(rows: list[dict], clicks: int, no_heart: bool) -> dict:
    """Means per reading, the paired comparisons and the rule's verdict, over the films of ``rows``."""
    summary: dict = {}
    for reading in ("model", "vote", "unet"):
        mine = [r for r in rows if r["reading"] == reading]
        steps = range(clicks + 1) if reading != "unet" else range(1)
        summary[reading] = dict(dice=float(np.mean([r["dice"] for r in mine])),
                                nsd=float(np.mean([r["nsd"] for r in mine])),
                                clicks=[float(np.mean([r[f"click{i}"] for r in mine])) for i in steps])
    for a, b in (("vote", "unet"), ("vote", "model"), ("model", "unet")):
        for key in ("dice", "nsd"):
            summary[f"{a}-{b} {key}"] = compare(rows, a, b, key)
    for i in range(1, clicks + 1):
        summary[f"vote-model click{i}"] = compare(rows, "vote", "model", f"click{i}")
    last = f"vote-model click{clicks}"
    # the rule written before folds 1 and 2 were scored (BENCHMARKS.md, thirteenth session): on our masks, box alone
    # ahead of the U-Net (p < 0.05) with NSD >= its, and after the clicks >= the model alone - 0.002; on
    # heart-excluded masks (--no-heart), after the clicks >= the model alone - 0.005
    if no_heart:
        summary["rule_clicks_heart_excluded"] = bool(summary[last]["mean"] >= -0.005)
    else:
        summary["rule_box"] = bool(summary["vote-unet dice"]["p"] < 0.05 and summary["vote-unet dice"]["mean"] > 0
                                   and summary["vote"]["nsd"] >= summary["unet"]["nsd"])
        summary["rule_clicks"] = bool(summary[last]["mean"] >= -0.002)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folds", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--fold", type=int, nargs="+", default=[])
    ap.add_argument("--model", default="", help="model file, {k} = the fold")
    ap.add_argument("--vote", default="", help="the voting U-Net, {k} = the fold")
    ap.add_argument("--ref", default="", help="the reference U-Net scored beside, {k} = the fold")
    ap.add_argument("--clicks", type=int, default=3)
    ap.add_argument("--no-heart", action="store_true", help="score against heart-excluded references (1.4x)")
    ap.add_argument("--pool", type=Path, nargs="+", help="score nothing: pool the rows of these earlier outputs")
    args = ap.parse_args()
    rows: list[dict] = []
    for earlier in args.pool or []:  # (FOLDS, --fold, --model … are then only recorded, not read)
        rows += json.loads(earlier.read_text())["rows"]
    if args.pool:
        args.fold = []
    elif not (args.fold and args.model and args.vote and args.ref):
        ap.error("give --fold K … with --model, --vote and --ref, or --pool OUT.json …")
    for k in args.fold:
        fold = args.folds / f"fold{k}"
        pairs, split = discover(fold)
        seg = open_model(args.model.format(k=k), device="cpu")
        vote_net, ref_net = load_unet(Path(args.vote.format(k=k))), load_unet(Path(args.ref.format(k=k)))
        for name in split["test"]:
            img, ref = load_pair(pairs[name])
            ref = ref != 0
            if args.no_heart:
                ref = changed_mask(ref, "no-heart", heart_scale=1.4) != 0
            for reading, masks in film_rows(seg, vote_net, ref_net, img, ref, args.clicks).items():
                s = score_masks(masks[0], ref, nsd_tolerance_px=2.0)
                row = dict(fold=k, name=name, reading=reading, dice=float(s["dice"]), nsd=float(s["nsd"]))
                row.update({f"click{i}": float(score_masks(m, ref)["dice"]) for i, m in enumerate(masks)})
                rows.append(row)
            print(k, name, {r["reading"]: round(r["dice"], 4) for r in rows[-3:]}, flush=True)
    summary = summarize(rows, args.clicks, args.no_heart)
    print(json.dumps(summary, indent=1))
    args.out.write_text(json.dumps(dict(summary=summary, rows=rows), indent=1))


if __name__ == "__main__":
    main()
