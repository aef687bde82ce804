"""Where a file came from: the source tree's git commit (``report`` and ``train`` both record it)."""
from __future__ import annotations

import subprocess
from pathlib import Path


def git_commit() -> str | None:
    """Short commit hash of the source tree this package runs from, or None outside git."""
    package = Path(__file__).resolve().parents[1]
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=5, cwd=package).stdout.strip()

        if Path(git("rev-parse", "--show-toplevel") or "/nonexistent").resolve() != package.parent:
            return None  # installed inside some other repository: its commit says nothing about this code
        return git("rev-parse", "--short", "HEAD") or None
    except (OSError, subprocess.SubprocessError):
        return None
