"""The ``adaqat`` command line: one sub-command per module in this package."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from napari_adaqat.util.errors import first_line

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = {
    "segment": "Segment images or folders with a box and/or point prompts; writes masks and results.csv.",
    "train": "Fine-tune SAM: Stage 1 (AdaLoRA), Stage 2 (INT8 QAT), or all: Stage 1 -> Stage 2 -> model files.",
    "export": "Write an INT8 (or FP32) model file from a training run or an official SAM .pth.",
    "evaluate": "Score a model (and a baseline) on a dataset: Dice, IoU, NSD, HD95, Wilcoxon, SSIM.",
    "info": "Parameter counts, ranks, quantized layers and compression of a model file or preset.",
    "bench": "Time our predictor against stock segment_anything in the same run.",
}

EPILOG = """examples:
  adaqat segment scans/ --out masks/              # bundled default model, whole-image box
  adaqat evaluate --data DATA --split all --baseline default --out report/   # Dice etc. against your masks
  adaqat train --stage all --preset finetune --data DATA --out runs/mine     # fine-tune the bundled model (CPU)
  adaqat train --stage all --data DATA --out runs/vitb --checkpoint sam_vit_b_01ec64.pth   # the paper (GPU)
  adaqat export runs/s2 --out model_int8.safetensors --profile deploy   # a Stage-2 run -> one model file
  adaqat info default                              # what the bundled model is, and how it was made
DATA is a folder with images/ and masks/ (same file names); see 'adaqat train --help'.
run 'adaqat COMMAND --help' for the options of each command."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Examples in an epilog keep their lines; an option's default is added where it tells something
    (not None or an empty list, not a flag's True/False, not where its help already names one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, [], ()) or isinstance(action.default, bool) or "default" in text:
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """argparse whose one error line ends in a hint (a did-you-mean, an example: :func:`error_hint`)."""

    def error(self, message: str):
        from napari_adaqat.cli.common import error_hint

        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{error_hint(self, message)}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="adaqat", description="AdaLoRA-QAT lung segmentation for chest X-rays (SAM + adapters + INT8).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from napari_adaqat import __version__

    parser.add_argument("--version", action="version", version=f"napari-adaqat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"napari_adaqat.cli.{name}_cmd")
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(run=module.run)
    parser.commands = sub.choices  # name -> its parser
    return parser


def _stdout_gone() -> bool:
    """Whether stdout is a pipe whose reader has closed its end (poll: POLLERR); if so, stdout is pointed at
    /dev/null so that Python's last flush of it stays quiet too."""
    import select

    try:
        fd = sys.stdout.fileno()
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        if not any(events & select.POLLERR for _, events in poller.poll(0)):
            return False
        os.dup2(os.open(os.devnull, os.O_WRONLY), fd)
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or not a file descriptor (a test's capture)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # refused by the command that was given them, with its usage and a did-you-mean
            command = parser.commands.get(args.command, parser) if getattr(args, "command", None) else parser
            command.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as exc:  # argparse printed its error; a file named like an option gets a hint
        from napari_adaqat.cli.common import option_like_hint

        hint = option_like_hint(sys.argv[1:] if argv is None else list(argv)) if exc.code else None
        if hint:
            print(f"adaqat: {hint}", file=sys.stderr)
        raise
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("adaqat: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if _stdout_gone():  # `adaqat info default | head`: the reader had all it wanted
            return 0
        print(f"adaqat {args.command}: error: {first_line(exc)}", file=sys.stderr)
        return 2
    except (ValueError, OSError, RuntimeError) as exc:  # expected user-facing failures
        print(f"adaqat {args.command}: error: {first_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # anything else: still one line, but say it is unexpected
        print(f"adaqat {args.command}: unexpected error ({type(exc).__name__}): {first_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
