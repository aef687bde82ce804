"""The one way to train: ``run(config)`` for a resolved :class:`TrainConfig`, ``run_chain(chain)`` for
Stage 1 → Stage 2 → both model files, ``train(...)`` for people.

Both ``adaqat train`` and Python callers come through here, so every caller gets the same
run-folder contract (:func:`~napari_adaqat.train.paths.check_run_folder`), the resume rule
(the run's saved config.json ← the caller's explicit options), SIGTERM → ``SystemExit(143)``
(so ``finally`` blocks run and no half-written checkpoint survives), cleanup of temporary
files a hard kill left behind, and device resolution.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from napari_adaqat.model.device import resolve_device
from napari_adaqat.train.chain import Chain, chain_preflight, finished, load_chain, recipe_file
from napari_adaqat.train.compare import compare_runs
from napari_adaqat.train.config import TrainConfig, make_config, merge_options
from napari_adaqat.train.loop import train_stage
from napari_adaqat.train.paths import run_paths, run_stage
from napari_adaqat.train.progress import ProgressLog
from napari_adaqat.train.preflight import preflight
from napari_adaqat.util.atomic import atomic_write_text, remove_stale_temps

__all__ = ["run", "run_chain", "train", "resolve_config"]


def resolve_config(preset: str | None, stage: int | None, options: dict, resume: bool = False) -> TrainConfig:
    """Defaults ← YAML preset ← ``options`` (``stage`` None: 1); with ``resume``, the run's saved config ←
    ``options`` (``options["out"]`` names the run; ``preset`` and ``stage`` are the saved run's then: a ``stage``
    given that is not the run's is refused, as the saved one would silently win)."""
    options = {k: v for k, v in options.items() if v is not None}
    if resume and options.get("out"):
        out = options["out"]
        saved = run_paths(out)["config"]
        if not saved.is_file():
            raise ValueError(f"{out}: nothing to resume (no config.json); run without --resume")
        own = run_stage(out)
        if stage is not None and own is not None and own != int(stage):
            other = f"; Stage 2 from it: --stage 2 --from {out} --out {out}_stage2" if own == 1 else ""
            raise ValueError(f"{out} is a Stage-{own} run: --resume continues it with --stage {own}{other}")
        return TrainConfig.from_dict(merge_options(json.loads(saved.read_text()), options))
    return make_config(preset or "paper", 1 if stage is None else int(stage), options)


@contextlib.contextmanager
def _sigterm_exits() -> Iterator[None]:
    """SIGTERM (the dock's Stop, torchrun, a scheduler) becomes ``SystemExit(128 + 15)`` while
    training, so ``finally`` blocks run; the previous handler is back afterwards. Signal handlers
    can only be set in the main thread: elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _remove_stale_temp_files(out: str | Path) -> None:
    """Delete the temporary files that a hard kill (SIGKILL, power loss) left beside the run's
    checkpoints and split; a temp whose writer is still alive is kept (:func:`remove_stale_temps`)."""
    paths = run_paths(out)
    for path in (paths["last"], paths["best"], paths["ema"], paths["split"]):  # the split: rank 0's
        remove_stale_temps(path.parent, path.name)


def run(config: TrainConfig, resume: bool = False) -> dict:
    """Train one stage as ``config`` says, into ``config.out``; returns the summary
    (``best_dice``, ``epochs_run``, ``out``).

    ``config`` is complete (build it with :func:`resolve_config`, :func:`train` or
    ``TrainConfig``); ``resume`` continues ``RUN/checkpoints/last.safetensors``.
    Raises ValueError / FileExistsError (one line) when the run folder or options are wrong.
    """
    preflight(config, resume)
    config = dataclasses.replace(config, device=resolve_device(config.device))
    with _sigterm_exits():
        if os.environ.get("RANK", "0") == "0":
            _remove_stale_temp_files(config.out)
        return train_stage(config, resume=resume)


def train(data: str | Path | None = None, out: str | Path | None = None, *, preset: str | None = None,
          stage: int | str | None = None, resume: bool = False, config: TrainConfig | None = None, **options) -> dict:
    """Fine-tune SAM (Stage 1: AdaLoRA) or quantize it (Stage 2: INT8 QAT), as ``adaqat train``; ``stage``
    None is 1 (with ``resume``: the run's own; another is refused); ``stage="all"`` runs the chain Stage 1 →
    Stage 2 → ``out/model_int8.safetensors`` + ``out/baseline_fp32.safetensors`` (:mod:`~napari_adaqat.train.chain`;
    ``profile``, ``from_run``,
    ``scores`` and ``"stage2.KEY"`` options as there; ``config``: its Stage 1).

    The configuration is the defaults ← the YAML ``preset`` (paper, authors, or a .yaml path) ←
    ``options`` (any TrainConfig field, e.g. ``epochs=5``, ``model_type="vit_nano"``,
    ``adalora={"r_init": 16}`` or old flat names such as ``r_init=16``). With ``config``, that
    config ← ``options`` instead. With ``resume=True``, the run's saved config.json ← ``options``
    (``data`` may then be left out). Returns the summary (``best_dice``, ``epochs_run``, ``out``)::

        from napari_adaqat import train
        train(data="DATA", out="runs/s1", checkpoint="sam_vit_b_01ec64.pth")
        train(data="DATA", out="runs/s2", stage=2, from_run="runs/s1")
        train(data="DATASET", out="runs/mine", stage="all", preset="finetune")
    """
    if stage == "all":
        return _train_chain(data, out, preset, resume, config, options)
    preset = preset or "paper"
    options.update({k: v for k, v in (("data", data), ("out", out)) if v is not None})
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}  # config.json holds strings
    if config is not None:
        cfg = TrainConfig.from_dict(merge_options(config.to_dict(), options))
    else:
        cfg = resolve_config(preset, stage, options, resume)
    return run(cfg, resume=resume)


def _train_chain(data, out, preset: str | None, resume: bool, config: TrainConfig | None, options: dict) -> dict:
    fields = {k: options.pop(k, None) for k in ("profile", "from_run", "scores")}
    if data is not None:
        options["data"] = str(data)
    if out is None:
        raise ValueError("out (the run folder) is required")
    if resume:
        chain = load_chain(out, options=options, preset=preset, **fields)
    elif config is not None:
        chain = Chain.from_config(TrainConfig.from_dict(merge_options(config.to_dict(), options)), out,
                                  **{k: v for k, v in fields.items() if v is not None})
    else:
        chain = Chain(out=str(out), preset=preset, options=options, **{k: v for k, v in fields.items() if v is not None})
    return run_chain(chain, resume=resume)


def _say(text: str) -> None:
    print(f"adaqat train --stage all: {text}", file=sys.stderr, flush=True)


def run_chain(chain: Chain, resume: bool = False, command: str | None = None) -> dict:
    """Run ``chain`` (:mod:`napari_adaqat.train.chain`: each step skipped when finished, resumed when it has
    a checkpoint, else started); returns the summary: both model files, the stage summaries and the wall
    time. Raises ValueError / FileExistsError (one line) before writing when it cannot run; a run refused
    by its first step (e.g. the data check) leaves no folder it created."""
    chain_preflight(chain, resume)
    paths = chain.paths
    created = not paths["root"].exists()
    fresh = created or not any(paths["root"].iterdir())  # (an empty folder made for it)
    paths["root"].mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths["config"], json.dumps(chain.to_dict(), indent=1))
    try:
        return _run_steps(chain, resume, command, paths)
    except BaseException:
        own = {paths["config"].name, paths["progress"].name}
        if fresh and {p.name for p in paths["root"].iterdir()} <= own:  # refused before any step wrote: no trace
            for name in own:
                (paths["root"] / name).unlink(missing_ok=True)
            if created:
                paths["root"].rmdir()
        raise


def _run_steps(chain: Chain, resume: bool, command: str | None, paths: dict) -> dict:
    """The chain's four steps (see :func:`run_chain`), and a fifth where its start model carries a vote."""
    from napari_adaqat.train.export_run import export_run
    from napari_adaqat.train.vote_finetune import carries_vote, tune_chain_vote, vote_step_wanted

    log = ProgressLog(paths["progress"])
    t0, summary = time.time(), {"int8": str(paths["int8"]), "fp32": str(paths["fp32"])}
    recipe = recipe_file(chain)
    steps = [("stage1", chain.stage1()), ("stage2", chain.stage2()), ("int8", None), ("fp32", None)]
    if vote_step_wanted(chain):
        steps.append(("vote", None))  # the start model's vote, fine-tuned on the same films (train/vote_finetune)
    for index, (step, cfg) in enumerate(steps, start=1):
        where = {"stage1": chain.stage1_dir, "stage2": paths["stage2"]}.get(step, paths.get(step))
        done = (finished(where) if step.startswith("stage") else
                all(carries_vote(paths[f]) for f in ("int8", "fp32")) if step == "vote" else paths[step].is_file())
        if done or (step == "stage1" and cfg is None):
            log.write("chain", step=step, index=index, steps=len(steps), status="skipped", path=str(where))
            _say(f"step {index}/{len(steps)} {step}: done already ({where})")
            continue
        log.write("chain", step=step, index=index, steps=len(steps), status="start", path=str(where))
        _say(f"step {index}/{len(steps)} {step} → {where}")
        if step == "vote":
            with _sigterm_exits():
                summary[step] = tune_chain_vote(chain, lambda rec: log.write("vote_epoch", **rec))
        elif cfg is not None:
            summary[step] = run(cfg, resume=resume and run_paths(where)["last"].is_file())
        else:
            source, profile = (paths["stage2"], chain.profile) if step == "int8" else (chain.stage1_dir, "fp32")
            export_run(source, paths[step], profile=profile, force=True, command=command, recipe=recipe,
                       scores=chain.scores)
        log.write("chain", step=step, index=index, steps=len(steps), status="done", path=str(where))
    summary["seconds"] = round(time.time() - t0, 1)
    compared = compare_runs(chain.stage1_dir, paths["stage2"])  # the new model against its start (train/compare.py)
    if compared is not None:
        summary["compared"] = compared.to_dict()
    log.write("chain_done", **summary)
    if compared is not None:
        _say(compared.line())
    return summary
