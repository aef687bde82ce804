"""Read 2-D grayscale images (PNG/JPEG/BMP/TIFF/DICOM) as float32 in [0, 1].

The content decides how a file is decoded (a JPEG named ``.png`` is read as JPEG); the name's
extension only says that a file is meant to be an image.  Every failure is one
:class:`ImageReadError` line naming the file and the problem, and the size is checked on the
header before any pixel is decoded, so a huge or forged header never exhausts memory.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

import numpy as np
import tifffile

from napari_adaqat.util.alpha import over_black
from napari_adaqat.util.errors import first_line

from .dicom import DICOM_SUFFIXES, is_dicom, read_dicom
from .dicom_open import AGAIN, is_dicomdir_name
from .jpeg_header import JPEG_LS_SOF, LOSSLESS_SOF, frame_header
from .jsrt import JSRT_SHAPE, JSRT_SUFFIX, is_jsrt, not_jsrt, read_jsrt
from .image_data import (
    DARK_TOP, IMAGE_SIGNATURES, ImageData, ImageReadError, check_decoded_size, check_file, check_finite, fail,
    stretch_dark, to_gray01,
)
from .image_data import other_kind as _other_kind
from .orientation import describe, pil_orientation, tiff_orientation, upright
from .tiff_codecs import pillow_tiff, shown

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".bmp", ".tif", ".tiff", ".dcm", ".dicom",
)  # .jfif / .jpe: JPEG as Windows and Chrome name it
TIFF_SUFFIXES: tuple[str, ...] = (".tif", ".tiff")
# what a folder scan takes, said where it passes a file over (the suffixes, JSRT's films, and content under any name)
READ_BY_NAME_OR_CONTENT = f"{', '.join(IMAGE_SUFFIXES)}, JSRT's .IMG, and PNG, JPEG, TIFF or DICOM under any name"
RASTER_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".bmp")
FORMAT_NAMES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".jfif": "JPEG", ".jpe": "JPEG", ".bmp": "BMP",
                ".tif": "TIFF", ".tiff": "TIFF"}

# tifffile logs every oddity of a corrupt file as a warning; the one ImageReadError line says what
# matters, so these stay out of the terminal unless the application configures logging itself.
logging.getLogger("tifffile").addHandler(logging.NullHandler())

READS = "; adaqat reads PNG, JPEG, BMP, TIFF, DICOM and JSRT's .IMG: convert it to PNG if it is a film"
_BYTES_PER_BAND = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}
_ARRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "RGB", "RGBA"}


def _describe(head: bytes) -> str:
    """What a file that is none of our formats holds, from its leading bytes."""
    kind = _other_kind(head)
    if kind:
        return kind
    text = ""
    for cut in range(4):  # the 64 leading bytes may end inside a multi-byte character
        try:
            text = head[:len(head) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        start = " ".join(text.split())[:40]
        return f"it holds text ({start!r}...)" if start else "it holds only blank text"
    return f"unrecognised content (first bytes {head[:8].hex(' ')})"


# Headerless raw films, known by their size: JSRT's .IMG files (2048 x 2048, 12 bits in 16, big-endian)
RAW_FILMS = {2048 * 2048 * 2: "JSRT's .IMG layout (2048 x 2048 pixels, 12 bits stored big-endian, no header)"}


def raw_film_hint(path: Path) -> str:
    """``"its size fits JSRT's .IMG layout …: convert it …"`` for a headerless file of a known raw film's size
    (:data:`RAW_FILMS`), else ``""`` (what a folder of such files is told, as each of them is)."""
    hint = _what_else(path)
    return hint[2:] if "its size fits" in hint else ""


def _what_else(path: Path) -> str:
    """``": it is a ZIP archive; unpack it ..."`` for a file of a known other kind (:func:`_other_kind`), a hint for
    a headerless raw film of a known size (:data:`RAW_FILMS`), why a ``.img`` is not read as JSRT's, else ``""``."""
    try:
        with path.open("rb") as fh:
            kind = _other_kind(fh.read(64))
        size = path.stat().st_size
    except OSError:
        return ""
    if kind is None and path.suffix.lower() == JSRT_SUFFIX:
        return f": {not_jsrt(path)}{READS}"
    if kind is None and size in RAW_FILMS:  # (no header to read: a guess from the size, said as one)
        return (f": its size fits {RAW_FILMS[size]}: if it is a JSRT film, name it {path.stem}{JSRT_SUFFIX.upper()} "
                "(adaqat reads those); else convert it to a 16-bit PNG with the lungs dark")
    return f": {kind}" if kind else ""


