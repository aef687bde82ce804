"""``adaqat segment``: box- and point-prompt segmentation of files and folders."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from napari_adaqat.cli.common import add_device_argument, add_model_arguments, model_refs
from napari_adaqat.inference.journal import RESULTS_CSV
from napari_adaqat.util.defaults import CLIP_MARGIN_FRACTION, CLIP_MARGIN_MIN_PX, DEFAULT_BOX_MARGIN_FRACTION
from napari_adaqat.model.device import resolve_device
from napari_adaqat.util.text import listed


FORMATS = {"png": ".png", "tif": ".tif", "dcm-seg": ".dcm"}  # --format -> output suffix


def _whole(option: str, minimum: int, too_small: str) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``minimum``, else a one-line error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{option} takes a whole number, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{too_small} ({value})")
        return value
    return parse


_frame = _whole("--frame", 0, "--frame is 0-based and cannot be negative")
_batch_size = _whole("--batch-size", 1, "--batch-size must be at least 1")


def add_batch_size_argument(p: argparse.ArgumentParser) -> None:
    """``--batch-size N`` (also used by ``adaqat evaluate``)."""
    p.add_argument("--batch-size", type=_batch_size, default=8, metavar="N",
                   help="images per encoder forward on a GPU (default 8); ignored on the CPU. A larger batch keeps "
                        "the GPU busier; lower it if the GPU runs out of memory (1 = one image at a time)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files (PNG/JPG/BMP/TIFF/DICOM) and/or folders")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="also segment the films in the folders' sub-folders, e.g. a PACS export "
                        "PATIENT/STUDY/SERIES/IM0001: the masks mirror the tree under --out (OUT/PATIENT/STUDY/SERIES/"
                        "IM0001_mask.png), so files of one name in different folders never collide. With several input "
                        "folders, each one's tree goes under OUT/<its folder name>/ (a second folder of that name: "
                        "NAME_2, in the order given). Folders of masks (an earlier output with its results.csv, or a "
                        "folder named as masks, e.g. masks/, ManualMask/, labelsTr/, whose first image reads as a "
                        "mask) and sub-folders that cannot be read are skipped and listed")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder for the masks and results.csv; it may not be an input folder or lie inside "
                        "one (for a single file, its folder counts), so inputs stay untouched. One run at a time "
                        "per folder: a second one is refused, naming the run that holds it")
    add_model_arguments(p)
    p.add_argument("--boxes", metavar="CSV", help="CSV with columns file,x0,y0,x1,y1 (pixels; header optional); file is the film's "
                   "full path, its path relative to the input folder (P1/S1/IM0001) or its name (IM0001): a row "
                   "that names more than one input is refused; "
                   f"default box: the whole image minus a {100 * DEFAULT_BOX_MARGIN_FRACTION:g}%% margin")
    p.add_argument("--points", metavar="CSV",
                   help="CSV with rows file,x,y,label (pixels; label 1 = lung, 0 = not lung, or true/false, yes/no, "
                        "pos/neg; header optional; several rows per file; file as in --boxes). A file in --boxes too "
                        "gets its box and its points; a file with points and no box is segmented from its points alone "
                        "(with the default box when none of them is 1)")
    p.add_argument("--no-clip", dest="clip", action="store_false",
                   help=f"keep mask pixels outside the box. By default nothing of the mask lies outside the box plus a "
                        f"margin of max({CLIP_MARGIN_MIN_PX:g} px, {100 * CLIP_MARGIN_FRACTION:g}%% of the longer image "
                        f"side), widened to the file's positive points; points without a box are never clipped")
    p.add_argument("--no-clean", dest="clean", action="store_false",
                   help="keep the raw model mask (default: keep the two largest regions, drop specks, fill holes)")
    p.add_argument("--format", choices=list(FORMATS), default="png",
                   help="mask file format: png or tif (0/255 masks, <name>_mask.png), or dcm-seg (a DICOM "
                        "Segmentation per DICOM input, <name>_seg.dcm, that references the source image)")
    p.add_argument("--frame", type=_frame, default=None, metavar="N",
                   help="frame (0-based) to segment in multi-frame DICOM files, which are refused without it; "
                        "single-frame inputs are not affected")
    p.add_argument("--compact", action="store_true",
                   help="no inputs: write DIR/results.csv now from what a stopped or killed run left in DIR "
                        "(a rerun does this itself); refused while a run is working in DIR")
    add_device_argument(p)
    add_batch_size_argument(p)
    p.epilog = EPILOG


EPILOG = """results.csv has one row per input: status, error, box, area_px, seconds, mask, the estimated Dice
'quality' and 'review' = 1 for masks worth a look (sort by quality). A bad or missing file is an error row
and the rest go on; a DICOM object of a study export that is no film (a Segmentation, a Presentation
State, a Key Object, a report) is 'ignored' and said, not failed. A lateral view, or a film stored on its
side (Patient Orientation), gets review = 1 and a note; so does a film read by a guess (its header window
overridden, Bits Stored exceeded...: the note keeps the reading warning). A rerun into the same --out with the
same inputs finishes what is missing and keeps what is done.
A film's mask beside it (NAME_mask, NAME_seg, NAME_gt... beside NAME) is not segmented.
examples:
  adaqat segment scans/ --out masks/                        # bundled model, whole-image box
  adaqat segment export/ --recursive --out masks/           # PACS tree: masks/PATIENT/STUDY/SERIES/IM0001_mask.png
  adaqat segment scans/ --out masks/ --boxes boxes.csv      # rows: file,x0,y0,x1,y1 (pixels)
  adaqat segment scans/ --out masks/ --points points.csv    # rows: file,x,y,label (1 lung, 0 not lung)
  adaqat segment scans/ --out seg/ --format dcm-seg         # a DICOM SEG per DICOM film
  adaqat segment --compact --out masks/                     # results.csv from a killed run
  torchrun --nproc-per-node 4 -m napari_adaqat segment scans/ --out masks/   # many GPUs: every Nth file each"""


