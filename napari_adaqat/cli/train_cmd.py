"""``adaqat train``: Stage 1 (AdaLoRA) or Stage 2 (INT8 QAT), also under torchrun.

Only argument parsing lives here: the help text of every option is the field's help in
:class:`~napari_adaqat.train.config.TrainConfig`, and the run goes through
:func:`napari_adaqat.train.run.run` like any Python caller's.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from napari_adaqat.train.config import FLAGS, field_choices, field_default, field_help, field_type

HELP_EPILOG = """The whole chain (Stage 1 -> Stage 2 -> RUN/model_int8.safetensors + RUN/baseline_fp32.safetensors):
  adaqat train --stage all --preset finetune --data DATA --out runs/mine         # the bundled model, CPU, minutes
  adaqat train --stage all --data DATA --out runs/vitb --checkpoint sam_vit_b_01ec64.pth   # the paper, GPU
  Options set both stages, except Stage 1's own (start weights, adapters, epochs, learning rates), which
  Stage 2 takes from the preset; --qat-epochs N or --set stage2.KEY=VALUE sets Stage 2 alone. After a stop
  or a kill, the same command with --resume goes on from the last finished epoch (finished steps are skipped).
Stage 1 fine-tunes adapters + mask decoder from an official SAM checkpoint:
  adaqat train --stage 1 --data DATA --out runs/s1 --checkpoint sam_vit_b_01ec64.pth --preset paper
Stage 2 adds INT8 fake quantization to the best Stage-1 model:
  adaqat train --stage 2 --from runs/s1 --data DATA --out runs/s2 --preset paper
