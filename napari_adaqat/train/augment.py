"""Optional training augmentation (off by default, as in the paper).

Two presets, both applied to image and mask together (skimage's ``warp`` resamples):

* ``basic`` (default model v2): a small random affine (scale, rotation, shift) plus
  gamma/contrast jitter.
* ``clinic`` (default model v3): the shifts real clinics bring.  A wider affine with
  aspect change (another crop or field of view), gamma, contrast and brightness, local
  contrast (CLAHE), blur, noise, JPEG artefacts and inverted polarity.
* ``clinic_wide``: ``clinic`` with zoom-out down to 0.6x, for films with a wider field of view
  (the 25 % wider FOV was v3's weak shift in the cross-validation).
* ``clinic_zoom``: ``clinic`` with a log-uniform zoom in [0.7, 1.35], centred near 1: it covers
  both a 25 % wider field of view (0.67x) and a 12 %-per-side crop (1.32x), where
  ``clinic_wide`` (mostly zoom-out) lost clean and cropped films.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from skimage.exposure import equalize_adapthist
from skimage.transform import AffineTransform, warp

AUGMENT_PRESETS = ("basic", "clinic", "clinic_wide", "clinic_zoom")
CLINIC_AFFINE = {"scale": 0.2, "aspect": 0.1, "angle_deg": 10.0, "shift": 0.08}  # clinic's geometric ranges
CLINIC_WIDE_AFFINE = {**CLINIC_AFFINE, "scale_range": (0.6, 1.2)}  # zoom-out for wider fields of view
CLINIC_ZOOM_AFFINE = {**CLINIC_AFFINE, "scale_range": (0.7, 1.35)}  # zoom out and in, centred near 1
CLINIC_AFFINES = {"clinic": CLINIC_AFFINE, "clinic_wide": CLINIC_WIDE_AFFINE, "clinic_zoom": CLINIC_ZOOM_AFFINE}


def _affine(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, scale: float, aspect: float,
            angle_deg: float, shift: float, mask_order: int = 1,
            scale_range: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A random affine about the centre: (H, W) float image and bool mask → warped copies.

    ``aspect=0`` draws no aspect change (the ``basic`` preset's sequence of draws).  ``mask_order``:
    0 = nearest neighbour (``basic``, as v2 was trained), 1 = bilinear then > 0.5 (as nearest, but
    skimage's order-0 path is ~15x slower here).  ``scale_range`` (lo, hi), if given, replaces
    ``1 ± scale`` with a log-uniform draw in [lo, hi].
    """
    h, w = image.shape
    if scale_range is None:
        s = rng.uniform(1 - scale, 1 + scale)
    else:
        s = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    a = np.exp(rng.uniform(-aspect, aspect)) if aspect else 1.0
    angle = np.deg2rad(rng.uniform(-angle_deg, angle_deg))
    offset = rng.uniform(-shift, shift, size=2) * (w, h)
    centre = np.array([w / 2, h / 2])
    tform = (AffineTransform(translation=-centre)
             + AffineTransform(scale=(s * a, s / a), rotation=angle)
             + AffineTransform(translation=centre + offset))
    inverse = tform.inverse
    out_image = warp(image, inverse, order=1, mode="constant", cval=0.0, preserve_range=True).astype(np.float32)
    out_mask = warp(mask.astype(np.float32), inverse, order=mask_order, mode="constant", cval=0.0,
                    preserve_range=True) > 0.5
    return out_image, out_mask


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip a [0, 1] float image through an 8-bit JPEG of ``quality``."""
    buf = io.BytesIO()
    Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255.0


def clinic_photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random intensity shifts of a (H, W) [0, 1] float image (each with its own chance)."""
    x = np.clip(image, 0, 1)
    x = x ** np.exp(rng.uniform(np.log(0.6), np.log(1.7)))
    x = (x - x.mean()) * rng.uniform(0.7, 1.3) + x.mean() + rng.uniform(-0.08, 0.08)
    x = np.clip(x, 0, 1)
    if rng.random() < 0.15:
        x = equalize_adapthist(x, clip_limit=rng.uniform(0.005, 0.03)).astype(np.float32)
    if rng.random() < 0.2:
        x = gaussian_filter(x, rng.uniform(0.5, 2.0))
    if rng.random() < 0.2:
        x = x + rng.normal(0.0, rng.uniform(0.01, 0.05), size=x.shape)
    x = np.clip(x, 0, 1)
    if rng.random() < 0.2:
        x = jpeg_roundtrip(x, int(rng.integers(20, 70)))
    if rng.random() < 0.1:
        x = 1.0 - x
    return x.astype(np.float32)


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator,
                 preset: str = "basic") -> tuple[np.ndarray, np.ndarray]:
    """image float32 (H, W) in [0,1], mask bool (H, W) → augmented copies (same shapes)."""
    if preset in CLINIC_AFFINES:
        out_image, out_mask = _affine(image, mask, rng, **CLINIC_AFFINES[preset])
        return clinic_photometric(out_image, rng), out_mask
    if preset != "basic":
        raise ValueError(f"unknown augmentation preset {preset!r}; choose one of {AUGMENT_PRESETS}")
    out_image, out_mask = _affine(image, mask, rng, scale=0.15, aspect=0.0, angle_deg=10.0, shift=0.08, mask_order=0)
    gamma = rng.uniform(0.7, 1.4)
    contrast = rng.uniform(0.8, 1.2)
    out_image = np.clip((np.clip(out_image, 0, 1) ** gamma - 0.5) * contrast + 0.5, 0, 1).astype(np.float32)
    return out_image, out_mask
