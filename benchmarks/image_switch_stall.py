"""How long choosing another image in the Segment dock freezes napari: the longest gap between ticks of a 10-ms timer on
the GUI thread, per switch, between a 512-px film and a 3000 x 2500 copy of it, each with its mask and SSIM / ΔSSIM
maps (the dock shows the chosen image's own).

Two ways in the same run: ``reshape`` (as shipped: the mask and map layers take the other image's size in place) and
``replace`` (before: the layers of another size are removed and added again; ``_reshaped_in_place`` patched off).
The ratio is the one to compare across machines.  Run under a display:
``xvfb-run -a python benchmarks/image_switch_stall.py --switches 6 --out FILE``.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def _spin(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.002)


def _settle(widget) -> None:
    _spin(0.3)
    while widget.busy:
        _spin(0.1)
    _spin(0.5)


def stalls(way: str, switches: int) -> list[float]:
    """The longest GUI-thread gap (s) of each of ``switches`` image switches, with the layers ``way`` handles them."""
    import napari
    from qtpy.QtCore import QTimer
    from skimage.transform import resize

    from napari_adaqat.io import read_image
    from napari_adaqat.widgets import _layers as L
    from napari_adaqat.widgets.segment import SegmentWidget

    reshape = L._reshaped_in_place
    L._reshaped_in_place = reshape if way == "reshape" else (lambda *_args: False)
    try:
        film = read_image(Path(__file__).parents[1] / "napari_adaqat/assets/sample/chest_xray.png").pixels
        viewer = napari.Viewer(show=True)
        small = viewer.add_image(film, name="512 px")
        large = viewer.add_image((resize(film, (3000, 2500)) * 4095).astype(np.uint16), name="3000 px")
        widget = SegmentWidget(viewer)
        viewer.window.add_dock_widget(widget)
        for image, box in ((small, [[60, 40], [460, 480]]), (large, [[350, 235], [2700, 2340]])):
            widget.image.value = image
            _settle(widget)
            viewer.layers["boxes"].add_rectangles(np.array(box, float))
            _settle(widget)
        ticks: list[float] = []
        timer = QTimer()
        timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
        timer.start(10)
        out = []
        for k in range(switches):
            _spin(0.3)
            ticks.clear()
            ticks.append(time.perf_counter())
            widget.image.value = (small, large)[k % 2]
            _settle(widget)
            out.append(round(float(np.diff(ticks).max()), 3))
        timer.stop()
        viewer.close()
        return out
    finally:
        L._reshaped_in_place = reshape


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switches", type=int, default=6, help="image switches per way (default 6)")
    parser.add_argument("--out", type=Path, help="write the stalls and the summary here (JSON)")
    args = parser.parse_args(argv)
    runs = {way: stalls(way, args.switches) for way in ("replace", "reshape")}
    summary = {way: {"median_longest_stall_s": statistics.median(v), "max_s": max(v)} for way, v in runs.items()}
    summary["ratio_reshape_over_replace"] = round(summary["reshape"]["median_longest_stall_s"]
                                                  / summary["replace"]["median_longest_stall_s"], 3)
    print(json.dumps({"runs": runs, "summary": summary}, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
