"""Embed and box → mask latency of one model file with our BoxPredictor (no stock side).

``adaqat bench`` compares against stock ``segment_anything``, which cannot build the hybrid
encoder of the default model v3; this script times what issue 14's contract asks of the
shipped model (embed ≤ 0.15 s, box → mask ≤ 25 ms on a 512-px radiograph on the dev CPU):

    python benchmarks/model_speed.py napari_adaqat/assets/default_int8.safetensors --threads 2 --out speed.json

Embedding: median of ``--repeats`` ``set_image`` calls, each on a fresh cache (so it embeds).
Prompt: median of ``--prompt-repeats`` ``predict(box)`` calls on the cached embedding, with a
box that moves by a pixel each time (as a drag does).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_adaqat.inference.predictor import BoxPredictor, EmbeddingCache
from napari_adaqat.io import read_image
from napari_adaqat.model.loading import load_model

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
    sam, _ = load_model(None if args.model == "default" else args.model, keep_int8=True)  # as the dock loads it
    image = read_image(args.image).pixels  # (H, W) float32 in [0, 1]
    h, w = image.shape[:2]
    box = np.array([0.1 * w, 0.08 * h, 0.9 * w, 0.92 * h])
    embeds = []
    for i in range(args.repeats + 1):  # the first one warms up
        predictor = BoxPredictor(sam, cache=EmbeddingCache(max_items=1))
        t = time.perf_counter()
        predictor.set_image(image)
        if i:
            embeds.append(time.perf_counter() - t)
    predictor.predict(box)
    prompts = []
    for i in range(args.prompt_repeats):
        t = time.perf_counter()
        predictor.predict(box + i % 5)
        prompts.append(time.perf_counter() - t)
    report = {"model": str(args.model), "image": str(args.image), "image_shape": [h, w], "threads": args.threads,
              "input_size": int(sam.image_encoder.img_size), "embed_s_median": statistics.median(embeds),
              "prompt_ms_median": 1000 * statistics.median(prompts),
              "prompt_ms_p90": 1000 * float(np.percentile(prompts, 90)), "torch": torch.__version__}
    print(f"{args.model}: embed {report['embed_s_median']:.3f} s, box → mask {report['prompt_ms_median']:.1f} ms "
          f"(p90 {report['prompt_ms_p90']:.1f} ms) at {args.threads} threads")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
