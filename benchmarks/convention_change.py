"""Does ``--preset finetune`` teach the bundled model a hospital's mask convention, on a CPU, in minutes?

A simulated convention change of every development mask of permissive_512: ``--convention erode``, eroded by
``--erode`` px (the lung field drawn a little inside the ribs and the heart border), or ``above-line``, only
the lung above a horizontal line at ``--keep`` of the lung field's height (the bases left out), or
``no-heart``, the lung behind the heart left out (an ellipse at the lower middle of the left lung). Fine-tune films: ``--n-train`` films drawn
(seeded) from the bundled model's own training split; held-back films: the rest of that split
("train-rest", seen by the bundled model with the original masks, never with the new ones) and its
validation split ("val", never trained on). The bundled model's 9-film test split is never read.

Runs ``adaqat train --stage all --preset finetune`` (timed: the whole chain, wall clock) and scores the
bundled INT8 model and the fine-tuned INT8 model against the changed masks (``report.evaluate``, box =
the changed mask's box)::

    python benchmarks/convention_change.py --work /tmp/cc [--convention erode --erode 6 | --convention above-line
        --keep 0.8] [--n-train 20] [--set stage1.epochs=8]

Prints one JSON summary (also WORK/RUN_summary.json): Dice before/after per held-back set, gain, wall time,
the chain's CPU time (user + system: what it costs whatever else runs) and the load average seen.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from napari_adaqat.data.conventions import CONVENTIONS, changed_mask
from napari_adaqat.model.loading import DEFAULT_BASELINE
from napari_adaqat.model.formats.container import read_adaqat_metadata
from napari_adaqat.report.evaluate import evaluate

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cxr" / "permissive_512"


def write_set(src: Path, folder: Path, names: list[str], change) -> None:
    """``folder/images`` (hard links, else copies) + ``folder/masks`` (changed masks) for ``names``."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    for name in names:
        image = folder / "images" / f"{name}.png"
        if not image.exists():
            try:
                os.link(src / "images" / f"{name}.png", image)
            except OSError:
                image.write_bytes((src / "images" / f"{name}.png").read_bytes())
        mask = np.array(Image.open(src / "masks" / f"{name}.png")) > 127
        Image.fromarray(change(mask).astype(np.uint8) * 255).save(folder / "masks" / f"{name}.png")


def choose_films(n_train: int, seed: int) -> tuple[list[str], dict[str, list[str]]]:
    """(fine-tune films, {held-back set: films}) from the bundled model's recorded split."""
    split = read_adaqat_metadata(DEFAULT_BASELINE)["provenance"]["split"]
    train = sorted(split["train"])
    tune = sorted(np.random.default_rng(seed).choice(train, n_train, replace=False).tolist())
    return tune, {"train-rest": sorted(set(train) - set(tune)), "val": sorted(split["val"])}


def dice_by_set(report: Path, held: dict[str, list[str]]) -> dict:
    """Mean Dice of both models per held-back set (and all of them), from ``per_image.csv``."""
    rows = list(csv.DictReader((report / "per_image.csv").open()))
    out = {}
    for part, names in {**held, "all": sum(held.values(), [])}.items():
        chosen = [r for r in rows if r["name"] in set(names)]
        before = float(np.mean([float(r["model_dice"]) for r in chosen]))
        after = float(np.mean([float(r["model2_dice"]) for r in chosen]))
        out[part] = {"n": len(chosen), "before": round(before, 4), "after": round(after, 4),
                     "gain": round(after - before, 4)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="permissive_512 (images/, masks/)")
    p.add_argument("--work", type=Path, required=True, help="scratch folder: the sets, the run, the report")
    p.add_argument("--convention", choices=[*CONVENTIONS, "same"], default="erode",
                   help="the change (default erode; same: the masks as they are)")
    p.add_argument("--erode", type=int, default=6, help="erode: erosion in px (default 6)")
    p.add_argument("--keep", type=float, default=0.8, help="above-line: fraction of the lung height kept (default 0.8)")
    p.add_argument("--heart-scale", type=float, default=1.0,
                   help="no-heart: size of the removed ellipse (default 1.0; 1.4 matches the real heart-excluding sets' gap)")
    p.add_argument("--n-train", type=int, default=20, help="fine-tune films (default 20)")
    p.add_argument("--seed", type=int, default=0, help="which films (default 0)")
    p.add_argument("--preset", default="finetune", help="training preset (default finetune)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to adaqat train")
    p.add_argument("--run", default="run", help="run folder name inside --work (default run)")
    args = p.parse_args(argv)

    tune, held = choose_films(args.n_train, args.seed)
    def change(mask: np.ndarray) -> np.ndarray:
        if args.convention == "same":  # our own convention: what a fine-tune on it costs or gains
            return mask
        return changed_mask(mask, args.convention, args.erode, args.keep, args.heart_scale)
    write_set(args.data, args.work / "finetune", tune, change)
    write_set(args.data, args.work / "heldout", sum(held.values(), []), change)
    (args.work / "heldout" / "split.json").write_text(json.dumps({"train": [], "val": [],
                                                                  "test": sum(held.values(), [])}))
    run = args.work / args.run
    command = [sys.executable, "-m", "napari_adaqat", "train", "--stage", "all", "--preset", args.preset,
               "--data", str(args.work / "finetune"), "--out", str(run), "--device", "cpu"]
    command += [item for kv in args.set for item in ("--set", kv)]
    if (run / "chain.json").is_file():
        command.append("--resume")
    load_before, cpu_before = os.getloadavg(), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    subprocess.run(command, check=True)
    wall = time.time() - t0
    load_after, cpu_after = os.getloadavg(), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    report = args.work / f"{args.run}_report"
    evaluate(args.work / "heldout", model=["default", str(run / "model_int8.safetensors")], out_dir=report,
             split="test", document=False, device="cpu")
    summary = {"command": shlex.join(["adaqat", *command[3:]]), "convention": args.convention, "erode_px": args.erode, "keep": args.keep,
               "heart_scale": args.heart_scale, "n_train": args.n_train,
               "films_train": tune, "wall_s": round(wall, 1), "cpu_s": round(cpu_s, 1), "loadavg_before": load_before,
               "loadavg_after": load_after, "dice": dice_by_set(report, held), "cpus": os.cpu_count()}
    (args.work / f"{args.run}_summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps({k: v for k, v in summary.items() if k != "films_train"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
