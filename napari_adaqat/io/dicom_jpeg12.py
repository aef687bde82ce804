"""12-bit JPEG Extended (1.2.840.10008.1.2.4.51) DICOM frames through python-gdcm, the permissive decoder.

pydicom 3 does not hand 12-bit JPEG Extended to GDCM (its plugin refuses "samples with 12-bit precision"), so
without the GPL-licensed pylibjpeg-libjpeg such films, common in older CR archives, would not open.  GDCM 3
decodes them correctly: on pydicom's ``JPGExtended.dcm`` every pixel is within 1 (IDCT rounding) of
pylibjpeg-libjpeg's (``tests/test_dicom_jpeg12.py``).  pydicom's own plugin builds the same one-fragment
``gdcm.Image`` per frame (``pydicom/pixels/decoders/gdcm.py``); the difference that matters here is the pixel
format: declared with 12 bits allocated, GDCM picks its 12-bit codec at once (declared with 16 it first tries
the 16-bit one, and prints "Unsupported JPEG data precision 12" on the process's stderr before it retries),
and still returns 16-bit samples.
"""
from __future__ import annotations

import importlib.util

import numpy as np

JPEG_EXTENDED = "1.2.840.10008.1.2.4.51"


def can_decode(ds) -> bool:
    """Whether ``ds`` is a 12-bit (9-12 bits stored), unsigned, one-sample JPEG Extended film and python-gdcm is
    installed: what :func:`decode_frames` reads."""
    try:
        return (str(ds.file_meta.TransferSyntaxUID) == JPEG_EXTENDED and 8 < int(ds.BitsStored) <= 12
                and int(ds.BitsAllocated) == 16 and int(ds.get("SamplesPerPixel", 1)) == 1
                and int(ds.get("PixelRepresentation", 0)) == 0 and importlib.util.find_spec("gdcm") is not None)
    except (AttributeError, TypeError, ValueError):
        return False


def _decode_frame(ds, data: bytes) -> np.ndarray:
    """One encapsulated frame ``data`` → (H, W) uint16, or ValueError when GDCM returns nothing."""
    import gdcm

    fragment = gdcm.Fragment()
    fragment.SetByteStringValue(data)
    fragments = gdcm.SequenceOfFragments.New()
    fragments.AddFragment(fragment)
    element = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    element.SetValue(fragments.__ref__())
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((int(ds.Columns), int(ds.Rows), 1))
    image.SetDataElement(element)
    kind = gdcm.PhotometricInterpretation.GetPIType(str(ds.PhotometricInterpretation).strip())
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(kind))
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(JPEG_EXTENDED)))
    stored = int(ds.BitsStored)
    image.SetPixelFormat(gdcm.PixelFormat(1, 12, stored, stored - 1, 0))  # 12 allocated: its 12-bit codec
    buffer = image.GetBuffer()
    if buffer is None:
        raise ValueError("GDCM could not decode the JPEG stream")
    pixels = np.frombuffer(buffer.encode("utf-8", "surrogateescape"), dtype="<u2")  # SWIG gives bytes as str
    if pixels.size != int(ds.Rows) * int(ds.Columns):
        raise ValueError(f"GDCM returned {pixels.size} samples for a {ds.Rows} x {ds.Columns} frame")
    return pixels.reshape(int(ds.Rows), int(ds.Columns)).copy()


def decode_frames(ds, index: int | None, frames: int) -> np.ndarray:
    """Frame ``index`` (H, W) uint16, or all ``frames`` (F, H, W) when ``index`` is None (as pydicom's
    ``pixel_array`` gives them); ValueError on a stream GDCM cannot decode."""
    from pydicom.encaps import generate_frames

    wanted = None if index is None else int(index)
    out = []
    for i, data in enumerate(generate_frames(ds.PixelData, number_of_frames=frames)):
        if wanted is None or i == wanted:
            out.append(_decode_frame(ds, data))
        if wanted is not None and i >= wanted:
            break
    if not out or (wanted is None and len(out) != frames):
        raise ValueError(f"the pixel data holds fewer than the {frames} frame(s) its header says")
    return out[0] if wanted is not None or frames == 1 else np.stack(out)
