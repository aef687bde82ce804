"""The prompt arguments of ``predict`` (SAM's names) checked and shaped, each refusal one line naming the argument."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def as_numbers(value: Any, name: str, what: str) -> np.ndarray:
    """``value`` as float64, or one TypeError line naming the argument ``name`` and ``what`` it holds."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        if "inhomogeneous" in str(exc):  # numbers, in rows of different lengths
            raise ValueError(f"{name} has rows of different lengths ({what}), got {str(value)[:60]!r}") from None
        raise TypeError(f"{name} must be numbers ({what}), got {type(value).__name__} {str(value)[:40]!r}") from None


def check_multimask(multimask_output: bool) -> None:
    """This model gives one mask per prompt: SAM's ``multimask_output=False`` is accepted, ``True`` refused."""
    if multimask_output:
        raise ValueError("multimask_output=True is not supported: this model gives one mask per prompt "
                         "(several boxes as an (N, 4) array give several masks, in the Prediction's masks)")


def as_boxes(boxes: Any, name: str = "boxes") -> np.ndarray:
    """``boxes`` (4,) or (B, 4) xyxy pixels → (B, 4) float64; refused when not finite or inverted, in one line
    naming the argument ``name``."""
    out = np.atleast_2d(as_numbers(boxes, name, "x0, y0, x1, y1 pixels"))
    if out.ndim != 2 or out.shape[1] != 4:
        points = " (points? unlike SamPredictor.predict, boxes come first here: pass point_coords=, point_labels= " \
                 "by name)" if out.shape[-1] == 2 and name == "boxes" else ""
        raise ValueError(f"{name} must be (4,) or (N, 4) x0, y0, x1, y1 pixels, got shape {np.shape(boxes)}{points}")
    if not len(out):  # what a detector returns when it finds nothing
        raise ValueError(f"{name} is empty (0 boxes): give one box (4,) or (N, 4), or {name}=None for the default box")
    bad = ~np.isfinite(out).all(axis=1) | (out[:, 2] < out[:, 0]) | (out[:, 3] < out[:, 1])
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name} must be finite x0, y0, x1, y1 with x1 >= x0 and y1 >= y0; row {i} is "
                         + ",".join(f"{v:g}" for v in out[i]))
    return out


def as_points(point_coords: Any, point_labels: Any, finite: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """``point_coords`` (2,), (P, 2) or (B, P, 2) x, y pixels with ``point_labels`` (scalar, (P,) or (B, P);
    bool, int or float 1 = lung, 0 = not lung, -1 = padding) → (B, P, 2) float64 and (B, P) int64
    (``finite=False``: NaN coordinates pass, for a caller that refuses them in its own words)."""
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels go together (labels: 1 = lung, 0 = not lung)")
    coords = as_numbers(point_coords, "point_coords", "x, y pixels")
    labels = as_numbers(point_labels, "point_labels", "1 = lung, 0 = not lung")
    coords = coords[None] if coords.shape == (2,) else coords  # one point as (x, y)
    labels = labels.reshape(1) if labels.ndim == 0 else labels
    if coords.ndim == 2 and coords.shape[-1] == 2 and labels.ndim == 1 and len(coords) != len(labels):
        raise ValueError(f"{len(coords)} points but {len(labels)} labels: point_labels needs one label per point")
    coords, labels = (coords[None], labels[None]) if coords.ndim == 2 else (coords, labels)
    if coords.ndim != 3 or coords.shape[-1] != 2 or labels.shape != coords.shape[:2]:
        raise ValueError(f"point_coords must be (N, 2) or (B, N, 2) x, y with point_labels (N,) or (B, N); "
                         f"got {np.shape(point_coords)} and {np.shape(point_labels)}")
    if finite and not np.isfinite(coords).all():
        raise ValueError("point_coords must be finite x, y pixels")
    if not np.isin(labels, (-1, 0, 1)).all():
        raise ValueError(f"point_labels 1 (lung), 0 (not lung) or -1 (padding) only, got {np.unique(labels)[:5]}")
    return coords, labels.astype(np.int64)


def mask_input_tensor(mask_input: Any, size: tuple[int, int], image_shape: tuple[int, int]) -> torch.Tensor:
    """``mask_input`` *size, (1, *size) or (B, 1, *size) logits (tensor or array) → (B, 1, *size) float32 CPU tensor
    (a bool array is a mask, never logits: refused with the way to turn it into a mask prompt)."""
    is_mask = getattr(mask_input, "dtype", None) in (np.bool_, torch.bool)
    if isinstance(mask_input, torch.Tensor):
        mask_in = mask_input.detach().float().cpu()
    else:
        mask_in = torch.from_numpy(as_numbers(mask_input, "mask_input", "logits").astype(np.float32))
    if mask_in.ndim == 2 and tuple(mask_in.shape) == tuple(size) and not is_mask:
        mask_in = mask_in[None]  # one prompt's logits without SAM's leading 1
    mask_in = mask_in[None] if mask_in.ndim == 3 else mask_in
    if is_mask or mask_in.ndim != 4 or tuple(mask_in.shape[1:]) != (1, *size):
        hint = ("; for an (H, W) mask of the image use mask_input_from(mask)"
                if is_mask or tuple(mask_in.shape[-2:]) == tuple(image_shape) else
                " (a mask_input of this model: logits of another model or size do not fit)")
        raise ValueError(f"mask_input must be (1, {size[0]}, {size[1]}) or (N, 1, {size[0]}, {size[1]}) logits "
                         f"(a Prediction's low_res_logits), got {tuple(np.shape(mask_input))}{hint}")
    if not torch.isfinite(mask_in).all():
        raise ValueError("mask_input must be finite logits (a Prediction's low_res_logits)")
    return mask_in