Several GPUs (one node):   torchrun --nproc_per_node 4 -m napari_adaqat.cli train --stage 1 ...
A few dozen images: --augment --set augment_preset=clinic_zoom --set ema_decay=0.99 (varied films, and
  a moving average of the weights that is validated and saved; see training/*.yaml for whole recipes).
Progress: RUN/progress.jsonl (one JSON line per step and epoch); resume with --resume.
The defaults shown above are the paper preset's; --preset NAME --print-config shows what a preset (and the
  flags given) will use, e.g. finetune's hybrid_tiny, 8 + 2 epochs, batch 8.
From Python: from napari_adaqat import train; train(data="DATA", out="runs/s1", epochs=5)"""

_TYPES = {"int": int, "float": float, "str": str}


def _dest(flag: str) -> str:
    return "from_run" if flag == "--from" else flag[2:].replace("-", "_")


def _help(option: str) -> str:
    text = field_help(option)
    default = field_default(option)
    if default is not None and default != "" and default is not False and "default:" not in text.lower():
        text += f" (default: {default})"
    return text.replace("%", "%%")  # argparse formats help with %


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = HELP_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--stage", choices=["1", "2", "all"], default=None,
                   help=_help("stage").replace(" (default: 1)", "") + "; all = Stage 1 -> Stage 2 -> both model "
                   "files in RUN (see below); default 1 (with --resume: the run's own stage, all for a chain's folder)")
    p.add_argument("--preset", default=None, help=_help("preset"))
    for flag, option in FLAGS.items():
        kind = field_type(option).replace(" | None", "")
        if kind == "bool":  # on only: the preset's value stays unless the flag is given
            p.add_argument(flag, dest=_dest(flag), action="store_true", default=None, help=_help(option))
            continue
        choices = field_choices(option)
        p.add_argument(flag, dest=_dest(flag), type=_TYPES.get(kind, str), default=None,
                       choices=list(choices) if choices else None, help=_help(option))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field, e.g. --set jitter_px=40 or --set adalora.r_init=16 "
                        "(YAML syntax for the value)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.safetensors "
                   "(the run's config.json is the base: repeat only what changes)")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    chain = p.add_argument_group("--stage all (the chain)")
    chain.add_argument("--qat-epochs", type=int, default=None, metavar="N",
                       help="Stage 2 epochs (default: the preset's Stage 2), the same as --set stage2.epochs=N")
    chain.add_argument("--profile", choices=["deploy", "paper"], default=None,
                       help="the INT8 file: deploy = INT8 + FP16 (smallest), paper = INT8 + FP32 (default: deploy)")
    chain.add_argument("--scores", default=None, metavar="FILE.json",
                       help="record these scores (e.g. out-of-fold Dice) in both model files")


def explicit_options(args: argparse.Namespace) -> dict:
    """The TrainConfig options given on the command line (flags and --set), nothing else."""
    import yaml

    options = {option: getattr(args, _dest(flag)) for flag, option in FLAGS.items()
               if getattr(args, _dest(flag)) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            options[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"--set {item!r}: the value is not valid YAML") from None
    return options


def chain_from_args(args: argparse.Namespace):
    """The :class:`~napari_adaqat.train.chain.Chain` that ``--stage all`` and the other flags describe
    (with ``--resume``: the saved chain.json updated by the flags given)."""
    from napari_adaqat.train.chain import Chain, load_chain

    options = explicit_options(args)
    if args.qat_epochs is not None:
        options["stage2.epochs"] = args.qat_epochs
    out, from_run = options.pop("out", None), options.pop("from_run", None)
    if not out:
        raise ValueError("--out RUN is required")
    fields = {"preset": args.preset, "profile": args.profile, "from_run": from_run, "scores": args.scores}
    if args.resume:
        return load_chain(out, options=options, **fields)
    return Chain(out=out, options=options, **{k: v for k, v in fields.items() if v is not None})


RESUME_HINT = "adaqat train: stopped; the last finished epoch is kept: the same command with --resume goes on from it"


def run(args: argparse.Namespace) -> int:
    """``adaqat train``; stopped by Ctrl+C or SIGTERM (the dock's Stop, a scheduler), it says how to go on."""
    try:
        return _run(args)
    except KeyboardInterrupt:
        _hint_resume(args)
        raise
    except SystemExit as exc:
        if exc.code == 128 + 15:  # SIGTERM (train/run.py)
            _hint_resume(args)
        raise


def _hint_resume(args: argparse.Namespace) -> None:
    """Say how to go on, where a finished epoch was kept (before the first one, --resume has nothing to take)."""
    from napari_adaqat.train.chain import chain_paths
    from napari_adaqat.train.paths import run_paths

    out = getattr(args, "out", None)
    runs = (out, chain_paths(out)["stage1"], chain_paths(out)["stage2"]) if out else ()
    if any(run_paths(run)["last"].is_file() for run in runs):
        print(RESUME_HINT, file=sys.stderr)
    elif out and chain_paths(out)["config"].is_file():  # (a chain's folder is kept: the same command is refused)
        print(f"adaqat train: stopped before its first epoch finished: the same command with --resume starts {out} "
              "from the beginning", file=sys.stderr)
    elif out:
        print(f"adaqat train: stopped before its first epoch finished, so {out} holds nothing to resume: the same "
              "command starts again", file=sys.stderr)


def _shown(cfg, start=None) -> dict:
    """``cfg`` as ``--print-config`` shows it: ``model_type`` is the architecture that will train (a model file
    brings its own; Stage 2 that of its Stage 1 ``start``), as the run's ``config.json`` records it."""
    from napari_adaqat.train.paths import run_paths
    from napari_adaqat.train.preflight import start_architecture

    shown = cfg.to_dict()
    own = start_architecture((start or cfg).checkpoint)
    if own is None and getattr(cfg, "from_run", None) and start is None:  # Stage 2 of a run: what it trained
        own = start_architecture(str(run_paths(cfg.from_run)["best"]))
    shown["model_type"] = own or (start.model_type if start is not None else cfg.model_type)
    return shown


def _say_finished(chain, args: argparse.Namespace) -> None:
    """One line where ``--resume`` on a finished chain is given flags that would change it (a finished run is not
    extended: its steps are skipped as done)."""
    from napari_adaqat.train.progress import read_progress

    flag = {option: name for name, option in FLAGS.items()}
    given = sorted(flag.get(k, k) for k in explicit_options(args) if k not in ("out", "data", "device"))
    given += ["--qat-epochs"] * (args.qat_epochs is not None)
    log = chain.paths["progress"]
    if given and log.is_file() and any(r.get("kind") == "chain_done" for r in read_progress(log)):
        print(f"adaqat train: {chain.out} is finished; {', '.join(given)} change nothing in it (a finished run is "
              "not extended: train into a new --out)", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from napari_adaqat.cli.common import check_data_folder
    from napari_adaqat.train.chain import chain_paths
    from napari_adaqat.train.run import resolve_config, run as run_training, run_chain

    check_data_folder(args.data)
    if args.stage is None and args.resume and args.out and chain_paths(args.out)["config"].is_file():
        args.stage = "all"  # (a chain's run folder: its own stage is the chain)
    if args.stage == "all":
        chain = chain_from_args(args)
        if args.resume:
            _say_finished(chain, args)
        if args.print_config:
            stage1 = chain.stage1()
            print(json.dumps({"chain": chain.to_dict(), "stage1": _shown(stage1) if stage1 else None,
                              "stage2": _shown(chain.stage2(), stage1)}, indent=2))
            return 0
        summary = run_chain(chain, resume=args.resume, command=" ".join(["adaqat", *sys.argv[1:]]))
        print(json.dumps(summary))
        _say_next("all", summary, args.data)
        return 0
    if args.qat_epochs is not None or args.profile or args.scores:
        raise ValueError("--qat-epochs, --profile and --scores belong to --stage all")
    cfg = resolve_config(args.preset, None if args.stage is None else int(args.stage), explicit_options(args),
                         args.resume)  # (--resume with another --stage than the run's: refused there)
    if args.print_config:
        print(json.dumps(_shown(cfg), indent=2))
        return 0
    summary = run_training(cfg, resume=args.resume)
    print(json.dumps(summary))
    _say_next(str(cfg.stage), summary, cfg.data, args.preset)
    return 0


def _say_next(stage: str, summary: dict, data: object, preset: str | None = None) -> None:
    """A few lines on stderr (stdout stays the JSON summary): what was made, and the commands that come next."""
    if os.environ.get("RANK", "0") != "0":
        return
    quote, data = shlex.quote, data or "DATA"  # a resumed chain may be given no --data
    last = summary.get("stage2", summary)
    dice = last.get("kept_dice", last.get("best_dice"))  # (the epoch kept as the model: with few films, the last)
    made = (f"the kept model's validation Dice {dice:.4f}{' (Stage 2)' if stage == 'all' else ''}"
            if isinstance(dice, float) else "done")
    if stage == "all":
        model, split = summary["int8"], Path(summary["int8"]).parent / "stage1" / "split.json"
        try:
            part = "test" if json.loads(split.read_text(encoding="utf-8")).get("test") else "val"
        except (OSError, ValueError, AttributeError):
            part = "test"
        lines = [f"{made}; the new model: {model} (its FP32 baseline: {summary['fp32']})",
                 f"adaqat segment FILMS --model {quote(model)} --out masks/   # or napari's Segment dock: model file",
                 f"adaqat evaluate --data {quote(str(data))} --model {quote(model)} "
                 f"--baseline {quote(summary['fp32'])} "
                 f"--split-file {quote(str(split))} --split {part} --out report/   # films it never trained on"]
    elif stage == "1":
        run_dir = summary.get("out", "RUN")
        lines = [f"{made}; Stage 1 run: {run_dir}",
                 f"adaqat train --stage 2 --from {quote(str(run_dir))} --data {quote(str(data))} --out RUN2"
                 + (f" --preset {quote(preset)}" if preset else "")]
    else:
        run_dir = summary.get("out", "RUN")
        lines = [f"{made}; Stage 2 run: {run_dir}",
                 f"adaqat export {quote(str(run_dir))} --out model_int8.safetensors --profile deploy"]
    print(f"adaqat train: {lines[0]}\nnext: " + "\n  or: ".join(lines[1:]), file=sys.stderr)
