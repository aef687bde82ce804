"""Score models (and a baseline) on a dataset split: the paper's statistics, in one pass.

Every image is read once and goes through the one :class:`~napari_adaqat.inference.engine.Engine`
for every model, with the same fixed, deterministic box (:mod:`.scores`).  The per-image scores,
the summaries and the paired tests are written here; :mod:`.document` writes ``report.md`` and
``index.html`` with the tables and figures.  ``clicks=K`` adds K simulated corrective clicks per image
and model after the box (:mod:`.clicks`).
"""
from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from napari_adaqat.data import Pair, check_output_folder, check_pairs, discover, load_split
from napari_adaqat.data.check import orphan_masks, reading_notes, shadowed_images
from napari_adaqat.data.dataset import names_of_pairs, read_reference
from napari_adaqat.data.layout import dataset_folders, pair_places
from napari_adaqat.data.mask_grid import film_for_mask
from napari_adaqat.data.split import SPLITS
from napari_adaqat.inference.engine import ONE_SHOT, Engine, ModelLike, batched, model_ref
from napari_adaqat.inference.prefetch import chunks, embed_ahead, read_ahead
from napari_adaqat.io import is_image_file, read_image
from napari_adaqat.report.auto_split import auto_split, model_files
from napari_adaqat.report.clicks import click_columns, click_dices, click_summary
from napari_adaqat.report.document import check_report_folder, clear_earlier_report, split_reason, write_report
from napari_adaqat.util.errors import first_line
from napari_adaqat.metrics import EQUIVALENCE_MARGIN
from napari_adaqat.model.device import resolve_device
from napari_adaqat.report.scores import (
    BASELINE, equivalence_tests, image_box, model_tags, paired_tests, score_pair, summaries, write_json,
)


def _shown(show: Sequence[str], chosen: list[Pair], split: str) -> list[str]:
    """The ``show`` names as Fig. 2 takes them (a file name is taken by its stem); one line, before any
    scoring, for a name that is not among the pairs to score."""
    known = {pair.name for pair in chosen}
    names = [name if name in known or Path(name).stem not in known else Path(name).stem for name in show]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"--show {unknown[0]}: no such image among the {len(chosen)} to score in the {split!r} "
                         f"split (e.g. {min(known)})")
    return names


def _pairs(data_dir: str | Path, split: str, split_file: str | Path | dict | None, seed: int
           ) -> tuple[list[Pair], list[str], list[str]]:
    """(the pairs to score, one line per pair of the split left out, notes): a name of the split that is no image
    of the folder is left out with its line; images of the split also in its train list get a note."""
    pairs, parts = discover(data_dir, seed=seed)
    if split_file:  # its names may be file names (a.png) or in another Unicode form, as a dataset's split.json
        parts = names_of_pairs(split_file if isinstance(split_file, dict) else load_split(split_file), pairs)
    names = sorted(pairs) if split == "all" else parts[split]
    if not names:  # e.g. the 80:10:10 cut of a few images
        sizes = ", ".join(f"{len(parts.get(s, []))} {s}" for s in ("train", "val", "test"))
        raise ValueError(f"{data_dir}: the {split!r} split is empty ({len(pairs)} images: {sizes}); "
                         "--split all scores every image (if the model never saw them)")
    if not any(n in pairs for n in names):  # a split file of another dataset
        shown = ", ".join(names[:2]) + (", ..." if len(names) > 2 else "")
        raise ValueError(f"{data_dir}: none of the {len(names)} images of the {split!r} split ({shown}) is in the "
                         "data folder; is the split file from another dataset?")
    source = "split file" if split_file else "split"
    absent = [f"{name}: named in the {split!r} {source}, but no image of {data_dir}" for name in names
              if name not in pairs]
    chosen, skipped = check_pairs([pairs[n] for n in names if n in pairs])
    if not chosen:
        why = f": all {len(skipped)} skipped; first: {skipped[0]}" if skipped else ""
        raise ValueError(f"{data_dir}: no image/mask pairs in the {split!r} split{why}")
    seen = sorted(set(names) & set(parts.get("train", []))) if split not in ("train", "all") else []
    notes = [f"{len(seen)} image(s) of the {split!r} split are also in its train list ({', '.join(seen[:3])}"
             f"{', …' if len(seen) > 3 else ''}): a model trained on that split saw them, and their scores flatter it"
             ] if seen else []
    notes += reading_notes(Path(data_dir), chosen)
    return chosen, absent + skipped, notes + _left_out(Path(data_dir), pairs)


