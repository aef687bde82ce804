"""The ``adaqat`` command line: one sub-command per module in this package."""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import warnings

from napari_adaqat.util.errors import first_line

__all__ = ["COMMANDS", "SIGPIPE_STATUS", "build_parser", "main"]

SIGPIPE_STATUS = 128 + 13  # 141: what shells report for a writer whose reader left (SIGPIPE), e.g. `| head`

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

    given: list[str] = []  # the words this parser was given (a required option missing: was it mistyped?)

    def parse_known_args(self, args=None, namespace=None):  # noqa: D102 - argparse's
        self.given = [str(a) for a in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        from napari_adaqat.cli.common import error_hint

        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}{error_hint(self, message, self.given)}\n")

    def _print_message(self, message: str, file=None) -> None:
        """As argparse's (help, usage, --version), but a reader that left (``adaqat train --help | head``) is
        not swallowed: :func:`main` answers it with :data:`SIGPIPE_STATUS`."""
        if message:
            try:
                (file or sys.stderr).write(message)
            except BrokenPipeError:
                raise
            except (AttributeError, OSError):  # no stream at all (pythonw), as argparse
                pass


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
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or not a file descriptor (a test's capture)
        return False
    _silence_stdout()
    return True


def _silence_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered for a reader that left goes nowhere, quietly
    (else Python's flush at exit prints "Exception ignored ... BrokenPipeError")."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run ``adaqat ARGV``; the exit status: 0 done, 1 some inputs failed or an unexpected error, 2 a usage or
    input error (one line on stderr), 130 interrupted, 141 (:data:`SIGPIPE_STATUS`) the reader of stdout left
    before the output was written (``adaqat info default | head -1``), quietly."""
    with _SigpipeSeen() as sigpipe:
        try:
            try:
                outcome: int | SystemExit = _main(argv)
            except SystemExit as exc:  # --help, --version and usage errors end here
                outcome = exc
            if sys.stdout is not None:
                sys.stdout.flush()  # a reader that left shows here, not in Python's last flush at exit
        except BrokenPipeError:
            _silence_stdout()
            return SIGPIPE_STATUS
    if sigpipe.seen and _stdout_gone():  # a partial write raised nothing (unbuffered stdout: PYTHONUNBUFFERED)
        return SIGPIPE_STATUS
    if isinstance(outcome, SystemExit):
        raise outcome
    return outcome


class _SigpipeSeen:
    """Notes SIGPIPE (a write met a pipe whose reader left) while a command runs. Python ignores the signal
    and raises BrokenPipeError instead, except where a write was partial: unbuffered stdout
    (PYTHONUNBUFFERED) then drops the rest without an error, and the signal is the one sign of it."""

    def __enter__(self) -> "_SigpipeSeen":
        self.seen = False
        self._previous = None
        try:
            previous = signal.getsignal(signal.SIGPIPE)
            signal.signal(signal.SIGPIPE, self._note)
            self._previous = signal.SIG_IGN if previous is None else previous
        except (AttributeError, ValueError):  # no SIGPIPE (Windows), or not the main thread
            pass
        return self

    def _note(self, *_: object) -> None:
        self.seen = True

    def __exit__(self, *_: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGPIPE, self._previous)


def _reading_warnings(command: str, show):
    """A ``warnings.showwarning`` that prints a reader's ImageReadWarning as one line, ``adaqat COMMAND:
    warning: <file>: ...`` (past any progress bar), and passes every other warning to ``show``."""
    def showwarning(message, category, filename, lineno, file=None, line=None):
        if category.__name__ != "ImageReadWarning":
            return show(message, category, filename, lineno, file, line)
        from tqdm import tqdm

        tqdm.write(f"adaqat {command}: warning: {first_line(message)}", file=sys.stderr)
    return showwarning


def _refuse_empty(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A usage error for an empty argument (``--out "$OUTDIR"`` with the variable unset): an empty path would
    otherwise mean the working folder, and the masks would land there without a word."""
    command = parser.commands.get(getattr(args, "command", None) or "")
    for action in command._actions if command is not None else ():
        value = getattr(args, action.dest, None)
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, str) and not v.strip() for v in values):
            name = "/".join(action.option_strings) or action.metavar or action.dest
            command.error(f"{name} is empty (an unset shell variable?); give a "
                          f"{'value' if action.option_strings else 'file or folder'}")


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # refused by the command that was given them, with its usage and a did-you-mean
            command = parser.commands.get(args.command, parser) if getattr(args, "command", None) else parser
            command.error(f"unrecognized arguments: {' '.join(extra)}")
        _refuse_empty(parser, args)
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
        with warnings.catch_warnings():
            warnings.showwarning = _reading_warnings(args.command, warnings.showwarning)
            return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("adaqat: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError as exc:
        if _stdout_gone():  # `adaqat info default | head`: the reader left, so the command stopped mid-output
            return SIGPIPE_STATUS
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
