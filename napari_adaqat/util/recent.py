"""The folders a dock last opened, kept for the next napari session: a dock opened again shows them (a QA walk's
find: closing and reopening the Annotate dock forgot both folders, so resuming meant typing them again).

One small JSON file in the user's configuration folder: ``$ADAQAT_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/napari-adaqat``, else ``~/.config/napari-adaqat`` (``%APPDATA%\\napari-adaqat`` on Windows).
Nothing here raises: a read-only home folder only means nothing is remembered.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

RECENT_FILE = "recent.json"


def config_dir() -> Path:
    """The folder of napari-adaqat's user settings (not created here)."""
    if os.environ.get("ADAQAT_CONFIG_DIR"):
        return Path(os.environ["ADAQAT_CONFIG_DIR"])
    base = os.environ.get("XDG_CONFIG_HOME") or (os.environ.get("APPDATA") if os.name == "nt" else None)
    return Path(base or Path.home() / ".config") / "napari-adaqat"


def recall(dock: str) -> dict[str, str]:
    """The folders ``dock`` last opened ({field: path}), those that still exist; {} when none."""
    try:
        entry = json.loads((config_dir() / RECENT_FILE).read_text(encoding="utf-8")).get(dock, {})
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(entry, dict):
        return {}
    return {key: value for key, value in entry.items() if isinstance(value, str) and os.path.isdir(value)}


def remember(dock: str, **folders: str) -> None:
    """Keep ``folders`` ({field: path}) as the ones ``dock`` last opened (absolute paths)."""
    path = config_dir() / RECENT_FILE
    try:
        known = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    known[dock] = {key: os.path.abspath(value) for key, value in folders.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{RECENT_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(known, indent=1), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