IMPLAUSIBLE_DICE = 0.8  # a median Dice below this: the references (or the model) are probably not what they seem


def _labels(models: list[ModelLike]) -> list[str]:
    """How the report names each model: its file name, or, where two share one (runA/model.safetensors,
    runB/model.safetensors), its folder and name, else its whole path."""
    names = [m.label() if hasattr(m, "label") else type(m).__name__ for m in models]
    paths = [getattr(m, "path", None) for m in models]
    short = [None if p is None else f"{Path(p).parent.name}/{Path(p).name}" for p in paths]
    return [name if path is None or names.count(name) == 1 else brief if short.count(brief) == 1 else str(path)
            for name, path, brief in zip(names, paths, short)]


def _left_out(root: Path, pairs: dict[str, Pair]) -> list[str]:
    """Notes on the files of ``root`` that no pair holds, so none is scored: masks without an image, an image
    beside another of its name (``a.png`` and ``a.jpg``), images in sub-folders of ``images/`` (not read)."""
    notes = []
    for what, lines in (("mask(s) without an image", orphan_masks(root, pairs)),
                        ("image(s) beside another of their name", shadowed_images(root, pairs))):
        if lines:
            notes.append(f"{len(lines)} {what} are in no pair, so not scored: {'; '.join(lines[:2])}"
                         + ("; …" if len(lines) > 2 else ""))
    nested = []
    for images in [dataset_folders(place)[0] for place in pair_places(root)]:
        with contextlib.suppress(OSError):
            nested += [d for d in sorted(images.iterdir()) if d.is_dir() and not d.name.startswith(".")
                       and any(is_image_file(f) for f in d.rglob("*") if f.is_file())]
    if nested:
        notes.append(f"{len(nested)} sub-folder(s) of images/ hold images that are not read ({nested[0]}"
                     + (", …" if len(nested) > 1 else "") + "): a dataset's films lie in images/ itself; "
                     "score a sub-folder as its own --data")
    return notes


def _prefetch(chunk: list[Pair], models: list[ModelLike], baseline: ModelLike | None, engine: Engine,
              device: str, read: dict) -> dict[str, float] | None:
    """Embed the images of ``chunk`` for every model in one encoder forward each, so that
    :func:`score_pair` finds them cached; return each tag's seconds per image, or ``None`` when it
    failed (e.g. out of GPU memory): the images then embed one by one.  Each image read goes into
    ``read`` (path → ImageData), so that :func:`score_pair` does not read it again (one that failed to
    read is read again there, which reports it)."""
    ahead = read_ahead([pair.image for pair in chunk], read_image)
    read.update({path: image for path, (image, _seconds) in ahead.items() if not isinstance(image, Exception)})
    refs: dict[str, ModelLike | None] = dict(zip(model_tags(len(models)), models))
    refs[BASELINE] = baseline
    return embed_ahead(engine, list(read.values()), refs, device, len(chunk))


def _with_clicks(pair: Pair, image, models: list[ModelLike], baseline: ModelLike | None, engine: Engine,
                 clicks: int, **score) -> dict:
    """:func:`score_pair`'s row, plus with ``clicks`` the Dice after 0..K simulated clicks and NoC of every
    model (and the baseline) (:func:`~napari_adaqat.report.clicks.click_columns`)."""
    if not clicks:
        return score_pair(pair, models, baseline, engine=engine, image=image, **score)
    ref = read_reference(pair) != 0
    image = film_for_mask(image if image is not None else read_image(pair.image), ref.shape)
    row = score_pair(pair, models, baseline, engine=engine, image=image, **score)
    box = image_box(ref, score.get("box_mode", "tight"))
    refs = list(zip(model_tags(len(models)), models)) + ([(BASELINE, baseline)] if baseline is not None else [])
    for tag, model in refs:
        dices = click_dices(engine, image, ref, box, model, clicks, score.get("device", "cpu"),
                            clean=score.get("clean", False))
        row.update(click_columns(tag, dices))
    return row