def _compact(out_dir: Path) -> int:
    from napari_adaqat.inference.batch import compact_folder

    if not out_dir.is_dir():  # (a typo must not read as "up to date", nor leave an empty folder)
        raise ValueError(f"--compact: {out_dir}: {'not a folder' if out_dir.exists() else 'folder not found'}; give "
                         "the --out folder of the run to compact")
    rows = compact_folder(out_dir)
    if rows is None:
        print(f"nothing to compact: {out_dir / RESULTS_CSV} is up to date")
    else:
        print(f"{rows} rows in {out_dir / RESULTS_CSV}")
    return 0


def _said_if_stopped(results, bar, out_dir: Path):
    """``results``, with one line on Ctrl-C: how far it got, and that the same command finishes the rest."""
    done = 0
    try:
        for result in results:
            yield result
            done += 1
    except KeyboardInterrupt:
        bar.close()
        print(f"adaqat segment: stopped after {done} of {bar.total} files; {out_dir / RESULTS_CSV} lists them: the "
              "same command segments the rest (finished files are skipped)", file=sys.stderr)
        raise


def run(args: argparse.Namespace) -> int:
    from napari_adaqat.data import check_output_folder, describe_skipped, read_boxes_csv, read_points_csv
    from napari_adaqat.data.folders import films_in_output
    from napari_adaqat.inference.skipped_list import SKIPPED_CSV
    from napari_adaqat.data.csv_match import match_rows
    from napari_adaqat.data.folders import missing_inputs
    from napari_adaqat.inference.batch import FolderBusy
    from napari_adaqat.inference.shard import start_shard, stop_shard

    out_dir = Path(args.out)
    if args.compact:
        if args.inputs:
            raise ValueError("--compact takes no inputs: adaqat segment --compact --out DIR")
        return _compact(out_dir)
    if not args.inputs:
        raise ValueError("give the image files or folders to segment (or --compact --out DIR)")
    missing = missing_inputs(args.inputs)  # none there: refused; some: an error row each, the rest segmented
    check_output_folder(out_dir, args.inputs, roots=_roots(args))
    among = films_in_output(out_dir) if out_dir.is_dir() and os.environ.get("RANK", "0") == "0" else []
    if among:
        print(f"adaqat segment: warning: {out_dir} holds films ({listed((p.name for p in among), 3)}): once it has "
              f"masks and {RESULTS_CSV}, a recursive run over a folder above it passes over it as a folder of masks, "
              "films too; choose a folder of its own for the masks", file=sys.stderr)
    files, skipped = _scan(args)
    hint = "" if args.recursive else "use --recursive"
    if not files:  # (every input was a folder: a file given is always listed; film.png may name a folder)
        folders = f"{listed(args.inputs, 3)} ({'a folder' if len(args.inputs) == 1 else 'folders'})"
        raise ValueError(f"no image files found in {folders}"
                         + (f": {describe_skipped(skipped, recurse_hint=hint)}" if skipped else ""))
    if skipped:
        print(f"adaqat segment: skipped {describe_skipped(skipped, recurse_hint=hint)} (all {len(skipped)} will be "
              f"listed in {out_dir / SKIPPED_CSV})", file=sys.stderr)
    if missing:
        print(f"adaqat segment: warning: {len(missing)} input(s) not found, each gets an error row in "
              f"{RESULTS_CSV} and the others are segmented: {listed(missing, 3)}", file=sys.stderr)
    boxes = read_boxes_csv(args.boxes) if args.boxes else None
    points = read_points_csv(args.points) if args.points else None
    roots = _roots(args)
    found = [match_rows(csv_path, rows, files, roots) if rows else None  # a row naming two films: refused here
             for csv_path, rows in ((args.boxes, boxes), (args.points, points))]
    shard, device = start_shard(resolve_device(args.device))
    try:
        return _segment(args, files, (boxes, points), found, out_dir, device, shard, skipped)
    except FolderBusy:
        if shard.lead:
            raise
        return 2  # rank 0 says it, once
    finally:
        stop_shard(shard)


