"""Images and masks in/out: PNG/JPEG/BMP/TIFF/DICOM -> float32 (H, W) in [0, 1] + spacing."""

from .dicom import is_dicom, read_dicom
from .images import (
    IMAGE_SUFFIXES,
    ImageData,
    ImageReadError,
    is_image_file,
    read_image,
    to_gray01,
)
from .masks import read_mask, write_mask

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageData",
    "ImageReadError",
    "is_dicom",
    "is_image_file",
    "read_dicom",
    "read_image",
    "read_mask",
    "to_gray01",
    "write_mask",
]
