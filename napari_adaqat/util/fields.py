"""Dataclasses from JSON: one rule for the fields a file or a config may name."""
from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def from_fields(cls: type[T], data: dict, what: str, error: type[Exception] = ValueError, **converted: Any) -> T:
    """``cls(**data, **converted)`` after refusing keys that are not fields of ``cls`` (one-line
    ``error`` naming ``what``); ``converted`` replaces values of ``data`` (e.g. lists made tuples)."""
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    if unknown:
        raise error(f"unknown {what} fields: {sorted(unknown)}")
    return cls(**{**data, **converted})
