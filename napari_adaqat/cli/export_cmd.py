"""``adaqat export``: a training run or an official SAM .pth → one model file.

Argument parsing only; the work is :func:`napari_adaqat.train.export_run.export_run`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from napari_adaqat.model.spec import preset_names

EPILOG = """profiles:
  paper   INT8 weights (+ FP32 scales) for every fake-quantized layer, everything else FP32
  deploy  the same with everything else FP16 (smallest file)
  fp32    no INT8 at all (FP32 baselines, e.g. the Stage-1 model for the SSIM views)
examples:
  adaqat export runs/s2 --out model_int8.safetensors --profile deploy
  adaqat export sam_vit_b_01ec64.pth --model-type vit_b --out ptq_int8.safetensors   # PTQ, no training"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.add_argument("source", metavar="RUN_OR_CKPT", help="a run folder (its best checkpoint), a checkpoint "
                   ".safetensors, or an official SAM .pth (post-training quantization)")
    p.add_argument("--out", required=True, metavar="FILE.safetensors", help="the model file to write")
    p.add_argument("--profile", choices=["paper", "deploy", "fp32"], default="paper", help="see below")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="which checkpoint of a run")
    p.add_argument("--model-type", default="vit_b", help=f"architecture of a .pth source: {preset_names()}")
    p.add_argument("--image-size", type=int, default=None, help="encoder input size for a .pth source")
    p.add_argument("--qat-variant", choices=["full", "decoder"], default="full", help="PTQ (.pth or --ptq): which layers")
    p.add_argument("--quantize-extra", action="store_true",
                   help="PTQ: also quantize biases, convs and position tensors (smaller file)")
    p.add_argument("--ptq", action="store_true",
                   help="quantize a run/checkpoint that had no QAT (post-training quantization baseline)")
    p.add_argument("--recipe", metavar="FILE.yaml", help="record this training recipe's text in the file")
    p.add_argument("--scores", metavar="FILE.json", help="record these scores (e.g. out-of-fold Dice) in the file")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


def run(args: argparse.Namespace) -> int:
    from napari_adaqat.train.export_run import export_run

    _check_out(args.source, args.out)
    summary = export_run(args.source, args.out, profile=args.profile, checkpoint=args.checkpoint,
                         model_type=args.model_type, image_size=args.image_size, qat_variant=args.qat_variant,
                         quantize_extra=args.quantize_extra, ptq=args.ptq, force=args.force,
                         recipe=args.recipe, scores=args.scores,
                         command=" ".join(["adaqat", *sys.argv[1:]]) if sys.argv else "")
    print(json.dumps(summary, indent=2))
    if args.profile != "fp32" and not summary.get("int8_layers"):  # e.g. a Stage-1 run without --ptq
        print(f"adaqat export: warning: {args.out} holds no INT8 layer ({args.source} had no QAT): train Stage 2 "
              "from it (adaqat train --stage 2 --from RUN), or add --ptq for post-training INT8", file=sys.stderr)
    return 0


def _check_out(source: str, out: str) -> None:
    """Refuse an --out that is a folder (``--out models/``: a file would take the folder's name) or the source
    itself (``--force`` would overwrite the file being read), or a name other than ``.safetensors``, with one line
    naming a file that works."""
    example = Path(out) / "model_int8.safetensors"
    if out.endswith(("/", os.sep)) or Path(out).is_dir():
        raise ValueError(f"--out {out} is a folder; give the model file to write, e.g. --out {example}")
    if os.path.exists(source) and os.path.exists(out) and os.path.samefile(source, out):
        raise ValueError(f"--out {out} is the file being exported; choose another --out so that it is kept")
    if Path(out).suffix.lower() != ".safetensors":  # (a .pt name: segment and the docks would then refuse it)
        raise ValueError(f"--out {out}: adaqat writes safetensors model files; name it "
                         f"{Path(out).stem if Path(out).suffix.lower() in ('.pt', '.pth') else Path(out).name}.safetensors")
