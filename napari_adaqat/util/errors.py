"""One rule for turning an exception into the one line the user sees."""
from __future__ import annotations


def first_line(exc: BaseException, *, with_type: bool = False, limit: int | None = None) -> str:
    """The first non-empty line of ``str(exc)`` (the exception's type name when it has no text).

    ``with_type`` prefixes ``TypeName: ``; ``limit`` cuts the text to that many characters."""
    text = str(exc).strip()
    if not text:
        return type(exc).__name__
    line = text.splitlines()[0]
    if limit is not None:
        line = line[:limit]
    return f"{type(exc).__name__}: {line}" if with_type else line
