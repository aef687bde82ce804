"""JSON Lines progress log (``RUN/progress.jsonl``), read by the training dock."""
from __future__ import annotations

import json
import time
from pathlib import Path

from napari_adaqat.model.runtime import peak_rss_mb, reset_peak_rss


class ProgressLog:
    """Append one JSON object per line and flush, so readers see every step at once."""

    def __init__(self, path: str | Path, enabled: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self.start = time.time()

    def write(self, kind: str, **fields) -> dict:
        record = {"kind": kind, "time": round(time.time(), 3), "elapsed_s": round(time.time() - self.start, 3), **fields}
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        return record


class MemoryMeter:
    """Peak memory of one training step, in MiB: ``torch.cuda.max_memory_allocated`` on a CUDA device,
    else the process's peak resident set (RSS).  On Linux the RSS high-water mark is reset at each
    :meth:`reset` (``/proc/self/clear_refs``), so each step reports its own peak; elsewhere the peak
    since the process started."""

    def __init__(self, device: str) -> None:
        self.cuda = str(device).startswith("cuda")
        self.device = device
        self.kind = "cuda_max_allocated" if self.cuda else "rss"

    def reset(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            reset_peak_rss()

    def peak_mb(self) -> float | None:
        if self.cuda:
            import torch

            return round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        peak = peak_rss_mb()
        return None if peak is None else round(peak, 1)


def read_progress(path: str | Path) -> list[dict]:
    """All complete records of a progress file (a half-written last line is ignored)."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
