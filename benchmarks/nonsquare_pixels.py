"""Films with non-square pixels: Dice of the bundled model when the film's pixel spacing is used, and when not.

Each film (and its mask) is resized to 1/k of its height or of its width, as a reader with pixels k times as
tall (or as wide) as they are wide would store it, and given the matching spacing (``(0.1 * k, 0.1)`` mm or
``(0.1, 0.1 * k)``).  The model segments it with the mask's tight box twice: with that spacing (the pixels made
square for the model, as every way in does for a DICOM's PixelSpacing) and as bare pixels (the film stretched,
as before 2026-12-07); Dice against the resized reference.

    python benchmarks/nonsquare_pixels.py --out benchmarks/results/nonsquare_pixels.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).resolve().parent))
from strip_limit import film_arguments  # noqa: E402  (the same 8 films as the strip table)

from napari_adaqat.data import mask_box  # noqa: E402
from napari_adaqat.inference.engine import Engine, model_ref  # noqa: E402
from napari_adaqat.io import ImageData, read_image, read_mask  # noqa: E402
from napari_adaqat.metrics import dice  # noqa: E402


def main() -> None:
    args, names = film_arguments(__doc__.splitlines()[0])
    engine, model = Engine(), model_ref(None)
    rows = []
    for k, axis in ((1.5, 0), (2, 0), (3, 0), (2, 1)):
        scores: dict[str, list[float]] = {"with spacing": [], "bare pixels": []}
        for name in names:
            image = read_image(args.data / "images" / f"{name}.png").pixels
            ref = read_mask(args.data / "masks" / f"{name}.png")
            shape = list(image.shape)
            shape[axis] = max(2, round(shape[axis] / k))
            film = resize(image, shape, order=1, anti_aliasing=True).astype(np.float32)
            truth = resize(ref.astype(np.float32), shape, order=0) > 0.5
            spacing = (0.1 * k, 0.1) if axis == 0 else (0.1, 0.1 * k)
            box = mask_box(truth)
            for how, given in (("with spacing", ImageData(film, spacing, name)), ("bare pixels", film)):
                scores[how].append(float(dice(engine.predict(given, box, model, "cpu").mask, truth)))
        row = {"pixel": f"{k:g}x as {'tall' if axis == 0 else 'wide'}", "spacing_mm": list(spacing),
               **{f"{how} mean": float(np.mean(v)) for how, v in scores.items()},
               **{f"{how} min": float(np.min(v)) for how, v in scores.items()}, "films": len(names)}
        rows.append(row)
        print(f"pixels {row['pixel']:<14s} Dice with spacing {row['with spacing mean']:.3f} "
              f"(min {row['with spacing min']:.3f}), bare pixels {row['bare pixels mean']:.3f} "
              f"(min {row['bare pixels min']:.3f})", flush=True)
    if args.out:
        args.out.write_text(json.dumps({"films": names, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
