"""``adaqat train``: Stage 1 (AdaLoRA) or Stage 2 (INT8 QAT), also under torchrun."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

HELP_EPILOG = """Stage 1 fine-tunes adapters + mask decoder from an official SAM checkpoint:
  adaqat train --stage 1 --data DATA --out runs/s1 --checkpoint sam_vit_b_01ec64.pth --preset paper
Stage 2 adds INT8 fake quantization to the best Stage-1 model:
  adaqat train --stage 2 --from runs/s1 --data DATA --out runs/s2 --preset paper
Several GPUs (one node):   torchrun --nproc_per_node 4 -m napari_adaqat.cli train --stage 1 ...
Progress: RUN/progress.jsonl (one JSON line per step and epoch); resume with --resume."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = HELP_EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--stage", type=int, choices=[1, 2], default=1, help="1 = AdaLoRA fine-tuning, 2 = INT8 QAT")
    p.add_argument("--data", help="dataset folder: DIR/images + DIR/masks, or DIR/{train,val,test}/{images,masks}")
    p.add_argument("--out", help="run folder (checkpoints/, progress.jsonl, split.json)")
    p.add_argument("--from", dest="from_run", help="Stage 2: the Stage-1 run folder to start from")
    p.add_argument("--preset", default=None, help="YAML preset: paper or authors (training/*.yaml), or a .yaml path "
                   "(default: paper)")
    p.add_argument("--model-type", default=None, help="vit_b, vit_l, vit_h, vit_tiny, vit_nano")
    p.add_argument("--checkpoint", default=None, help="start weights: official SAM .pth or one of our files")
    p.add_argument("--mode", default=None, choices=["adalora", "decoder", "lora", "full"], help="Stage-1 mode")
    p.add_argument("--image-size", type=int, default=None, help="encoder input size (position embedding interpolated)")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--accumulate", type=int, default=None, help="gradient accumulation steps")
    p.add_argument("--lr-adapter", type=float, default=None)
    p.add_argument("--lr-decoder", type=float, default=None)
    p.add_argument("--lr-other", type=float, default=None, help="LR of the encoder (full mode) and prompt encoder")
    p.add_argument("--budget", choices=["global", "per_block"], default=None, help="rank pruning budget")
    p.add_argument("--qat-variant", choices=["full", "decoder"], default=None, help="Stage 2: Full QAT or D-QAT")
    p.add_argument("--patience", type=int, default=None, help="early stopping patience (epochs); 0 = off")
    p.add_argument("--augment", action="store_true", default=None, help="random affine + intensity augmentation")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--grad-checkpoint", action="store_true", default=None, help="recompute encoder activations")
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap steps (smoke tests)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field, e.g. --set jitter_px=40 (YAML syntax for the value)")
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.safetensors")
    p.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")


def explicit_options(args: argparse.Namespace) -> dict:
    """The TrainConfig fields given on the command line (flags and --set), nothing else."""
    import yaml

    names = ["data", "out", "from_run", "model_type", "checkpoint", "mode", "image_size", "epochs", "batch_size",
             "accumulate", "lr_adapter", "lr_decoder", "lr_other", "budget", "qat_variant", "patience", "augment",
             "seed", "device", "grad_checkpoint", "max_steps_per_epoch"]
    options = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            options[key.strip().replace("-", "_")] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"--set {item!r}: the value is not valid YAML") from None
    return options


def resolve_config(args: argparse.Namespace):
    """Defaults ← preset ← command line; with --resume, the run's saved config ← command line."""
    from napari_adaqat.train.config import TrainConfig, make_config
    from napari_adaqat.train.setup import run_paths

    options = explicit_options(args)
    if args.resume and options.get("out"):
        saved = run_paths(options["out"])["config"]
        if not saved.is_file():
            raise ValueError(f"{options['out']}: nothing to resume (no config.json); run without --resume")
        values = json.loads(saved.read_text())
        values.update(options)
        return TrainConfig.from_dict(values)
    return make_config(args.preset or "paper", args.stage, options)


def check_run_folder(cfg, resume: bool) -> None:
    """Refuse anything that would overwrite a run or write into the data."""

    from napari_adaqat.train.setup import run_paths

    out = Path(cfg.out).resolve()
    paths = run_paths(cfg.out)
    if resume and not paths["last"].is_file():
        raise ValueError(f"{paths['last']}: nothing to resume (no checkpoint yet); run without --resume")
    if not resume and paths["last"].is_file():
        raise FileExistsError(f"{cfg.out} already holds a run; pass --resume to continue it or choose another --out")
    if cfg.from_run and Path(cfg.from_run).resolve() == out:
        raise ValueError("--out must differ from --from (the Stage-1 run is never overwritten)")
    data = Path(cfg.data).resolve()
    if out == data or data in out.parents:
        raise ValueError(f"--out {cfg.out} is inside the data folder {cfg.data}; choose another folder")


def _exit_cleanly_on_sigterm() -> None:
    """SIGTERM (the dock's Stop, torchrun, a scheduler) becomes SystemExit, so ``finally`` blocks
    run and a checkpoint being written leaves no temporary file behind."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))


def _remove_stale_temp_files(out: Path) -> None:
    """Delete ``.NAME.tmpPID`` files that a hard kill (SIGKILL, power loss) left in RUN/checkpoints."""
    for tmp in (out / "checkpoints").glob(".*.tmp*"):
        tmp.unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    cfg = resolve_config(args)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if not cfg.data or not cfg.out:
        raise ValueError("--data and --out are required")
    check_run_folder(cfg, args.resume)
    _exit_cleanly_on_sigterm()
    if os.environ.get("RANK", "0") == "0":
        _remove_stale_temp_files(Path(cfg.out))
    from napari_adaqat.model.device import resolve_device
    from napari_adaqat.train.loop import train

    cfg.device = resolve_device(cfg.device)
    summary = train(cfg, resume=args.resume)
    print(json.dumps(summary))
    return 0
