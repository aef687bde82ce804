"""Options and helpers shared by several sub-commands."""
from __future__ import annotations

import argparse
import difflib
import os
import re
from typing import Iterable, Sequence

from napari_adaqat.model.device import DEVICES
from napari_adaqat.model.spec import preset_names


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=list(DEVICES),
                        help="where to run; auto picks cuda, then mps, then cpu")


def add_model_arguments(parser: argparse.ArgumentParser, baseline: bool = True, several: bool = False) -> None:
    parser.add_argument("--model", default=None, metavar="FILE", action="append" if several else "store",
                        help="model file (.safetensors from 'adaqat export', or an official SAM .pth); "
                             "default: the bundled demo model" + ("; repeat --model to compare several" if several else ""))
    if baseline:
        parser.add_argument("--baseline", default=None, metavar="FILE",
                            help="second model to compare with (SSIM agreement); 'default' = the bundled FP32 baseline")
    parser.add_argument("--model-type", default="vit_b", help=f"architecture of a .pth checkpoint: {preset_names()}")


def model_refs(args: argparse.Namespace):
    """(model, baseline or None) of ``--model``/``--baseline`` as engine :class:`ModelRef` s; a repeated
    ``--model`` gives a list of models."""
    from napari_adaqat.inference.engine import model_ref

    baseline = getattr(args, "baseline", None)
    models = args.model if isinstance(args.model, list) else [args.model]
    for given in [*models, baseline]:
        if (isinstance(given, str) and given != "default" and not os.path.exists(given)
                and did_you_mean(given.lower(), ["default"])):
            raise ValueError(f"{given}: model file not found; did you mean 'default' (the bundled model)?")
    refs = [model_ref(m, model_type=args.model_type) for m in models]
    return (refs if isinstance(args.model, list) else refs[0],
            model_ref(baseline, baseline=True, model_type=args.model_type) if baseline else None)


def check_data_folder(data: str | None) -> None:
    """Refuse a ``--data`` that is a file (a film, a CSV) with one line saying what the folder holds."""
    if data and os.path.isfile(data):
        raise ValueError(f"--data {data} is a file; give the dataset folder that holds images/ and masks/ "
                         "(see 'adaqat train --help')")


def option_like_inputs(argv: list[str]) -> list[str]:
    """Arguments that argparse takes for options but that name files (``-a.png``): they exist, or end
    in an image or model suffix."""
    maybe = [a for a in argv if a.startswith("-") and a not in ("-", "--") and not a.startswith("--")
             and (os.path.exists(a) or os.path.splitext(a)[1])]
    if not maybe:  # e.g. a mistyped -x: no need to import the image readers (numpy, scikit-image) to say so
        return []
    from napari_adaqat.io import IMAGE_SUFFIXES

    suffixes = IMAGE_SUFFIXES + (".csv", ".safetensors", ".pth", ".pt")
    return [a for a in maybe if os.path.exists(a) or os.path.splitext(a)[1].lower() in suffixes]


def option_like_hint(argv: list[str]) -> str | None:
    """One line for an argument that looks like an option but names a file, or None."""
    names = option_like_inputs(argv)
    if not names:
        return None
    name = names[0]
    return (f"hint: {name!r} starts with '-', so it was read as an option; write ./{name} "
            f"(or put -- before the file names) to give it as a file")


# words a newcomer types for a command that has another name: the command that does it, and how
SYNONYMS = {
    "report": ("evaluate", "adaqat evaluate --data DATA --out report/ writes the report (index.html)"),
    "score": ("evaluate", "adaqat evaluate --data DATA --out report/ scores a model against your masks"),
    "eval": ("evaluate", "adaqat evaluate --data DATA --out report/"),
    "predict": ("segment", "adaqat segment scans/ --out masks/"),
    "infer": ("segment", "adaqat segment scans/ --out masks/"),
    "finetune": ("train", "adaqat train --stage all --preset finetune --data DATA --out runs/mine"),
    "fit": ("train", "adaqat train --stage all --preset finetune --data DATA --out runs/mine"),
    "quantize": ("export", "adaqat export runs/s2 --out model_int8.safetensors"),
}


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to a mistyped ``word`` (``segmnt`` -> ``segment``), or None; the one candidate that
    ``word`` begins (``al`` -> ``all``, not ``val``) comes first."""
    names = [str(c) for c in candidates]
    begun = [c for c in names if word and c.startswith(word)]
    if len(begun) == 1:
        return begun[0]
    close = difflib.get_close_matches(word, names, n=1, cutoff=0.6)
    return close[0] if close else None


def first_example(epilog: str | None) -> str | None:
    """The first ``adaqat ...`` command line of a help epilog, without its comment."""
    for line in (epilog or "").splitlines():
        if line.strip().startswith("adaqat "):
            return line.split("  #", 1)[0].strip()
    return None


def error_hint(parser: argparse.ArgumentParser, message: str, given: Sequence[str] = ()) -> str:
    """What to add to an argparse error ``message`` of ``parser``: a did-you-mean for a mistyped command,
    choice or option (also where a required option is missing and ``given``, the parser's words, holds a mistyped
    one: ``--ouy``), the command's first example for a missing argument; "" when there is nothing to add."""
    choice = re.search(r"invalid choice: '([^']*)'", message)
    if choice:
        choices = [c for a in parser._actions if a.choices for c in a.choices]
        command, how = SYNONYMS.get(choice.group(1).lower(), (None, ""))
        if command in choices:
            return f"; to do that, use {command!r}: {how}"
        close = did_you_mean(choice.group(1), choices)
        return f"; did you mean {close!r}?" if close else ""
    options = [o for a in parser._actions for o in a.option_strings]
    if message.startswith("unrecognized arguments: "):
        for word in message.split()[2:]:
            close = did_you_mean(word.split("=", 1)[0], options) if word.startswith("--") else None
            if close:
                return f" (did you mean {close}?)"
        return ""
    if message.startswith("the following arguments are required"):
        for word in given:  # a mistyped option, taken for an unknown one (argparse names the missing one first)
            name = word.split("=", 1)[0]
            known = any(option.startswith(name) for option in options)  # (argparse takes --dat for --data)
            close = did_you_mean(name, options) if name.startswith("--") and not known else None
            if close:
                return f"; {name} is no option: did you mean {close}?"
        example = first_example(parser.epilog)
        return f"; example: {example}" if example else ""
    return ""
