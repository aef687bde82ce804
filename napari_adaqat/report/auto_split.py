"""Which films ``adaqat evaluate`` scores when no ``--split`` is given: those the models never trained on.

* a split file (``--split-file``), ``DATA/split.json`` or the ``DATA/train|val|test`` layout: its test part;
* else, a model file whose provenance split names films of ``DATA`` in its train or val list (the folder it was
  trained on): the test part of that split, written to a file the report keeps;
* else (another site's folder of films and masks, none of them seen by the models): every film. Before, the
  80:10:10 cut of a folder without a split scored 2 of a site's 20 films, and the report called it complete.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from napari_adaqat.data.dataset import discover, names_of_pairs, split_source
from napari_adaqat.data.folders import check_output_folder
from napari_adaqat.data.split import SPLITS

MODEL_SPLIT_FILE = "split_of_the_model.json"  # in the report folder: the split a model was trained with


def auto_split(data: str | Path, split_file: Optional[str | Path], model_paths: Sequence[Path], out: str | Path,
               seed: int) -> tuple[str, Optional[Path], str]:
    """(the part to score, the split file to use or None, one line saying why) for ``--split auto``."""
    root = Path(data)
    if split_file:
        return "test", Path(split_file), ""
    if not root.is_dir() or split_source(root) != "seeded":
        return "test", None, ""
    pairs, _ = discover(root, seed=seed)
    for path in model_paths:
        split = _provenance_split(path)
        if split is None:
            continue
        parts = names_of_pairs(split, pairs)
        seen = [n for n in pairs if n in set(parts["train"]) | set(parts["val"])]
        if seen:
            tested = sum(n in pairs for n in parts["test"])
            if not tested:
                raise ValueError(f"{root}: all {len(seen)} of its films are in the train or val list of {path.name}'s "
                                 "split, so none is left to score it fairly; --split all scores them anyway (the "
                                 "scores flatter it)")
            check_output_folder(out, [root], what="data folder")  # (evaluate's own check, before writing there)
            folder = Path(out)
            folder.mkdir(parents=True, exist_ok=True)
            kept = folder / MODEL_SPLIT_FILE
            kept.write_text(json.dumps({k: parts[k] for k in SPLITS}, indent=1), encoding="utf-8")
            return "test", kept, (f"{len(seen)} of the {len(pairs)} films trained {path.name}: scoring the test part "
                                  f"of its split ({tested} films, kept in {kept}); --split all scores every film")
    return "all", None, (f"no split in {root} and no model trained on its films: scoring all {len(pairs)} films "
                         "(a model trained on them: pass its RUN/split.json as --split-file)")


def _provenance_split(path: Path) -> Optional[dict]:
    """The split recorded in a model file's provenance (None for another file, or none recorded)."""
    from napari_adaqat.model.formats.model_file import read_model_metadata

    try:
        split = read_model_metadata(path).get("provenance", {}).get("split")
    except Exception:  # noqa: BLE001 - an official SAM checkpoint, a file the model loader will name
        return None
    if not isinstance(split, dict) or not all(isinstance(split.get(k), list) for k in SPLITS):
        return None
    return split
