"""TIFF pixels as the file shows them: white-is-zero inverted, palette indices through their colormap, CMYK and
YCbCr as colour, and compressions that tifffile leaves to the optional imagecodecs package (LZW, JPEG, ...)
decoded by Pillow."""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np

from .image_data import fail

_ARRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA")  # Pillow modes NumPy takes as is


def _white_is_zero(arr: np.ndarray, bits: int) -> np.ndarray:
    """Invert white-is-zero data (0 = white) to black-is-zero on the same scale."""
    if arr.dtype == bool:
        return ~arr
    if np.issubdtype(arr.dtype, np.unsignedinteger):
        top = (1 << min(bits, arr.dtype.itemsize * 8)) - 1
        return (top - np.minimum(arr, top)).astype(arr.dtype)
    return arr.max() - arr if arr.size else arr  # signed or float: the same range, reversed


def _through_colormap(arr: np.ndarray, colormap: np.ndarray) -> np.ndarray:
    """Palette indices (H, W) -> float RGB (H, W, 3) in [0, 1] (TIFF colormaps are 16-bit; some writers use 8)."""
    cmap = np.asarray(colormap, dtype=np.float64)
    cmap = cmap / (255.0 if cmap.max() <= 255 else 65535.0)
    index = np.clip(arr.astype(np.int64), 0, cmap.shape[-1] - 1)
    return np.moveaxis(cmap[:, index], 0, -1)


def _cmyk_to_rgb(arr: np.ndarray) -> np.ndarray:
    """CMYK ink (H, W, 4+), 0 = no ink, -> float RGB (H, W, 3) in [0, 1]."""
    top = float(np.iinfo(arr.dtype).max) if np.issubdtype(arr.dtype, np.integer) else 1.0
    ink = np.clip(arr[..., :4].astype(np.float64) / top, 0.0, 1.0)
    return (1.0 - ink[..., :3]) * (1.0 - ink[..., 3:4])


def shown(arr: np.ndarray, page) -> np.ndarray:
    """The decoded first page, for its Photometric Interpretation: MINISWHITE inverted, PALETTE as RGB, CMYK
    (SEPARATED) as RGB, uncompressed YCbCr as its luma Y (tifffile converts only JPEG-compressed YCbCr)."""
    photometric = page.photometric.name
    if photometric == "MINISWHITE":
        return _white_is_zero(arr, int(page.bitspersample))
    if photometric == "PALETTE" and page.colormap is not None and arr.ndim == 2:
        return _through_colormap(arr, page.colormap)
    inkset = page.tags.get(332)  # InkSet: 1 CMYK (the default), 2 other inks
    if photometric == "SEPARATED" and arr.ndim == 3 and arr.shape[-1] >= 4 and (inkset is None or inkset.value == 1):
        return _cmyk_to_rgb(arr)
    if photometric == "YCBCR" and arr.ndim == 3 and arr.shape[-1] == 3 and page.compression.name != "JPEG":
        return arr[..., 0]
    return arr


def _as_black_is_zero(path: Path, page) -> io.BytesIO:
    """The file's bytes with its Photometric Interpretation tag (262) set to black-is-zero, so that every
    Pillow decoder gives the stored values (its raw and libtiff decoders invert white-is-zero differently)."""
    data = bytearray(path.read_bytes())
    tag = page.tags[262]
    struct.pack_into(f"{page.parent.byteorder}H", data, tag.valueoffset, 1)
    return io.BytesIO(bytes(data))


def pillow_tiff(path: Path, page, as_shown: bool = True) -> np.ndarray:
    """Decode ``page`` (a top-level page of the file) with Pillow (libtiff) when tifffile needs imagecodecs for its
    compression: as :func:`shown`, or the stored values (palette indices kept)."""
    from PIL import Image, TiffImagePlugin

    compression = getattr(page.compression, "name", str(page.compression))
    white_is_zero = page.photometric.name == "MINISWHITE"  # decoded as stored, then inverted if as_shown
    try:
        with (_as_black_is_zero(path, page) if white_is_zero else path.open("rb")) as fh:
            im = TiffImagePlugin.TiffImageFile(fh)
            if isinstance(page.index, int) and page.index:  # the film's page (a thumbnail page may come first)
                im.seek(page.index)
            im.load()
            mode = im.mode
            if mode not in _ARRAY_MODES + (() if as_shown else ("P",)):
                im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
            arr = np.asarray(im)
    except (OSError, ValueError, SyntaxError, struct.error, Image.DecompressionBombError):
        raise fail(path, f"TIFF compressed with {compression} ({int(page.compression)}), which cannot be decoded "
                         "here: save it as an uncompressed TIFF or a PNG") from None
    return _white_is_zero(arr, int(page.bitspersample)) if white_is_zero and as_shown else arr
