"""A fine-tune keeps its start model's vote, taught the run's films too: the last step of ``adaqat train --stage
all`` when the start file carries a vote (the bundled model v4.3 does; :mod:`napari_adaqat.model.vote_unet`).

Left out, the vote's gain is lost (fine-tuned on 20 films of our own convention, the model alone scored 0.006
below the bundled one); kept as it is, it votes for the convention it learnt (on films without the lung behind
the heart: 0.909 against 0.919 alone); fine-tuned ``vote_epochs`` (15) at a low rate from its own weights on the
run's train films, it follows the new masks and keeps its gain (BENCHMARKS.md, "A fine-tune keeps the vote").
The two model files get it as ``vote_file`` adds a vote (their own tensors bit for bit); each file is replaced
at once, and a file that already carries it is left as it is (a stopped step goes on).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import torch
from safetensors import safe_open

from napari_adaqat.model.device import resolve_device
from napari_adaqat.model.formats.model_file import read_model_metadata
from napari_adaqat.model.formats.vote_file import PREFIX, add_vote
from napari_adaqat.train.preflight import start_checkpoint
from napari_adaqat.util.errors import first_line

VOTE_LR = 3e-4  # a tenth of a vote's own training rate: it starts from weights that already segment
RESULT = "unet.json"  # a finished vote's record in RUN/vote/ (beside unet.safetensors; train/vote_train.py)


def _voted_start(checkpoint: str | None) -> Path | None:
    """The start file that ``checkpoint`` names when it is a model file carrying a vote, else None (read from its
    metadata only)."""
    path = start_checkpoint(checkpoint)
    if path is None or path.suffix != ".safetensors" or not path.is_file():
        return None
    try:
        return path if carries_vote(path) else None
    except (ValueError, KeyError, OSError):  # a run's checkpoint, an official file: no vote
        return None


def start_vote(checkpoint: str | None) -> dict[str, torch.Tensor] | None:
    """The vote's weights (FP32, prefix taken off) in the start file that ``checkpoint`` names, else None."""
    path = _voted_start(checkpoint)
    if path is None:
        return None
    with safe_open(str(path), "pt") as f:
        return {k[len(PREFIX):]: f.get_tensor(k).float() for k in f.keys() if k.startswith(PREFIX)}


def carries_vote(path: Path) -> bool:
    """Whether the model file ``path`` carries a vote."""
    return bool(read_model_metadata(path)["spec"].get("vote_unet"))


def _stage1(chain) -> tuple[dict, int]:
    """(Stage 1's settings as the chain gives them (a fresh chain) or as its run saved them (``--from RUN``,
    resume), the vote step's epochs: the chain's ``vote_epochs``, else Stage 1's)."""
    from napari_adaqat.train.config import TrainConfig
    from napari_adaqat.train.paths import run_paths

    saved = run_paths(chain.stage1_dir)["config"]
    first = chain.stage1()
    settings = json.loads(saved.read_text()) if saved.is_file() else first.to_dict() if first is not None else {}
    return settings, int(chain.options.get("vote_epochs", settings.get("vote_epochs", TrainConfig.vote_epochs)))


def vote_step_wanted(chain) -> bool:
    """Whether the chain ends with the vote step: its start file carries a vote (or the step has begun), and
    ``vote_epochs`` is not 0; only the main process of a torchrun run does it."""
    if os.environ.get("RANK", "0") != "0":
        return False
    settings, epochs = _stage1(chain)
    return bool(epochs) and ((chain.paths["vote"] / RESULT).is_file()
                             or _voted_start(settings.get("checkpoint")) is not None)


def tune_chain_vote(chain, on_epoch: Callable[[dict], None] | None = None) -> dict:
    """The chain's vote step: :func:`tune_vote` with Stage 1's start file, data, split and seed, on this run's
    ``--device`` (not Stage 1's saved one: ``--from RUN`` may run where its GPU is not); ``on_epoch``: each epoch's
    record, for the chain's progress log."""
    from napari_adaqat.train.paths import run_paths

    first, epochs = _stage1(chain)
    paths = chain.paths
    return tune_vote(first.get("checkpoint"), first["data"], run_paths(chain.stage1_dir)["split"], paths["vote"],
                     epochs, [paths["int8"], paths["fp32"]], seed=int(first.get("seed", 0)),
                     masks_as_given=bool(first.get("masks_as_given")),
                     device=str(chain.options.get("device") or "auto"), on_epoch=on_epoch)


def tune_vote(checkpoint: str | None, data: str, split_file: Path, out: Path, epochs: int, files: list[Path],
              augment_preset: str = "clinic", seed: int = 0, masks_as_given: bool = False,
              device: str = "cpu", on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Fine-tune the vote of ``checkpoint`` (:func:`start_vote`) ``epochs`` on the train names of ``split_file``
    (the run's ``split.json``) of ``data`` into ``out`` on ``device`` (cpu, cuda, auto…), then add it to each
    model file of ``files`` that has none; returns the vote's record (``unet.json``).  A finished ``out`` is not
    redone (its start file is then not read)."""
    from napari_adaqat.model.vote_unet import VoteUNet
    from napari_adaqat.train.vote_train import train_vote_unet

    if (out / RESULT).is_file():
        info = json.loads((out / RESULT).read_text())
    else:
        init = start_vote(checkpoint)
        if init is None:
            raise ValueError(f"{start_checkpoint(checkpoint) or checkpoint}: no vote to fine-tune there (the start "
                             "file is gone or has none); --vote-epochs 0 leaves the vote out")
        split = json.loads(Path(split_file).read_text())
        where = resolve_device(device)  # (its error is its own, not the stopped step's below)
        try:
            info = train_vote_unet(Path(data), out, epochs=epochs, width=VoteUNet.from_state(init).width, lr=VOTE_LR,
                                   augment_preset=augment_preset, seed=seed, init=init, init_name=str(checkpoint),
                                   split=split, quiet=True, masks_as_given=masks_as_given, device=where,
                                   on_epoch=on_epoch)
        except ValueError as exc:  # a stopped step of other settings (another --vote-epochs, seed)
            raise ValueError(f"{first_line(exc)} (the chain's vote step: delete {out} to redo it)") from None
    note = {**info, "fine_tuned_from": str(start_checkpoint(checkpoint) or checkpoint)}
    for path in files:
        if carries_vote(path):
            continue
        new = path.with_name(path.name + ".vote.tmp")
        new.unlink(missing_ok=True)
        add_vote(path, out / "unet.safetensors", new, note)
        os.replace(new, path)
    return info
