"""How long going back to an image takes in the Segment dock (A → B → A → B ...): from choosing it in *image* until
the dock is ready for a box, on two real 512-px films with the bundled model and its baseline.

Two ways in the same run, alternating: ``kept`` (as shipped: the predictor keeps the last 3 images' per-image parts,
inference/image_states.py) and ``recomputed`` (before: only the encoder features are cached; ``ImageStates`` keeps
to 1 image, so the refiner's image features, the vote and the decoder context are computed on each switch).  The ratio
is the figure to compare across machines.  Run under a display:
``xvfb-run -a python benchmarks/image_switch_back.py --switches 6 --out FILE``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path


def _spin(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.002)


def _ready(widget, limit: float = 120.0) -> float:
    """Seconds until the dock is no longer busy (its embedding and the maps' baseline done)."""
    start = time.perf_counter()
    _spin(0.05)
    while widget.busy and time.perf_counter() - start < limit:
        _spin(0.01)
    return time.perf_counter() - start


def _film(path: Path, size: int):
    """The film of ``path`` (H, W) float32, resized to ``size`` px a side when ``size`` (a hospital-size film)."""
    from PIL import Image

    from napari_adaqat.io import read_image

    pixels = read_image(path).pixels
    if not size:
        return pixels
    import numpy as np

    return np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR), dtype=np.float32)


def switch_times(way: str, switches: int, films: list[Path], size: int = 0) -> list[float]:
    """Seconds to ready for each of ``switches`` switches between ``films`` (after each was shown once)."""
    import napari

    from napari_adaqat.inference import image_states

    image_states.ImageStates.__init__.__defaults__ = (image_states.MAX_IMAGES if way == "kept" else 1,
                                                      image_states.MAX_BYTES)
    viewer = napari.Viewer(show=True)
    try:
        layers = [viewer.add_image(_film(path, size), name=path.stem) for path in films]
        _, widget = viewer.window.add_plugin_dock_widget("napari-adaqat", "Segment lungs (AdaLoRA-QAT)")
        while getattr(widget, "inner", widget) is None:
            _spin(0.1)
        widget = getattr(widget, "inner", widget)
        widget.device.value = "cpu"
        for layer in layers:  # each embedded once: what follows is going back
            widget.image.value = layer
            _ready(widget)
        times = []
        for i in range(switches):
            widget.image.value = layers[i % len(layers)]
            times.append(_ready(widget))
        return times
    finally:
        viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=6, help="switches per way and round (default 6)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, the two ways alternating (default 2)")
    parser.add_argument("--size", type=int, default=0, help="resize the films to this many px a side (default: 512 as they are)")
    parser.add_argument("--out", type=Path, help="write the times and the summary here (JSON)")
    args = parser.parse_args()
    films = sorted(Path(__file__).resolve().parents[1].joinpath("tests", "data", "cxr", "images").glob("*.png"))[:2]
    times: dict[str, list[float]] = {"kept": [], "recomputed": []}
    for _ in range(args.rounds):
        for way in ("recomputed", "kept"):
            times[way] += switch_times(way, args.switches, films, args.size)
    summary = {way: {"median_s": round(statistics.median(t), 3), "worst_s": round(max(t), 3), "n": len(t)}
               for way, t in times.items()}
    summary["size_px"] = args.size or 512
    summary["ratio_kept_to_recomputed"] = round(summary["kept"]["median_s"] / summary["recomputed"]["median_s"], 3)
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "times": times}, indent=1))


if __name__ == "__main__":
    main()
