"""``adaqat train``: Stage 1 (AdaLoRA) or Stage 2 (INT8 QAT), also under torchrun.

Only argument parsing lives here: the help text of every option is the field's help in
:class:`~napari_adaqat.train.config.TrainConfig`, and the run goes through
:func:`napari_adaqat.train.run.run` like any Python caller's.
"""
from __future__ import annotations

import argparse
import json

from napari_adaqat.train.config import field_choices, field_default, field_help, field_type

HELP_EPILOG = """Stage 1 fine-tunes adapters + mask decoder from an official SAM checkpoint:
  adaqat train --stage 1 --data DATA --out runs/s1 --checkpoint sam_vit_b_01ec64.pth --preset paper
Stage 2 adds INT8 fake quantization to the best Stage-1 model:
  adaqat train --stage 2 --from runs/s1 --data DATA --out runs/s2 --preset paper
Several GPUs (one node):   torchrun --nproc_per_node 4 -m napari_adaqat.cli train --stage 1 ...
A few dozen images: --augment --set augment_preset=clinic_zoom --set ema_decay=0.99 (varied films, and
  a moving average of the weights that is validated and saved; see training/*.yaml for whole recipes).
Progress: RUN/progress.jsonl (one JSON line per step and epoch); resume with --resume.
From Python: from napari_adaqat import train; train(data="DATA", out="runs/s1", epochs=5)"""

# flag -> TrainConfig option it sets (dotted for the nested adalora/qat sections)
FLAGS = {
    "--data": "data", "--out": "out", "--from": "from_run", "--model-type": "model_type",
    "--checkpoint": "checkpoint", "--mode": "mode", "--image-size": "image_size", "--epochs": "epochs",
    "--batch-size": "batch_size", "--accumulate": "accumulate", "--lr-adapter": "lr_adapter",
    "--lr-decoder": "lr_decoder", "--lr-other": "lr_other", "--budget": "adalora.budget",
    "--qat-variant": "qat.variant", "--patience": "patience", "--augment": "augment", "--seed": "seed",
    "--device": "device", "--grad-checkpoint": "grad_checkpoint", "--max-steps-per-epoch": "max_steps_per_epoch",
}
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
    p.add_argument("--stage", type=int, choices=[1, 2], default=1, help=_help("stage"))
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


def run(args: argparse.Namespace) -> int:
    from napari_adaqat.train.run import resolve_config, run as run_training

    cfg = resolve_config(args.preset, args.stage, explicit_options(args), args.resume)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    summary = run_training(cfg, resume=args.resume)
    print(json.dumps(summary))
    return 0