def raster_content(path: str | os.PathLike) -> str | None:
    """``"png"``, ``"jpeg"`` or ``"tiff"`` when the file's first bytes say so, whatever its name (``IM0001``, ``.1``,
    ``.bak``: as DICOM is read under any name); else None (BMP's two-byte signature is too weak to trust alone)."""
    try:
        if not Path(path).is_file():  # (a FIFO would block the read)
            return None
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    return next((fmt for magic, fmt in IMAGE_SIGNATURES if fmt != "bmp" and head.startswith(magic)), None)


def sniff_format(path: Path) -> str:
    """``"png"``, ``"jpeg"``, ``"bmp"`` or ``"tiff"`` from the content; else ImageReadError."""
    try:
        with path.open("rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise fail(path, f"cannot open ({exc.strerror or exc})") from None
    if not head:
        raise fail(path, f"empty file (0 bytes){AGAIN}")
    for magic, fmt in IMAGE_SIGNATURES:
        if head.startswith(magic):
            return fmt
    expected = FORMAT_NAMES.get(path.suffix.lower(), "supported")
    raise fail(path, f"not a {expected} image: {_describe(head)}")


def tiff_images(tif: tifffile.TiffFile) -> int:
    """How many images an open TIFF holds, its reduced-resolution pages (thumbnails, pyramid levels) aside."""
    return sum(1 for page in tif.pages if not getattr(page, "is_reduced", False))


def _read_tiff(path: Path, as_shown: bool = True) -> tuple[np.ndarray, dict]:
    """First full-size series of a TIFF (thumbnails aside) as (H, W) or (H, W, S), as shown (white-is-zero
    inverted, palette applied) or as stored; stacks and oversized images are refused."""
    with tifffile.TiffFile(path) as tif:
        if not tif.series or not tif.pages:
            raise fail(path, f"truncated or corrupt TIFF data (no image in it){AGAIN}")
        full = [s for s in tif.series if s.pages and not getattr(s.pages[0], "is_reduced", False)]
        series = full[0] if full else tif.series[0]  # a thumbnail page first (NewSubfileType 1) is not the film
        axes, shape = series.axes, series.shape
        planes = math.prod(n for ax, n in zip(axes, shape) if ax not in "YXS")
        images = tiff_images(tif)
        if images > 1 and len(tif.series) == 1:
            planes = max(planes, images)
        if planes > 1:
            raise fail(path, f"is a 3-D stack ({planes} planes); give a single 2-D image")
        if images > 1:
            raise fail(path, f"holds {images} images (pages); give a single 2-D image")
        dims = dict(zip(axes, shape))
        itemsize = series.dtype.itemsize if series.dtype is not None else 8
        check_decoded_size(path, dims.get("Y", 1), dims.get("X", 1), math.prod(shape) * itemsize)
        page = series.keyframe
        meta = {"photometric": page.photometric.name, "bits": int(page.bitspersample),
                "orientation": tiff_orientation(page)}
        try:
            arr = series.asarray()
        except ValueError as exc:
            if "imagecodecs" not in str(exc):
                raise
            return pillow_tiff(path, page, as_shown), meta  # e.g. LZW or JPEG without the imagecodecs package
        kept = "".join(ax for ax, n in zip(axes, shape) if ax in "YXS")
        arr = arr.reshape([n for ax, n in zip(axes, shape) if ax in "YXS"])
        if "S" in kept and kept.index("S") != arr.ndim - 1:
            arr = np.moveaxis(arr, kept.index("S"), -1)
        return (shown(arr, page) if as_shown else arr), meta


def _pil_class(fmt: str):
    from PIL import BmpImagePlugin, JpegImagePlugin, PngImagePlugin

    return {"png": PngImagePlugin.PngImageFile, "jpeg": JpegImagePlugin.JpegImageFile,
            "bmp": BmpImagePlugin.BmpImageFile}[fmt]


def _read_raster(path: Path, fmt: str) -> tuple[np.ndarray, dict]:
    """PNG/JPEG/BMP with Pillow's decoder of that format: header (size, frames) first, then pixels.

    Palette images become RGB(A), other modes without a NumPy layout become RGB; animated
    PNGs are refused as stacks.
    """
    with path.open("rb") as fh:
        im = _pil_class(fmt)(fh)  # parses the header only (Image.open would also warn on large sizes)
        width, height = im.size
        bands = len(im.getbands())
        check_decoded_size(path, height, width, width * height * max(bands, 3) * _BYTES_PER_BAND.get(im.mode, 1))
        frames = int(getattr(im, "n_frames", 1) or 1)
        if frames > 1:
            raise fail(path, f"is a 3-D stack ({frames} planes); give a single 2-D image")
        im.load()
        orientation = pil_orientation(im) if fmt != "bmp" else 1
        arr = _pil_array(im)
    return arr, {"bits": int(arr.dtype.itemsize * 8) if arr.dtype != bool else 1, "orientation": orientation}


def _pil_array(im) -> np.ndarray:
    """A Pillow image's pixels as a file of its mode is read: palette (P, PA), CMYK, YCbCr... as RGB(A)."""
    if im.mode not in _ARRAY_MODES:
        alpha = im.mode in ("PA", "LA", "La", "RGBa") or "transparency" in im.info
        im = im.convert("RGBA" if alpha else "RGB")
    return np.asarray(im)


def _pil_film(image: object) -> np.ndarray | None:
    """A ``PIL.Image.Image`` given to the API as its file would be read (:func:`_pil_array`; 1-bit as 0/255, not a
    mask); None for anything else.  A multi-frame image is refused in one line."""
    pil = sys.modules.get("PIL.Image")  # (no PIL image exists unless Pillow was imported)
    if pil is None or not isinstance(image, pil.Image):
        return None
    frames = int(getattr(image, "n_frames", 1) or 1)
    if frames > 1:
        raise ValueError(f"got a PIL image of {frames} frames (a 3-D stack); give a single 2-D image")
    return _pil_array(image.convert("L") if image.mode == "1" else image)


def _jpeg_variant(path: Path) -> str | None:
    """``"12-bit JPEG"``, ``"lossless JPEG"`` or ``"JPEG-LS image"`` (as exported from DICOM) from the frame
    header; None for an 8-bit lossy JPEG or an unreadable header."""
    try:
        header = frame_header(path.read_bytes()[:1 << 20])
    except OSError:
        return None
    if header is None:
        return None
    marker, bits = header
    if marker == JPEG_LS_SOF:
        return "JPEG-LS image"
    kind = "lossless JPEG" if marker in LOSSLESS_SOF else "JPEG"
    return f"{bits}-bit {kind}" if bits != 8 else (kind if marker in LOSSLESS_SOF else None)


def read_raw(path: str | os.PathLike, as_shown: bool = True) -> tuple[np.ndarray, dict]:
    """Read the pixel array of a PNG/JPEG/BMP/TIFF (no scaling), upright; raise ImageReadError.

    An EXIF/TIFF orientation tag is applied (:mod:`.orientation`), as every photo viewer does:
    ``meta["orientation"]`` is the tag (1: none) and ``meta["orientation_applied"]`` says what was
    done (``""`` for nothing).  Float data with NaN or infinite values is refused.  A TIFF is read as shown
    (white-is-zero inverted, palette applied), or with ``as_shown=False`` as stored (a mask's values).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in TIFF_SUFFIXES + RASTER_SUFFIXES + DICOM_SUFFIXES and not raster_content(p):  # (.dcm: a PNG...)
        raise fail(p, f"unsupported image format {suffix or '(no extension)'!r}{_what_else(p) or READS}")
    fmt = sniff_format(p)
    try:
        arr, meta = _read_tiff(p, as_shown) if fmt == "tiff" else _read_raster(p, fmt)
    except ImageReadError:
        raise
    except Exception as exc:  # corrupt files raise anything from the decoders
        variant = _jpeg_variant(p) if fmt == "jpeg" else None
        if variant:
            raise fail(p, f"is a {variant}, which adaqat cannot decode: convert it to a 16-bit PNG or TIFF") from None
        problem = first_line(exc, with_type=True, limit=160)
        raise fail(p, f"truncated or corrupt {fmt.upper()} data ({problem}){AGAIN}") from None
    meta["format"] = fmt
    if arr.size == 0:
        raise fail(p, "image is empty")
    check_finite(p, arr)
    meta["orientation_applied"] = describe(meta.get("orientation"), "TIFF" if fmt == "tiff" else "EXIF")
    return upright(arr, meta.get("orientation")), meta


def file_orientation(path: str | os.PathLike) -> int:
    """The EXIF/TIFF orientation tag (1-8) of a JPEG/PNG/TIFF file, read from its header; 1 when it has
    none, or for any other file (never raises)."""
    p = Path(path)
    try:
        fmt = sniff_format(p)
        if fmt == "tiff":
            with tifffile.TiffFile(p) as tif:
                return tiff_orientation(tif.pages[0]) if tif.pages else 1
        if fmt == "bmp":
            return 1
        with p.open("rb") as fh:
            im = _pil_class(fmt)(fh)
            if fmt == "png":
                im.load()  # a PNG's eXIf chunk may follow its pixel data
            return pil_orientation(im)
    except Exception:  # not an image, unreadable: no orientation to apply
        return 1


APPLE_DOUBLE_MAGIC = b"\x00\x05\x16\x07"  # the first bytes of a macOS AppleDouble file


def is_apple_double(path: str | os.PathLike) -> bool:
    """True for a macOS AppleDouble file (``._chest.png``: the Finder metadata a Mac leaves beside each file it
    copies to a USB stick or a network share), which holds no image."""
    p = Path(path)
    if not p.name.startswith("._"):
        return False
    try:
        with open(p, "rb") as fh:
            return fh.read(4) == APPLE_DOUBLE_MAGIC
    except OSError:
        return False


def is_image_file(path: str | os.PathLike) -> bool:
    """True for a known image suffix or a DICOM file without one (not for a macOS ``._`` AppleDouble file,
    nor for a ``DICOMDIR``, the index of a DICOM export)."""
    if is_apple_double(path) or is_dicomdir_name(path):
        return False
    return (Path(path).suffix.lower() in IMAGE_SUFFIXES or is_jsrt(path) or is_dicom(path)
            or raster_content(path) is not None)


def read_image(path: str | os.PathLike) -> ImageData:
    """Read any supported 2-D image as float32 (H, W) in [0, 1]; raise ImageReadError."""
    p = check_file(path)
    if is_dicom(p):
        return read_dicom(p)
    if is_jsrt(p):
        return read_jsrt(p)
    arr, meta = read_raw(p)
    try:
        pixels = to_gray01(arr, source=p)
    except (ValueError, TypeError) as exc:
        raise fail(p, f"unsupported pixel data: {exc}") from None
    meta["dtype"] = str(arr.dtype)
    meta["channels"] = 1 if arr.ndim == 2 else int(arr.shape[-1])
    return ImageData(pixels=pixels, spacing=None, source=str(p), meta=meta)


def image_path(image: object) -> str | None:
    """The file path that ``image`` names (a str, a PathLike, or a path as bytes, as ``os.listdir(b".")`` gives),
    else None (an array, an ImageData); a file's bytes (a NUL in them, or over 4096 bytes) are refused in one line."""
    if isinstance(image, (bytes, bytearray)):
        if b"\0" in image or len(image) > 4096:
            raise TypeError("got the bytes of a file, not a path: give the file's path, or decode it first "
                            "(np.asarray(PIL.Image.open(io.BytesIO(data))))")
        return os.fsdecode(bytes(image))
    return os.fspath(image) if isinstance(image, (str, os.PathLike)) else None


def film_and_spacing(image: np.ndarray | str | os.PathLike | ImageData,
                     spacing: tuple[float, float] | None = None) -> tuple[np.ndarray, tuple[float, float] | None]:
    """An image as the models take it: (its pixels, ``spacing`` or its own (row, col) spacing, None when unknown).
    A file is read (:func:`read_image`), an :class:`ImageData` gives both, an array is taken as it is ((1, H, W)
    as (H, W), (H, W, 2) gray + alpha over black), a PIL image as its file would be read (:func:`_pil_film`); a
    bool array (a mask), None, an open file or a file's bytes are refused in one line."""
    path = image_path(image)
    if path is not None:
        image = read_image(path)
    if isinstance(image, ImageData):
        return image.pixels, image.shape_spacing if spacing is None else spacing
    if image is None or hasattr(image, "read"):
        raise TypeError(f"expected an image (an array, a file path or an ImageData), got "
                        f"{'an open file: give its path' if image is not None else 'None'}")
    pil = _pil_film(image)
    pixels = np.asarray(image) if pil is None else pil
    if pixels.dtype == bool:
        raise ValueError("got a bool array: that is a mask, not a film; give the film's pixels")
    if pixels.ndim == 3 and pixels.shape[0] == 1 and min(pixels.shape[1:]) > 4:
        pixels = pixels[0]  # (1, H, W), channels first (a torch habit): gray
    if pixels.ndim == 3 and pixels.shape[-1] == 2:
        pixels = over_black(pixels)  # gray + alpha: over black, as an LA file is read (to_gray01)
    if pixels.dtype.kind == "f" and pixels.size and float(pixels.max()) < DARK_TOP \
            and bool(np.isfinite(pixels).all()) and pixels.min() >= 0.0:  # (one pass for a film that is not dark:
        pixels = stretch_dark(pixels)  # this runs on every prompt) skimage's img_as_float of 12-bit data: stretched
    return pixels, spacing


def sample_name(path: str | os.PathLike) -> str:
    """The name that pairs an image with its mask: the stem for a known image suffix, else the whole
    file name (extension-less DICOM exports such as ``1.2.840.113619.2`` have dots, not suffixes)."""
    p = Path(path)
    return p.stem if p.suffix.lower() in IMAGE_SUFFIXES + (JSRT_SUFFIX,) else p.name


def film_shape(path: Path) -> tuple[int, int]:
    """(H, W) of a film as :func:`read_image` gives it: from the header of a PNG, JPEG or BMP (upright), else
    by reading it."""
    if is_jsrt(path):
        return JSRT_SHAPE
    if path.suffix.lower() in RASTER_SUFFIXES:
        try:
            from PIL import Image

            with Image.open(path) as im:
                w, h = im.size
            return (w, h) if file_orientation(path) in (5, 6, 7, 8) else (h, w)
        except Exception:  # noqa: BLE001 - read it instead (which says what is wrong)
            pass
    return tuple(read_image(path).pixels.shape[:2])  # type: ignore[return-value]
