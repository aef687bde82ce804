"""Box and corrective clicks through the public API on a device, against the same on the CPU (gpu_check part 5).

A model file (default: the bundled one) gets a vote if it carries none (an 8-channel U-Net with random weights,
in a temporary file: what matters here is that every path of a voted model runs on the device), then on each
film: a tight box, 3 clicks by ``adaqat evaluate``'s rule (each with the previous ``low_res_logits`` as
``mask_input``), one box with two rows of clicks, and points alone.  Each mask is compared with the CPU's
(Dice); the JSON also has the device's median time per prompt.

    python benchmarks/device_clicks.py --device cuda --out OUT/clicks.json [--films DIR] [-n 4]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from napari_adaqat import open_model
from napari_adaqat.data.boxes import mask_box
from napari_adaqat.data.dataset import discover, load_pair
from napari_adaqat.metrics.clicks import next_click
from napari_adaqat.model.formats.model_file import read_model_metadata
from napari_adaqat.model.formats.vote_file import add_vote
from napari_adaqat.model.vote_unet import VoteUNet

ROOT = Path(__file__).resolve().parents[1]


def voted_file(model: str, folder: Path) -> Path:
    """``model`` when it carries a vote, else a copy of it with a random 8-channel vote in ``folder``."""
    path = ROOT / "napari_adaqat" / "assets" / "default_int8.safetensors" if model == "default" else Path(model)
    if read_model_metadata(path).get("spec", {}).get("vote_unet"):
        return path
    torch.manual_seed(0)
    net = VoteUNet(8)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(folder / "unet.safetensors"))
    return add_vote(path, folder / "unet.safetensors", folder / "voted.safetensors", {"random": True})


def prompts(seg, image: np.ndarray, reference: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """The masks of one film's prompts (box, 3 clicks, 2 rows of clicks, points alone) and their seconds."""
    seg.set_image(image)
    box = mask_box(reference)
    masks, seconds, points, labels = [], [], [], []
    t = time.perf_counter()
    mask, pred = seg.predict(box)
    seconds.append(time.perf_counter() - t)
    masks.append(mask)
    for _ in range(3):
        click = next_click(mask, reference)
        if click is None:
            break
        points.append(click[:2])
        labels.append(click[2])
        t = time.perf_counter()
        mask, pred = seg.predict(box, np.array(points), np.array(labels), mask_input=pred.low_res_logits)
        seconds.append(time.perf_counter() - t)
        masks.append(mask)
    if points:
        rows = np.array([points, points[::-1]], dtype=float)
        row_labels = np.array([labels, labels[::-1]])
        masks.extend(seg.predict(np.stack([box, box]), rows, row_labels)[1].masks)  # raw, one per row
        masks.append(seg.predict(point_coords=np.array(points), point_labels=np.array(labels))[0])
    return masks, seconds


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="default", help="a model file, or 'default' (the bundled one)")
    parser.add_argument("--films", type=Path, default=ROOT / "tests" / "data" / "cxr",
                        help="a data folder (images/ + masks/)")
    parser.add_argument("-n", type=int, default=4, help="films")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    pairs, _split = discover(args.films)
    films = [load_pair(pairs[name]) for name in sorted(pairs)[: args.n]]
    with tempfile.TemporaryDirectory() as tmp:
        model = voted_file(args.model, Path(tmp))
        on_device, on_cpu = open_model(model, device=args.device), open_model(model, device="cpu")
        agreement, seconds = [], []
        for image, reference in films:
            masks, times = prompts(on_device, image, reference)
            cpu_masks, _ = prompts(on_cpu, image, reference)
            if len(masks) != len(cpu_masks):  # the clicks went elsewhere: the masks before them differed
                agreement.append(0.0)
                continue
            agreement += [dice(a, b) for a, b in zip(masks, cpu_masks)]
            seconds += times[1:]  # the clicks (the box's first call may include warm-up)
    report = {"device": args.device, "model": str(args.model), "films": len(films), "prompts": len(agreement),
              "min_dice_vs_cpu": round(min(agreement), 4), "median_click_ms": round(1000 * statistics.median(seconds), 1)
              if seconds else None}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    return 0 if report["min_dice_vs_cpu"] >= 0.98 else 1


if __name__ == "__main__":
    sys.exit(main())
