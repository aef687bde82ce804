"""The shift suite of issue 14: controlled versions of a radiograph that real clinics bring.

Each shift maps a (H, W) float image in [0, 1] and its bool lung mask to the shifted pair.
``dicom16`` writes a real 16-bit MONOCHROME1 DICOM (12 bits stored, an offset, as many CR
files) with pydicom and reads it back through the package's reader, so that the whole
DICOM path is exercised.  Every shift is deterministic (seeded by the image's name).
"""
from __future__ import annotations

import tempfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy.ndimage import gaussian_filter

from napari_adaqat.io import read_image
from napari_adaqat.train.augment import jpeg_roundtrip

Pair = tuple[np.ndarray, np.ndarray]


def _seed(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _crop(f: np.ndarray, m: np.ndarray, frac: float = 0.12) -> Pair:
    h, w = f.shape
    y, x = int(h * frac), int(w * frac)
    return f[y:h - y, x:w - x], m[y:h - y, x:w - x]


def _pad(f: np.ndarray, m: np.ndarray, frac: float = 0.25) -> Pair:
    h, w = f.shape
    widths = ((int(h * frac),) * 2, (int(w * frac),) * 2)
    return np.pad(f, widths), np.pad(m, widths)


def _dicom16(f: np.ndarray) -> np.ndarray:
    """Write ``f`` as a 12-bit MONOCHROME1 DICOM (values 300..3800) and read it back."""
    stored = np.round(300 + (1.0 - f) * 3500).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CR"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = stored.tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shifted.dcm"
        ds.save_as(path, enforce_file_format=True)
        return read_image(path).pixels


SHIFTS: dict[str, Callable[[np.ndarray, np.ndarray, str], Pair]] = {
    "none": lambda f, m, n: (f, m),
    "gamma 0.5": lambda f, m, n: (f ** 0.5, m),
    "gamma 2.0": lambda f, m, n: (f ** 2.0, m),
    "contrast 0.5": lambda f, m, n: ((f - f.mean()) * 0.5 + f.mean(), m),
    "blur σ 2 px": lambda f, m, n: (gaussian_filter(f, 2.0), m),
    "noise σ 0.05": lambda f, m, n: (np.clip(f + _seed(n).normal(0, 0.05, f.shape), 0, 1).astype(np.float32), m),
    "crop 12 %/side": lambda f, m, n: _crop(f, m),
    "wider FOV (pad 25 %)": lambda f, m, n: _pad(f, m),
    "inverted polarity": lambda f, m, n: (1.0 - f, m),
    "16-bit DICOM (MONOCHROME1)": lambda f, m, n: (_dicom16(f), m),
    "JPEG q 20": lambda f, m, n: (jpeg_roundtrip(f, 20), m),
}


def apply_shift(shift: str, image: np.ndarray, mask: np.ndarray, name: str) -> Pair:
    """(H, W) float [0, 1] image, (H, W) bool mask → the shifted pair (float32 image in [0, 1])."""
    f, m = SHIFTS[shift](image.astype(np.float32), mask, name)
    return np.clip(f, 0, 1).astype(np.float32), m
