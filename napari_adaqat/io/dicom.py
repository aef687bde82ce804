"""DICOM reading: modality LUT, VOI LUT / windowing, MONOCHROME1, spacing, frames.

Opening and checking the file is :mod:`.dicom_open`; decoding the pixel data, :mod:`.dicom_pixels`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .dicom_open import (DICOM_SUFFIXES, check_film_object, frame_count, has_dicm_magic, is_dicom, open_dicom,
                         syntax_was_assumed)
from .dicom_pixels import decode, syntax_label
from .image_data import DARK_TOP, ImageData, ImageReadError, fail, film_bottom, film_top, to_gray01, warn_read

__all__ = ["DICOM_SUFFIXES", "IN_NAPARI", "MultiFrameError", "has_dicm_magic", "is_dicom", "read_dicom",
           "read_dicom_raw", "read_dicom_stack"]


# what a dock user can do with a multi-frame DICOM (the docks have no frame option; napari opens it as a stack)
IN_NAPARI = "drag it onto napari (it opens as a stack of frames): the Segment dock segments the frame shown"


class MultiFrameError(ImageReadError):
    """A multi-frame DICOM was given where one 2-D image is needed; ``frames`` tells how many."""

    def __init__(self, message: str, frames: int) -> None:
        super().__init__(message)
        self.frames = frames

    def hinted(self, path: str | os.PathLike, hint: str = IN_NAPARI) -> "MultiFrameError":
        """This error for ``path`` with what the entry that refused the file offers (the API: ``frame=N``;
        ``adaqat segment``: ``--frame N``; a dock: :data:`IN_NAPARI`)."""
        return MultiFrameError(str(fail(path, f"multi-frame DICOM with {self.frames} frames; {hint}")), self.frames)


def _open(path: str | os.PathLike, frame: int | None, film: bool = False):
    """(dataset, frame count, frame index or None) after checking ``frame`` against the file (``film``: and that
    it is a film, :func:`check_film_object`)."""
    p = Path(path)
    ds = open_dicom(p)
    if film:
        check_film_object(p, ds)
    frames = frame_count(ds)
    if frames > 1 and frame is None:
        raise MultiFrameError(
            str(fail(p, f"is a multi-frame DICOM, a 3-D stack ({frames} planes); give a single 2-D image "
                        f"or choose a frame: read_dicom(path, frame=N), N from 0 to {frames - 1}")), frames)
    if frames > 1 and not 0 <= frame < frames:
        raise fail(p, f"frame {frame} is out of range: the file has {frames} frames (0 to {frames - 1})")
    return ds, frames, (frame if frames > 1 else None)


def _check_shape(path: Path, ds, arr: np.ndarray, stack: bool) -> None:
    spp = int(ds.get("SamplesPerPixel", 1))
    if arr.ndim != 2 + stack + (spp > 1) or arr.size == 0:
        raise fail(path, f"unexpected DICOM pixel array shape {arr.shape}")


def read_dicom_raw(path: str | os.PathLike, frame: int | None = None, film: bool = False):
    """Return ``(dataset, stored pixel array (H, W) or (H, W, 3))`` of one frame.

    ``frame`` (0-based) picks a frame of a multi-frame file (required there); single-frame files ignore it.
    ``film``: refuse an object that is no film (:class:`NotAFilm`; a mask may be a DICOM Segmentation).
    """
    p = Path(path)
    ds, frames, index = _open(p, frame, film)
    arr = decode(p, ds, index, frames)
    _check_shape(p, ds, arr, stack=False)
    return ds, arr


def _pair(value) -> tuple[float, float] | None:
    """A "row\\col" spacing in mm (a decimal comma read as a point); None unless two positive numbers."""
    try:
        row, col = (float(str(v).replace(",", ".")) for v in value)
    except (TypeError, ValueError):
        return None
    return (row, col) if row > 0 and col > 0 else None


def _group_spacing(ds, frame: int | None) -> tuple[float, float] | None:
    """Pixel Spacing of the Pixel Measures (PS3.3 C.7.6.16.2.1) of an enhanced / multi-frame file: the frame's own
    (Per-Frame Functional Groups), else the Shared Functional Groups'."""
    groups = []
    try:
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame or 0])
    except (AttributeError, IndexError, TypeError):
        pass
    try:
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    except (AttributeError, IndexError, TypeError):
        pass
    for group in groups:
        try:
            found = _pair(group.PixelMeasuresSequence[0].PixelSpacing)
        except (AttributeError, IndexError, TypeError, KeyError):
            continue
        if found is not None:
            return found
    return None


