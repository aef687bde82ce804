"""Where a model's logit cells lie on the image: training targets sampled there, and inference reading them so.

A model learns to put its mask where its training targets put it.  Until 2026-12 the targets were the
expert mask resized to the model's input grid by torch's ``nearest`` rule, which takes the top-left source
pixel of each cell.  From films twice the input size (512-px films at 256 px) that is the point a quarter
of an input pixel up and left of the cell's centre, so every model trained so had its mask half a 512-px
pixel right of and below the lungs (measured on the bundled model: BENCHMARKS.md, "Where the mask lies");
on a 3000-px film that is 3 px.

:attr:`~napari_adaqat.model.spec.SamSpec.logit_offset` records it: logit cell ``i`` (of a stride-``s`` grid)
describes the point ``(i + 0.5) * s + logit_offset`` in input pixels (SAM's own grid: 0).  Training samples
its targets at those points (:func:`grid_target`), so a model keeps the grid it started with on films of
any size, and the inference reads the logits there (:func:`upsample_on_grid`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

# A model trained from scratch here: the grid of every recipe before 2026-12.  On 512-px films at 256 px its
# targets are exactly the old ``nearest`` ones, so the recorded recipes reproduce their files bit for bit.
FRESH_MODEL_OFFSET = -0.25


def _linear_taps(n_out: int, n_in: int, offset: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source taps of the points ``(i + 0.5 + offset) * n_in / n_out`` (i < n_out) read from pixel centres:
    (lower index, upper index, upper weight), each (n_out,), clamped to the edge."""
    pos = (np.arange(n_out) + 0.5 + offset) * (n_in / n_out) - 0.5
    pos = np.clip(pos, 0.0, n_in - 1.0)
    lower = np.floor(pos).astype(np.intp)
    return lower, np.minimum(lower + 1, n_in - 1), (pos - lower).astype(np.float32)


def grid_target(mask: np.ndarray, input_size: tuple[int, int], offset: float) -> Tensor:
    """(H, W) mask → (1, h, w) float32 target on the model's input grid: the mask read linearly at the point
    each cell describes (``offset``: :attr:`SamSpec.logit_offset`); 0/1 where that point is a pixel centre,
    soft in between.  Separable, so a 3000-px film costs two gathers, not a resize of the whole film."""
    h, w = input_size
    y0, y1, wy = _linear_taps(h, mask.shape[0], offset)
    x0, x1, wx = _linear_taps(w, mask.shape[1], offset)
    m = np.asarray(mask)
    rows = m[y0].astype(np.float32) * (1 - wy)[:, None] + m[y1].astype(np.float32) * wy[:, None]
    cells = rows[:, x0] * (1 - wx) + rows[:, x1] * wx
    return torch.from_numpy(np.ascontiguousarray(cells))[None]


def upsample_on_grid(low: Tensor, image_size: int, input_size: tuple[int, int], original_size: tuple[int, int],
                     offset: float) -> Tensor:
    """(..., h, w) logits of a model whose cells lie ``offset`` input pixels from their centres → (..., H, W) at
    the original size: each pixel reads the logits linearly at its own point, as ``Sam.postprocess_masks``
    reads a centred grid (offset 0; a model with one input pixel per cell gives the same logits).
    ``image_size``: the model's input side; ``input_size``: the film's (h, w) inside it.  Separable gathers,
    not a second resize: two linear reads in a row would move a sharp edge by less than ``offset``."""
    # the columns first, then the rows: gathering whole rows is a contiguous copy
    for dim, inside, full in ((-1, input_size[1], original_size[1]), (-2, input_size[0], original_size[0])):
        stride = image_size / low.shape[dim]  # input pixels per logit cell
        at = ((torch.arange(full, dtype=torch.float64) + 0.5) * (inside / full) - 0.5 - offset).clamp(0, inside - 1)
        pos = ((at + 0.5) / stride - 0.5).clamp(0, low.shape[dim] - 1)  # in cells; the padding is never read
        lower = pos.floor().long()
        upper = (lower + 1).clamp(max=low.shape[dim] - 1)
        shape = [1] * low.dim()
        shape[dim] = full
        weight = (pos - lower).to(low.dtype).view(shape).to(low.device)
        lower, upper = lower.to(low.device), upper.to(low.device)
        low = low.index_select(dim, lower).lerp_(low.index_select(dim, upper), weight)
    return low
