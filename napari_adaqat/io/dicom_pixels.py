"""Decode DICOM pixel data (one frame or all) with messages that name the transfer syntax.

The pixel decoders are pydicom's plugins, all permissively licensed by default: Pillow (JPEG
Baseline, 8-bit), python-gdcm (JPEG Lossless; and 12-bit JPEG Extended through :mod:`.dicom_jpeg12`, which
pydicom does not give it), pyjpegls (JPEG-LS), pylibjpeg-openjpeg (JPEG 2000, HTJ2K) and pylibjpeg-rle.
pylibjpeg-libjpeg (GPLv3) comes only with the ``dicom-gpl`` extra; a JPEG Extended file that neither reads
(colour or signed 12-bit) gets one line naming the extra.
"""
from __future__ import annotations

import importlib.util
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import dicom_jpeg12 as jpeg12
from .image_data import ImageReadError, fail, warn_read

jpeg12.register()  # python-gdcm for 12-bit JPEG Extended, after pydicom's own plugins

# pip packages that give pydicom a decoder, by transfer syntax UID
GPL_EXTRA = "'napari-adaqat[dicom-gpl]'"  # pylibjpeg-libjpeg (GPLv3): not installed by default
_J2K = "pylibjpeg pylibjpeg-openjpeg"
WHAT_DECODES: dict[str, str] = {
    "1.2.840.10008.1.2.4.50": "pillow", "1.2.840.10008.1.2.4.51": "python-gdcm", "1.2.840.10008.1.2.4.57": "python-gdcm",
    "1.2.840.10008.1.2.4.70": "python-gdcm", "1.2.840.10008.1.2.4.80": "pyjpegls", "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.4.90": _J2K, "1.2.840.10008.1.2.4.91": _J2K, "1.2.840.10008.1.2.4.201": _J2K,
    "1.2.840.10008.1.2.4.202": _J2K, "1.2.840.10008.1.2.4.203": _J2K,
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",
}
# pydicom plugin name -> the package behind it
_PLUGIN_PACKAGES = {"pylibjpeg": "pylibjpeg", "gdcm": "python-gdcm", "pillow": "Pillow", "pyjpegls": "pyjpegls",
                    "pydicom": "pydicom", jpeg12.LABEL: "python-gdcm"}


def syntax_label(ds) -> str:
    """``"JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)"``: the transfer syntax, name and UID."""
    uid = ds.file_meta.TransferSyntaxUID
    name = uid.name if uid.name != str(uid) else "unknown transfer syntax"
    return f"{name} ({uid})"