def _spacing(ds, frame: int | None = None) -> tuple[float, float] | None:
    """Pixel Spacing, else Imager Pixel Spacing, else the Pixel Measures of the functional groups (frame ``frame``)."""
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(key)
        if value is not None and (found := _pair(value)) is not None:
            return found
    return _group_spacing(ds, frame)


def _first(value) -> float:
    """First value of a possibly multi-valued DICOM number."""
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _valid_window(ds) -> bool:
    """Whether the first window is usable (PS3.3 C.11.2.1.2: a width of at least 1); exporters that write
    0 or leave the values empty get the full range instead of an error."""
    try:
        return np.isfinite(_first(ds.WindowCenter)) and _first(ds.WindowWidth) >= 1
    except (TypeError, ValueError, IndexError):
        return False


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


def _padding(ds, arr: np.ndarray) -> np.ndarray | None:
    """Mask of the stored values that Pixel Padding Value (0028,0120) and Pixel Padding Range Limit (0028,0121)
    mark as padding (the frame around a rotated or collimated film), compared bit pattern to bit pattern;
    ``None`` when there is none, or when it would cover every pixel."""
    values = []
    for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
        try:
            values.append(int(_first(ds[keyword].value)) if keyword in ds else None)
        except (TypeError, ValueError, IndexError, KeyError):
            values.append(None)
    if values[0] is None or not np.issubdtype(arr.dtype, np.integer):
        return None
    info, span = np.iinfo(arr.dtype), 1 << (arr.dtype.itemsize * 8)
    fixed = [v + span if v is not None and v < info.min else v - span if v is not None and v > info.max else v
             for v in values]
    lo, hi = min(v for v in fixed if v is not None), max(v for v in fixed if v is not None)
    mask = (arr >= lo) & (arr <= hi)
    return mask if mask.any() and not mask.all() else None


def _full_range(x: np.ndarray, keep: np.ndarray | None) -> np.ndarray:
    """``x`` scaled so that its pixels outside the padding span [0, 1]."""
    inside = x if keep is None else x[keep]
    lo, hi = float(inside.min()), float(inside.max())
    lo = film_bottom(x if keep is None else np.where(keep, x, hi), lo, hi)  # (an undeclared border at the minimum)
    hi = film_top(x if keep is None else np.where(keep, x, lo), lo, hi)  # (a burned-in marker at the maximum)
    return (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)


def _voi_lut_values(ds) -> np.ndarray:
    """The first VOI LUT's output values (n,) float64, decoded by pydicom from any VR: LUT Data read back as OW
    bytes (every Implicit VR file) or as US/SS values, by applying the LUT to each of its input values."""
    from pydicom.pixels import apply_voi_lut

    entries, first = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor[:2])
    inputs = np.arange(first, first + (entries or 65536), dtype=np.int64)
    return np.asarray(apply_voi_lut(inputs, ds, prefer_lut=True), dtype=np.float64)


# a header window that turns more than this share of the film pure black or white is not the film's (WW 400 on a
# 12-bit film: 73 %; a chest film's own window leaves its lungs in range); the full range is read instead
SATURATED_SHARE = 0.6


def _saturated_share(x: np.ndarray, out: np.ndarray) -> float:
    """The share of the film's own pixels (stored values strictly between their 5th and 95th percentiles: a
    collimator's or shutter's flat border, air around a small patient, left out) that the window ``out`` (the same
    pixels, 0-1) turns pure black or white."""
    lo, hi = np.percentile(x, [5, 95])
    core = (x > lo) & (x < hi)
    return float(np.mean((out[core] <= 0.0) | (out[core] >= 1.0))) if core.any() else 0.0


# the mirror case: a window under which the film's values span less than DARK_TOP of the gray range (WC 32767.5 /
# WW 65535 on 12-bit data: 6 %) shows it nearly black; the full range is read instead


def _window_span(out: np.ndarray) -> float:
    """How much of [0, 1] the windowed film ``out`` spans, a border at its minimum and markers at its top aside
    (:func:`film_bottom`, :func:`film_top`)."""
    lo, hi = float(np.min(out)), float(np.max(out))
    lo = film_bottom(out, lo, hi)
    return film_top(out, lo, hi) - lo


def _modality_lut(ds, arr: np.ndarray) -> np.ndarray:
    """pydicom's ``apply_modality_lut`` as float64; a Modality LUT of 9-15-bit entries (``4096\\0\\12``, seen in the
    field; pydicom makes a 'uint12' of it, issue #2317) is read as 16-bit words, as pydicom's fix (PR #2326) does."""
    from pydicom.pixels import apply_modality_lut

    item = ds.ModalityLUTSequence[0] if ds.get("ModalityLUTSequence") else None
    descriptor = list(item.LUTDescriptor) if item is not None and "LUTDescriptor" in item else None
    if descriptor is None or len(descriptor) < 3 or not 8 < int(descriptor[2]) < 16:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    item.LUTDescriptor = [*descriptor[:2], 16]
    try:
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float64)
    finally:
        item.LUTDescriptor = descriptor


