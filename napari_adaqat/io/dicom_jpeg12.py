"""A pydicom decoder plugin: 12-bit JPEG Extended (1.2.840.10008.1.2.4.51) frames through python-gdcm.

pydicom 3's own GDCM plugin refuses 12-bit JPEG Extended ("samples with 12-bit precision"), so without the
GPL-licensed pylibjpeg-libjpeg such films, common in older CR archives, would not open.  GDCM 3 decodes them
correctly: on pydicom's ``JPGExtended.dcm`` every pixel is within 1 (IDCT rounding) of pylibjpeg-libjpeg's
(``tests/test_dicom_jpeg12.py``).  :func:`register` adds this plugin after pydicom's own, so pydicom still does
the frames, fragments and offset tables, and the plugins before it keep their turn.  The frame is decoded as
pydicom's plugin does it (``pydicom/pixels/decoders/gdcm.py``) but declared with 12 bits allocated: GDCM then
picks its 12-bit codec at once (declared with 16 it first tries the 16-bit one, and prints "Unsupported JPEG
data precision 12" on the process's stderr before it retries), and still returns 16-bit samples.
"""
from __future__ import annotations

import importlib.util

from .jpeg_header import frame_header

JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"
LABEL = "gdcm-12bit"  # the plugin's name in pydicom's messages
DECODER_DEPENDENCIES = {JPEG_EXTENDED: ("python-gdcm>=3.0",)}  # pydicom's plugin contract
NOT_MINE = "not a frame this plugin reads"  # how its refusals of a frame's kind (not of its stream) begin
OTHER_PRECISION = "its JPEG stream is of"  # ... N-bit precision: the stream disagrees with Bits Stored


def is_available(uid: str) -> bool:
    """pydicom's plugin contract: whether this plugin decodes transfer syntax ``uid`` here."""
    return uid == JPEG_EXTENDED and importlib.util.find_spec("gdcm") is not None


def decode_frame(src: bytes, runner) -> bytes:
    """pydicom's plugin contract: one encoded frame ``src`` → its (rows × columns) little-endian uint16 samples.
    Only unsigned, one-sample, 9-12-bit frames in 16 bits allocated (8-bit ones are Pillow's; signed or colour
    ones are refused here)."""
    if not (8 < runner.bits_stored <= 12 and runner.bits_allocated == 16):
        raise ValueError(f"{NOT_MINE}: only 9- to 12-bit samples in 16 bits (this one: {runner.bits_stored} in "
                         f"{runner.bits_allocated})")
    if runner.samples_per_pixel != 1 or runner.pixel_representation != 0:
        raise ValueError(f"{NOT_MINE}: only unsigned grayscale (one sample per pixel)")
    header = frame_header(src)
    if header is None:
        raise ValueError(f"{NOT_MINE}: its JPEG stream has no frame header")
    if header[1] != 12:  # GDCM would read another precision, 16 too, with an offset
        raise ValueError(f"{NOT_MINE}: {OTHER_PRECISION} {header[1]}-bit precision")
    import gdcm

    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(src)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((runner.columns, runner.rows, 1))
    image.SetDataElement(element)
    kind = gdcm.PhotometricInterpretation.GetPIType(str(runner.photometric_interpretation))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(JPEG_EXTENDED)))
    stored = runner.bits_stored
    image.SetPixelFormat(gdcm.PixelFormat(1, 12, stored, stored - 1, 0))  # 12 allocated: its 12-bit codec
    buffer = image.GetBuffer()
    if buffer is None:
        raise ValueError("GDCM could not decode the JPEG stream")
    frame = buffer.encode("utf-8", "surrogateescape")  # SWIG gives the char* as str
    if len(frame) != 2 * runner.rows * runner.columns:
        raise ValueError(f"GDCM returned {len(frame) // 2} samples for a {runner.rows} x {runner.columns} frame")
    return frame


def register() -> None:
    """Add this plugin to pydicom's JPEG Extended decoder, after its own (once; later calls do nothing)."""
    from pydicom.pixels import get_decoder

    try:
        get_decoder(JPEG_EXTENDED).add_plugin(LABEL, (__name__, "decode_frame"))
    except ValueError:  # "already has a plugin named 'gdcm-12bit'"
        pass
