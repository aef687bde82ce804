"""Embed and box → mask latency of one model file with our BoxPredictor (no stock side).

``adaqat bench`` compares against stock ``segment_anything``, which cannot build the hybrid
encoder of the default model v3; this script runs only bench's own "ours" side
(:func:`napari_adaqat.bench.speed.run_side`: fresh-cache embeddings, then box prompts on the
cached embedding, box = the image minus 2 %) and reports what issue 14's contract asks of the
shipped model (embed ≤ 0.15 s, box → mask ≤ 25 ms on a 512-px radiograph on the dev CPU):

    python benchmarks/model_speed.py default --threads 2 --out speed.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from napari_adaqat.bench.speed import BenchConfig, load_input_image, run_side

SAMPLE = Path(__file__).resolve().parents[1] / "napari_adaqat" / "assets" / "sample" / "chest_xray.png"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="model_speed.py", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="model file (.safetensors), or 'default' for the bundled model")
    p.add_argument("--image", default=str(SAMPLE), help="radiograph to embed (default: the bundled 512-px sample)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    p.add_argument("--repeats", type=int, default=10, help="timed embeddings (default: 10)")
    p.add_argument("--prompt-repeats", type=int, default=50, help="timed box prompts (default: 50)")
    p.add_argument("--out", help="also write the figures to this JSON file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    config = BenchConfig(model=args.model, image=args.image, repeats=args.repeats, warmup=1,
                         prompt_repeats=args.prompt_repeats, threads=args.threads)
    image = load_input_image(args.image)  # (H, W, 3) uint8
    side, _features, _mask = run_side("ours", config, image, log=lambda message: None)
    report = {"model": str(args.model), "image": str(args.image), "image_shape": list(image.shape[:2]),
              "threads": args.threads, "input_size": side["image_size"], "embed_s_median": side["embed_s"],
              "prompt_ms_median": side["prompt_ms"], "prompt_ms_p90": side["prompt_ms_p90"],
              "peak_rss_mb": side["peak_rss_mb"], "torch": torch.__version__}
    print(f"{args.model}: embed {report['embed_s_median']:.3f} s, box → mask {report['prompt_ms_median']:.1f} ms "
          f"(p90 {report['prompt_ms_p90']:.1f} ms) at {args.threads} threads")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