def _monochrome01(ds, arr: np.ndarray, meta: dict, path: Path | None = None) -> np.ndarray:
    """Modality LUT, then VOI LUT or window (else full range), to [0, 1]; shown inverted for MONOCHROME1 or a
    Presentation LUT Shape INVERSE (once for both); padding pixels black.  A window that saturates over
    :data:`SATURATED_SHARE` of the film is not used (one :class:`ImageReadWarning` line)."""
    from pydicom.pixels import apply_voi_lut

    x = _modality_lut(ds, arr)
    padding = _padding(ds, arr)
    keep = None if padding is None else ~padding
    if ds.get("VOILUTSequence"):
        lut = _voi_lut_values(ds)
        # the LUT is indexed by integer input values
        y = np.asarray(apply_voi_lut(np.rint(x).astype(np.int64), ds, prefer_lut=True), dtype=np.float64)
        lo, hi = float(lut.min()), float(lut.max())
        out = (y - lo) / (hi - lo) if hi > lo else np.zeros_like(y)
        meta["voi"] = "lut"
    elif "WindowCenter" in ds and "WindowWidth" in ds and _valid_window(ds):
        center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
        y = np.asarray(apply_voi_lut(x, ds, prefer_lut=False), dtype=np.float64)
        y_min, y_max = _window_output_range(ds)
        out = (y - y_min) / (y_max - y_min)
        meta["voi"] = "window"
        meta["window"] = (center, width)
    else:
        out = _full_range(x, keep)
        meta["voi"] = "full_range"
    inside = out if keep is None else out[keep]
    if meta["voi"] != "full_range" and np.ptp(inside) == 0 and np.ptp(x if keep is None else x[keep]) > 0:
        # a window or LUT that gives one value for all the film (e.g. meant for rescaled values the file lacks)
        film = x if keep is None else x[keep]
        what = (f"window (center {meta['window'][0]:g}, width {meta['window'][1]:g})" if meta["voi"] == "window"
                else "VOI LUT")
        warn_read(f"{path}: the header's {what} gives one gray for the whole film (its values run from "
                  f"{float(film.min()):g} to {float(film.max()):g}); read at its full range instead")
        meta["voi_unused"] = meta.pop("voi")
        out = _full_range(x, keep)
        meta["voi"] = "full_range"
    elif meta["voi"] == "window" and inside.size >= 64 * 64 and np.ptp(film := x if keep is None else x[keep]) > 0:
        saturated = _saturated_share(film, inside)
        if saturated > SATURATED_SHARE:
            warn_read(f"{path}: the header's window (center {meta['window'][0]:g}, width {meta['window'][1]:g}) "
                      f"turns {saturated:.0%} of the film pure black or white; read at its full range instead")
            meta["voi_unused"] = meta.pop("voi")
            out = _full_range(x, keep)
            meta["voi"] = "full_range"
        elif (span := _window_span(inside)) < DARK_TOP:
            warn_read(f"{path}: the header's window (center {meta['window'][0]:g}, width {meta['window'][1]:g}) "
                      f"leaves the film {span:.0%} of the gray range (a window for more bits than the film uses?); "
                      "read at its full range instead")
            meta["voi_unused"] = meta.pop("voi")
            out = _full_range(x, keep)
            meta["voi"] = "full_range"
    out = np.clip(out, 0.0, 1.0)
    inverse = str(ds.get("PresentationLUTShape", "")).strip().upper() == "INVERSE"
    if meta["photometric"] == "MONOCHROME1" or inverse:
        out = 1.0 - out
    if padding is not None:
        out[padding] = 0.0
    return out.astype(np.float32)


def _meta(ds, arr: np.ndarray) -> dict:
    meta: dict = {
        "format": "dicom",
        "photometric": str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper(),
        "bits_stored": int(ds.get("BitsStored", arr.dtype.itemsize * 8)),
        "modality": str(ds.get("Modality", "")),
        "transfer_syntax": syntax_label(ds),
        "sop_instance_uid": str(ds.get("SOPInstanceUID", "")),
        "frames": frame_count(ds),
    }
    if syntax_was_assumed(ds):
        meta["transfer_syntax_assumed"] = True
    if (ratio := _aspect_ratio(ds)) is not None:
        meta["pixel_aspect_ratio"] = ratio
    if view := str(ds.get("ViewPosition", "") or "").strip().upper():
        meta["view_position"] = view  # PA, AP, LL (lateral)...
    elif coded := _coded_view(ds):
        meta["view_position"], meta["view_code"] = "LATERAL", coded
    if (conversion := str(ds.get("ConversionType", "") or "").strip().upper()) in SCREEN_CAPTURES:
        meta["conversion_type"] = conversion  # a secondary capture of a screen or a document, not a film
    if orientation := _patient_orientation(ds):
        meta["patient_orientation"] = orientation  # "F\\R": the rows' direction, then the columns'
    return meta


