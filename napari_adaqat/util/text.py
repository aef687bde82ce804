"""File names as the user compares them, and lists of names in the one-line messages the user sees."""
from __future__ import annotations

import unicodedata
from typing import Iterable


def pairing_key(name: str) -> str:
    """``name`` as film, mask and CSV names are matched: one Unicode form (NFC) and any case, as the Windows and
    macOS file systems of the sites compare names (``IMG001.png`` ↔ ``img001_mask.png``)."""
    return unicodedata.normalize("NFC", name.casefold())


def count_of(n: int, word: str) -> str:
    """``"1 film"``, ``"3 films"``: ``n`` and ``word``, plural with an s when ``n`` is not 1."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def listed(names: Iterable[object], limit: int) -> str:
    """The first ``limit`` names joined by commas, then `` and N more`` for the rest: ``a.png, b.png and 3 more``."""
    names = [str(n) for n in names]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def did_you_mean(path: str) -> str:
    """``"; did you mean 'train10'?"`` when folders beside the missing ``path`` have a close name (a typo: ``train1O``),
    else ``""``."""
    import difflib
    import os

    parent, name = os.path.split(os.path.normpath(path))
    try:
        folders = [e.name for e in os.scandir(parent or ".") if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return ""
    close = difflib.get_close_matches(name, folders, n=1, cutoff=0.75)
    return f"; did you mean {os.path.join(parent, close[0])!r}?" if close else ""
