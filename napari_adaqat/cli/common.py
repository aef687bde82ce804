"""Options and helpers shared by several sub-commands."""
from __future__ import annotations

import argparse

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
    parser.add_argument("--model-type", default="vit_b",
                        help="architecture of a .pth checkpoint: vit_b, vit_l, vit_h, hybrid_tiny, hybrid_fine, hybrid_refine, vit_tiny, vit_nano")


def model_refs(args: argparse.Namespace):
    """(model, baseline or None) of ``--model``/``--baseline`` as engine :class:`ModelRef` s; a repeated
    ``--model`` gives a list of models."""
    from napari_adaqat.inference.engine import model_ref

    baseline = getattr(args, "baseline", None)
    models = args.model if isinstance(args.model, list) else [args.model]
    refs = [model_ref(m, model_type=args.model_type) for m in models]
    return (refs if isinstance(args.model, list) else refs[0],
            model_ref(baseline, baseline=True, model_type=args.model_type) if baseline else None)
