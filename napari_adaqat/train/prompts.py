"""The prompt a training sample is drawn with, and the mask that prompt asks for (issue 32).

SAM learns what a prompt means from what it is trained to return for it.  The default model used to
see only boxes around both lungs (or the whole image), so a box around one lung still returned both.
:func:`draw_prompt` draws, per sample, one of:

* a box around both lungs, jittered from tight to loose (or the whole image): the target is the mask;
* a box around ONE lung (one of the mask's two largest regions): the target is that lung;
* a partial box, one or two sides pushed into the lungs: the target is the mask inside the box (what the
  inference's clipping returns);
* an empty box, somewhere without lung: the target is empty;
* no box, one positive point inside each wanted lung (points alone must work too).

Coordinates are original pixels; the caller maps them to the model input.  Corrective clicks are
simulated later, in the training loop (:mod:`napari_adaqat.train.interactive`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from napari_adaqat.data.boxes import mask_box

START_POINTS = 2  # point slots per sample (label -1 = padding), so samples collate


@dataclass(frozen=True)
class PromptMix:
    """Chances of each prompt kind (the rest: a box around both lungs)."""

    one_lung: float = 0.0
    partial_box: float = 0.0
    empty_box: float = 0.0
    points_only: float = 0.0  # of the both-lung and one-lung samples: no box, a point per lung

    @property
    def active(self) -> bool:
        return any((self.one_lung, self.partial_box, self.empty_box, self.points_only))


@dataclass
class DrawnPrompt:
    """One sample's prompt: ``box`` (4,) xyxy or NaN (no box); ``points`` (START_POINTS, 2) x, y;
    ``labels`` (START_POINTS,) 1 = lung, -1 = padding; ``target`` (H, W) bool, what the prompt asks for."""

    box: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    target: np.ndarray
    kind: str


def lungs(mask: np.ndarray) -> list[np.ndarray]:
    """The two largest 8-connected regions of ``mask`` (H, W) bool, largest first (fewer if it has fewer)."""
    labelled, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    sizes = np.bincount(labelled.ravel())[1:]
    return [labelled == (i + 1) for i in np.argsort(sizes)[::-1][:2]]


def jitter_box(box: np.ndarray, rng: np.random.Generator, out_px: float, in_px: float) -> np.ndarray:
    """Each side of ``box`` moved by U(-in_px, out_px) pixels (positive: outward)."""
    push = rng.uniform(-in_px, out_px, size=4)
    return box + np.array([-push[0], -push[1], push[2], push[3]])


def whole_image_box(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """The whole image minus a random margin of 0-5 % per side (a loose box, as ``adaqat segment``'s default)."""
    h, w = shape
    m = rng.uniform(0.0, 0.05)
    return np.array([m * w, m * h, (1 - m) * w - 1, (1 - m) * h - 1])


def both_lungs_box(mask: np.ndarray, rng: np.random.Generator | None, jitter_px: float, jitter_in_px: float,
                   full_box_prob: float) -> np.ndarray:
    """The box around the whole ``mask`` (H, W) (the image when it is empty), clipped to the image; with ``rng``
    (training) the whole image with chance ``full_box_prob``, else jittered (:func:`jitter_box`)."""
    h, w = mask.shape
    box = mask_box(mask)
    if box is None:  # augmentation pushed the lungs out of view
        box = np.array([0, 0, w - 1, h - 1], dtype=np.float64)
    if rng is not None:
        box = whole_image_box(mask.shape, rng) if rng.random() < full_box_prob \
            else jitter_box(box, rng, jitter_px, jitter_in_px)
    return np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])


def interior_point(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random (x, y) well inside ``region`` (H, W) bool: among its pixels at least half as deep as
    its deepest (Euclidean distance to the boundary), as a person clicks inside a lung."""
    depth = ndimage.distance_transform_edt(region)
    ys, xs = np.nonzero(depth >= 0.5 * depth.max())
    i = rng.integers(len(ys))
    return np.array([xs[i], ys[i]], dtype=np.float64)


def _empty_box(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """A box of 8-25 % of the image side with no lung pixel in it, or None after 20 tries."""
    h, w = mask.shape
    for _ in range(20):
        bw, bh = rng.uniform(0.08, 0.25) * w, rng.uniform(0.08, 0.25) * h
        x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        box = np.array([x0, y0, x0 + bw, y0 + bh])
        if not mask[int(y0):int(np.ceil(y0 + bh)) + 1, int(x0):int(np.ceil(x0 + bw)) + 1].any():
            return box
    return None


def _inside(box: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: the pixels whose index lies inside xyxy ``box`` (x0 <= x <= x1, y0 <= y <= y1)."""
    h, w = shape
    out = np.zeros(shape, bool)
    x0, y0 = max(0, int(np.ceil(box[0]))), max(0, int(np.ceil(box[1])))
    out[y0:min(h, int(np.floor(box[3])) + 1), x0:min(w, int(np.floor(box[2])) + 1)] = True
    return out


def draw_prompt(mask: np.ndarray, rng: np.random.Generator, mix: PromptMix, *, jitter_px: float,
                jitter_in_px: float, full_box_prob: float) -> DrawnPrompt:
    """A training prompt for ``mask`` (H, W) bool in original pixels (see the module docstring)."""
    h, w = mask.shape
    limit = np.array([w - 1, h - 1, w - 1, h - 1], dtype=np.float64)
    points = np.zeros((START_POINTS, 2))
    labels = -np.ones(START_POINTS)
    u = rng.random()
    regions = lungs(mask)
    if u < mix.empty_box:
        box = _empty_box(mask, rng)
        if box is not None:
            return DrawnPrompt(np.clip(box, 0, limit), points, labels, np.zeros_like(mask), "empty")
    u -= mix.empty_box
    if u < mix.partial_box and regions:
        full = mask_box(mask)
        cut = full.copy()
        extent = np.array([full[2] - full[0], full[3] - full[1]] * 2)
        for side in rng.choice(4, size=rng.integers(1, 3), replace=False):
            sign = 1 if side < 2 else -1  # x0, y0 move right/down; x1, y1 move left/up
            cut[side] += sign * rng.uniform(0.15, 0.5) * extent[side]
        cut = np.clip(cut, 0, limit)
        target = mask & _inside(cut, mask.shape)
        if target.any():
            return DrawnPrompt(cut, points, labels, target, "partial")
    u -= mix.partial_box
    if u < mix.one_lung and len(regions) == 2:
        target = regions[rng.integers(2)]
        kind, wanted = "one_lung", [target]
        box = jitter_box(mask_box(target), rng, min(jitter_px, 15.0), jitter_in_px)
    else:
        target, kind, wanted = mask, "lungs", regions
        box = both_lungs_box(mask, rng, jitter_px, jitter_in_px, full_box_prob)
    if wanted and rng.random() < mix.points_only:
        for i, region in enumerate(wanted[:START_POINTS]):
            points[i], labels[i] = interior_point(region, rng), 1
        return DrawnPrompt(np.full(4, np.nan), points, labels, target, kind + "_points")
    return DrawnPrompt(np.clip(box, 0, limit), points, labels, target, kind)
