"""What every reader returns and raises: :class:`ImageData`, :class:`ImageReadError`, the size
limits (checked on the header, before decoding) and the normalisation of any pixel array to
float32 gray in [0, 1]."""

from __future__ import annotations

import errno
import math
import os
import stat
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from skimage.color import rgb2gray

from napari_adaqat.util.alpha import over_black


class ImageReadError(ValueError):
    """An image or mask file could not be read; the message is one line."""


class NotAFilm(ImageReadError):
    """A file that is no film to segment: a DICOM object of a study export that holds no radiograph (a
    Segmentation, a Presentation State, a Key Object Selection, a Structured Report, a DICOMDIR...).  A folder
    run ignores it (its row says so) instead of counting it as a failure."""


class ImageReadWarning(UserWarning):
    """A file was read, but not as its header says (e.g. a DICOM whose Bits Stored understates its values);
    the message is one line naming the file, what was wrong and how it was read."""


_KEPT = threading.local()  # the reading warnings of the film this thread reads, where one asked (kept_read_warnings)


def warn_read(message: str, stacklevel: int = 2) -> None:
    """Warn ``message`` as an :class:`ImageReadWarning` (``stacklevel`` as :func:`warnings.warn` counts it from the
    caller), and keep it for :func:`kept_read_warnings` on this thread.  Not ``warnings.catch_warnings``, which
    swaps the process's filters and hook: a film read on napari's GUI thread meanwhile would lose its warnings, or
    give them to the film read in the worker."""
    kept = getattr(_KEPT, "lines", None)
    if kept is not None:
        kept.append(message)
    warnings.warn(message, ImageReadWarning, stacklevel=stacklevel + 1)


@contextmanager
def kept_read_warnings() -> Iterator[list[str]]:
    """The :func:`warn_read` messages of what this thread reads inside the block (warned as ever too)."""
    before, _KEPT.lines = getattr(_KEPT, "lines", None), []
    try:
        yield _KEPT.lines
    finally:
        _KEPT.lines = before


MAX_PIXELS = 8192 * 8192  # 64 M pixels: larger images are refused before they are decoded
MAX_BYTES = 2**30  # decoded pixel data of one file
MIN_SIDE = 16  # smallest side that is segmented (one patch of the model's encoder)
# The model sees the image with its longest side resized to its input size: a strip (16x3000) passes
# MIN_SIDE but is ~1 px wide there.  Below one encoder patch at the input the bundled model's Dice
# collapses (measured: python benchmarks/strip_limit.py, see BENCHMARKS.md), so such images are refused.
MIN_INPUT_SIDE = 16  # px of the short side at the model's input
DEFAULT_INPUT_SIZE = 256  # the bundled model's input size (longest side), used when no model is named


# leading bytes of the non-DICOM formats that are decoded (by :mod:`.images`)
IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
    (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"), (b"BM", "bmp"),
)


def fail(path: str | os.PathLike, problem: object, kind: type[ImageReadError] = ImageReadError) -> ImageReadError:
    """Build an :class:`ImageReadError` (or ``kind``) ``"<path>: <problem>"`` squeezed onto one line."""
    text = " ".join(str(problem).split()) or "unknown error"
    if len(text) > 300:
        text = text[:297] + "..."
    return kind(f"{path}: {text}")


