"""Options and helpers shared by several sub-commands."""
from __future__ import annotations

import argparse
import os

from napari_adaqat.model.build import preset_names
from napari_adaqat.model.device import DEVICES


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
    refs = [model_ref(m, model_type=args.model_type) for m in models]
    return (refs if isinstance(args.model, list) else refs[0],
            model_ref(baseline, baseline=True, model_type=args.model_type) if baseline else None)


def option_like_inputs(argv: list[str]) -> list[str]:
    """Arguments that argparse takes for options but that name files (``-a.png``): they exist, or end
    in an image or model suffix."""
    from napari_adaqat.io import IMAGE_SUFFIXES

    suffixes = IMAGE_SUFFIXES + (".csv", ".safetensors", ".pth", ".pt")
    return [a for a in argv if a.startswith("-") and a not in ("-", "--") and not a.startswith("--")
            and (os.path.exists(a) or os.path.splitext(a)[1].lower() in suffixes)]


def option_like_hint(argv: list[str]) -> str | None:
    """One line for an argument that looks like an option but names a file, or None."""
    names = option_like_inputs(argv)
    if not names:
        return None
    name = names[0]
    return (f"hint: {name!r} starts with '-', so it was read as an option; write ./{name} "
            f"(or put -- before the file names) to give it as a file")
