"""Box → mask and click → mask latency as a user sees it in the Segment dock (real napari viewer, default models).

    xvfb-run -a python benchmarks/dock_latency.py --boxes 12 --out dock_latency.json
    xvfb-run -a python benchmarks/dock_latency.py --clicks 12 --out dock_latency_clicks.json
    xvfb-run -a python benchmarks/dock_latency.py --clicks 12 --size 3000   # a hospital-size film
    xvfb-run -a python benchmarks/dock_latency.py --clicks 12 --model M.safetensors --baseline B.safetensors

For each rectangle added to the ``boxes`` layer (or, with ``--clicks N``, after one box, for each of N
points added to the ``points`` layer, alternately "not lung" and "lung", each re-segmenting with the box,
all points so far and the previous logits as mask prompt) it records: the model's prompt time inside the
worker (``prompt_ms``), the time until the ``lung mask`` layer shows the mask (``mask_shown_ms``,
phase 1: the data is in the layer), until the canvas has then been drawn (``mask_painted_ms``: the first
vispy draw event after that, i.e. the mask on screen), and until the SSIM/ΔSSIM maps are shown too
(``maps_shown_ms``, phase 2), plus the CPU
time the whole process spent until the mask was shown (``mask_cpu_ms``, all threads: a figure that a
busy machine does not inflate the way it inflates wall time). The first box (or click) is a warm-up and
is left out of the medians. ``--hide-maps`` hides the SSIM and ΔSSIM layers after the first box (the
dock then skips the maps).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def resized(data: np.ndarray, size: int, kind: str) -> np.ndarray:
    """The sample's (512, 512) film or mask at (size, size): bilinear for the film, nearest for the mask."""
    if size == data.shape[0]:
        return data
    from skimage.transform import resize
    labels = kind == "labels"
    out = resize(data, (size, size), order=0 if labels else 1, preserve_range=True, anti_aliasing=False)
    return out.astype(data.dtype)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dock_latency.py", description=__doc__.split("\n")[0])
    parser.add_argument("--boxes", type=int, default=12, help="rectangles to draw (default 12)")
    parser.add_argument("--clicks", type=int, default=0,
                        help="instead of boxes: one box, then this many clicks (points) to time (e.g. 12)")
    parser.add_argument("--out", default=None, help="write the figures to this JSON file")
    parser.add_argument("--hide-maps", action="store_true", help="hide the SSIM/ΔSSIM layers after the first box")
    parser.add_argument("--size", type=int, default=512,
                        help="resize the sample film (and its mask) to SIZE x SIZE px, e.g. 3000 for a hospital "
                             "film; prompts scale with it (default 512, the sample as shipped)")
    parser.add_argument("--model", default=None, help="a model file instead of the bundled INT8 model")
    parser.add_argument("--baseline", default=None, help="its baseline file (for the maps; default: the bundled FP32)")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_adaqat._sample import chest_xray
    from napari_adaqat.widgets.segment import SegmentWidget

    viewer = napari.Viewer(show=True)
    scale = args.size / 512.0
    layers = [getattr(viewer, f"add_{kind}")(resized(data, args.size, kind), **kw) for data, kw, kind in chest_xray()]
    widget = SegmentWidget(viewer, device="cpu", model_path=args.model, baseline_path=args.baseline)
    viewer.window.add_dock_widget(widget)
    widget.reference.value = layers[1]
    app = QApplication.instance()

    def spin_until(done, limit_s: float = 30.0) -> bool:
        end = time.perf_counter() + limit_s
        while not done():
            if time.perf_counter() > end:
                return False
            app.processEvents()
            time.sleep(0.004)  # a busy loop would steal CPU from the worker
        return True

    spin_until(lambda: not widget.busy)
    draws: list[float] = []  # times of the canvas's draw events (napari's vispy SceneCanvas)
    viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(lambda _e: draws.append(time.perf_counter()))
    load_before = os.getloadavg()[0]
    rows = []
    if args.clicks:
        viewer.layers["boxes"].add_rectangles(scale * np.array([[40.0, 30.0], [470.0, 480.0]]))
        spin_until(lambda: not widget.busy)
        widget.points_mode()
    rng = np.random.default_rng(0)
    for i in range(args.clicks or args.boxes):
        inset = 4.0 * (i % 6)
        before = widget.last_result
        t0, c0, m0 = time.perf_counter(), time.process_time(), time.thread_time()
        if args.clicks:
            points = viewer.layers["points"]
            points.feature_defaults["positive"] = bool(i % 2)  # not lung, lung, not lung, ...
            points.add(scale * rng.uniform(80.0, 430.0, size=(1, 2)))
        else:
            viewer.layers["boxes"].add_rectangles(scale * np.array([[40.0 + inset, 30.0], [470.0, 480.0 - inset]]))
        if not spin_until(lambda: widget.last_result is not before):
            raise SystemExit(f"prompt {i}: no mask after 30 s (status: {widget.status.value!r})")
        t_mask, c_mask, m_mask = time.perf_counter(), time.process_time(), time.thread_time()
        painted = spin_until(lambda: any(t > t_mask for t in draws), limit_s=2.0)
        t_painted = next(t for t in draws if t > t_mask) if painted else float("nan")
        spin_until(lambda: not widget.busy)
        rows.append({"prompt_ms": widget.last_result.latency_ms, "mask_shown_ms": (t_mask - t0) * 1000,
                     "mask_painted_ms": (t_painted - t0) * 1000,
                     "maps_shown_ms": (time.perf_counter() - t0) * 1000, "mask_cpu_ms": (c_mask - c0) * 1000,
                     "main_thread_cpu_ms": (m_mask - m0) * 1000})
        if i == 0 and args.hide_maps:
            for name in ("SSIM", "ΔSSIM"):
                if name in viewer.layers:
                    viewer.layers[name].visible = False
    viewer.close()
    steady = rows[1:] or rows
    report = {key: round(float(np.nanmedian([r[key] for r in steady])), 1)
              for key in ("prompt_ms", "mask_shown_ms", "mask_painted_ms", "maps_shown_ms", "mask_cpu_ms",
                          "main_thread_cpu_ms")}
    kind, each = ("clicks", "per_click") if args.clicks else ("boxes", "per_box")
    report.update({kind: len(rows)}, film_px=args.size, model=args.model or "default", machine=platform.node(), cpus=os.cpu_count(), hide_maps=args.hide_maps,
                  load_avg_1m=[round(load_before, 2), round(os.getloadavg()[0], 2)], nice=os.nice(0),
                  **{each: [{k: round(v, 1) for k, v in r.items()} for r in rows]})
    print(json.dumps({k: v for k, v in report.items() if not k.startswith("per_")}, indent=1))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
