"""JSON Lines progress log (``RUN/progress.jsonl``), read by the training dock."""
from __future__ import annotations

import json
import time
from pathlib import Path


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
