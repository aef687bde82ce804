"""Where models run: 'auto' resolves to cuda, then mps, then cpu (as micro-sam's ``get_device``)."""
from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    import torch  # here, not at the top: DEVICES serves help texts, which should not wait for torch

    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def resolve_device(name: str = "auto") -> str:
    """'auto' → cuda, mps or cpu, whichever is available; an unavailable choice is an error."""
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    if name not in DEVICES:
        raise ValueError(f"unknown device {name!r}; choose one of {DEVICES}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA GPU is available")
    if name == "mps" and not _mps_available():
        raise ValueError("--device mps asked for, but MPS is not available")
    return name
