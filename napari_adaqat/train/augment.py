"""Optional training augmentation (off by default, as in the paper).

Small random affine (scale, rotation, shift) applied to image and mask together,
plus gamma/contrast jitter of the image.  skimage's ``warp`` does the resampling.
"""
from __future__ import annotations

import numpy as np
from skimage.transform import AffineTransform, warp


def augment_pair(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """image float32 (H, W) in [0,1], mask bool (H, W) → augmented copies (same shapes)."""
    h, w = image.shape
    scale = rng.uniform(0.85, 1.15)
    angle = np.deg2rad(rng.uniform(-10, 10))
    shift = rng.uniform(-0.08, 0.08, size=2) * (w, h)
    centre = np.array([w / 2, h / 2])
    tform = (AffineTransform(translation=-centre)
             + AffineTransform(scale=scale, rotation=angle)
             + AffineTransform(translation=centre + shift))
    inverse = tform.inverse
    out_image = warp(image, inverse, order=1, mode="constant", cval=0.0, preserve_range=True).astype(np.float32)
    out_mask = warp(mask.astype(np.float32), inverse, order=0, mode="constant", cval=0.0, preserve_range=True) > 0.5
    gamma = rng.uniform(0.7, 1.4)
    contrast = rng.uniform(0.8, 1.2)
    out_image = np.clip((np.clip(out_image, 0, 1) ** gamma - 0.5) * contrast + 0.5, 0, 1).astype(np.float32)
    return out_image, out_mask
