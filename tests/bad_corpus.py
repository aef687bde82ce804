"""A corpus of bad (and awkward but valid) image files, generated on the fly.

Each :class:`Case` writes one file and says what must happen to it: ``read`` cases are refused by
``read_image`` with ``message`` (a regex of the one-line error), ``segment`` cases read fine but are
refused when segmented, ``ok`` cases are handled (``check`` tests the result).  The same files go
through ``read_image`` directly and through ``adaqat segment`` (one ``results.csv`` row each).
"""
from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import tifffile
from PIL import Image

CXR_IMAGES = Path(__file__).parent / "data" / "cxr" / "images"


def real_png() -> bytes:
    """The bytes of a real radiograph (512x512 8-bit PNG)."""
    return sorted(CXR_IMAGES.glob("*.png"))[0].read_bytes()


def radiograph(shape: tuple[int, int] = (64, 64), seed: int = 0) -> np.ndarray:
    """A small uint8 image with structure (a smooth ramp plus noise)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 200, shape[0] * shape[1]).reshape(shape)
    return np.clip(ramp + rng.integers(0, 50, shape), 0, 255).astype(np.uint8)


def pil_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def tiff_bytes(data: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, data, **kwargs)
    return buf.getvalue()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def huge_png(path: Path, width: int = 20000, height: int = 20000) -> None:
    """A valid all-black 8-bit PNG of ``width`` x ``height``, compressed block by block (a few MB,
    ~1 s): nothing close to its decoded size is ever held in memory."""
    comp = zlib.compressobj(1)
    rows = 500
    block = (b"\x00" * (width + 1)) * rows
    parts = [comp.compress(block) for _ in range(height // rows)]
    parts.append(comp.compress((b"\x00" * (width + 1)) * (height % rows)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts))
                     + _png_chunk(b"IEND", b""))


def huge_tiff(path: Path, side: int = 20000) -> None:
    """A valid tiled, zlib-compressed all-black TIFF of ``side`` x ``side`` (400 KB, ~2 s)."""
    tile = np.zeros((1024, 1024), np.uint8)
    count = (-(-side // 1024)) ** 2
    tifffile.imwrite(path, (tile for _ in range(count)), shape=(side, side), dtype=np.uint8, tile=(1024, 1024),
                     compression="zlib")


def forged_tiff(path: Path, width: int, height: int, data: np.ndarray, **kwargs) -> None:
    """A small TIFF whose header then claims ``width`` x ``height`` (no pixel data behind it)."""
    tifffile.imwrite(path, data, **kwargs)
    with tifffile.TiffFile(path, mode="r+b") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(width)
        tif.pages[0].tags["ImageLength"].overwrite(height)


def forged_jpeg(width: int, height: int) -> bytes:
    """A real JPEG whose frame header (SOF0) is patched to claim ``width`` x ``height``."""
    data = bytearray(pil_bytes(Image.fromarray(radiograph()), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def corrupt_idat(png: bytes) -> bytes:
    """``png`` with the middle of its first IDAT chunk overwritten (the zlib stream breaks)."""
    data = bytearray(png)
    start = data.index(b"IDAT") + 4
    length = struct.unpack(">I", data[start - 8:start - 4])[0]
    mid = start + length // 2
    data[mid:mid + 64] = b"\xa5" * 64
    return bytes(data)


@dataclass(frozen=True)
class Case:
    """One corpus file: its name, how it is written, and the expected outcome."""

    name: str
    make: Callable[[Path], None]
    message: Optional[str]  # regex of the one-line error (None for "ok" cases)
    stage: str = "read"  # "read" | "segment" | "ok"
    check: Optional[Callable[[object], None]] = None  # "ok" cases: gets the ImageData
    category: str = ""


def _bytes(data: bytes | Callable[[], bytes]) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data() if callable(data) else data)


def _pil(image: Callable[[], Image.Image], fmt: str = "PNG", **kwargs) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(pil_bytes(image(), fmt, **kwargs))


def _tiff(data: Callable[[], np.ndarray], **kwargs) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(tiff_bytes(data(), **kwargs))


def _float_with(value: float) -> np.ndarray:
    arr = radiograph().astype(np.float32) / 255.0
    arr[10, 10] = value
    arr[20, 30] = value
    return arr


def _multipage_mixed(path: Path) -> None:
    with tifffile.TiffWriter(path) as tif:
        tif.write(radiograph((64, 64)))
        tif.write(radiograph((32, 48)))


def _apng(path: Path) -> None:
    frames = [Image.fromarray(radiograph(seed=i)) for i in range(3)]
    frames[0].save(path, "PNG", save_all=True, append_images=frames[1:])


def _gray(check_shape=(64, 64)) -> Callable[[object], None]:
    def check(image) -> None:
        assert image.pixels.shape == check_shape and image.pixels.dtype == np.float32
        assert 0.0 <= image.pixels.min() < image.pixels.max() <= 1.0
    return check


def _same_as_gray(image) -> None:
    _gray()(image)
    np.testing.assert_allclose(image.pixels, radiograph() / 255.0, atol=0.01)


def _palette_transparent() -> Image.Image:
    im = Image.fromarray(radiograph()).convert("P")
    im.info["transparency"] = 0
    return im


UPRIGHT = radiograph((48, 64), seed=3)  # wider than tall, so a film read on its side has the wrong shape


def _exif_sideways(orientation: int, fmt: str, **kwargs) -> Callable[[Path], None]:
    """``UPRIGHT`` stored as a viewer that honours ``orientation`` needs it (6/8: turned by 90°)."""
    def make(path: Path) -> None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        turned = np.rot90(UPRIGHT, 1 if orientation == 6 else -1)  # the inverse of the tag's rotation
        path.write_bytes(pil_bytes(Image.fromarray(np.ascontiguousarray(turned)), fmt, exif=exif.tobytes(), **kwargs))
    return make


def _upright(exact: bool) -> Callable[[object], None]:
    def check(image) -> None:
        assert image.pixels.shape == UPRIGHT.shape and image.meta["orientation"] in (6, 8)
        np.testing.assert_allclose(image.pixels, UPRIGHT / 255.0, atol=0.002 if exact else 0.08)
    return check


TRUNC = r"truncated or corrupt {} data \("

CASES: list[Case] = [
    # ---- truncated or corrupt files, wrong content, empty files
    Case("trunc_half.png", _bytes(lambda: real_png()[: len(real_png()) // 2]), TRUNC.format("PNG"), category="corrupt"),
    Case("trunc_header.png", _bytes(lambda: real_png()[:40]), TRUNC.format("PNG"), category="corrupt"),
    Case("corrupt_idat.png", _bytes(lambda: corrupt_idat(real_png())), TRUNC.format("PNG"), category="corrupt"),
    Case("trunc.jpg", _bytes(lambda: pil_bytes(Image.fromarray(radiograph()), "JPEG")[:300]), TRUNC.format("JPEG"),
         category="corrupt"),
    Case("garbage_after_soi.jpeg", _bytes(b"\xff\xd8\xff\xe0" + b"\x13" * 400), TRUNC.format("JPEG"), category="corrupt"),
    Case("trunc.tif", _bytes(lambda: tiff_bytes(radiograph((128, 128)))[:2000]), TRUNC.format("TIFF"),
         category="corrupt"),
    Case("bad_ifd.tif", _bytes(b"II*\x00\xff\xff\xff\x7f" + b"\x00" * 64), TRUNC.format("TIFF"), category="corrupt"),
    Case("trunc.bmp", _bytes(lambda: pil_bytes(Image.fromarray(radiograph()), "BMP")[:500]), TRUNC.format("BMP"),
         category="corrupt"),
    Case("text.png", _bytes(b"hello, this is a text file\n"), r"not a PNG image: it holds text \('hello, this is a text",
         category="wrong content"),
    Case("error_page.jpg", _bytes(b"<!DOCTYPE html><html><body>404 Not Found</body></html>"),
         r"not a JPEG image: it holds text \('<!DOCTYPE html>", category="wrong content"),
    Case("gif_inside.png", _pil(lambda: Image.fromarray(radiograph()), "GIF"), r"not a PNG image: it is a GIF image",
         category="wrong content"),
    Case("zip_inside.tif", _bytes(b"PK\x03\x04" + b"\x00" * 60), r"not a TIFF image: it is a ZIP archive",
         category="wrong content"),
    Case("noise.bmp", _bytes(bytes(range(7, 71))), r"not a BMP image: unrecognised content \(first bytes 07 08 09",
         category="wrong content"),
    Case("empty.png", _bytes(b""), r"empty file \(0 bytes\)", category="empty"),
    Case("empty.tif", _bytes(b""), r"empty file \(0 bytes\)", category="empty"),
    Case("empty.jpg", _bytes(b""), r"empty file \(0 bytes\)", category="empty"),
    # ---- float TIFFs with NaN / inf, unusable pixel layouts
    Case("nan.tif", _tiff(lambda: _float_with(np.nan)), r"2 of 4096 pixel values are NaN or infinite; the image data "
         r"is corrupt", category="non-finite"),
    Case("inf.tif", _tiff(lambda: _float_with(np.inf)), r"2 of 4096 pixel values are NaN or infinite",
         category="non-finite"),
    Case("all_nan.tif", _tiff(lambda: np.full((32, 32), np.nan, np.float32)), r"1024 of 1024 pixel values are NaN",
         category="non-finite"),
    Case("five_channels.tif", _tiff(lambda: np.zeros((32, 32, 5), np.uint8), photometric="minisblack",
                                    planarconfig="contig"),
         r"(unsupported pixel data: expected \(H, W\).*got shape \(32, 32, 5\)|is a 3-D stack \(32 planes\))",
         category="layout"),
    Case("complex.tif", _tiff(lambda: np.ones((32, 32), np.complex64)), r"unsupported pixel data: unsupported pixel "
         r"dtype complex64", category="layout"),
    # ---- too large: refused from the header, before decoding
    Case("huge_20000.png", huge_png, r"image is too large: 20000x20000 px \(381 M pixels\); the limit is 64 M pixels",
         category="too large"),
    Case("huge_20000.tif", lambda p: huge_tiff(p), r"image is too large: 20000x20000 px \(381 M pixels\); the limit "
         r"is 64 M pixels", category="too large"),
    Case("forged_60000.jpg", _bytes(lambda: forged_jpeg(60000, 50000)), r"image is too large: 60000x50000 px",
         category="too large"),
    Case("forged_bytes.tif", lambda p: forged_tiff(p, 6000, 6000, np.zeros((8, 8, 4), np.float64),
                                                   photometric="rgb", extrasamples=[2]),
         r"image is too large: 6000x6000 px would decode to 1.1 GiB; the limit is 1 GiB", category="too large"),
    # ---- stacks and multi-image files
    Case("stack_pages.tif", _tiff(lambda: np.stack([radiograph(seed=i) for i in range(3)]), photometric="minisblack"),
         r"is a 3-D stack \(3 planes\); give a single 2-D image", category="3-D"),
    Case("stack_imagej.tif", _tiff(lambda: np.stack([radiograph(seed=i) for i in range(4)]), imagej=True,
                                   metadata={"axes": "ZYX"}),
         r"is a 3-D stack \(4 planes\); give a single 2-D image", category="3-D"),
    Case("mixed_pages.tif", _multipage_mixed, r"holds 2 images \(pages\); give a single 2-D image",
         category="3-D"),
    Case("animated.png", _apng, r"is a 3-D stack \(3 planes\); give a single 2-D image", category="3-D"),
    # ---- read fine, but cannot be segmented
    Case("one_px.png", _pil(lambda: Image.fromarray(np.full((1, 1), 77, np.uint8))),
         r"image is 1x1 px; segmentation needs at least 16x16 px", stage="segment", category="too small"),
    Case("three_px.png", _pil(lambda: Image.fromarray(radiograph((3, 3)))),
         r"image is 3x3 px; segmentation needs at least 16x16 px", stage="segment", category="too small"),
    Case("thin_strip.png", _pil(lambda: Image.fromarray(radiograph((8, 300)))),
         r"image is 300x8 px; segmentation needs at least 16x16 px", stage="segment", category="too small"),
    # strips (issue 30): over 16 px, but ~1 px on the short side at the model's 256-px input
    Case("strip_wide.png", _pil(lambda: Image.fromarray(radiograph((16, 3000)))),
         r"image is a 3000x16 px strip: its short side would be 1\.4 px at the model's 256-px input, under the "
         r"16-px minimum \(one encoder patch\); crop or pad it to a side ratio of at most 16:1", stage="segment",
         category="too small"),
    Case("strip_tall.tif", _tiff(lambda: radiograph((3000, 16))),
         r"image is a 16x3000 px strip: its short side would be 1\.4 px", stage="segment", category="too small"),
    Case("all_black.png", _pil(lambda: Image.fromarray(np.zeros((64, 64), np.uint8))),
         r"image is blank \(all pixels have the same value\); nothing to segment", stage="blank", category="blank"),
    Case("all_white.png", _pil(lambda: Image.fromarray(np.full((64, 64), 255, np.uint8))),
         r"image is blank \(all pixels have the same value\); nothing to segment", stage="blank", category="blank"),
    Case("flat_16bit.tif", _tiff(lambda: np.full((64, 64), 1200, np.uint16)),
         r"image is blank \(all pixels have the same value\); nothing to segment", stage="blank", category="blank"),
    # ---- awkward but valid: handled
    Case("rgba.png", _pil(lambda: Image.fromarray(radiograph()).convert("RGBA")), None, "ok", _same_as_gray,
         category="colour"),
    Case("palette.png", _pil(lambda: Image.fromarray(radiograph()).convert("P")), None, "ok", _gray(),
         category="colour"),
    Case("palette_transparent.png", _pil(_palette_transparent), None, "ok", _gray(), category="colour"),
    Case("gray_alpha.png", _pil(lambda: Image.fromarray(radiograph()).convert("LA")), None, "ok", _same_as_gray,
         category="colour"),
    Case("sixteen_bit.png", _pil(lambda: Image.fromarray((radiograph().astype(np.uint16) * 200))), None, "ok",
         _gray(), category="depth"),
    Case("one_bit.png", _pil(lambda: Image.fromarray(radiograph() > 120)), None, "ok", _gray(), category="depth"),
    Case("cmyk.jpg", _pil(lambda: Image.fromarray(radiograph()).convert("CMYK"), "JPEG"), None, "ok", _gray(),
         category="colour"),
    Case("jpeg_named.png", _pil(lambda: Image.fromarray(radiograph()), "JPEG"), None, "ok", _gray(),
         category="wrong content"),
    Case("float_unit.tif", _tiff(lambda: radiograph().astype(np.float32) / 255.0), None, "ok", _same_as_gray,
         category="depth"),
    # stored sideways with an EXIF orientation tag (issue 30): read upright, as photo viewers show it
    Case("exif_rotated.png", _exif_sideways(6, "PNG"), None, "ok", _upright(exact=True), category="orientation"),
    Case("exif_rotated.jpg", _exif_sideways(8, "JPEG", quality=95), None, "ok", _upright(exact=False),
         category="orientation"),
]