@dataclass
class ImageData:
    """A 2-D grayscale image ready for segmentation."""

    pixels: np.ndarray  # float32 (H, W) in [0, 1]
    spacing: tuple[float, float] | None  # (row_mm, col_mm) when known
    source: str
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of the pixel array."""
        return self.pixels.shape  # type: ignore[return-value]

    @property
    def shape_spacing(self) -> tuple[float, float] | None:
        """The (row, col) spacing that gives the film its true shape: ``spacing``, else a DICOM's Pixel Aspect
        Ratio (0028,0034; unitless: no mm, so no distances in mm come of it), else None."""
        return self.spacing if self.spacing is not None else self.meta.get("pixel_aspect_ratio")


# Pixels whose height and width differ by less than this (a DICOM's PixelSpacing 0.1430 x 0.1431) are square
ASPECT_TOLERANCE = 0.02
MAX_ASPECT = 8.0  # pixels more than 8 times as tall as wide (or as wide as tall): a corrupt spacing, ignored


def pixel_aspect(spacing: Sequence[float] | None) -> float:
    """A film's pixel aspect: the height of a pixel over its width (``spacing`` (row, col), e.g. a DICOM's
    PixelSpacing in mm); 1.0 when unknown, not positive, within :data:`ASPECT_TOLERANCE` of square, or beyond
    :data:`MAX_ASPECT` either way (a corrupt spacing, not a film: 0.0001 x 0.1 mm would squash it to a line)."""
    if spacing is None:
        return 1.0
    try:
        row, col = (float(v) for v in spacing)
    except (TypeError, ValueError):
        return 1.0
    if not (np.isfinite(row) and np.isfinite(col) and row > 0 and col > 0):
        return 1.0
    aspect = row / col
    return 1.0 if abs(aspect - 1.0) <= ASPECT_TOLERANCE or not 1 / MAX_ASPECT <= aspect <= MAX_ASPECT else aspect


# how much of a film a burned-in marker or label at the format's maximum may cover (film_top): real labels and
# text lines cover 0.1-2 % of a film; a bright region larger than this is taken as part of the film
MARKER_SHARE = 2.0  # % of the pixels

# a film that fills under this share of its range (a float film under 1/8 of [0, 1]; a film under a window far
# wider than its values; the film under a white shutter) would be read nearly black: its own range is read instead
DARK_TOP = 0.125


def film_top(x: np.ndarray, lo: float, hi: float) -> float:
    """The top of a film's range: ``hi``, unless a few pixels lie far above the rest (a marker or text burned in at
    the format's maximum: a 12-bit film in a 16-bit PNG with a label at 65535), which min-max scaling would let
    squash the film into its darkest few percent.  Those are the pixels above a quarter of the range, when they
    cover at most :data:`MARKER_SHARE` of the film (counted on every pixel, so a 1-px line along an edge weighs its
    true share); then the brightest pixel below them."""
    if x.size < 64 or hi <= lo:
        return hi
    cut = lo + (hi - lo) / 4.0
    bright = x > cut
    count = np.count_nonzero(bright)
    if count * 100.0 > MARKER_SHARE * x.size:
        return _below_a_shutter(x, bright, count, lo, hi)
    top, _ = _top_below(x, bright, hi)
    return top if top > lo else hi  # (two levels only, a mask: as is)


def _top_below(x: np.ndarray, bright: np.ndarray, hi: float) -> tuple[float, np.ndarray]:
    """The brightest pixel of ``x`` outside ``bright`` (``hi`` when there is none), and those pixels (NaN aside)."""
    below = x[~bright & ~np.isnan(x)]
    return (float(below.max()) if below.size else hi), below


SHUTTER_SHARE = 20.0  # % of the pixels: at most this under a white label block or shutter at the format's maximum


def _below_a_shutter(x: np.ndarray, bright: np.ndarray, count: int, lo: float, hi: float) -> float:
    """The top of a film under a white label or shutter over more than the marker shares of it: the brightest pixel
    below it, when every bright pixel is at ``hi``, one value that is a format's maximum (2^n - 1: 65535, 4095, 1.0),
    over at most :data:`SHUTTER_SHARE` of the film, and the rest lies under :data:`DARK_TOP` of the range
    in many values (not a mask nor a few-level test pattern); else ``hi`` (a film's own bright metal: as is)."""
    whole = float(hi).is_integer() and hi >= 1 and (int(hi) + 1) & int(hi) == 0
    if not whole or count * 100.0 > SHUTTER_SHARE * x.size or np.count_nonzero(x == hi) != count:
        return hi
    top, below = _top_below(x, bright, hi)
    if not lo < top < lo + (hi - lo) * DARK_TOP:
        return hi
    return top if np.unique(below[::max(1, below.size // 65536)]).size >= 32 else hi


def film_bottom(x: np.ndarray, lo: float, hi: float) -> float:
    """The bottom of a film's range: ``lo``, unless the pixels at ``lo`` lie far below all the others (a border
    at the format's minimum: -32768 around a signed film that declares no Pixel Padding Value), which min-max
    scaling would let squash the film into its brightest few percent.  Then the darkest other pixel, when the gap
    below it is over four times the range above it (looked for in a 1-in-64 sample first); the border is then the
    darkest value (black, or white where the film is shown inverted: MONOCHROME1)."""
    sample = x[::8, ::8] if x.ndim >= 2 else x
    if sample.size < 64 or hi <= lo:
        return lo
    above = sample[sample > lo]
    nearest = float(np.nanmin(above)) if above.size else hi
    if nearest >= hi or nearest - lo <= 4.0 * (hi - nearest):  # (two levels only: a mask, a test pattern: as is)
        return lo
    return float(np.nanmin(x[x > lo]))


def _minmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64, copy=False)
    lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return np.zeros(x.shape, np.float64)
    lo = film_bottom(x, lo, hi)
    hi = film_top(x, lo, hi)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros(x.shape, np.float64)




def stretch_dark(x: np.ndarray, source: object = None) -> np.ndarray:
    """Floats ``x`` in [0, 1]: min-max scaled (:func:`_minmax`, markers aside) with one :class:`ImageReadWarning`
    line when the film's top is under :data:`DARK_TOP`; else ``x`` as it is."""
    if x.size < 64 or not np.isfinite(lo := float(np.min(x))) or not np.isfinite(hi := float(np.max(x))):
        return x
    top = film_top(x, lo, hi) if hi > lo else hi
    if not (lo < top < DARK_TOP):
        return x
    warn_read(f"{source if source is not None else 'image'}: its values lie in {lo:.3g}..{top:.3g}, under 1/8 of "
              "[0, 1] (e.g. skimage's img_as_float of 12-bit data); stretched to its own range", stacklevel=3)
    return _minmax(x)


def to_gray01(array: np.ndarray, source: object = None) -> np.ndarray:
    """Convert a 2-D gray, RGB or RGBA array of any common dtype to float32 (H, W) in [0, 1].

    uint8 is divided by 255, bool maps to {0, 1}, other integers (uint16 included) and
    floats outside [0, 1] are min-max normalised, as are floats in [0, 1] that fill under 1/8 of it
    (:func:`stretch_dark`, one warning naming ``source``); RGB uses luminance; with alpha, the image over black
    (:func:`~napari_adaqat.util.alpha.over_black`).
    """
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    a = over_black(a)  # gray + alpha, RGBA: composited over black as napari shows them (alpha dropped)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4) array, got shape {a.shape}")
    if a.dtype == bool:
        x = a.astype(np.float64)
    elif a.dtype == np.uint8:
        x = a.astype(np.float64) / 255.0
    elif np.issubdtype(a.dtype, np.integer):
        x = _minmax(a)
    elif np.issubdtype(a.dtype, np.floating):
        x = a.astype(np.float64)
        finite = np.isfinite(x)
        if not finite.all():
            x = np.where(finite, x, np.nanmin(np.where(finite, x, np.nan)) if finite.any() else 0.0)
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            x = _minmax(x)
        else:
            x = stretch_dark(x, source)
    else:
        raise ValueError(f"unsupported pixel dtype {a.dtype}")
    if x.ndim == 3:
        x = rgb2gray(x[..., :3])
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def check_decoded_size(path: str | os.PathLike, height: int, width: int, nbytes: int) -> None:
    """Refuse, before decoding, an image of 0 pixels, over :data:`MAX_PIXELS` or over :data:`MAX_BYTES`."""
    if height <= 0 or width <= 0:
        raise fail(path, f"image is empty ({width}x{height} px)")
    if height * width > MAX_PIXELS:
        raise fail(path, f"image is too large: {width}x{height} px ({height * width / 2**20:.0f} M pixels); "
                         f"the limit is {MAX_PIXELS // 2**20} M pixels (e.g. 8192x8192): downscale it first")
    if nbytes > MAX_BYTES:
        raise fail(path, f"image is too large: {width}x{height} px would decode to {nbytes / 2**30:.1f} GiB; "
                         f"the limit is {MAX_BYTES // 2**30} GiB")


def nonfinite_problem(array: np.ndarray) -> str:
    """``"N of M pixel values are NaN or infinite; the image data is corrupt"`` for a float array holding such
    values, else ``""`` (one pass when all are finite)."""
    a = np.asarray(array)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating)) or np.isfinite(a).all():
        return ""
    bad = int(a.size - np.count_nonzero(np.isfinite(a)))
    return f"{bad} of {a.size} pixel values are NaN or infinite; the image data is corrupt"


def check_finite(path: str | os.PathLike, array: np.ndarray) -> None:
    """Refuse a float array with NaN or infinite values (a corrupt image or mask, not a radiograph)."""
    problem = nonfinite_problem(array)
    if problem:
        raise fail(path, problem)


def check_image_size(shape: tuple[int, ...], source: str | os.PathLike | None = None,
                     input_size: int | None = None) -> None:
    """Refuse an (H, W) image with a side under :data:`MIN_SIDE` px, or a strip whose short side would be
    under :data:`MIN_INPUT_SIDE` px at the model's ``input_size`` (default :data:`DEFAULT_INPUT_SIZE`)."""
    h, w = int(shape[0]), int(shape[1])
    size = int(input_size or DEFAULT_INPUT_SIZE)
    problem = None
    if min(h, w) < MIN_SIDE:
        problem = f"image is {w}x{h} px; segmentation needs at least {MIN_SIDE}x{MIN_SIDE} px"
    elif min(h, w) * size / max(h, w) < MIN_INPUT_SIDE:
        problem = (f"image is a {w}x{h} px strip: its short side would be {min(h, w) * size / max(h, w):.1f} px at "
                   f"the model's {size}-px input, under the {MIN_INPUT_SIDE}-px minimum (one encoder patch); crop "
                   f"or pad it to a side ratio of at most {size // MIN_INPUT_SIDE}:1")
    if problem:
        raise fail(source, problem) if source is not None else ImageReadError(problem)


def check_segmentable(pixels: np.ndarray, source: str | os.PathLike | None = None,
                      input_size: int | None = None) -> None:
    """Refuse an image that cannot be segmented: too small or a strip (:func:`check_image_size` at the
    model's ``input_size``), NaN or infinite values (a float array given to the API; files: :func:`check_finite`),
    or blank.

    A blank image (one value everywhere, e.g. all 0 or all 255) holds no anatomy: a mask
    predicted on it would only echo the box prompt, so it is refused instead of saved.
    """
    check_image_size(pixels.shape, source, input_size)
    flat = np.asarray(pixels).reshape(-1)
    problem = nonfinite_problem(flat)  # (an array given to the API)
    if problem:
        problem += " (a NaN background? replace it first, e.g. with np.nan_to_num)"
        raise fail(source, problem) if source is not None else ImageReadError(problem)
    if flat.size and (flat == flat[0]).all():
        problem = "image is blank (all pixels have the same value); nothing to segment"
        raise fail(source, problem) if source is not None else ImageReadError(problem)


def check_file(path: str | os.PathLike) -> Path:
    """Return ``Path(path)`` or raise ImageReadError if it is missing or not a file."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as exc:
        if p.is_symlink():
            loop = exc.errno == errno.ELOOP
            raise fail(p, "symbolic link loop: the link leads back to itself; give the film's own path" if loop
                       else "broken symbolic link (its target is missing)") from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise fail(p, "file not found") from None
        raise fail(p, f"cannot open ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise fail(p, "is a folder, not a file" if stat.S_ISDIR(st.st_mode) else
                   "not a regular file (a FIFO, socket or device, not a film): give the film's own file")
    return p


CONVERT = "; convert it to PNG (lossless) and give that"  # what to do with an image in a format not read here
# leading bytes of common files that are not images read here (named, so the message says what the file is);
# those of the formats read here are IMAGE_SIGNATURES
_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"GIF8", "a GIF image"), (b"%PDF", "a PDF document"), (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip-compressed data"), (b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image"),
    (b"\xffO\xffQ", "a JPEG 2000 codestream"), (b"8BPS", "a Photoshop file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"), (b"Rar!\x1a\x07", "a RAR archive"),
) + tuple((b"\x80" + bytes([v]), "a Python pickle") for v in (2, 3, 4, 5))


def other_kind(head: bytes) -> str | None:
    """``"it is a ZIP archive; unpack it …"`` for a file of a known other kind (from its leading bytes), else None."""
    if head[8:12] == b"WEBP" and head[:4] == b"RIFF":
        return f"it is a WebP image{CONVERT}"
    what = next((w for magic, w in _OTHERS if head.startswith(magic)), None)
    if what is None:
        return None
    if "archive" in what:
        return f"it is {what}; unpack it and give the folder of its films"
    if "gzip" in what:
        return f"it is {what}; unpack it (gunzip) and give the file it holds"
    return f"it is {what}" + (CONVERT if "image" in what or "codestream" in what or "Photoshop" in what else "")
