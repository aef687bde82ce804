"""``adaqat info``: parameter counts, ranks, quantized layers and compression, as JSON."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_adaqat.model.spec import preset_names

MODES = ["adalora", "decoder", "lora", "full", "qat"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="FILE_OR_PRESET",
                   help=f"'default' (the bundled model), a model file (.safetensors / .pth), a training run folder "
                        "(a --stage all run: its model_int8.safetensors), "
                        f"or a preset name ({preset_names()}: parameter counts of that architecture)")
    p.add_argument("--mode", choices=MODES, default=None,
                   help="for a preset: report the trainable budget of this training mode (nothing is trained)")
    p.add_argument("--model-type", default="vit_b", help=f"architecture of a .pth checkpoint: {preset_names()}")
    p.add_argument("--image-size", type=int, default=None, help="encoder input size for a preset")
    p.add_argument("--quant-report", metavar="DIR", default=None,
                   help="also write the quantization error analysis (JSON + PNG figures) to DIR")
    p.epilog = EPILOG


EPILOG = """examples:
  adaqat info default                          # the bundled model: its recipe, scores, INT8 layers
  adaqat info runs/mine/model_int8.safetensors  # any model file
  adaqat info vit_b --mode adalora             # the Stage-1 parameter budget of ViT-B
  adaqat info runs/s1                          # a training run folder (its best checkpoint)
The report is JSON (pipe it to a file or to 'python -m json.tool')."""


def run(args: argparse.Namespace) -> int:
    from napari_adaqat.model.spec import PRESETS
    from napari_adaqat.report.model_info import file_report, preset_report

    if args.target in PRESETS:
        report = preset_report(args.target, mode=args.mode, image_size=args.image_size)
    elif args.target != "default" and not Path(args.target).suffix and not Path(args.target).exists():  # a typo
        from napari_adaqat.cli.common import did_you_mean

        close = did_you_mean(args.target, ["default", *PRESETS])
        hint = f"; did you mean {close!r}?" if close else ""
        raise ValueError(f"{args.target}: no such file or run folder, and not a preset ({preset_names()}){hint}")
    else:
        report = file_report(Path(args.target), model_type=args.model_type, quant_report_dir=args.quant_report)
    print(json.dumps(report, indent=2))
    return 0