def _score_all(chosen: list[Pair], models: list[ModelLike], baseline: ModelLike | None, out: Path, engine: Engine,
               progress: Callable[[int, int], None] | None, skipped: list[str], batch_size: int = 8,
               clicks: int = 0, **score) -> list[dict]:
    """Score every pair; rows go to ``per_image.csv`` as they come; a failing image is listed, not fatal.
    On a GPU (:func:`batched`) the images are embedded ``batch_size`` per encoder forward first (each
    ``*_seconds`` then includes the image's share of its batch).  ``clicks``: see :func:`_with_clicks`."""
    rows: list[dict] = []
    device = score.get("device", "cpu")
    step = max(1, int(batch_size)) if batched(device) else 1
    prefetching = step > 1
    with (out / "per_image.csv").open("w", newline="") as fh:
        writer = None
        for first, chunk in chunks(chosen, step):
            read: dict = {}
            share = _prefetch(chunk, models, baseline, engine, device, read) if prefetching else {}
            prefetching = prefetching and share is not None
            for done, pair in enumerate(chunk, start=first + 1):
                try:
                    row = _with_clicks(pair, read.pop(pair.image, None), models, baseline, engine, clicks, **score)
                except Exception as exc:  # one failing image (decoder error, out of memory) must not lose the rest
                    skipped.append(f"{pair.image}: {first_line(exc)}")
                else:
                    for tag, seconds in (share or {}).items():
                        row[f"{tag}_seconds"] = round(row[f"{tag}_seconds"] + seconds, 4)
                    rows.append(row)
                    if writer is None:
                        writer = csv.DictWriter(fh, fieldnames=list(row))
                        writer.writeheader()
                    writer.writerow(row)
                    fh.flush()  # rows on disk as they come
                if progress:
                    progress(done, len(chosen))
    return rows


