"""A QTimer that records when it fires: proof that the Qt event loop keeps running during work."""
from __future__ import annotations

import time

from qtpy.QtCore import QTimer


def tick_probe(interval_ms: int = 50) -> tuple[QTimer, list[float]]:
    """A started timer and the list of monotonic times it appends to on every tick (stop it when done)."""
    ticks: list[float] = []
    probe = QTimer()
    probe.setInterval(interval_ms)
    probe.timeout.connect(lambda: ticks.append(time.monotonic()))
    probe.start()
    return probe, ticks
