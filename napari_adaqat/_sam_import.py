"""Import ``segment_anything`` without importing torchvision (imported for its side effect).

``segment_anything/__init__.py`` imports its predictor and mask generator, which import four
torchvision functions (``resize``, ``to_pil_image``, ``batched_nms``, ``box_area``) at module level.
torchvision in turn imports ``torch._dynamo`` (via ``torchvision.ops.roi_align``): measured here,
+168 MB resident memory (155 MB of it ``torch._dynamo``) and +1 s on every start, and the Triton/Mesa clash that
:mod:`napari_adaqat.widgets._compat` guards against.  Our code never calls those four functions
(stock ``SamPredictor`` and the automatic mask generator do).

So, when neither module is imported yet, ``segment_anything`` is imported once here with stand-in
``torchvision.transforms.functional`` / ``torchvision.ops.boxes`` modules whose four functions
import the real torchvision on their first call; the stand-ins are removed from ``sys.modules``
right after, so any later ``import torchvision`` is the real one.  Every module of ours that
imports ``segment_anything`` imports this module first.
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Any, Callable

_STUBS = {"torchvision.transforms.functional": ("resize", "to_pil_image"),
          "torchvision.ops.boxes": ("batched_nms", "box_area")}


def _on_first_call(module: str, name: str) -> Callable[..., Any]:
    """A function that imports ``module`` and calls its ``name`` (the real torchvision function)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name}, imported on first call (see napari_adaqat._sam_import)"
    return call


def import_segment_anything() -> None:
    """Import ``segment_anything`` as described in the module docstring (idempotent)."""
    if "segment_anything" in sys.modules or "torchvision" in sys.modules:
        return
    stubs = {}
    for module, names in _STUBS.items():
        stub = types.ModuleType(module)
        for name in names:
            setattr(stub, name, _on_first_call(module, name))
        stubs[module] = stub
    sys.modules.update(stubs)
    try:
        import segment_anything  # noqa: F401  (binds the stand-in functions)
    finally:
        for module, stub in stubs.items():
            if sys.modules.get(module) is stub:
                del sys.modules[module]


import_segment_anything()
