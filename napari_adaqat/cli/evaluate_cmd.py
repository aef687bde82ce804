"""``adaqat evaluate``: Dice, IoU, NSD, HD95 (native and 256²), Wilcoxon and SSIM vs a baseline."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from napari_adaqat.cli.common import add_device_argument, add_model_arguments, check_data_folder, model_refs
from napari_adaqat.cli.segment_cmd import add_batch_size_argument
from napari_adaqat.model.device import resolve_device
from napari_adaqat.util.defaults import DEFAULT_BOX_MARGIN_FRACTION, EQUIVALENCE_MARGIN


EPILOG = """The report folder gets report.md and index.html (open it in a browser; it works from disk):
Table 1 (Dice, IoU, NSD, HD95 as mean ± std and median [IQR], native and 256², Wilcoxon p and effect
size against the baseline, and on Dice a paired equivalence test (TOST) within --equivalence-margin),
the skipped pairs with their reasons, Table 2 (parameters, file sizes, compression), Fig. 2 SSIM panels,
Fig. 3 quantization-error plots, distributions, paired plots, the worst cases and provenance; plus
per_image.csv, skipped.csv (the films not scored, each with why), summary.json, wilcoxon.json and tables.json.
Every mask is scored as a user gets it: clipped to its box plus a margin (see 'adaqat segment --help',
--no-clip), then cleaned with --clean.
examples:
  adaqat evaluate --data DATA --baseline default --out report/               # bundled INT8 vs its FP32 baseline
  adaqat evaluate --data DATA --clicks 3 --out report/                       # + Dice after 1-3 corrective clicks
  adaqat evaluate --model a.safetensors --model b.safetensors --baseline base.safetensors \\
      --data DATA --split-file runs/s1/split.json --out report/"""


def _number_above_0(below: float, what: str):
    """An argparse type: a number in (0, ``below``), else one line saying ``what`` it must be."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not 0.0 < value < below:
            raise argparse.ArgumentTypeError(f"{what}, not {text!r}")
        return value
    return parse


_margin = _number_above_0(1.0, "a Dice margin between 0 and 1 (e.g. 0.005)")
_tolerance = _number_above_0(float("inf"), "a distance above 0 (mm, or px without a pixel spacing)")


