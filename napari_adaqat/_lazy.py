"""Lazy package exports: a name is imported from its module on first use (PEP 562), so importing a
package (as napari does to read the plugin manifest) does not import torch."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    ``exports`` maps a public name to ``"module:attribute"`` (module relative to ``package`` when it
    starts with a dot), or to ``"module"`` alone for a module object.
    """
    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attribute = exports[name].partition(":")
        module = importlib.import_module(module_name, package if module_name.startswith(".") else None)
        return getattr(module, attribute) if attribute else module

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
