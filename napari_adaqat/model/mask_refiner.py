"""A full-resolution boundary refiner behind SAM's mask decoder (issue 14).

SAM's decoder draws each output pixel from one embedding token through stride-2 transposed
convolutions, so its masks' boundaries follow the token grid, and no layer looks at the image at full
resolution.  A U-Net trained on the same films draws better boundaries (BENCHMARKS.md, issue 14).  This
module adds that path behind the decoder, split so that prompting stays cheap:

* :meth:`MaskRefiner.image_features` — once per image: (B, 3, S, S) prepared image → (B, W, S, S),
  from a small U-Net (:class:`DetailUNet`, widths W, 2W, 4W, 8W);
* :meth:`MaskRefiner.forward` — per box: coarse logits (N, 1, h, w) (upsampled to S x S when the
  decoder's output is coarser) and the image features → refined logits (N, 1, S, S).

The last convolution starts at zero, so a fresh refiner returns the decoder's logits unchanged.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions with GroupNorm + GELU.  GroupNorm, not BatchNorm: Stage 2 trains with the
    module in train mode and this branch frozen, where BatchNorm would still move its running stats."""
    groups = math.gcd(4, c_out)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.GroupNorm(groups, c_out), nn.GELU(),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.GroupNorm(groups, c_out), nn.GELU())


class DetailUNet(nn.Module):
    """A U-Net body of len(widths) levels: (B, 3, S, S) → (B, widths[0], S, S) features, S a multiple of
    2 ** (levels - 1); ``block(c_in, c_out)`` makes each level's convolutions."""

    def __init__(self, widths: Sequence[int], block: Callable[[int, int], nn.Module] = _conv_block) -> None:
        super().__init__()
        self.down = nn.ModuleList([block(3, widths[0])] + [block(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.up = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, 2) for a, b in zip(widths[:-1], widths[1:])][::-1])
        self.fuse = nn.ModuleList([block(2 * a, a) for a in widths[:-1]][::-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, fuse, skip in zip(self.up, self.fuse, skips[-2::-1]):
            x = fuse(torch.cat([up(x), skip], 1))
        return x


class MaskRefiner(nn.Module):
    """Residual refinement of mask logits at the model's input resolution; ``width`` channels."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.width = width
        self.image_branch = DetailUNet([width * 2 ** i for i in range(4)])  # widths W, 2W, 4W, 8W
        self.mask_branch = nn.Sequential(
            nn.Conv2d(width + 1, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, 1, 3, padding=1))
        nn.init.zeros_(self.mask_branch[-1].weight)
        nn.init.zeros_(self.mask_branch[-1].bias)

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised, padded images → (B, width, S, S) features."""
        return self.image_branch(images)

    def forward(self, logits: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """logits (N, 1, h, w); features (N or 1, width, S, S) → refined logits (N, 1, S, S)."""
        size = features.shape[-2:]
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        if features.shape[0] != logits.shape[0]:
            features = features.expand(logits.shape[0], -1, -1, -1)
        # the decoder's logits reach ±20; tanh keeps the convolutions' input in a trained range
        decision = torch.tanh(logits / 4)
        return logits + self.mask_branch(torch.cat([features.to(logits.dtype), decision], 1))
