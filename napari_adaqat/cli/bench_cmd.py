"""``adaqat bench``: stock segment_anything vs ours, same weights, same image, one run."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from napari_adaqat.cli.common import add_device_argument
from napari_adaqat.model.device import resolve_device
from napari_adaqat.model.spec import preset_names
from napari_adaqat.util.atomic import atomic_write_text

DESCRIPTION = """\
Time stock segment_anything.SamPredictor and our BoxPredictor on the same weights
and the same image, and write the figures to a JSON file.

  embed   set_image(): resize + image encoder (the slow part), median over --repeats
  prompt  predict(box) -> mask with the embedding already computed, median over --prompt-repeats
  memory  peak RSS of each side: each side runs alone in its own child process
  check   cosine similarity of the two image embeddings (~1.0 with the same weights),
          IoU of the two masks
  small   with --small-size N: our embedding at N px too (e.g. the 512-px mode)

Ours runs the fast encoder path and the lean box decoder; with an INT8 model file it keeps
the encoder's INT8 weights INT8 in memory (stock gets them dequantized to FP32).

Without --model the preset is built with seeded random weights: speed and memory do not
depend on the values. With --model the same file is loaded by both sides.
The image is a synthetic 512x512 radiograph unless --image is given.
Progress goes to stderr; a one-line summary to stdout."""

EPILOG = """\
examples:
  adaqat bench --out bench.json                                 # ViT-B at 1024 px (minutes on a CPU)
  adaqat bench --model-type vit_tiny --image-size 256 --out tiny.json
  adaqat bench --model model_int8.safetensors --image cxr.png --device cuda --out gpu.json
  adaqat bench --model model_int8.safetensors --small-size 512 --out cpu.json  # + the 512-px mode

JSON keys: stock_embed_s, embed_s, embed_ratio (ours/stock), stock_prompt_ms, prompt_ms,
prompt_ms_p90, stock_peak_rss_mb, peak_rss_mb, feature_cosine, mask_iou, mask_identical,
small_embed_s and small_embed_ratio (with --small-size), device,
model_type, image_size, repeats, torch, cpu_count, hostname, platform, timestamp, and
per-side details under "sides". Run on an otherwise idle machine: a busy CPU skews times."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = DESCRIPTION
    p.epilog = EPILOG
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the JSON report (e.g. bench.json)")
    p.add_argument("--model-type", default="vit_b",
                   help=f"preset: {preset_names()} (and the architecture of a .pth) (default: vit_b)")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="encoder input size in pixels (default: the preset's own, 1024 for vit_b)")
    p.add_argument("--model", default=None, metavar="FILE",
                   help="model file (.safetensors or official SAM .pth) loaded by both sides; "
                        "'default' = the bundled model, which stock segment_anything cannot run: compare it with "
                        "benchmarks/model_speed.py (default: seeded random weights of the preset)")
    p.add_argument("--image", default=None, metavar="PATH",
                   help="image to embed (PNG/JPG/TIFF/DICOM) (default: synthetic 512x512 radiograph)")
    add_device_argument(p)
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="timed embeddings per side (default: 2 for vit_b/l/h on a CPU, else 10)")
    p.add_argument("--warmup", type=int, default=None, metavar="N",
                   help="untimed embeddings first (default: 1 on CPU, 2 on a GPU)")
    p.add_argument("--prompt-repeats", type=int, default=None, metavar="N",
                   help="timed box prompts per side (default: 20 on CPU, 50 on a GPU)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch CPU threads in each side (default: torch's own choice); on a busy CPU "
                        "use 1, since spinning threads then slow everything down")
    p.add_argument("--small-size", type=int, default=None, metavar="N",
                   help="also time our embedding at input size N (e.g. 512: the 512-px mode), the same weights "
                        "with position tensors interpolated; reported as small_embed_s and small_embed_ratio "
                        "(against stock at the full size)")
    p.add_argument("--int8-gemm", action="store_true",
                   help="ours computes an INT8 file's encoder layers as INT8 GEMMs (faster on CPUs with VNNI, "
                        "approximate: feature cosine ~0.9999, a few mask pixels differ); default: the exact "
                        "dequantizing path, as the app runs")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and the synthetic image")


def run(args: argparse.Namespace) -> int:
    from napari_adaqat.bench.speed import BenchConfig, default_repeats, run_bench, summary_line

    _check_out(args.out)
    device = resolve_device(args.device)
    if args.model is not None and Path(args.model).is_file():  # a bad or unsafe file: one line here, not in each child
        from napari_adaqat.model.loading import load_model

        load_model(args.model, model_type=args.model_type, image_size=args.image_size)
    repeats, warmup, prompt_repeats = default_repeats(device, args.model_type)
    config = BenchConfig(
        model_type=args.model_type, image_size=args.image_size, model=args.model, image=args.image,
        device=device, seed=args.seed, threads=args.threads, small_size=args.small_size,
        int8_gemm=args.int8_gemm,
        repeats=repeats if args.repeats is None else args.repeats,
        warmup=warmup if args.warmup is None else args.warmup,
        prompt_repeats=prompt_repeats if args.prompt_repeats is None else args.prompt_repeats,
    )
    report = run_bench(config)
    out = atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(summary_line(report))
    print(f"report written to {out}")
    return 0


def _check_out(out: str) -> None:
    """Before minutes of timing: refuse an --out that is a folder, or a file that is not an earlier bench report
    (a rerun replaces its own report, never another file)."""
    path = Path(out)
    if out.endswith(("/", os.sep)) or path.is_dir():
        raise ValueError(f"--out {out} is a folder; give the JSON file to write, e.g. --out {path / 'bench.json'}")
    if path.exists():
        try:
            earlier = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            earlier = None
        if not (isinstance(earlier, dict) and "embed_ratio" in earlier):
            raise ValueError(f"--out {out} exists and is not an adaqat bench report; choose another file")
