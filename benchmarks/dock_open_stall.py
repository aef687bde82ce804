"""How long opening a dock the first time freezes napari: the longest gap between ticks of a 10-ms timer on the GUI
thread, from the Plugins-menu call until the dock's widget is built.

Each way runs in a fresh Python (the docks' code not yet imported), in turn, ``--repeat`` times:

* ``direct``: the dock's widget class built on the GUI thread, as napari builds a plugin's widget class
  (what the manifest named before ``widgets/_loading_dock.py``);
* ``shell``: ``viewer.window.add_plugin_dock_widget`` through the manifest (the dock shows "Loading…" at once and
  builds the widget when its code is imported in a thread).

Run under a display (``xvfb-run -a python benchmarks/dock_open_stall.py``). Prints one JSON line per run and a
summary; ``--out FILE`` writes them.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

DOCKS = {"segment": ("Segment lungs (AdaLoRA-QAT)", "napari_adaqat.widgets.segment", "SegmentWidget"),
         "annotate": ("Annotate folder (AdaLoRA-QAT)", "napari_adaqat.widgets.annotate", "AnnotateWidget"),
         "batch": ("Batch segment (AdaLoRA-QAT)", "napari_adaqat.widgets.batch", "BatchWidget"),
         "train": ("Train (AdaLoRA-QAT)", "napari_adaqat.widgets.train", "TrainWidget")}


def one_run(dock: str, way: str) -> dict:
    """Open ``dock`` once in this (fresh) process; the GUI thread's longest stall and the time to a built widget."""
    import napari
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    title, module, attr = DOCKS[dock]
    viewer = napari.Viewer(show=True)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    _spin(0.5)
    start = time.perf_counter()
    ticks.append(start)
    if way == "direct":
        import importlib

        widget = getattr(importlib.import_module(module), attr)(viewer)
        viewer.window.add_dock_widget(widget, name=title)
        shown = built = time.perf_counter()
    else:
        from napari_adaqat.widgets._loading_dock import LoadingDock

        _dock, widget = viewer.window.add_plugin_dock_widget("napari-adaqat", title)
        shown = time.perf_counter()
        while isinstance(widget, LoadingDock) and widget.inner is None and widget.error is None:
            QApplication.processEvents()
            time.sleep(0.002)
        built = time.perf_counter()
        if isinstance(widget, LoadingDock) and widget.error:
            raise SystemExit(widget.error)
    _spin(0.1)
    ticks.append(time.perf_counter())
    gaps = [b - a for a, b in zip(ticks, ticks[1:]) if a >= start - 1e-9]
    timer.stop()
    viewer.close()
    return {"dock": dock, "way": way, "dock_shown_s": round(shown - start, 3), "widget_built_s": round(built - start, 3),
            "longest_stall_s": round(max(gaps), 3), "stalls_over_100ms": sum(g > 0.1 for g in gaps)}


def _spin(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.002)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dock", choices=sorted(DOCKS), default="segment")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per way (default 3)")
    parser.add_argument("--out", type=Path, help="write the runs and the summary here (JSON)")
    parser.add_argument("--one", choices=["direct", "shell"], help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(one_run(args.dock, args.one)), flush=True)
        return 0
    runs = []
    for _ in range(args.repeat):
        for way in ("direct", "shell"):
            done = subprocess.run([sys.executable, __file__, "--dock", args.dock, "--one", way],
                                  capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for way in ("direct", "shell"):
        mine = [r for r in runs if r["way"] == way]
        summary[way] = {key: statistics.median(r[key] for r in mine)
                        for key in ("dock_shown_s", "widget_built_s", "longest_stall_s")}
    summary["stall_ratio_shell_over_direct"] = round(summary["shell"]["longest_stall_s"]
                                                     / summary["direct"]["longest_stall_s"], 3)
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