def _clicks(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--clicks takes a whole number, not {text!r}") from None
    if not 0 <= value <= 20:
        raise argparse.ArgumentTypeError(f"--clicks takes 0 to 20 clicks, not {value}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    add_model_arguments(p, several=True)
    p.add_argument("--data", required=True,
                   help="dataset folder (DATA/images + DATA/masks, the split layout, or a public set as it unpacks: "
                        "its one folder of films and one named as masks, e.g. Montgomery's CXR_png + ManualMask, "
                        "or class folders each holding theirs, e.g. COVID/ Normal/; the run says which folders it "
                        "read)")
    p.add_argument("--out", required=True, metavar="REPORT_DIR",
                   help="report folder (see below); it may not lie inside the data folder")
    p.add_argument("--split", default="auto", choices=["auto", "train", "val", "test", "all"],
                   help="which part of the split: DATA/split.json, DATA/train|val|test, or the 80:10:10 cut seeded by "
                        "--seed. auto: the test part of --split-file or of DATA's split; else, when every model file "
                        "records the split it trained with (exported models, the bundled one), the films none of them "
                        "trained on, by name (all of another site's folder; a copy of the training films is left "
                        "out, and said); else the seeded cut. To score only images a "
                        "training run never saw, pass its RUN/split.json as --split-file")
    p.add_argument("--split-file", default=None, metavar="JSON",
                   help="use this split (e.g. RUN/split.json of the training run) instead of the dataset's")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the 80:10:10 cut when there is no split file (match 'adaqat train --seed'; default 0)")
    p.add_argument("--box", default="tight", choices=["tight", "default"],
                   help="the box prompt of each image: tight = the reference mask's bounding box; 'default' = the "
                        f"whole image minus {100 * DEFAULT_BOX_MARGIN_FRACTION:g}%%, as 'adaqat segment' without "
                        "--boxes (default: tight)")
    p.add_argument("--clean", action="store_true",
                   help="score the cleaned masks (two largest regions, holes filled), as 'adaqat segment' writes them")
    p.add_argument("--nsd-tol", type=_tolerance, default=2.0, metavar="T",
                   help="NSD tolerance: mm for images with a pixel spacing (DICOM), px otherwise (default 2)")
    p.add_argument("--equivalence-margin", type=_margin, default=EQUIVALENCE_MARGIN, metavar="DICE",
                   help="margin of the equivalence test (TOST) of each model against the baseline on Dice: "
                        f"0.005 = ±0.5 Dice points (default {EQUIVALENCE_MARGIN:g})")
    p.add_argument("--clicks", type=_clicks, default=0, metavar="K",
                   help="after the box, simulate K corrective clicks per image (each at the point farthest from the "
                        "boundary of the largest error region: positive in a missed region, negative in a false one; "
                        "the previous logits as mask_input) and report Dice after 0..K clicks and NoC@90/95 "
                        "(clicks to reach that Dice, capped at K); default 0")
    p.add_argument("--masks-as-given", action="store_true",
                   help="score masks that look inverted (lung = black on white: white along most of the image's edge) "
                        "as they are; by default they are skipped, each with its reason")
    p.add_argument("--show", action="append", default=[], metavar="NAME",
                   help="also draw the Fig. 2 panel of this image (its file stem); repeatable")
    add_device_argument(p)
    add_batch_size_argument(p)


SHOWN_SKIPS = 10  # skipped pairs listed on the terminal (a split file of another subset can name hundreds)


def run(args: argparse.Namespace) -> int:
    from napari_adaqat.data.dataset import discover, split_source
    from napari_adaqat.report.auto_split import auto_split, model_files, seeded_note
    from napari_adaqat.report.evaluate import evaluate
    from napari_adaqat.report.scores import json_safe
    from napari_adaqat.report.tables import equivalence_verdict, summary_keys

    check_data_folder(args.data)
    device = resolve_device(args.device)
    model, baseline = model_refs(args)
    auto, why = args.split == "auto", ""
    if auto:
        files = model_files([*(model if isinstance(model, list) else [model]), baseline])
        args.split, args.split_file, why = auto_split(args.data, args.split_file, files, args.seed)
    elif (args.split != "all" and not args.split_file and Path(args.data).is_dir()  # else "not found"
            and split_source(Path(args.data)) == "seeded"):
        why = seeded_note(args.seed, len(discover(args.data, args.seed)[0]))
    if why:
        print(f"adaqat evaluate: note: {why}", file=sys.stderr)
    bar = tqdm(desc="evaluate", unit="img", disable=None)

    seen = {"done": 0, "total": 0}  # (tqdm counts nothing when it shows nothing: not a terminal)

    def progress(done: int, total: int) -> None:
        bar.total = seen["total"] = total
        seen["done"] += 1
        bar.update(1)

    try:
        summary = evaluate(args.data, model, baseline, args.out, args.split, args.box, progress, args.split_file,
                           args.clean, seed=args.seed, device=device, nsd_tolerance=args.nsd_tol, show=args.show,
                           command=shlex.join(["adaqat", *sys.argv[1:]]), batch_size=args.batch_size,
                           equivalence_margin=args.equivalence_margin, clicks=args.clicks,
                           masks_as_given=args.masks_as_given, split_note=why if auto else "",
                           say=lambda line: tqdm.write(f"adaqat evaluate: note: {line}", file=sys.stderr))
    except KeyboardInterrupt:  # (a QA find: only "adaqat: interrupted", the earlier report already gone)
        bar.close()
        print(f"adaqat evaluate: stopped after {seen['done']} of {seen['total'] or '?'} films; {args.out} holds their "
              "per_image.csv only (no summary or report): the same command scores them all again", file=sys.stderr)
        raise
    bar.close()
    for line in summary["skipped"][:SHOWN_SKIPS]:
        print(f"adaqat evaluate: skipped {line}", file=sys.stderr)
    if len(summary["skipped"]) > SHOWN_SKIPS:
        print(f"adaqat evaluate: ... and {len(summary['skipped']) - SHOWN_SKIPS} more skipped "
              f"(all in {Path(args.out) / 'skipped.csv'} and the report)", file=sys.stderr)
    for line in summary.get("notes", []):
        if line != why:  # (said as it started)
            print(f"adaqat evaluate: note: {line}", file=sys.stderr)
    brief = {k: summary[k] for k in ("split", "box", "clean")}
    brief["n"] = f"{summary['n']} of {summary['n_total']}"
    brief["models"] = dict(summary["models"])  # which file each key below is (model, model2, ...)
    if summary.get("baseline_label"):
        brief["models"]["baseline"] = summary["baseline_label"]
    for tag in [*summary["models"], "baseline"]:
        if tag in summary:
            keys = [k for k in summary_keys(summary[tag]) if not k.endswith("_256") or k == "dice_256"]
            brief[tag] = {m: round(summary[tag][m]["mean"], 4) for m in keys}  # (mixed mm/px: hd95_mm, hd95_px)
    if "wilcoxon_dice_p" in summary:
        test = summary["wilcoxon"]["model"]["dice"]
        brief["wilcoxon_dice_p"] = summary["wilcoxon_dice_p"] if test.get("n", 0) >= 2 else "too few pairs to test"
        brief["equivalence"] = {tag: equivalence_verdict(tests["dice"])
                                for tag, tests in summary["equivalence"].items()}
    if "clicks" in summary:
        brief["clicks"] = {tag: {"dice_by_click": [round(d, 4) for d in entry["dice_by_click"]],
                                 "noc90_mean_median": [round(entry["noc90"]["mean"], 2), entry["noc90"]["median"]],
                                 "noc95_mean_median": [round(entry["noc95"]["mean"], 2), entry["noc95"]["median"]],
                                 "not_reached_90_95": [entry["noc90"].get("not_reached"),
                                                       entry["noc95"].get("not_reached")]}
                           for tag, entry in summary["clicks"].items() if isinstance(entry, dict)}
    brief["report"] = str(Path(args.out) / "index.html")
    text = json.dumps(json_safe(brief), indent=2, ensure_ascii=False)  # NaN (e.g. mixed mm/px units) becomes null
    try:
        print(text)  # "±0.5 Dice points", not "\u00b10.5"
    except UnicodeEncodeError:  # a terminal that cannot show ±
        print(json.dumps(json_safe(brief), indent=2))
    return 0
