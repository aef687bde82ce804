"""Clicks against another site's convention (issue 32): the films of a model's recorded split (default: its
``val`` films, never trained on) with their masks in another convention (default: without the lung behind
the heart, the heart ellipse at 1.4x; ``napari_adaqat/data/conventions.py``), scored by ``adaqat evaluate
--clicks K`` through the public API (tight boxes, clipping on): the box alone keeps our convention, so every
point that the clicks gain is the model following the user's clicks against its own habit.

    python benchmarks/convention_clicks.py --work /tmp/cclicks [--model M --baseline B] [--split val] [--clicks 3]

Prints one JSON summary (also WORK/summary.json): Dice after 0..K clicks, NoC@90/95 per model.
Caveat: the default model trains with such conventions (``convention_prob``, randomised sizes), so this
measures that its clicks win over its habit, not how well it knows another hospital's heart border.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convention_change import DATA, write_set  # noqa: E402  (the same film set writer)
from prompt_obedience import films  # noqa: E402  (the model's recorded split)

from napari_adaqat.data.conventions import CONVENTIONS, changed_mask  # noqa: E402
from napari_adaqat.report.evaluate import evaluate  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="INT8 model file (default: the bundled model)")
    p.add_argument("--baseline", default="default", help="its FP32 baseline (default: the bundled one)")
    p.add_argument("--data", type=Path, default=DATA, help="images/ + masks/ (default permissive_512)")
    p.add_argument("--split", default="val", help="which recorded split of the model (default val)")
    p.add_argument("--convention", choices=CONVENTIONS, default="no-heart", help="the other convention")
    p.add_argument("--heart-scale", type=float, default=1.4, help="no-heart: the ellipse's size (default 1.4)")
    p.add_argument("--erode", type=int, default=6, help="erode/dilate: px (default 6)")
    p.add_argument("--clicks", type=int, default=3, help="simulated corrective clicks (default 3)")
    p.add_argument("--work", type=Path, required=True, help="scratch folder (the film set, the report)")
    args = p.parse_args(argv)
    names = films(args.model, args.split, args.data)
    folder = args.work / "films"
    write_set(args.data, folder, names,
              lambda m: changed_mask(m, args.convention, erode_px=args.erode, heart_scale=args.heart_scale))
    (folder / "split.json").write_text(json.dumps({"train": [], "val": [], "test": names}))
    summary = evaluate(folder, model=args.model, baseline=args.baseline, out_dir=args.work / "report", split="test",
                       document=False, device="cpu", clicks=args.clicks)
    out = {"model": args.model, "baseline": args.baseline, "split": args.split, "n": len(names),
           "convention": args.convention, "heart_scale": args.heart_scale, "clicks": summary.get("clicks")}
    (args.work / "summary.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
