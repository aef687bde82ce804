"""How many masks does ``adaqat segment`` flag "to review" per model, and how good are they really?

For every film of ``DATA/images`` (with its mask in ``DATA/masks``, if any) and every model: the mask as
``adaqat segment`` makes it (the default whole-image box, cleaned), its quality score and review flag
(``inference/quality.py``: the soft Dice of the mask against the model's own probabilities, flagged below
``REVIEW_BELOW``), and its Dice against the reference.  A fine-tuned model whose probabilities are softer than
the bundled model's would be flagged on every film (a QA find on a model kept at its 2nd epoch of 8).

    python benchmarks/review_flags.py /tmp/qa6/conv/held12 --model default --model RUN/model_int8.safetensors
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_adaqat.data.boxes import default_box
from napari_adaqat.inference.engine import Engine
from napari_adaqat.inference.quality import REVIEW_BELOW, mask_quality
from napari_adaqat.io import read_image, read_mask
from napari_adaqat.metrics import dice


def flags(data: Path, model: str, engine: Engine) -> dict:
    """Mean quality, flagged count and mean Dice of ``model`` on the films of ``data``."""
    scores, flagged, dices = [], 0, []
    for film in sorted((data / "images").iterdir()):
        image = read_image(film)
        result = engine.segment(image, default_box(image.pixels.shape), model, None, "cpu", clean=True)
        quality = mask_quality(result.p_own, result.mask)
        scores.append(quality.score)
        flagged += bool(quality.review)
        reference = next(iter(sorted((data / "masks").glob(f"{film.stem}.*"))), None) if (data / "masks").is_dir() \
            else None
        if reference is not None:
            dices.append(dice(result.mask, read_mask(reference)))
    return {"films": len(scores), "quality": float(np.mean(scores)), "flagged": flagged,
            "dice": float(np.mean(dices)) if dices else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a folder with images/ (and masks/)")
    parser.add_argument("--model", action="append", required=True, help="'default' or a model file (repeat)")
    args = parser.parse_args(argv)
    engine = Engine()
    for model in args.model:
        row = flags(args.data, model, engine)
        truth = f", Dice {row['dice']:.4f}" if row["dice"] is not None else ""
        print(f"{model}: quality {row['quality']:.3f}, {row['flagged']} of {row['films']} flagged "
              f"(< {REVIEW_BELOW}){truth}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
