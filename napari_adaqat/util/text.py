"""File names as the user compares them, and lists of names in the one-line messages the user sees."""
from __future__ import annotations

import unicodedata
from typing import Iterable


def pairing_key(name: str) -> str:
    """``name`` as film, mask and CSV names are matched: one Unicode form (NFC) and any case, as the Windows and
    macOS file systems of the sites compare names (``IMG001.png`` ↔ ``img001_mask.png``)."""
    return unicodedata.normalize("NFC", name.casefold())


def listed(names: Iterable[object], limit: int) -> str:
    """The first ``limit`` names joined by commas, then `` and N more`` for the rest: ``a.png, b.png and 3 more``."""
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
