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


def _points(n_out: int, n_in: int, shift: float) -> Tensor:
    """(n_out,) float64 positions, in source pixel indices (centres at integers), of the centres of ``n_out`` cells
    laid over ``n_in`` source pixels, moved by ``shift`` source pixels and clamped to the source."""
    return ((torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5 + shift).clamp(0, n_in - 1)


def _read(t: Tensor, dim: int, pos: Tensor) -> Tensor:
    """``t`` read linearly at the float positions ``pos`` along ``dim`` (a gather of the two neighbours each);
    a bool or integer ``t`` is read as float32."""
    lower = pos.floor().long()
    upper = (lower + 1).clamp(max=t.shape[dim] - 1)
    a, b = t.index_select(dim, lower.to(t.device)), t.index_select(dim, upper.to(t.device))
    if not a.is_floating_point():
        a, b = a.float(), b.float()
    shape = [1] * t.dim()
    shape[dim] = len(pos)
    return a.lerp_(b, (pos - lower).to(a.dtype).view(shape).to(t.device))


def grid_target(mask: np.ndarray, input_size: tuple[int, int], offset: float) -> Tensor:
    """(H, W) mask → (1, h, w) float32 target on the model's input grid: the mask read linearly at the point
    each cell describes (``offset``: :attr:`SamSpec.logit_offset`); 0/1 where that point is a pixel centre,
    soft in between.  Separable, so a 3000-px film costs two gathers, not a resize of the whole film."""
    t = torch.from_numpy(np.ascontiguousarray(mask))
    for dim, n_out in ((0, input_size[0]), (1, input_size[1])):  # the rows first: the film's full rows are few
        ratio = t.shape[dim] / n_out  # source pixels per input pixel
        t = _read(t, dim, _points(n_out, t.shape[dim], offset * ratio))
    return t.float()[None]


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
        at = _points(full, inside, -offset)  # in input pixels, inside the film (the padding is never read)
        low = _read(low, dim, ((at + 0.5) / stride - 0.5).clamp(0, low.shape[dim] - 1))
    return low
