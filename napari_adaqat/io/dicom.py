"""DICOM reading: modality LUT, VOI LUT / windowing, MONOCHROME1, spacing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .image_data import ImageData, ImageReadError, check_file, fail, to_gray01

DICOM_SUFFIXES: tuple[str, ...] = (".dcm", ".dicom")


def has_dicm_magic(path: str | os.PathLike) -> bool:
    """True if the file has the 'DICM' marker after the 128-byte preamble."""
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a .dcm/.dicom suffix or a file with the DICOM 'DICM' magic."""
    return Path(path).suffix.lower() in DICOM_SUFFIXES or has_dicm_magic(path)


def _dcmread(path: Path):
    import pydicom

    # Without the DICM magic (old/raw .dcm) the parser has to be forced.
    force = not has_dicm_magic(path)
    try:
        ds = pydicom.dcmread(path, force=force)
    except Exception as exc:
        raise fail(path, f"not a readable DICOM file ({type(exc).__name__}: {exc})") from exc
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        if force:
            raise fail(path, "not a DICOM file (no DICM marker, no pixel data)")
        raise fail(path, "DICOM file has no pixel data")
    frames = ds.get("NumberOfFrames", 1)
    try:
        frames = int(frames or 1)
    except (TypeError, ValueError):
        frames = 1
    if frames > 1:
        raise fail(path, f"is a 3-D stack ({frames} planes); give a single 2-D image")
    return ds


def read_dicom_raw(path: str | os.PathLike):
    """Return ``(dataset, stored pixel array)`` of a single-frame DICOM file."""
    p = check_file(path)
    ds = _dcmread(p)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise fail(p, f"cannot decode DICOM pixel data ({type(exc).__name__}: {exc})") from exc
    if arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 1:
        raise fail(p, f"is a 3-D stack ({arr.shape[0]} planes); give a single 2-D image")
    if arr.ndim not in (2, 3) or arr.size == 0:
        raise fail(p, f"unexpected DICOM pixel array shape {arr.shape}")
    return ds, arr


def _spacing(ds) -> tuple[float, float] | None:
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(key)
        if value is None:
            continue
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0:
            return (row, col)
    return None


def _first(value) -> float:
    """First value of a possibly multi-valued DICOM number."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _window_output_range(ds) -> tuple[float, float]:
    """Output range used by pydicom's ``apply_windowing`` (PS3.3 C.11.2.1.2)."""
    if ds.get("ModalityLUTSequence"):
        y_min, y_max = 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(ds.get("PixelRepresentation", 0)) == 0:
        y_min, y_max = 0.0, float(2 ** int(ds.BitsStored) - 1)
    else:
        y_min, y_max = float(-(2 ** (int(ds.BitsStored) - 1))), float(2 ** (int(ds.BitsStored) - 1) - 1)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        y_min, y_max = y_min * float(slope) + float(intercept), y_max * float(slope) + float(intercept)
    return y_min, y_max


def _monochrome01(ds, arr: np.ndarray, meta: dict) -> np.ndarray:
    """Modality LUT, then VOI LUT or window (else full range), to [0, 1]."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    x = np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    if ds.get("VOILUTSequence"):
        lut = np.asarray(ds.VOILUTSequence[0].LUTData, dtype=np.float64).ravel()
        # the LUT is indexed by integer input values
        y = np.asarray(apply_voi_lut(np.rint(x).astype(np.int64), ds, prefer_lut=True), dtype=np.float64)
        lo, hi = float(lut.min()), float(lut.max())
        out = (y - lo) / (hi - lo) if hi > lo else np.zeros_like(y)
        meta["voi"] = "lut"
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        y = np.asarray(apply_voi_lut(x, ds, prefer_lut=False), dtype=np.float64)
        y_min, y_max = _window_output_range(ds)
        out = (y - y_min) / (y_max - y_min)
        meta["voi"] = "window"
        meta["window"] = (center, width)
    else:
        lo, hi = float(x.min()), float(x.max())
        out = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
        meta["voi"] = "full_range"
    out = np.clip(out, 0.0, 1.0)
    if meta["photometric"] == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32)


def read_dicom(path: str | os.PathLike) -> ImageData:
    """Read a single-frame DICOM image as float32 (H, W) in [0, 1] with pixel spacing."""
    ds, arr = read_dicom_raw(path)
    p = Path(path)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    meta: dict = {
        "format": "dicom",
        "photometric": photometric,
        "bits_stored": int(ds.get("BitsStored", arr.dtype.itemsize * 8)),
        "modality": str(ds.get("Modality", "")),
    }
    try:
        if photometric in ("MONOCHROME1", "MONOCHROME2"):
            pixels = _monochrome01(ds, arr, meta)
        elif photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            pixels = to_gray01(apply_color_lut(arr, ds))
        else:  # RGB; pydicom already converts YBR_* to RGB
            pixels = to_gray01(arr)
    except ImageReadError:
        raise
    except Exception as exc:
        raise fail(p, f"cannot convert DICOM pixels ({type(exc).__name__}: {exc})") from exc
    if pixels.ndim != 2:
        raise fail(p, f"unexpected DICOM pixel array shape {arr.shape}")
    return ImageData(pixels=pixels, spacing=_spacing(ds), source=str(p), meta=meta)
