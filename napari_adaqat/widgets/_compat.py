"""Work around a crash between Mesa's software OpenGL and Triton.

``segment_anything`` imports torchvision, which imports ``torch._dynamo``, which tries
``import triton``. Triton's ``libtriton.so`` carries its own LLVM; loading it into a process
where Mesa (llvmpipe, e.g. under Xvfb or on machines without a GPU driver) has already mapped
the system ``libLLVM`` segfaults. napari creates its OpenGL context before it imports a
plugin's dock widget, so the dock must not let Triton load afterwards. When ``libLLVM`` is
already mapped and Triton is not yet imported, we mark Triton as unavailable for this process:
torch then runs without it (only ``torch.compile`` GPU kernels need it; the docks do not).
"""
from __future__ import annotations

import sys


def _llvm_mapped() -> bool:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return any("libLLVM" in line for line in fh)
    except OSError:  # not Linux
        return False


def guard_triton_import() -> bool:
    """Block a late ``import triton`` when it would crash; return True if it was blocked."""
    if "triton" in sys.modules or "torch._dynamo" in sys.modules:
        return False
    if not _llvm_mapped():
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]  # makes `import triton` raise ImportError
    return True
