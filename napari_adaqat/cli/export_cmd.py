"""``adaqat export``: a training run or an official SAM .pth → one model file."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

EPILOG = """profiles:
  paper   INT8 weights (+ FP32 scales) for every fake-quantized layer, everything else FP32
  deploy  the same with everything else FP16 (smallest file)
  fp32    no INT8 at all (FP32 baselines, e.g. the Stage-1 model for the SSIM views)
examples:
  adaqat export runs/s2 --out model_int8.safetensors --profile deploy
  adaqat export sam_vit_b_01ec64.pth --model-type vit_b --out ptq_int8.safetensors   # PTQ, no training"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = EPILOG
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("source", metavar="RUN_OR_CKPT", help="a run folder (its best checkpoint), a checkpoint "
                   ".safetensors, or an official SAM .pth (post-training quantization)")
    p.add_argument("--out", required=True, metavar="FILE.safetensors", help="the model file to write")
    p.add_argument("--profile", choices=["paper", "deploy", "fp32"], default="paper", help="see below")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="which checkpoint of a run")
    p.add_argument("--model-type", default="vit_b", help="architecture of a .pth source")
    p.add_argument("--image-size", type=int, default=None, help="encoder input size for a .pth source")
    p.add_argument("--qat-variant", choices=["full", "decoder"], default="full", help="PTQ (.pth or --ptq): which layers")
    p.add_argument("--quantize-extra", action="store_true",
                   help="PTQ: also quantize biases, convs and position tensors (smaller file)")
    p.add_argument("--ptq", action="store_true",
                   help="quantize a run/checkpoint that had no QAT (post-training quantization baseline)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def run(args: argparse.Namespace) -> int:
    from napari_adaqat.model.export import export_model, ptq_from_checkpoint

    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    source = Path(args.source)
    provenance = {"command": " ".join(["adaqat", *sys.argv[1:]]) if sys.argv else "", "commit": git_commit(),
                  "source": str(source)}
    if source.suffix.lower() in (".pth", ".pt"):
        sam = ptq_from_checkpoint(source, args.model_type, args.image_size, args.qat_variant, args.quantize_extra)
        provenance["method"] = "post-training quantization (no training)"
    else:
        from napari_adaqat.model.checkpoint import load_checkpoint_model

        ckpt = source / "checkpoints" / f"{args.checkpoint}.safetensors" if source.is_dir() else source
        if not ckpt.is_file():
            raise FileNotFoundError(f"{ckpt}: checkpoint not found")
        sam, meta = load_checkpoint_model(ckpt)
        cfg = meta.get("config", {})
        provenance.update({"method": f"stage {meta.get('stage')} ({cfg.get('mode')}, preset {cfg.get('preset')})",
                           "data": cfg.get("data"), "epoch": meta.get("epoch"), "metrics": meta.get("metrics"),
                           "train_config": cfg, "start": meta.get("provenance")})
        split_file = ckpt.parent.parent / "split.json"
        if split_file.is_file():
            provenance["split"] = json.loads(split_file.read_text())
    if args.ptq and source.suffix.lower() not in (".pth", ".pt"):
        from napari_adaqat.model.qat import apply_qat, quantized_modules

        if quantized_modules(sam):
            raise ValueError(f"{source}: already quantization-aware trained; --ptq is for FP32 models")
        apply_qat(sam, args.qat_variant, quantize_extra=args.quantize_extra)
        provenance["method"] += " + post-training quantization"
    summary = export_model(sam, out, profile=args.profile, spec=sam.spec, metadata={"provenance": provenance})
    print(json.dumps(summary, indent=2))
    return 0
