"""Write ``jpeg12_frame{0,1}.jpg``: two 12-bit JPEG Extended streams (SOF1, precision 12) of two different
64 x 48 test patterns (:func:`pattern`), encoded by python-gdcm's IJG 12-bit encoder.  Run once by hand
(`python tests/data/dicom/make_jpeg12_frames.py`); the tests only read the two files.  GDCM's objects can
corrupt the heap when Python frees them, hence :data:`KEEP` and ``os._exit``."""
import os
from pathlib import Path

import gdcm
import numpy as np

HERE = Path(__file__).parent
KEEP: list = []  # GDCM's SWIG objects double-free when Python drops them: kept until os._exit


def pattern(k: int) -> np.ndarray:
    """(64, 48) uint16 in [0, 4095]: diagonal ramps (k = 0) or a ramp across the columns (k = 1)."""
    rows, cols = np.mgrid[0:64, 0:48]
    return ((rows + cols) * 40 % 4096 if k == 0 else cols * 85).astype(np.uint16)


def encode(a: np.ndarray) -> bytes:
    image = gdcm.Image()
    image.SetNumberOfDimensions(2)
    image.SetDimensions((a.shape[1], a.shape[0], 1))
    image.SetPhotometricInterpretation(gdcm.PhotometricInterpretation(gdcm.PhotometricInterpretation.MONOCHROME2))
    image.SetPixelFormat(gdcm.PixelFormat(1, 12, 12, 11, 0))  # 12 allocated: a 12-bit stream (16 gives 16-bit)
    image.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.ExplicitVRLittleEndian))
    pixels = gdcm.DataElement(gdcm.Tag(0x7FE0, 0x0010))
    pixels.SetByteStringValue(a.astype("<u2").tobytes())
    image.SetDataElement(pixels)
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.JPEGExtendedProcess2_4))
    change.SetInput(image)
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetImage(change.GetOutput())
    writer.SetFileName(str(HERE / "tmp.dcm"))
    assert writer.Write()
    KEEP.extend([image, pixels, change, writer])
    import pydicom
    from pydicom.encaps import generate_frames

    ds = pydicom.dcmread(HERE / "tmp.dcm")
    (HERE / "tmp.dcm").unlink()
    return next(generate_frames(ds.PixelData, number_of_frames=1))


if __name__ == "__main__":
    for k in (0, 1):
        (HERE / f"jpeg12_frame{k}.jpg").write_bytes(encode(pattern(k)))
    os._exit(0)