def _scan(args: argparse.Namespace) -> tuple[list[Path], list[Path]]:
    """:func:`~napari_adaqat.data.scan_inputs`, counting the files looked at on stderr ("looking through: 4180
    files"; a PACS tree of extension-less files, each opened to look for DICOM, takes a while): in a terminal
    only, as the segment bar, and on rank 0 of a torchrun launch only; the line goes when the scan ends."""
    from napari_adaqat.data import scan_inputs

    bar = tqdm(desc="looking through", unit=" files", leave=False, file=sys.stderr,
               disable=None if os.environ.get("RANK", "0") == "0" else True)
    try:
        return scan_inputs(args.inputs, recursive=args.recursive, progress=lambda _n: bar.update(1))
    finally:
        bar.close()


def _roots(args: argparse.Namespace) -> list[Path]:
    """The input folders whose sub-folder tree the masks mirror under --out (none without --recursive)."""
    return [Path(item) for item in args.inputs if Path(item).is_dir()] if args.recursive else []


def _segment(args: argparse.Namespace, files: list[Path], prompts, found, out_dir: Path, device: str, shard,
             skipped: list[Path]) -> int:
    """The run of one process (rank ``shard.rank`` of a torchrun launch, or the only one).  ``prompts``: the
    (boxes, points) CSV tables, for the warnings; ``found``: the rows each input takes (by absolute path);
    ``skipped``: what the scan passed over (listed in ``OUT/skipped.csv`` at the end)."""
    from napari_adaqat.data import describe_unmatched, unmatched_boxes
    from napari_adaqat.inference.skipped_list import SKIPPED_CSV, write_skipped_csv
    from napari_adaqat.inference.batch import IGNORED, segment_files
    from napari_adaqat.inference.engine import ONE_SHOT, Engine
    from napari_adaqat.inference.quality import REVIEW_BELOW
    from napari_adaqat.inference.mask_names import named_after_folder

    boxes, points = prompts
    roots = _roots(args)
    if shard.lead:
        pointed = [path for path, (_coords, labels) in (found[1] or {}).items() if (labels == 1).any()]
        for line in describe_unmatched(args.boxes, boxes, files, roots, pointed) if boxes else []:
            print(f"adaqat segment: warning: {line}", file=sys.stderr)
        names, unpointed = unmatched_boxes(points, files, roots, args.points) if points else ([], [])
        if names:
            print(f"adaqat segment: warning: {args.points}: {len(names)} file name(s) match no input and are "
                  f"ignored: {listed(names, 5)}", file=sys.stderr)
        if unpointed and not boxes:  # (as --boxes says of its own; with --boxes, that line names them)
            print(f"adaqat segment: warning: {args.points}: {len(unpointed)} input(s) have no points and get the "
                  f"default box: {listed((p.name for p in unpointed), 5)}", file=sys.stderr)
    model, baseline = model_refs(args)
    engine = Engine(recheck_seconds=ONE_SHOT)  # one run, one model file: never re-stat it per film
    engine.predictor(model, device)  # a bad model file fails here, before any row is written
    if baseline is not None:
        engine.predictor(baseline, device)
    counts = {"ok": 0, "error": 0, "skipped": 0, IGNORED: 0, "review": 0, "renamed": 0}
    renamed = ""  # (a mask named after its folder too: NAME_mask was taken by another film's mask or a file)
    notes: list[str] = []
    mine = shard.count(len(files))
    bar = tqdm(total=mine, desc="segment" if shard.world == 1 else f"segment (rank 0 of {shard.world})",
               unit="img", disable=None if shard.lead else True)
    results = segment_files(files, model, out_dir, boxes=found[0], points=found[1], clip=args.clip, baseline=baseline,
                            suffix=FORMATS[args.format], clean=args.clean, device=device, engine=engine,
                            frame=args.frame, batch_size=args.batch_size, shard=shard, notes=notes, roots=roots)
    for result in (_said_if_stopped(results, bar, out_dir) if shard.world == 1 else results):
        for note in notes:
            tqdm.write(f"adaqat segment: note: {note}", file=sys.stderr)
        notes.clear()
        counts[result.status] += 1
        counts["review"] += result.review == 1
        if result.status == "ok" and result.mask and named_after_folder(Path(result.file), result.mask):
            counts["renamed"] += 1
            renamed = renamed or Path(result.mask).name
        if result.status == IGNORED or result.view_note:  # (its reading warnings were printed as they came)
            tqdm.write(f"adaqat segment: note: {result.error or f'{result.file}: {result.view_note}'}",
                       file=sys.stderr)
        if result.status == "error":
            named = result.error.startswith(f"{result.file}: ")  # reader errors already name the file
            tqdm.write(f"adaqat segment: {result.error if named else f'{result.file}: {result.error}'}", file=sys.stderr)
        bar.update(1)
    bar.close()
    counts = shard.total(counts)
    if shard.lead and write_skipped_csv(out_dir, skipped) is None:  # (this run's list: none skipped, a header)
        print(f"adaqat segment: note: {out_dir / SKIPPED_CSV} is not adaqat's, so the list of what was skipped was not "
              "written there", file=sys.stderr)
    if shard.lead:
        review = (f", {counts['review']} to review (quality < {REVIEW_BELOW} or a note; the review column)"
                  if counts["review"] else "")
        ignored = f", {counts[IGNORED]} ignored (not films)" if counts[IGNORED] else ""
        print(f"{counts['ok']} segmented, {counts['skipped']} already done, {counts['error']} failed{ignored}{review}; "
              f"results in {out_dir / RESULTS_CSV}")
        if counts["renamed"]:  # nothing is overwritten, and the user is told where the mask went
            print(f"{counts['renamed']} mask(s) are named after their film's folder too (e.g. {renamed}): NAME_mask "
                  "was already taken there; results.csv's mask column names each film's mask")
        if counts["skipped"]:  # a rerun with other prompts or options must not look like it used them
            print(f"{counts['skipped']} file(s) done by an earlier run were kept as they are (a rerun only adds what "
                  "is missing, with the prompts and options given now); to redo them, choose another --out folder")
    return 1 if counts["error"] else 0