def _expected_bytes(ds, frames: int) -> int:
    """Bytes that native (uncompressed) pixel data must hold."""
    rows, cols, spp, bits = int(ds.Rows), int(ds.Columns), int(ds.SamplesPerPixel), int(ds.BitsAllocated)
    if bits == 1:
        return -(-rows * cols * spp * frames // 8)
    n = rows * cols * spp * frames * (bits // 8)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
        n = n * 2 // 3  # two luminance samples share one chroma pair
    return n


def _pixel_bytes(ds) -> int:
    key = next(k for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if k in ds)
    return len(ds[key].value or b"")


def _decoder(path: Path, ds):
    from pydicom.pixels import get_decoder

    uid = ds.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(uid)
    except NotImplementedError:
        kind = "a video or other non-image syntax" if "video" in uid.name.lower() or "MPEG" in uid.name else \
            "not a transfer syntax pydicom can decode"
        raise fail(path, f"cannot decode {syntax_label(ds)} pixel data: {kind}; export the image uncompressed "
                         "or as JPEG / JPEG 2000") from None
    if not decoder.is_available:
        packages = WHAT_DECODES.get(str(uid), "pylibjpeg pylibjpeg-openjpeg pyjpegls")
        raise fail(path, f"cannot decode {syntax_label(ds)} pixel data: no decoder for it is installed; "
                         f"`pip install {packages}` would decode it")
    return decoder


def _check_extra_rows_or_columns(path: Path, ds, need: int, have: int) -> None:
    """Refuse one frame's pixel data that exactly fits another number of rows or columns than the header says (a
    wrong Rows or Columns would shear or cut the film), or full-size data under YBR_FULL_422 (subsampled: 2/3 of
    it); other extra bytes are padding, read as pydicom reads them."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422" and have == need * 3 // 2:
        raise fail(path, f"pixel data length mismatch: {have} bytes stored, the size of full RGB samples, but the "
                         "Photometric Interpretation (0028,0004) says YBR_FULL_422 (subsampled): export it as RGB")
    row_bytes, column_bytes = need // rows, need // columns
    fits = [f"{rows} rows x {have // column_bytes} columns" if column_bytes and have % column_bytes == 0 else "",
            f"{have // row_bytes} rows x {columns} columns" if row_bytes and have % row_bytes == 0 else ""]
    if any(fits):
        raise fail(path, f"pixel data length mismatch: {have} bytes stored fit {' or '.join(f for f in fits if f)}, "
                         f"not the header's {rows} rows x {columns} columns: its Rows (0028,0010) or Columns "
                         "(0028,0011) is wrong")


def decode(path: Path, ds, frame: int | None, frames: int) -> np.ndarray:
    """Stored pixel array: frame ``frame`` as (H, W[, 3]), or all frames as (F, H, W[, 3]) when ``None``."""
    syntax = ds.file_meta.TransferSyntaxUID
    try:
        compressed = bool(syntax.is_compressed)
    except (AttributeError, TypeError, ValueError):  # a damaged UID, several values in its element, or a private one
        text = str(syntax)
        if re.fullmatch(r"[0-9]+(\.[0-9]+)+", text) and len(text) <= 64:  # a well-formed UID pydicom does not know
            what = ("a DICOM transfer syntax newer than this pydicom" if text.startswith("1.2.840.10008.")
                    else "private transfer syntax")  # (JPEG XL, 1.2.840.10008.1.2.4.110-112, in pydicom 3.0)
            raise fail(path, f"{what} {text}: it cannot be decoded here; export the film uncompressed "
                             "(Explicit VR Little Endian) from the PACS or the modality") from None
        raise fail(path, f"invalid transfer syntax UID {text[:64]!r} in the file meta header") from None
    if not compressed:
        need, have = _expected_bytes(ds, frames), _pixel_bytes(ds)
        if have < need:
            raise fail(path, f"pixel data length mismatch: {have} bytes stored, but {ds.Rows} rows x {ds.Columns} "
                             f"columns x {ds.SamplesPerPixel} sample(s) x {ds.BitsAllocated} bits x {frames} "
                             f"frame(s) need {need}")
        frame_bytes = need // max(frames, 1)
        if frame_bytes and have >= need + frame_bytes:  # whole frames more than the header says: not padding
            raise fail(path, f"pixel data length mismatch: {have} bytes stored, {have / frame_bytes:g}x the "
                             f"{frame_bytes} bytes of one {ds.Rows} rows x {ds.Columns} columns frame, but the header "
                             f"says {frames} frame(s): its Rows, Columns or Number of Frames (0028,0008) is wrong")
        if frames == 1 and have > need + frame_bytes // max(int(ds.Rows), 1):  # over a row of padding (seen)
            _check_extra_rows_or_columns(path, ds, need, have)
    decoder = _decoder(path, ds)

    def stored_values(index: int | None) -> np.ndarray:
        """Frame ``index`` (None: all) as stored: pydicom would mask (unsigned) or sign-extend (signed) to Bits Stored."""
        ds.pixel_array_options(index=index, correct_unused_bits=False)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.asarray(ds.pixel_array)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # also a Rust decoder's panic (pyo3 PanicException is a BaseException)
            if not compressed:
                raise fail(path, f"cannot decode {syntax_label(ds)} pixel data ({type(exc).__name__})") from exc
            tried = ", ".join(dict.fromkeys(_PLUGIN_PACKAGES.get(p, p) for p in decoder.available_plugins))
            ours = re.search(rf"^\s*{re.escape(jpeg12.LABEL)}: (.+)$", str(exc), re.MULTILINE)  # our plugin's reason
            if ours and jpeg12.OTHER_PRECISION in ours.group(1):  # the stream disagrees with the header
                raise fail(path, f"cannot decode {syntax_label(ds)} pixel data: {ours.group(1).split(': ', 1)[1]}, "
                                 f"but the header says {ds.BitsStored} bits stored") from exc
            if ours and not ours.group(1).startswith(jpeg12.NOT_MINE):  # a frame it reads, and GDCM rejected it
                raise fail(path, f"cannot decode {syntax_label(ds)} pixel data: the compressed data is corrupt or "
                                 f"non-conformant (rejected by {tried}; python-gdcm: {ours.group(1)})") from exc
            if str(syntax) == jpeg12.JPEG_EXTENDED and importlib.util.find_spec("libjpeg") is None:
                raise fail(path, f"cannot decode {syntax_label(ds)} pixel data with {tried} (e.g. 12-bit JPEG); "
                                 f"`pip install {GPL_EXTRA}` adds the GPL-licensed decoder that may read it") from exc
            raise fail(path, f"cannot decode {syntax_label(ds)} pixel data: the compressed data is corrupt or "
                             f"non-conformant (rejected by {tried})") from exc

    one = frame is not None and frames > 1
    arr = stored_values(frame if one else None)
    if not (one and _below_bits_allocated(ds, arr)):
        return within_bits_stored(path, ds, arr)
    # one frame of several: the Bits Stored reading is decided on the whole file, so that a frame reads alike
    # alone and in the stack; the other frames are looked at one at a time (memory: one frame), and one that
    # does not decode does not stop this one from being read
    stored = int(ds.BitsStored)
    seen = ValueStats.of(arr, stored)
    for index in range(frames):
        if index != frame:
            try:
                seen = seen.merged(ValueStats.of(stored_values(index), stored))
            except ImageReadError:
                continue
    return within_bits_stored(path, ds, arr, seen)


def _overlay_in_pixel_data(ds) -> bool:
    """Whether a (retired) overlay lives in the unused high bits of the pixel data (Overlay Bits Allocated
    (60xx,0100) equal to Bits Allocated): then those bits are no part of the film."""
    return any(ds.get((group, 0x0100)) is not None and ds[group, 0x0100].value == ds.BitsAllocated
               for group in range(0x6000, 0x6020, 2))


# junk in the unused high bits (an old writer's stray bits, an overlay without its 60xx group) lies far above Bits
# Stored's range (a set top bit) in a few pixels: it is cleared, as pydicom does.  A film whose values really use
# more bits runs on just above the range (its bright regions), and is kept
STRAY_SHARE = 0.05  # at most this share of the pixels (burnt-in text or a label block: 0.1-5 %),
# ... none of them within one more bit of the range (a film's values over it start there)


@dataclass(frozen=True)
class ValueStats:
    """What :func:`within_bits_stored` needs of the stored values of a film (or of all its frames): their range,
    how many lie outside what Bits Stored holds, how many of those just outside (within one more bit), and how
    many there are."""

    lo: int
    hi: int
    outside: int
    near: int
    size: int

    @classmethod
    def of(cls, arr: np.ndarray, stored: int) -> "ValueStats":
        if arr.dtype.kind == "i":
            top, low = 1 << (stored - 1), -(1 << (stored - 1))
            outside = (arr < low) | (arr >= top)
            near = ((arr >= top) & (arr < 2 * top)) | ((arr < low) & (arr >= 2 * low))
        else:
            outside, near = arr >= (1 << stored), (arr >= (1 << stored)) & (arr < (2 << stored))
        return cls(int(arr.min()), int(arr.max()), int(np.count_nonzero(outside)), int(np.count_nonzero(near)),
                   int(arr.size))

    def merged(self, other: "ValueStats") -> "ValueStats":
        return ValueStats(min(self.lo, other.lo), max(self.hi, other.hi), self.outside + other.outside,
                          self.near + other.near, self.size + other.size)

    @property
    def junk(self) -> bool:
        """Whether the values outside the range look like junk high bits (see :data:`STRAY_SHARE`)."""
        return self.near == 0 and self.outside <= STRAY_SHARE * self.size


def _jumps(arr: np.ndarray) -> float:
    """The share of steps between neighbouring columns (every 4th row) over a quarter of the 1st-99th percentile
    range: next to none in a film; many where junk bits make noise, along text burnt into the high bits, or where
    a film cut to too few bits wraps around."""
    rows = arr[::4].astype(np.float64)
    lo, hi = np.percentile(rows, [1, 99])
    return float((np.abs(np.diff(rows, axis=1)) > max(hi - lo, 1.0) / 4.0).mean())


def _smoother(cut: np.ndarray, whole: np.ndarray) -> bool:
    """Whether the values cut to Bits Stored make a far smoother film than the values as stored: the high bits are
    junk (random, or burnt-in text over a few % of the film, no overlay group), not a film that uses more bits
    (cut, such a film wraps around: rougher).  A frame (H, W), or a stack (F, H, W) whose every frame says so; a
    line of pixels decides nothing."""
    if whole.ndim == 3:  # a stack (F, H, W): every frame must say so (as one frame read alone does, mostly)
        return all(_smoother(c, w) for c, w in zip(cut, whole))
    if whole.ndim != 2 or min(whole.shape) < 8:
        return False
    return _jumps(cut) * 2.0 < _jumps(whole)


# unsigned data labelled signed (Pixel Representation 1, a vendor's fault) wraps around where the film is bright:
# read as signed, at least this share of neighbouring steps jump (a wrapped film: 1-5 %; a film: about 0.1 %)
WRAP_JUMPS = 0.005


def _full_width_unsigned(ds, arr: np.ndarray) -> np.ndarray | None:
    """Signed gray values that use every bit of their type (Bits Stored = Bits Allocated), some negative, viewed as
    unsigned; ``None`` for anything else."""
    try:
        full = int(ds.BitsStored) == arr.dtype.itemsize * 8
    except (AttributeError, TypeError, ValueError):
        return None
    if arr.dtype.kind != "i" or not full or int(ds.get("SamplesPerPixel", 1)) != 1 or not arr.size or arr.min() >= 0:
        return None
    return arr.view(np.dtype(arr.dtype.str.replace("i", "u")))


def _unsigned_if_wrapped(path: Path, ds, signed: np.ndarray, unsigned: np.ndarray | None) -> np.ndarray:
    """``unsigned`` (the same stored values read as unsigned) when it makes a far smoother film than ``signed``
    (which then wraps around: unsigned data labelled signed), with one :class:`~.image_data.ImageReadWarning` line
    and ``ds`` saying Pixel Representation 0; else ``signed`` (a signed film's negative values are its own)."""
    if unsigned is None or not (_jumps(signed) >= WRAP_JUMPS and _smoother(unsigned, signed)):
        return signed
    warn_read(f"{path}: Pixel Representation (0028,0103) says signed, but read so the values wrap around (the "
              "film's bright parts turn dark); read as unsigned", stacklevel=3)
    ds.PixelRepresentation = 0
    return unsigned


def _below_bits_allocated(ds, arr: np.ndarray) -> bool:
    """Whether ``arr`` is gray integer data with Bits Stored < Bits Allocated (what :func:`within_bits_stored` reads)."""
    try:
        allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
    except (AttributeError, TypeError, ValueError):
        return False
    return bool(np.issubdtype(arr.dtype, np.integer) and 0 < stored < allocated <= arr.dtype.itemsize * 8
                and int(ds.get("SamplesPerPixel", 1)) == 1 and arr.size)


def within_bits_stored(path: Path, ds, arr: np.ndarray, seen: ValueStats | None = None) -> np.ndarray:
    """Stored values (decoded without pydicom's Bits Stored correction) as the film holds them.

    Values that fit Bits Stored (0028,0101) get pydicom's correction (unused high bits cleared, or signed
    values sign-extended), and so do junk high bits (:attr:`ValueStats.junk`).  Values that do not fit (a
    modality that writes Bits Stored 12 but uses 14-16 bits) would come out scrambled so: they are kept as Bits
    Allocated allows, with an :class:`~.image_data.ImageReadWarning` line, and ``ds`` then says Bits Stored =
    Bits Allocated (so that windowing scales by the bits really used).  Overlay bits in the pixel data are
    cleared as before.  ``seen``: the whole file's values when ``arr`` is one of its frames (the reading is
    decided on the file)."""
    if not _below_bits_allocated(ds, arr):
        return _unsigned_if_wrapped(path, ds, arr, _full_width_unsigned(ds, arr))
    allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
    shift = arr.dtype.itemsize * 8 - stored
    seen = seen if seen is not None else ValueStats.of(arr, stored)
    lo, hi = seen.lo, seen.hi
    if arr.dtype.kind == "i":
        fits = -(1 << (stored - 1)) <= lo and hi < (1 << (stored - 1))  # sign-extended already
        unextended = lo >= 0 and hi < (1 << stored)  # two's complement in the low bits: sign-extend them
    else:
        fits, unextended = hi < (1 << stored), False
    if fits:
        return arr
    cut = np.right_shift(np.left_shift(arr, shift), shift)  # arithmetic for signed data, as pydicom does
    if unextended:
        return _unsigned_if_wrapped(path, ds, cut, arr)
    if _overlay_in_pixel_data(ds) or seen.junk or _smoother(cut, arr):
        return cut
    used = max(hi.bit_length(), (-lo - 1).bit_length()) + (arr.dtype.kind == "i")
    warn_read(f"{path}: Bits Stored (0028,0101) says {stored} bits, but the pixel values use {used} bits "
              f"({lo} to {hi}); read as {allocated}-bit values (cut to {stored} bits, the film would be scrambled)")
    ds.BitsStored, ds.HighBit = allocated, allocated - 1
    return arr
