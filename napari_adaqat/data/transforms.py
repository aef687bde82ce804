"""The one preprocessing transform, used by the predictor, training, evaluation and batch.

:func:`prepare_image` = gray/RGB → uint8 RGB → resize the longest side (segment_anything's
``ResizeLongestSide``) → normalise → zero-pad bottom/right to the square input.  It is
bit-identical to stock ``SamPredictor.set_image`` followed by ``Sam.preprocess``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from PIL import Image
import torch
import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.utils.transforms import ResizeLongestSide

from napari_adaqat.io.image_data import ASPECT_TOLERANCE, pixel_aspect  # noqa: F401  (re-exported)
from napari_adaqat.util.alpha import over_black


def to_uint8_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) array → (H, W, 3) uint8: :func:`to_uint8`, gray repeated to three channels."""
    out = to_uint8(image)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    return np.ascontiguousarray(out)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, 3|4) array → (H, W) or (H, W, 3) uint8, gray kept gray (a third of the bytes to hash
    for the embedding cache's key, on each prompt).

    Floats in [0, 1] are taken as they are (a film given to the API in the bottom 1/8 of it was stretched on its way
    in: :func:`~napari_adaqat.io.images.film_and_spacing`), other floats are min-max scaled; uint8 passes through;
    other integer types are
    scaled by their maximum value.
    """
    arr = over_black(np.asarray(image))  # RGBA: over black, as napari shows it (an opaque alpha is dropped)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise ValueError(f"expected a 2-D gray or RGB image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype == bool:
        out = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.integer):
        top = max(int(arr.max()), 1)
        out = np.round(np.clip(arr.astype(np.float64), 0.0, None) * (255.0 / top)).astype(np.uint8)  # int16: no wrap
    else:  # floats in [0, 1] as they are; others (0..255, Hounsfield-like) min-max, as read_image reads a float TIFF
        x = np.asarray(arr, dtype=np.float32)  # (no copy of a float32 image: each click converts its plane)
        low, high = (float(x.min()), float(x.max())) if x.size else (0.0, 1.0)
        finite = bool(np.isfinite(low) and np.isfinite(high))
        if not finite:  # NaN or inf: the range of the finite values (NaN becomes 0, inf the ends)
            values = x[np.isfinite(x)]
            low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        if low < 0.0 or high > 1.0:
            x = (x - low) / (high - low) if high > low else np.zeros_like(x)
        out = np.round(np.clip(x if finite else np.nan_to_num(x), 0.0, 1.0) * 255.0).astype(np.uint8)
    return np.ascontiguousarray(out)


def input_shape(original_size: Sequence[int], image_size: int, aspect: float = 1.0) -> tuple[int, int]:
    """The (h, w) a film of ``original_size`` (H, W) takes inside a model input of side ``image_size``: the
    longest side resized to it (``ResizeLongestSide``), as the film looks (``aspect``, :func:`pixel_aspect`):
    non-square pixels are made square, so the model sees lungs of their true shape, as in training."""
    height, width = int(original_size[0]), int(original_size[1])
    return ResizeLongestSide.get_preprocess_shape(height * float(aspect), width, image_size)


def resize_for_model(image_rgb: np.ndarray, image_size: int, aspect: float = 1.0) -> torch.Tensor:
    """(H, W, 3) uint8 → (3, h, w) float tensor with the longest side = ``image_size`` (``aspect``: the pixels'
    height over width, :func:`input_shape`)."""
    h, w = input_shape(image_rgb.shape[:2], image_size, aspect)
    # exactly ResizeLongestSide.apply_image (torchvision's resize of a PIL image is PIL's bilinear
    # resize), without importing torchvision (see napari_adaqat._sam_import); tested bit-identical
    resized = np.array(Image.fromarray(np.ascontiguousarray(image_rgb, dtype=np.uint8)).resize((w, h), Image.BILINEAR))
    return torch.as_tensor(resized).permute(2, 0, 1).contiguous().float()


def transform_boxes(boxes: np.ndarray, original_size: tuple[int, int], image_size: int,
                    aspect: float = 1.0) -> np.ndarray:
    """(N, 4) xyxy boxes in original pixels → model input coordinates (``aspect``: :func:`input_shape`)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return transform_coords(boxes.reshape(-1, 2, 2), original_size, image_size, aspect).reshape(boxes.shape)


def transform_coords(coords: np.ndarray, original_size: tuple[int, int], image_size: int,
                     aspect: float = 1.0) -> np.ndarray:
    """(..., 2) x, y points in original pixels → model input coordinates (``aspect``: :func:`input_shape`)."""
    coords = np.asarray(coords, dtype=np.float64)
    if aspect == 1.0:  # stock SAM's arithmetic, bit for bit
        return ResizeLongestSide(image_size).apply_coords(coords, original_size)
    (h, w), (height, width) = input_shape(original_size, image_size, aspect), original_size
    return coords * np.array([w / width, h / height])


def normalize_and_pad(images: torch.Tensor, pixel_mean: Sequence[float] | torch.Tensor,
                      pixel_std: Sequence[float] | torch.Tensor, image_size: int) -> torch.Tensor:
    """(B, 3, h, w) or (3, h, w) resized RGB in 0..255 → normalised, zero-padded (…, 3, S, S), as ``Sam.preprocess``."""
    mean = torch.as_tensor(pixel_mean, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    std = torch.as_tensor(pixel_std, dtype=torch.float32, device=images.device).view(-1, 1, 1)
    x = (images - mean) / std
    h, w = x.shape[-2:]
    return torch.nn.functional.pad(x, (0, image_size - w, 0, image_size - h))


@dataclass
class PreparedImage:
    """A model-ready image: ``tensor`` (3, S, S) normalised and padded; ``input_size`` the (h, w) of
    the resized image inside it; ``original_size`` the (H, W) it came from."""

    tensor: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]


def prepare_image(image: np.ndarray, image_size: int, pixel_mean: Sequence[float] | torch.Tensor,
                  pixel_std: Sequence[float] | torch.Tensor, aspect: float = 1.0) -> PreparedImage:
    """(H, W) gray or (H, W, 3) image → :class:`PreparedImage` for a model of input ``image_size`` (``aspect``:
    the pixels' height over width, :func:`pixel_aspect`; non-square pixels are made square)."""
    rgb = to_uint8_rgb(image)
    resized = resize_for_model(rgb, image_size, aspect)
    tensor = normalize_and_pad(resized, pixel_mean, pixel_std, image_size)
    return PreparedImage(tensor, (int(resized.shape[-2]), int(resized.shape[-1])), (rgb.shape[0], rgb.shape[1]))