# Conversion Type (0008,0064) of a secondary capture that is no digitised film: a workstation's screen, a scanned
# document, synthetic pixels (DF, a digitised film, and SI, a scanned image, are films)
SCREEN_CAPTURES = {"WSD": "a workstation's screen capture", "SD": "a scanned document", "SYN": "synthetic pixels"}


def _coded_view(ds) -> str:
    """The Code Meaning of a lateral view in View Code Sequence (0054,0220) (some modalities code the view there
    only, ViewPosition empty), e.g. ``"left lateral"``; else ""."""
    try:
        meaning = str(ds.ViewCodeSequence[0].get("CodeMeaning", "")).strip()
    except (AttributeError, IndexError, TypeError, KeyError):
        return ""
    words = meaning.lower()  # (a lateral decubitus film is frontal, as ViewPosition's decubitus is: inputs.py)
    return meaning if "lateral" in words and "medio" not in words and "decubitus" not in words else ""


def _patient_orientation(ds) -> str:
    """Patient Orientation (0020,0020) as written ("F\\R"), upper case; "" when absent or unreadable."""
    try:
        value = ds.get("PatientOrientation")
        values = [value] if isinstance(value, str) else list(value or ())
    except (TypeError, ValueError):
        return ""
    return "\\".join(str(v).strip().upper() for v in values) if any(str(v).strip() for v in values) else ""


def _aspect_ratio(ds) -> tuple[float, float] | None:
    """A Pixel Aspect Ratio (0028,0034) "row\\col" (e.g. 2\\1: pixels twice as tall as wide) as (row, col), when
    the film has no pixel spacing to give its shape (a secondary capture, some digitisers); else None."""
    if _spacing(ds) is not None:
        return None
    try:
        row, col = (float(v) for v in ds.get("PixelAspectRatio") or ())
    except (TypeError, ValueError):
        return None
    return (row, col) if row > 0 and col > 0 else None


def _to01(path: Path, ds, arr: np.ndarray, meta: dict) -> np.ndarray:
    """One stored frame (H, W[, 3]) -> float32 (H, W) in [0, 1]."""
    photometric = meta["photometric"]
    try:
        if photometric in ("MONOCHROME1", "MONOCHROME2"):
            pixels = _monochrome01(ds, arr, meta, path)
        elif photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            pixels = to_gray01(apply_color_lut(arr, ds))
        else:  # RGB; pydicom already converts YBR_* to RGB
            pixels = to_gray01(arr)
    except ImageReadError:
        raise
    except Exception as exc:
        raise fail(path, f"cannot convert DICOM pixels ({type(exc).__name__})") from exc
    if pixels.ndim != 2:
        raise fail(path, f"unexpected DICOM pixel array shape {arr.shape}")
    return pixels


def read_dicom(path: str | os.PathLike, frame: int | None = None) -> ImageData:
    """Read a DICOM image as float32 (H, W) in [0, 1] with pixel spacing.

    A multi-frame file needs ``frame`` (0-based), else :class:`MultiFrameError`; single-frame files ignore it.
    """
    p = Path(path)
    ds, arr = read_dicom_raw(p, frame, film=True)
    meta = _meta(ds, arr)
    if meta["frames"] > 1:
        meta["frame"] = int(frame)
    return ImageData(pixels=_to01(p, ds, arr, meta), spacing=_spacing(ds, frame), source=str(p), meta=meta)


def read_dicom_stack(path: str | os.PathLike) -> ImageData:
    """Every frame: ``pixels`` float32 (F, H, W) in [0, 1] for a multi-frame file, (H, W) for a single frame."""
    p = Path(path)
    ds = open_dicom(p)
    check_film_object(p, ds)
    frames = frame_count(ds)
    arr = decode(p, ds, None, frames)
    _check_shape(p, ds, arr, stack=frames > 1)
    meta = _meta(ds, arr)
    planes = [_to01(p, ds, a, meta) for a in arr] if frames > 1 else [_to01(p, ds, arr, meta)]
    pixels = np.stack(planes) if frames > 1 else planes[0]
    return ImageData(pixels=pixels, spacing=_spacing(ds), source=str(p), meta=meta)
