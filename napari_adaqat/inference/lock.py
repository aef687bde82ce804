"""One run per output folder: a lock file that names its holder (pid, host, start time).

The lock is an OS file lock (``flock``) on ``DIR/.adaqat-run.lock``, so the kernel releases it when the
holder dies, however it dies; the file's text only says who holds it.  A clean release removes the
file, so a lock file that names someone but is not locked was left by a killed run: it is taken over
(and :attr:`RunLock.took_over` says from whom).  Where ``fcntl`` is missing (Windows) the file is
created exclusively and a holder whose pid is gone on this host counts as dead.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Optional

from napari_adaqat.util.atomic import pid_alive

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".adaqat-run.lock"


class FolderBusy(RuntimeError):
    """Another live run holds the output folder."""


def _describe(holder: dict) -> str:
    started = holder.get("started")
    when = time.strftime(" since %Y-%m-%d %H:%M", time.localtime(started)) if isinstance(started, (int, float)) else ""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}{when}"


def _read(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8").strip()
        return json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}


def _holder(path: Path, wait_s: float = 2.0) -> dict:
    """The holder a locked lock file names; a run that has just locked it writes its name a moment
    later, so an empty file is read again for up to ``wait_s`` before the holder counts as unknown."""
    end = time.monotonic() + wait_s
    while True:
        holder = _read(path)
        if "pid" in holder or time.monotonic() >= end:
            return holder
        time.sleep(0.02)


def check_free(folder: Path) -> None:
    """Raise :class:`FolderBusy` (one line naming the holder) when a live run holds ``folder``; changes
    nothing (a dialog's early check; the run itself takes the lock)."""
    path = Path(folder) / LOCK_NAME
    if fcntl is None or not path.is_file():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        raise FolderBusy(_busy_line(path.parent, _holder(path))) from None
    finally:
        os.close(fd)


def _busy_line(folder: Path, holder: dict) -> str:
    return (f"{folder} is in use by another run ({_describe(holder)}); wait for it to finish or choose another "
            "output folder")


class RunLock:
    """Hold ``folder`` for this process until :meth:`release` (or the process ends).

    Raises :class:`FolderBusy` with one line naming the holder when a live run holds it."""

    def __init__(self, folder: Path, what: str = "adaqat segment") -> None:
        self.path = Path(folder) / LOCK_NAME
        self.took_over: Optional[dict] = None
        self._fd: Optional[int] = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": round(time.time(), 1),
              "command": what}
        if fcntl is not None:
            self._lock_flock(me)
        else:
            self._lock_exclusive(me)

    def _refuse(self, holder: dict) -> None:
        raise FolderBusy(_busy_line(self.path.parent, holder))

    def _lock_flock(self, me: dict) -> None:
        for _ in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self._refuse(_holder(self.path))
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break  # locked the file that is there now (not one a finishing run just removed)
            except FileNotFoundError:
                pass
            os.close(fd)
        else:
            self._refuse(_holder(self.path))
        left = _read(self.path)
        self.took_over = left or None  # locked by nobody yet naming someone: a killed run's lock
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self._fd = fd

    def _lock_exclusive(self, me: dict) -> None:  # pragma: no cover - Windows only
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read(self.path)
                if holder.get("host") == socket.gethostname() and not pid_alive(int(holder.get("pid", 0) or 0)):
                    self.took_over = holder
                    self.path.unlink(missing_ok=True)
                    continue
                self._refuse(holder)
            os.write(fd, (json.dumps(me) + "\n").encode())
            self._fd = fd
            return
        self._refuse(_read(self.path))

    def release(self) -> None:
        """Give the folder back (idempotent)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if fcntl is None:  # pragma: no cover - Windows: an open file cannot be removed
            os.close(fd)
        try:
            self.path.unlink(missing_ok=True)  # removed while still locked: a clean end leaves no lock file
        except OSError:  # a folder made read-only meanwhile: the file stays, its lock goes with the descriptor
            pass
        if fcntl is not None:
            os.close(fd)  # closing drops the flock

    def note(self) -> Optional[str]:
        """One line about a killed run's lock this one took over, else ``None``."""
        if not self.took_over:
            return None
        return f"took over {self.path.parent} from a run that stopped without finishing ({_describe(self.took_over)})"

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *_exc) -> None:
        self.release()

    def __del__(self) -> None:
        if sys is not None and self._fd is not None:
            try:
                self.release()
            except OSError:
                pass
