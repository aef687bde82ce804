"""How thin may an image be? Dice of the bundled model on real films squashed into strips.

Each film (and its mask) is resized to 1/k of its height, so that its short side is about 256/k px at
the bundled model's 256-px input; the model segments it with the mask's tight box (the strip check is
switched off here) and the Dice against the squashed reference is recorded.  The limit
``MIN_INPUT_SIDE`` of ``napari_adaqat/io/image_data.py`` comes from this table.

    python benchmarks/strip_limit.py --out benchmarks/results/strip_limit.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from skimage.transform import resize

import napari_adaqat.inference.engine as engine_module
from napari_adaqat.data import mask_box
from napari_adaqat.inference.engine import Engine, model_ref
from napari_adaqat.io import read_image, read_mask
from napari_adaqat.metrics import dice

ROOT = Path(__file__).resolve().parents[1]
FILMS = ROOT.parent / "shared" / "data" / "cxr" / "permissive_512"
TEST_NAMES = {p.stem for p in (ROOT / "tests" / "data" / "cxr" / "images").glob("*.png")}  # part of the test split


def film_arguments(description: str) -> tuple[argparse.Namespace, list[str]]:
    """(--data, --films, --out of a benchmark on real films, the names of ``--films`` films spread over the data
    folder, none of ``tests/data/cxr``): shared with benchmarks/nonsquare_pixels.py."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=FILMS)
    parser.add_argument("--films", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    names = sorted(p.stem for p in (args.data / "images").glob("*.png") if p.stem not in TEST_NAMES)
    return args, names[:: max(1, len(names) // args.films)][: args.films]


def main() -> None:
    args, names = film_arguments(__doc__.splitlines()[0])
    engine_module.check_segmentable = lambda *a, **k: None  # measure below the limit too
    engine, model = Engine(), model_ref(None)
    table = {}
    for k in (1, 2, 4, 8, 12, 16, 24, 32, 64):
        scores = []
        for name in names:
            image = read_image(args.data / "images" / f"{name}.png").pixels
            ref = read_mask(args.data / "masks" / f"{name}.png")
            h = max(2, round(image.shape[0] / k))
            strip = resize(image, (h, image.shape[1]), order=1, anti_aliasing=True).astype(np.float32)
            ref_strip = resize(ref.astype(np.float32), (h, ref.shape[1]), order=0) > 0.5
            box = mask_box(ref_strip)
            if box is None:
                continue
            result = engine.predict(strip, box, model, "cpu", clean=False)
            scores.append(dice(result.mask, ref_strip))
        short_at_input = 256 / k  # a square film: its short side at the 256-px input
        table[k] = {"short_side_at_input_px": round(float(short_at_input), 1), "dice_mean": float(np.mean(scores)),
                    "dice_min": float(np.min(scores)), "films": len(scores)}
        print(f"1/{k:<3d} short side at input ~{short_at_input:6.1f} px: Dice {np.mean(scores):.3f} "
              f"(min {np.min(scores):.3f}, {len(scores)} films)", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"films": names, "rows": table}, indent=1))


if __name__ == "__main__":
    main()
