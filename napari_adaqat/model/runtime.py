"""Process settings for lean inference on the CPU.

glibc's malloc keeps freed blocks in its heaps for reuse, so the encoder's transient activations
(tens of MB each; ViT-B at 1024 px frees several GB over one embedding) stay in the resident set
long after they are freed: the peak RSS measured by ``adaqat bench`` was ~370 MB above the live
memory.  :func:`return_freed_memory` serves large allocations straight from ``mmap`` instead, so a
freed activation goes back to the OS at once.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["return_freed_memory", "peak_rss_mb", "reset_peak_rss"]

_M_MMAP_THRESHOLD = -3  # mallopt parameter (glibc malloc.h)
_done: dict[str, bool] = {}


def return_freed_memory(threshold_bytes: int = 1 << 20) -> bool:
    """Serve allocations of at least ``threshold_bytes`` from ``mmap`` (glibc on Linux), so that
    freeing them lowers the resident set; returns False where this is not available (macOS,
    Windows, musl).  Idempotent; costs page faults on large allocations (measured: no slower)."""
    if "ok" in _done:
        return _done["ok"]
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold_bytes)))
        except (OSError, AttributeError):
            ok = False
    _done["ok"] = ok
    return ok


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process in MiB: the kernel's high-water mark of this address space
    (``VmHWM``: not inherited from a parent across ``exec``, unlike ``ru_maxrss``), else ``ru_maxrss``."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def reset_peak_rss() -> bool:
    """Reset the high-water mark to the current RSS (Linux ``/proc/self/clear_refs``); False elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
