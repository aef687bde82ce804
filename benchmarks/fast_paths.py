"""CPU time of the fast paths against the stock modules, in one process, on the same weights.

    OMP_NUM_THREADS=1 python benchmarks/fast_paths.py --model-type vit_b --small-size 512 --out fast.json

Times are process CPU seconds (``time.process_time``), which a machine busy with other jobs does not
inflate the way it inflates wall time; ``adaqat bench`` gives the wall-clock figures and peak RSS
(each side in its own process).  Measured, with seeded random weights (relative-position tables
randomised, as SAM initialises them to zero):

* encoder: one pass of ``embed(sam, x)`` (fast path, first) and one of ``sam.image_encoder(x)``
  (stock), and the fast path at ``--small-size`` (the same weights, position tensors interpolated);
* box → mask on one embedding: ``SamPredictor.predict`` vs ``BoxPredictor.predict`` (512x512 image);
* agreement: relative error of the features, max logit difference, identical masks.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


def _cpu(fn, repeats: int) -> float:
    """Median process CPU seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fast_paths.py", description=__doc__.split("\n")[0])
    parser.add_argument("--model-type", default="vit_b")
    parser.add_argument("--small-size", type=int, default=None, help="also time the fast encoder at this size")
    parser.add_argument("--prompt-repeats", type=int, default=20)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    from segment_anything import SamPredictor

    from napari_adaqat.inference.embedding_cache import Embedding
    from napari_adaqat.inference.predictor import BoxPredictor
    from napari_adaqat.model.build import build_sam, load_state_strict, resize_position_tensors
    from napari_adaqat.model.forward import embed
    from napari_adaqat.model.lean_decoder import image_context

    torch.manual_seed(0)
    sam = build_sam(args.model_type)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "rel_pos" in name:
                p.normal_(0.0, 0.02)
    size = int(sam.image_encoder.img_size)
    x = torch.randn(1, 3, size, size)
    report: dict = {"model_type": args.model_type, "image_size": size, "torch_threads": torch.get_num_threads()}
    with torch.inference_mode():  # ours first: whatever the first call warms up favours stock
        t0 = time.process_time()
        fast_feat = embed(sam, x)
        report["embed_cpu_s"] = time.process_time() - t0
        t0 = time.process_time()
        stock_feat = sam.image_encoder(x)
        report["stock_embed_cpu_s"] = time.process_time() - t0
        report["feature_rel_err"] = float((fast_feat - stock_feat).norm() / stock_feat.norm())
        report["embed_cpu_ratio"] = report["embed_cpu_s"] / report["stock_embed_cpu_s"]
        if args.small_size:
            small = build_sam(sam.spec, args.small_size)
            load_state_strict(small, resize_position_tensors(sam.state_dict(), small), "small")
            xs = torch.randn(1, 3, args.small_size, args.small_size)
            report["small_size"] = args.small_size
            report["small_embed_cpu_s"] = _cpu(lambda: embed(small, xs), 1)
            report["small_embed_cpu_ratio"] = report["small_embed_cpu_s"] / report["stock_embed_cpu_s"]
        shape = (512, 512)
        box = np.array([10.0, 10.0, 500.0, 500.0])
        stock = SamPredictor(sam)
        stock.features, stock.original_size, stock.input_size = stock_feat, shape, (size, size)
        stock.is_image_set = True
        ours = BoxPredictor(sam)
        ours._current = Embedding(stock_feat, shape, (size, size))
        ours._current_features, ours._context = stock_feat, image_context(sam, stock_feat)
        logits = stock.predict(box=box, multimask_output=False, return_logits=True)[0][0]
        pred = ours.predict(box)
        report["logit_max_abs_diff"] = float(np.abs(pred.logits[0].numpy() - logits).max())
        report["masks_identical"] = bool(np.array_equal(pred.masks[0], logits > sam.mask_threshold))
        report["stock_prompt_cpu_ms"] = 1000 * _cpu(lambda: stock.predict(box=box, multimask_output=False),
                                                    args.prompt_repeats)
        report["prompt_cpu_ms"] = 1000 * _cpu(lambda: ours.predict(box).masks, args.prompt_repeats)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