def evaluate(data_dir: str | Path, model: ModelLike | str | Path | Sequence | None = None,
             baseline: ModelLike | str | Path | None = None, out_dir: str | Path = "report", split: str = "auto",
             box_mode: str = "tight", progress: Callable[[int, int], None] | None = None,
             split_file: str | Path | dict | None = None, clean: bool = False, seed: int = 0, device: str = "auto",
             nsd_tolerance: float = 2.0, show: Sequence[str] = (), command: str | None = None,
             document: bool = True, batch_size: int = 8, equivalence_margin: float = EQUIVALENCE_MARGIN,
             clicks: int = 0, masks_as_given: bool = False, say: Callable[[str], None] | None = None,
             split_note: str = "") -> dict:
    """Score ``model`` (one, or a list: any number of models) and ``baseline`` on a split; write
    ``per_image.csv``, ``summary.json``, ``wilcoxon.json`` and, with ``document``, the full report
    (``report.md``, ``index.html`` and figures, see :mod:`.document`); return the summary.

    ``split``: ``"auto"`` (as ``adaqat evaluate`` without ``--split``: :func:`~.auto_split.auto_split`, the films
    the models never trained on), ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
    ``split_file`` (e.g. a training run's ``split.json``, or such a split as a dict; ``split_note`` says where it
    came from, in the report's notes) overrides the dataset's own split;
    without it and without ``DIR/split.json`` the split is the 80:10:10 cut seeded by ``seed``.
    Bad pairs (missing, empty or mismatched masks) and images that fail are skipped and listed
    in the summary (``skipped``, one line each with its reason; ``n`` of ``n_total`` pairs were scored) and in
    ``skipped.csv`` (``file,reason``).
    With a baseline, each model also gets a paired equivalence test (TOST) on Dice within
    ±``equivalence_margin`` (``summary["equivalence"]``).  Non-finite values (HD95 of an empty mask) are written as ``null``.
    A model is a :class:`ModelRef`, a :class:`BoxPredictor`, or a model file path (``None``/
    ``"default"``: the bundled model; ``baseline="default"`` is its FP32 baseline).
    ``nsd_tolerance`` is in mm for images with a pixel spacing (DICOM), else in px.
    ``device``: ``"auto"`` (a GPU where there is one), ``"cpu"``, ``"cuda"``...  ``show`` names extra images for
    the Fig. 2 panels.  ``batch_size``: images per encoder forward
    on a GPU (ignored on the CPU).  ``clicks`` K > 0: after the box, K simulated corrective clicks per
    image and model (:mod:`~napari_adaqat.report.clicks`): ``{tag}_dice_click0..K``, ``{tag}_noc90`` and
    ``{tag}_noc95`` in ``per_image.csv``, ``summary["clicks"]`` and a table in the report.  A mask that looks
    inverted (lung = black) is skipped with its reason, unless ``masks_as_given``.  An earlier report in
    ``out_dir`` is removed before scoring starts (``say`` is told so, with one line).
    """
    if clicks < 0:
        raise ValueError(f"clicks must be 0 or more, not {clicks}")
    device = resolve_device(device)  # ("auto", as adaqat evaluate: a GPU where there is one)
    if split not in ("auto", *SPLITS, "all"):  # (before any model is loaded)
        raise ValueError(f"split must be auto, train, val, test or all, not {split!r}")
    out = Path(out_dir)
    check_output_folder(out, [data_dir], what="data folder")
    check_report_folder(out)
    given = list(model) if isinstance(model, (list, tuple)) else [model]
    models = [model_ref(m) for m in given]
    base = model_ref(baseline, baseline=True) if baseline is not None else None
    engine = Engine(max_loaded=len(models) + 1, recheck_seconds=ONE_SHOT)
    for m in models + ([base] if base is not None else []):
        engine.predictor(m, device)  # a bad model file fails here with its one-line error
    if split == "auto" and split_file is not None:
        split = "test"
    elif split == "auto":
        split, split_file, why = auto_split(data_dir, None, model_files(models + [base]), seed)
        split_note = split_note or why
    chosen, skipped, notes = _pairs(data_dir, split, split_file, seed)
    notes = ([split_note] if split_note else []) + notes
    show = _shown(show, chosen, split)
    if clear_earlier_report(out, document) and say is not None:
        say(f"replacing the earlier report in {out}")
    out.mkdir(parents=True, exist_ok=True)
    rows = _score_all(chosen, models, base, out, engine, progress, skipped, batch_size, clicks, box_mode=box_mode,
                      nsd_tolerance=nsd_tolerance, clean=clean, device=device, masks_as_given=masks_as_given)
    if not rows:
        raise ValueError(f"{data_dir}: every image of the {split!r} split failed; first: {skipped[-1]}")
    units = sorted({r["units"] for r in rows})
    tags = model_tags(len(models))
    labels = _labels(models + ([base] if base is not None else []))  # (the baseline's last)
    summary: dict = {"data": str(data_dir), "split": split, "n": len(rows), "n_total": len(rows) + len(skipped),
                     "box": box_mode, "clean": clean,
                     "skipped": skipped, "notes": notes,
                     "split_file": (split_note or "a split given in memory") if isinstance(split_file, dict)
                     else str(split_file) if split_file else None,
                     "units": units[0] if len(units) == 1 else "mixed (native hd95/nsd summarised per unit)",
                     "nsd_tolerance": nsd_tolerance, "nsd_tolerance_units": units[0] if len(units) == 1 else "mm|px",
                     "models": dict(zip(tags, labels))}
    for tag in tags + ([BASELINE] if base is not None else []):
        summary[tag] = summaries(rows, tag)
    best = max((summary[tag]["dice"].get("median") or 0.0) for tag in tags)
    if best < IMPLAUSIBLE_DICE:  # (said, not refused: a model still being trained scores so too)
        notes.append(f"the median Dice is {best:.2f}, far below a lung model's: check that the reference masks are "
                     "both lungs (lung = white) of these very films, as a heart mask, one lung against the default "
                     "box, or another film's mask scores so, and that the model is a lung model")
    if clicks:
        summary["clicks"] = click_summary(rows, tags + ([BASELINE] if base is not None else []), clicks)
    if base is not None:
        tests = {tag: paired_tests(rows, tag) for tag in tags}
        write_json(out / "wilcoxon.json", tests["model"] if len(tags) == 1 else tests)
        summary["wilcoxon"] = tests
        summary["wilcoxon_dice_p"] = tests["model"]["dice"]["p_value"]
        summary["equivalence_margin"] = float(equivalence_margin)
        summary["equivalence"] = {tag: equivalence_tests(rows, tag, equivalence_margin) for tag in tags}
        summary["mean_delta_ssim"] = float(np.mean([r["delta_ssim"] for r in rows]))
        summary["baseline_label"] = labels[-1]
    write_json(out / "summary.json", summary)
    if skipped:  # beside per_image.csv, one row per film of the split not scored, with why (a table to join on)
        with (out / "skipped.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", "reason"])
            writer.writerows(split_reason(line) for line in skipped)
    if document:
        write_report(out, rows, summary, models, base, chosen, engine=engine, device=device, show=show,
                     command=command)
    return summary
