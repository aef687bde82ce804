"""Binary lung masks: strict reading and atomic writing (PNG/TIFF, uint8 0/255).

A mask is written to a hidden temp file next to it and renamed into place, so a mask file is
always complete; temp files left by a killed writer are removed by the next writer in that folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tifffile

from .dicom import is_dicom, read_dicom_raw
from .image_data import ImageReadError, check_file, fail
from .images import is_image_file, read_raw
from ..util.atomic import atomic_path, remove_stale_temps

MASK_WRITE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff")
_swept: set[str] = set()  # folders already cleaned by this process


GIF_SUFFIX = ".gif"  # read as a mask (JSRT/SCR ship their masks so: lossless, two palette colours), never a film


def is_mask_file(path: Path) -> bool:
    """Whether ``path`` is a file :func:`read_mask` reads by its name: an image file, or a GIF."""
    return path.suffix.lower() == GIF_SUFFIX and path.is_file() or is_image_file(path)


def _read_gif(path: Path) -> np.ndarray:
    """A GIF mask's first frame as (H, W) grey levels (its palette applied: the colours, not their indices)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.format != "GIF":
            raise fail(path, f"not a GIF image (it holds {im.format or 'another format'} data)")
        if getattr(im, "n_frames", 1) > 1:  # (which frame is the mask? not guessed)
            raise fail(path, f"an animated GIF ({im.n_frames} frames), not a mask: save the mask as one PNG")
        return np.asarray(im.convert("L"))


def _reduce_channels(arr: np.ndarray) -> np.ndarray:
    """(H, W, C) -> (H, W): drop alpha, keep the brightest colour channel; but a mask drawn in the alpha
    channel (one colour everywhere, lung opaque, as some editors export a selection) is its alpha."""
    if arr.ndim == 3:
        channels = arr.shape[-1]
        if channels in (2, 4):  # gray+alpha, RGBA
            colour, alpha = arr[..., : channels - 1], arr[..., -1]
            if colour.min() == colour.max() and alpha.min() != alpha.max():
                return alpha
            arr = colour
        arr = arr.max(axis=-1)
    return arr


def _smoothed(arr: np.ndarray, other_reason: bool) -> bool:
    """Whether a many-valued mask looks like a two-valued one resized or drawn with smoothing (anti-aliased): nearly
    every pixel (≥ 90 %) within a tenth of its range of its lowest or highest value, the rest along edges (a film,
    or a label map of several levels, is not)."""
    if other_reason:
        return False
    low, high = float(arr.min()), float(arr.max())
    near = (high - low) / 10
    return bool(np.count_nonzero((arr <= low + near) | (arr >= high - near)) >= 0.9 * arr.size)


def _left_and_right(arr: np.ndarray, values: np.ndarray, share: float = 0.9) -> bool:
    """Whether ``arr`` (H, W) is a label map of the left and the right lung: background 0 and two integer labels
    side by side: each one's middle column on its own side of the film's, and at least ``share`` of each one's
    pixels beyond the other's middle column (as nnU-Net-style exports label them, 1 = right lung, 2 = left lung; a
    patient off the film's centre too, whose lung crosses the film's middle).  Lungs and heart, or anything
    else, is not: it stays refused."""
    if values.size != 3 or values[0] != 0 or not np.issubdtype(values.dtype, np.integer):
        return False
    first, second = sorted((np.nonzero(arr == label)[1] for label in values[1:]), key=np.median)
    middle = arr.shape[1] / 2  # (each lung's middle column on its own side of the film's)
    return bool(np.median(first) < middle < np.median(second) and np.mean(first < np.median(second)) >= share
                and np.mean(second > np.median(first)) >= share)


def read_mask(path: str | os.PathLike, lung_labels: bool = False) -> np.ndarray:
    """Read a binary mask (0/255, 0/1, bool; RGB reduced) as bool (H, W); with ``lung_labels`` (a dataset's
    reference masks, for training and scoring), a label map of the two lungs (0, 1 = one lung, 2 = the other,
    :func:`_left_and_right`) reads as both lungs.

    Raises ImageReadError when the file holds more than two distinct values otherwise.
    """
    p = check_file(path)
    try:
        if p.suffix.lower() == GIF_SUFFIX:
            arr = _read_gif(p)
        else:
            arr = read_dicom_raw(p)[1] if is_dicom(p) else read_raw(p, as_shown=False)[0]  # stored values: data
    except ImageReadError:
        raise
    except Exception as exc:
        raise fail(p, f"cannot read mask ({type(exc).__name__}: {exc})") from exc
    arr = _reduce_channels(np.asarray(arr))
    if arr.ndim != 2:
        raise fail(p, f"mask must be 2-D, got shape {arr.shape}")
    values = np.unique(arr)
    two_lungs = _left_and_right(arr, values)
    if two_lungs and lung_labels:  # a label map of the two lungs (0 background, 1 and 2): both are lung
        return arr > 0
    if values.size > 2:
        lossy = p.suffix.lower() in (".jpg", ".jpeg", ".jfif", ".jpe")  # JPEG blurs 0/255 edges into many grey values
        # a few values, or small ones (0, 1, 2: left and right lung): labels; more, spread to 255: a smoothed mask
        labels = not lossy and np.issubdtype(values.dtype, np.integer) and (values.size <= 4 or
                                                                            (values.size <= 8 and values.max() <= 16))
        if two_lungs:  # (where a mask is written back, as the Annotate dock does, left and right would be lost)
            raise fail(p, f"a label map of the left and right lungs (values {', '.join(str(v) for v in values)}), "
                          "not a mask: save lung = 255 on background 0 (training and evaluation read it as both lungs)")
        raise fail(p, f"mask is not binary (found {values.size} distinct values)"
                   + ("; JPEG compression blurs a mask's edges: save masks as PNG" if lossy else "")
                   + (f": values {', '.join(str(v) for v in values)}, a label map? save lung = 255 on background 0"
                      if labels else "")
                   + ("; resized with smoothing? threshold it at half its maximum" if _smoothed(arr, lossy or labels)
                      else ""))
    if values.size == 2 and values[0] != 0:  # e.g. 1/2 or 128/255: the larger is foreground
        return arr == values[1]
    return arr > 0


def write_mask(path: str | os.PathLike, mask: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``mask > 0`` as uint8 0/255 PNG or TIFF, atomically; return the path.

    Raises FileExistsError if the file exists and ``overwrite`` is False.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in MASK_WRITE_SUFFIXES:
        got = suffix or "(no extension)"
        raise ValueError(f"{p}: unsupported mask format {got!r}; use .png or .tif")
    data = np.asarray(mask)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 2:
        raise ValueError(f"{p}: mask must be 2-D (H, W), got shape {data.shape}")
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p}: already exists (pass overwrite=True to replace it)")
    out = np.where(data > 0, 255, 0).astype(np.uint8)
    p.parent.mkdir(parents=True, exist_ok=True)
    if str(p.parent) not in _swept:  # once per folder and process (not per mask): leftovers of a killed run
        remove_stale_temps(p.parent)
        _swept.add(str(p.parent))
    with atomic_path(p, fsync=False, sweep=False) as tmp:  # the temp keeps the suffix the writers go by
        if suffix == ".png":
            from skimage.io import imsave

            imsave(str(tmp), out, check_contrast=False)
        else:
            tifffile.imwrite(str(tmp), out, photometric="minisblack", compression="zlib")
    return p
