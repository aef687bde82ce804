"""Images and masks in/out: PNG/JPEG/BMP/TIFF/DICOM -> float32 (H, W) in [0, 1] + spacing, turned upright
by their EXIF/TIFF orientation tag."""

from .dicom import is_dicom, read_dicom
from .image_data import (
    DEFAULT_INPUT_SIZE, MAX_PIXELS, MIN_INPUT_SIDE, MIN_SIDE, ImageData, ImageReadError, check_image_size,
    check_segmentable, to_gray01,
)
from .images import IMAGE_SUFFIXES, film_and_spacing, is_image_file, read_image, sample_name
from .masks import read_mask, write_mask

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "IMAGE_SUFFIXES",
    "ImageData",
    "ImageReadError",
    "MAX_PIXELS",
    "MIN_INPUT_SIDE",
    "MIN_SIDE",
    "check_image_size",
    "check_segmentable",
    "film_and_spacing",
    "is_dicom",
    "is_image_file",
    "read_dicom",
    "read_image",
    "sample_name",
    "read_mask",
    "to_gray01",
    "write_mask",
]
