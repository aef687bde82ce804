"""The one atomic file writer: write a unique temp file next to the target, then ``os.replace``.

Temp names are ``.NAME.PID.RANDOM.tmp<suffix>`` (the suffix kept so that writers that choose a
format by extension still work); :func:`remove_stale_temps` deletes those of writers that are gone.
A reader never sees a half-written file under its real name, and two processes never share a temp.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp(?P<suffix>\.[^.]*)?$")


def temp_path(path: str | os.PathLike) -> Path:
    """A fresh temp name next to ``path``, unique per process and call: ``.NAME.PID.HEX8.tmp<suffix>``."""
    p = Path(path)
    return p.with_name(f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{p.suffix}")


def pid_alive(pid: int) -> bool:
    """True when a process with ``pid`` exists on this machine (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temp files in ``folder`` (only those of the target ``name``, when given) whose
    writing process is gone; return what was removed."""
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for entry in names:
        match = _TEMP_NAME.match(entry)
        if not match or (name is not None and match.group("name") != name):
            continue
        pid = int(match.group("pid"))
        if pid == os.getpid() or pid_alive(pid):
            continue
        path = Path(folder) / entry
        try:
            path.unlink()
            removed.append(path)
        except OSError:
            pass
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True, mode: int = 0o644,
                sweep: bool = True) -> Iterator[Path]:
    """Yield a temp path to write ``path``'s content to; on success it replaces ``path`` atomically.

    On any error (or Ctrl-C) the temp is removed and ``path`` is untouched; an ``OSError`` about the
    temp, or about no file (e.g. a full disk), names ``path``. ``sweep`` first removes temps of ``path``
    left by killed writers."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if sweep:
        remove_stale_temps(p.parent, p.name)
    tmp = temp_path(p)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # a shareable file, whatever the writer's temp-file mode
        os.replace(tmp, p)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, str(tmp)):
            raise OSError(exc.errno, exc.strerror or str(exc), str(p)) from None
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object], **options) -> Path:
    """Call ``write(temp_path)`` and move the result to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, **options) as tmp:
        write(tmp)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, **options) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), **options)


def link_or_copy(source: Path, target: Path) -> str:
    """Put ``source`` at ``target`` atomically: a hard link where the file system allows, else a copy.

    Returns ``"present"`` (already the same file), ``"linked"`` or ``"copied"``.  ``source`` is only
    read: no chmod or fsync touches it (a hard link shares its inode)."""
    if target.exists() and os.path.samefile(source, target):
        return "present"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(target)
    try:
        os.link(source, tmp)
    except OSError:  # another file system, links not allowed, …
        atomic_write(target, lambda t: shutil.copyfile(source, t))
        return "copied"
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return "linked"
