"""Which films ``adaqat evaluate`` scores when no ``--split`` is given: those the models never trained on.

* a split file (``--split-file``), ``DATA/split.json`` or the ``DATA/train|val|test`` layout: its test part;
* else, when every model is an exported model file that records the split it trained with (the bundled model
  does): the films of ``DATA`` named in none of their train or val lists, in any folder (a copy of the training
  films, or an Annotate dataset made of them, is no unseen site; the note says that names only may coincide);
  all of another site's folder whose names are its own; all, with a warning, where every name coincides. Before,
  the 80:10:10 cut of a folder without a split scored 2 of a site's 20 films, and the report called it complete;
* else (a training checkpoint, an official SAM file, an export without its split): the 80:10:10 cut seeded by
  ``--seed``, as ``adaqat train`` cuts a folder without a split, with its note.
"""
from __future__ import annotations

from pathlib import Path, PureWindowsPath
from typing import Optional, Sequence

from napari_adaqat.data.dataset import discover, names_of_pairs, split_source
from napari_adaqat.data.split import SMALL_DATASET, SPLITS


def auto_split(data: str | Path, split_file: Optional[str | Path], model_paths: Sequence[Optional[Path]],
               seed: int) -> tuple[str, Optional[Path | dict], str]:
    """(the part to score, the split to use: a file, a split made here (a dict) or None, one line saying why) for
    ``--split auto``. Raises ValueError (one line) when every film of ``data`` trained or validated the models."""
    root = Path(data)
    if split_file:
        return "test", Path(split_file), ""
    if not root.is_dir() or split_source(root) != "seeded":
        return "test", None, ""
    recorded = [None if path is None else _provenance(path) for path in model_paths]
    pairs, _ = discover(root, seed=seed)
    if not recorded or any(r is None for r in recorded):
        if len(pairs) < SMALL_DATASET:  # (no test films to score: said now, not as "the 'test' split is empty")
            raise ValueError(f"{data}: {seeded_note(seed, len(pairs))}")
        return "test", None, seeded_note(seed, len(pairs))
    seen: set[str] = set()
    same_folder = False
    for folder, split in recorded:
        parts = names_of_pairs(split, pairs)
        seen |= (set(parts["train"]) | set(parts["val"])) & set(pairs)
        same_folder |= _folder_name(folder) == root.resolve().name.casefold()
    if not seen:
        return "all", None, f"no model trained on the films of {root}: scoring all {len(pairs)} of them"
    unseen = sorted(set(pairs) - seen)
    if same_folder:
        if not unseen:
            raise ValueError(f"{root}: all {len(pairs)} of its films trained or validated the model(s) (the split "
                             "recorded in the model file), so none is left to score fairly; --split all scores them "
                             "anyway (the scores flatter the model)")
        why = (f"{len(seen)} of the {len(pairs)} films of {root} trained or validated the model(s) (the split "
               f"recorded in the model file): scoring the other {len(unseen)}; --split all scores every film")
        return "test", {"train": sorted(seen), "val": [], "test": unseen}, why
    # another folder, films of the same names: a copy of the training films (an Annotate dataset of them) would
    # score as unseen; another site's films whose names only coincide (1.png …) are unseen. Names cannot tell.
    if not unseen:
        return "all", None, (f"all {len(pairs)} films of {root} have the names of films that trained or validated "
                             "the model(s) (the split recorded in the model file), in another folder: scoring all of "
                             "them; if they are copies of those films, the scores flatter the model")
    why = (f"{len(seen)} of the {len(pairs)} films of {root} have the names of films that trained or validated the "
           f"model(s) (the split recorded in the model file): left out as possible copies, scoring the other "
           f"{len(unseen)}; if only their names coincide, --split all scores every film")
    return "test", {"train": sorted(seen), "val": [], "test": unseen}, why


def model_files(refs: Sequence) -> list[Optional[Path]]:
    """The files of the models ``refs`` for ``split="auto"``: a model ref's (``resolved()``; the bundled default's
    too), a :class:`~napari_adaqat.inference.segmenter.Segmenter`'s ``path``; ``None`` for a model in memory
    that names no file (it records no split: the seeded cut); ``None`` refs and a bundled model not installed left
    out (the engine says so)."""
    files: list[Optional[Path]] = []
    for ref in refs:
        if ref is None:
            continue
        if hasattr(ref, "resolved"):
            try:
                files.append(Path(ref.resolved()))
            except ValueError:
                continue
        else:
            path = getattr(ref, "path", None)
            files.append(Path(path) if path else None)
    return files


def seeded_note(seed: int, n_films: Optional[int] = None) -> str:
    """The note of a split that is the 80:10:10 cut seeded by ``seed`` (no split file anywhere) of ``n_films``
    (under :data:`~napari_adaqat.data.split.SMALL_DATASET`: 90:10, no test films, as training cuts them)."""
    if n_films is not None and n_films < SMALL_DATASET:
        return (f"no split file; the seeded cut of {n_films} films (under {SMALL_DATASET}: 90:10, no test films, "
                f"seed {seed}): --split all scores them all (if the model never saw them), --split-file "
                "RUN/split.json --split val the films a run validated on")
    return (f"no split file; using the 80:10:10 cut with seed {seed}. If the model was trained with another seed, "
            "pass --split-file RUN/split.json so no training image is scored.")


def _folder_name(recorded: object) -> str:
    """The last part of a recorded data folder (a POSIX or Windows path), case-folded; '' when none."""
    text = str(recorded or "").rstrip("/\\")
    return PureWindowsPath(text).name.casefold() if "\\" in text else Path(text).name.casefold()


def _provenance(path: Path) -> Optional[tuple[object, dict]]:
    """(the data folder, the split) an exported model file records having trained with; None for a file that
    records none (a training checkpoint, an official SAM checkpoint, an export without its run's split)."""
    from napari_adaqat.model.formats.model_file import read_model_metadata

    try:
        provenance = read_model_metadata(path).get("provenance", {})
    except Exception:  # noqa: BLE001 - not an exported model file; the model loader names a bad one
        return None
    split = provenance.get("split")
    if not isinstance(split, dict) or not all(isinstance(split.get(k), list) for k in SPLITS):
        return None
    return provenance.get("data"), split
