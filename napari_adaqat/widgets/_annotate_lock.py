"""One Annotate dock per dataset folder: the dock holds the folder's run lock (``inference/lock.py``: an OS file
lock the kernel drops when its process dies, so a killed napari never blocks the next one) while it has it open,
and a second dock — in another napari window or another process — is refused with one line saying who holds it."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

from napari_adaqat.inference.lock import LOCK_NAME, FolderBusy, RunLock

WHAT = "Annotate dock"


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def holder(current: Any) -> Callable[[Path], RunLock]:
    """The ``hold`` for :class:`~napari_adaqat.data.annotation.AnnotationFolder`: the lock of ``current`` (the
    dock's folder, or None) when it is of the same dataset folder, else a new one (FolderBusy when refused)."""
    def hold(dataset: Path) -> RunLock:
        lock = getattr(current, "lock", None)
        if lock is not None and _same(current.dataset, dataset):
            return lock
        return RunLock(dataset, what=WHAT)
    return hold


def busy_line(dataset: Path, exc: FolderBusy) -> str:
    """One line: who holds ``dataset`` and what to do."""
    try:
        who = json.loads((Path(dataset) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return str(exc)
    what = str(who.get("command") or "another program")
    started = who.get("started")
    since = time.strftime(", since %H:%M", time.localtime(started)) if isinstance(started, (int, float)) else ""
    where = f"process {who.get('pid', '?')} on {who.get('host', '?')}{since}"
    if what == WHAT:
        return (f"The dataset folder {dataset} is open in another Annotate dock ({where}): close that dock or its "
                "napari window first, or choose another dataset folder.")
    return f"The dataset folder {dataset} is in use by {what} ({where}): wait for it to finish, or choose another one."


def took_over(lock: Optional[RunLock]) -> str:
    """The line about a dock that ended without closing (its lock taken over), or ""."""
    if lock is None or not lock.took_over:
        return ""
    return (f"(This dataset was left open by process {lock.took_over.get('pid', '?')}, which ended without closing "
            "it; it is yours now.)")
