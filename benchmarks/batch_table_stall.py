"""The Batch dock at archive scale: the longest stall of napari's GUI thread while the dock fills its results table
with N files, then takes N 'skipped' rows (a rerun of a finished folder), then sorts at the end.  A stall is the
longest gap between ticks of a 5 ms QTimer (offscreen Qt; the rows are sent as the worker sends them, a list
about every 0.1 s).  BENCHMARKS.md, "Segmenting an archive".

    python benchmarks/batch_table_stall.py 10000
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QApplication

from napari_adaqat.inference.batch import ResultRow
from napari_adaqat.widgets._batch_job import Scanned
from napari_adaqat.widgets.batch import BatchWidget

ROWS_PER_SIGNAL = 500  # about what the worker sends in 0.1 s of a rerun's skipped files


class StallMeter:
    """The gaps between the ticks of a 5 ms QTimer: how long the GUI thread stayed away from its event loop
    (also used by tests/test_batch_train_qa2.py)."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._last, self._start = time.perf_counter(), 0
        self.timer = QTimer()
        self.timer.setInterval(5)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self._last)
        self._last = now

    def mark(self) -> None:
        """Count from now on."""
        self._start, self._last = len(self.gaps), time.perf_counter()

    def ticks(self) -> int:
        return len(self.gaps) - self._start

    def longest(self) -> float:
        """The longest gap since :meth:`mark`."""
        return max(self.gaps[self._start:], default=0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="how many files (e.g. 10000)")
    n = parser.parse_args().n
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QApplication.instance() or QApplication([])
    widget = BatchWidget(None)
    widget.out.value = "/tmp/adaqat_batch_stall"
    widget.native.resize(420, 900)
    widget.native.show()
    root = Path("/data/export")
    files = [root / f"P{i // 100:03d}" / f"IM{i % 100:04d}.dcm" for i in range(n)]
    results = {str(p): {"file": str(p), "status": "ok", "area_px": "51234", "seconds": "0.81", "quality": "0.953",
                        "review": "0", "mask": "x"} for p in files}
    meter = StallMeter()

    def settle(seconds: float) -> float:
        """Run the event loop ``seconds`` (and 3 ticks at least); the longest gap since the last call."""
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or meter.ticks() < 3:
            app.processEvents()
        longest = meter.longest()
        meter.mark()
        return longest

    settle(0.3)
    widget._worker = object()  # as while a run is on
    widget._row_signal.scanned.emit(Scanned(files, [root], results, set(results), ""))
    fill = settle(0.5)
    rows = 0.0
    for i in range(0, n, ROWS_PER_SIGNAL):
        widget._row_signal.row.emit([ResultRow(file=str(p), status="skipped") for p in files[i:i + ROWS_PER_SIGNAL]])
        rows = max(rows, settle(0.05))
    rows = max(rows, settle(0.5))
    assert [r["status"] for r in widget.table_rows()].count("skipped") == n
    start = time.perf_counter()
    widget._worker = None
    widget._on_finished()
    finish = time.perf_counter() - start
    print(f"N={n}: longest GUI stall filling the table {fill:.3f} s; taking {n} skipped rows {rows:.3f} s; "
          f"finishing (sort) {finish:.3f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
