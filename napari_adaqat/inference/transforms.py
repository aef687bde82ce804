"""Image and box preprocessing shared by the predictor and training.

It reuses segment_anything's ``ResizeLongestSide`` so that our preprocessing is
bit-identical to stock ``SamPredictor`` (resize the longest side, then the model
pads and normalises in ``Sam.preprocess``).
"""
from __future__ import annotations

import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) array → (H, W, 3) uint8.

    Floats are taken to be in [0, 1]; uint8 passes through; other integer types are
    scaled by their maximum value.  Gray is repeated to three channels.
    """
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected a 2-D gray or RGB image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == bool:
        out = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        top = max(int(arr.max()), 1)
        out = np.round(np.clip(arr.astype(np.float64), 0.0, None) * (255.0 / top)).astype(np.uint8)  # int16: no wrap
    else:
        out = np.round(np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    return np.ascontiguousarray(out)


def resize_for_model(image_rgb: np.ndarray, image_size: int) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, h, w) float tensor with the longest side = ``image_size``."""
    resized = ResizeLongestSide(image_size).apply_image(image_rgb)
    return torch.as_tensor(resized).permute(2, 0, 1).contiguous().float()


def transform_boxes(boxes: np.ndarray, original_size: tuple[int, int], image_size: int) -> np.ndarray:
    """(N, 4) xyxy boxes in original pixels → model input coordinates."""
    return ResizeLongestSide(image_size).apply_boxes(np.asarray(boxes, dtype=np.float64), original_size)


def default_box(shape: tuple[int, int], margin: float = 0.02) -> np.ndarray:
    """The whole image minus a small margin, as an xyxy box (4,)."""
    h, w = shape
    mx, my = margin * w, margin * h
    return np.array([mx, my, w - 1 - mx, h - 1 - my], dtype=np.float64)


def mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Bounding box (4,) xyxy of a boolean mask (H, W), or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], dtype=np.float64)
