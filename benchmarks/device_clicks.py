"""Box and corrective clicks through the public API on a device, against the same on the CPU (gpu_check part 5).

A model file (default: the bundled one) gets a vote if it carries none (an 8-channel U-Net with random weights,
in a temporary file: what matters here is that every path of a voted model runs on the device), then on each
film: a tight box, 3 clicks by ``adaqat evaluate``'s rule (each with the previous ``low_res_logits`` as
``mask_input``), one box with two rows of clicks, and points alone.  The CPU answers the same prompts (the device's
clicks, replayed) and each mask is compared with the CPU's (Dice); the JSON also has the device's median click time.

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
from napari_adaqat.metrics import dice
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


def prompts(seg, image: np.ndarray, reference: np.ndarray, clicks: list | None = None
            ) -> tuple[list[np.ndarray], list[float], list]:
    """One film's prompts (box, up to 3 clicks, 2 rows of clicks, points alone) → their masks, the clicks'
    seconds and the clicks made.  ``clicks``: replay these (x, y, label) instead of choosing them from the
    masks, so that two devices answer the same prompts."""
    seg.set_image(image)
    box = mask_box(reference)
    masks, seconds, made = [], [], []
    mask, pred = seg.predict(box)
    masks.append(mask)
    for step in range(3):
        click = next_click(mask, reference) if clicks is None else (clicks[step] if step < len(clicks) else None)
        if click is None:
            break
        made.append(click)
        points, labels = np.array([c[:2] for c in made]), np.array([c[2] for c in made])
        t = time.perf_counter()
        mask, pred = seg.predict(box, points, labels, mask_input=pred.low_res_logits)
        seconds.append(time.perf_counter() - t)
        masks.append(mask)
    if made:
        points, labels = np.array([c[:2] for c in made], dtype=float), np.array([c[2] for c in made])
        masks.extend(seg.predict(np.stack([box, box]), np.stack([points, points[::-1]]),
                                 np.stack([labels, labels[::-1]]))[1].masks)  # raw, one per row
        masks.append(seg.predict(point_coords=points, point_labels=labels)[0])
    return masks, seconds, made


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
            masks, times, clicks = prompts(on_device, image, reference)
            cpu_masks, _, _ = prompts(on_cpu, image, reference, clicks)  # the device's clicks, replayed
            agreement += [float(dice(a, b)) for a, b in zip(masks, cpu_masks)]
            seconds += times
    if not agreement:
        raise SystemExit(f"device_clicks.py: no film with a mask in {args.films}")
    report = {"device": args.device, "model": str(args.model), "films": len(films), "prompts": len(agreement),
              "min_dice_vs_cpu": round(min(agreement), 4), "median_click_ms": round(1000 * statistics.median(seconds), 1)
              if seconds else None}
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report))
    return 0 if report["min_dice_vs_cpu"] >= 0.98 else 1


if __name__ == "__main__":
    sys.exit(main())
