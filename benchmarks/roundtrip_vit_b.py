"""Once-off check (issue 5): a ViT-B fake-quant model with AdaLoRA adapters, exported to the
INT8 `paper` file and reloaded, gives the same logits (max abs diff ≤ 1e-5).

Usage: python benchmarks/roundtrip_vit_b.py [--image-size 1024]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from napari_adaqat.data.transforms import resize_for_model, to_uint8_rgb, transform_boxes
from napari_adaqat.model.adalora import AdaLoRAConfig, adalora_modules, inject_adalora
from napari_adaqat.model.build import build_sam
from napari_adaqat.model.formats.model_file import export_model, load_model_file
from napari_adaqat.model.forward import decode_boxes, encode
from napari_adaqat.model.qat import apply_qat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-size", type=int, default=1024)
    args = parser.parse_args()
    torch.manual_seed(0)
    sam = build_sam("vit_b", args.image_size)
    inject_adalora(sam.image_encoder, AdaLoRAConfig())
    for module in adalora_modules(sam).values():  # trained-looking adapters, a third pruned
        with torch.no_grad():
            module.lora_lambda.normal_(0, 0.1)
            module.rank_mask[::3] = 0
    layers = apply_qat(sam, "full")
    rng = np.random.default_rng(0)
    image = rng.random((512, 512)).astype(np.float32)
    box = np.array([40, 50, 470, 460])
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vit_b_int8.safetensors"
        summary = export_model(sam, path, profile="paper", spec=sam.spec)
        loaded = load_model_file(path)
        rgb = to_uint8_rgb(image)
        x = resize_for_model(rgb, args.image_size)[None]
        b = torch.as_tensor(transform_boxes(box[None], rgb.shape[:2], args.image_size), dtype=torch.float32)
        logits = []
        with torch.no_grad():
            for model in (sam.eval(), loaded):
                low, _ = decode_boxes(model, encode(model, x), b)
                logits.append(low)
    diff = float((logits[0] - logits[1]).abs().max())
    print(json.dumps({"model_type": "vit_b", "image_size": args.image_size, "quantized_layers": len(layers),
                      "file_bytes": summary["bytes"], "max_abs_logit_diff": diff, "seconds": round(time.time() - t0, 1)}))


if __name__ == "__main__":
    main()
