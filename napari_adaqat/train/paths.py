"""A training run's folder: its layout and the one check before writing into it.

Torch-free, so the Train dock can import it.
"""
from __future__ import annotations

import json
from pathlib import Path

from napari_adaqat.data.folders import check_output_folder
from napari_adaqat.data.layout import is_adaqat_output
from napari_adaqat.data.runs import CHAIN_FILE, run_paths

__all__ = ["CHAIN_FILE", "chain_note", "check_run_folder", "run_paths", "run_stage"]



def check_run_folder(out: str | Path, data: str | Path, *, resume: bool, from_run: str | Path | None = None) -> None:
    """Refuse anything that would overwrite a run or write into the data (one-line messages).

    Raises ValueError (nothing to resume, ``out`` equal to ``from_run``, no data folder, ``out``
    inside the data folder) or FileExistsError (``out`` already holds a run and ``resume`` is off).
    """
    paths = run_paths(out)
    if (Path(out) / CHAIN_FILE).is_file():  # its log and files at the top would be mixed with (or replaced by) this run's
        raise FileExistsError(f"{out} holds a chain run (adaqat train --stage all); continue it with --stage all "
                              "--resume, or choose another --out")
    if is_adaqat_output(Path(out)):  # a run's files would be mixed with the masks of a segmented folder
        raise FileExistsError(f"--out {out} holds the results of adaqat segment (its results.csv, journal or lock); choose "
                              "another --out folder for the run")
    if resume and not paths["last"].is_file():
        raise ValueError(f"{paths['last']}: nothing to resume (no checkpoint yet); run without --resume")
    if not resume and paths["last"].is_file():  # (a log without a checkpoint: an attempt stopped in epoch 1, redone)
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    foreign = [paths[k].name for k, key in (("config", "stage"), ("split", "seed")) if _foreign(paths[k], key)]
    if not resume and foreign:
        raise FileExistsError(f"--out {out} holds {', '.join(foreign)} not written by adaqat train, which a run "
                              "would replace; choose another --out folder")
    if from_run and Path(from_run).resolve() == Path(out).resolve():
        raise ValueError("--out must differ from --from (the Stage-1 run is never overwritten)")
    if not Path(data).is_dir():
        raise ValueError(f"{data}: data folder not found")
    check_output_folder(out, [data], option="--out", what="data folder")


def chain_note(folder: str | Path, part: str = "stage1") -> str:
    """What a chain's folder (``--stage all``) holds in place of a stage run: its model file, and the stage run
    ``part`` (``stage1``/``stage2``) that a command given the chain's folder wants (newcomer QA); "" for others."""
    folder = Path(folder)
    if not (folder / CHAIN_FILE).is_file():
        return ""
    return (f": it is an adaqat train --stage all run, whose model is {folder / 'model_int8.safetensors'} and whose "
            f"{part.replace('stage', 'Stage ')} run is {folder / part}")


def run_stage(out: str | Path) -> int | None:
    """The stage (1 or 2) that stage run ``out`` recorded in its config.json, None when it cannot be read."""
    try:
        stage = json.loads(run_paths(out)["config"].read_text(encoding="utf-8")).get("stage")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None
    return stage if stage in (1, 2) else None


def _foreign(path: Path, key: str) -> bool:
    """Whether ``path`` exists but is not a run's own file (a JSON object holding ``key``: a run's config.json
    has its stage, a run's split.json its seed), so a run must not replace it."""
    if not path.is_file():
        return False
    try:
        return key not in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, TypeError):
        return True
