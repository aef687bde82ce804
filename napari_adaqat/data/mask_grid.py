"""Films whose masks were saved at another size of the film's own shape (the COVID-19 Radiography Database's 299²
films with 256² masks; SCR's 1024² masks of JSRT's 2048² films): the film is resampled onto its mask's grid, where
the reference was drawn, for training and scoring alike; the mask is never resized (its edges would be invented)."""
from __future__ import annotations

import numpy as np

from napari_adaqat.io import ImageData

ASPECT_TOLERANCE = 0.01  # the mask's aspect within 1 % of the film's: the film's shape, scaled
NEAR_ONE = (0.9, 1.1)  # a scale this close to 1 is no resizing but a crop or a pad: refused, not resampled


def scale_of(film_shape: tuple[int, int], mask_shape: tuple[int, int]) -> float | None:
    """How many times the film is its mask's size (``1.168`` for 299² over 256²), when the mask is the film's shape
    scaled; ``None`` for a mask of another shape (a crop, a pad, another film's)."""
    (ih, iw), (mh, mw) = film_shape, mask_shape
    if abs(mh / mw - ih / iw) > ASPECT_TOLERANCE * ih / iw or NEAR_ONE[0] < ih / mh < NEAR_ONE[1]:
        return None
    return ih / mh


def film_on_mask_grid(film: ImageData, shape: tuple[int, int]) -> ImageData:
    """``film`` resampled to ``shape`` (H, W) (linear, anti-aliased when it shrinks), its pixel spacing scaled to
    match; ``meta["resampled_from"]`` keeps the film's own (H, W)."""
    from skimage.transform import resize

    (ih, iw), (mh, mw) = film.shape, shape
    pixels = resize(film.pixels, shape, order=1, anti_aliasing=mh < ih, preserve_range=True).astype(np.float32)
    spacing = None if film.spacing is None else (film.spacing[0] * ih / mh, film.spacing[1] * iw / mw)
    return ImageData(np.clip(pixels, 0.0, 1.0), spacing, film.source, {**film.meta, "resampled_from": (ih, iw)})


def film_for_mask(film: ImageData, mask_shape: tuple[int, int]) -> ImageData:
    """``film`` as it is scored against a reference of ``mask_shape``: itself, or resampled onto the mask's grid
    when the mask is its shape at another size; ValueError (one line) for a mask of another shape."""
    if film.shape == tuple(mask_shape):
        return film
    if scale_of(film.shape, mask_shape) is None:
        raise ValueError(f"mask size {tuple(mask_shape)} differs from image size {film.shape}")
    return film_on_mask_grid(film, mask_shape)
