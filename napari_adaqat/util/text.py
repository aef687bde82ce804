"""Lists of names in the one-line messages the user sees."""
from __future__ import annotations

from typing import Iterable


def listed(names: Iterable[object], limit: int) -> str:
    """The first ``limit`` names joined by commas, then `` and N more`` for the rest: ``a.png, b.png and 3 more``."""
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
