"""Process settings for fast, lean inference on the CPU.

glibc's malloc serves large blocks from fresh ``mmap`` pages by default (and trims its heap),
so each of the encoder's transient activations (MBs to tens of MBs each, hundreds per ViT-B
embedding) is page-faulted in again at every allocation; in a VM a fault costs microseconds per
4 KiB page.  Measured on this 2-core VM, ViT-B INT8 at 1024 px, one thread: 6.7 s per embedding
with glibc's defaults, 10.8 s with every block ≥ 1 MB mmapped, **6.2 s** with the heap kept
(:func:`keep_freed_memory`), at about the same peak RSS (1147 MB vs 1166 MB: the fast encoder
frees its chunks in a steady pattern).  The cost is that freed memory stays in the process for
the next image instead of going back to the OS.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory", "peak_rss_mb", "reset_peak_rss"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)
_done: dict[str, bool] = {}


def keep_freed_memory(mmap_threshold_bytes: int = 1 << 30) -> bool:
    """Serve blocks below ``mmap_threshold_bytes`` from the heap and never trim it (glibc on Linux),
    so freed activations are reused without page faults; returns False where this is not available
    (macOS, Windows, musl).  Idempotent."""
    if "ok" in _done:
        return _done["ok"]
    ok = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold_bytes))) and bool(
                libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
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
