"""A full-resolution boundary refiner behind SAM's mask decoder (issue 14).

SAM's decoder draws each output pixel from one embedding token through stride-2 transposed
convolutions, so its masks' boundaries follow the token grid, and no layer looks at the image at full
resolution.  A U-Net trained on the same films draws better boundaries (BENCHMARKS.md, issue 14).  This
module adds that path behind the decoder, split so that prompting stays cheap:

* :meth:`MaskRefiner.image_features` — once per image: (B, 3, S, S) prepared image → (B, W, S, S),
  from a small U-Net (:class:`DetailUNet`, widths W, 2W, 4W, 8W; with ``levels=5`` also 16W, the U-Net
  reference's 16-32-64-128-256 at W = 16);
* :meth:`MaskRefiner.forward` — per box: coarse logits (N, 1, h, w) (upsampled to S x S when the
  decoder's output is coarser) and the image features → refined logits (N, 1, S, S).

The last convolution starts at zero, so a fresh refiner returns the decoder's logits unchanged.

A refiner built with ``clicks=True`` (issue 32) also sees the user's clicks at full resolution: two maps
(:func:`click_maps`: positive, negative; a Gaussian around each click) enter its mask branch through a
convolution that starts at zero, so adding it to a trained refiner changes nothing until it is trained.
The decoder sees the clicks as SAM's point tokens; the refiner sees where they are, pixel for pixel, so a
click can move a boundary by a few pixels, below what the decoder's 64 x 64 tokens draw.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

CLICK_SIGMA_FRACTION = 1 / 32  # the click maps' Gaussian: sigma = S / 32 (8 px at 256 px input)


def size_multiple(levels: int) -> int:
    """The input side a ``levels``-level :class:`DetailUNet` needs a multiple of (it pools levels - 1 times)."""
    return 2 ** (levels - 1)


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


def click_maps(point_coords: torch.Tensor | None, point_labels: torch.Tensor | None, n: int,
               size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, 2, H, W) maps of the clicks in input pixels: channel 0 the positive clicks (label 1), channel 1
    the negative ones (label 0), each pixel the largest exp(-d² / 2σ²) over that kind's clicks, with σ =
    :data:`CLICK_SIGMA_FRACTION` of the longer side.  ``point_coords`` (N or 1, P, 2) x, y; ``point_labels``
    (N or 1, P), -1 = padding (ignored); None: no clicks (zeros)."""
    h, w = size
    maps = torch.zeros(n, 2, h, w, device=device)
    if point_coords is None or point_labels is None or point_coords.shape[-2] == 0:
        return maps
    coords = point_coords.to(device=device, dtype=torch.float32).expand(n, -1, -1)
    labels = point_labels.to(device).expand(n, -1)
    sigma = CLICK_SIGMA_FRACTION * max(h, w)
    ys = torch.arange(h, device=device, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, 1, w)
    # (N, P, H, W) Gaussians of every point; separable, so (N, P, H, 1) * (N, P, 1, W)
    gy = torch.exp(-(ys - coords[..., 1, None, None]) ** 2 / (2 * sigma ** 2))
    gx = torch.exp(-(xs - coords[..., 0, None, None]) ** 2 / (2 * sigma ** 2))
    bumps = gy * gx
    for channel, label in enumerate((1, 0)):
        chosen = (labels == label)[..., None, None]
        if bool(chosen.any()):
            maps[:, channel] = (bumps * chosen).amax(1)
    return maps


class MaskRefiner(nn.Module):
    """Residual refinement of mask logits at the model's input resolution; ``width`` channels, an image
    branch of ``levels`` U-Net levels (widths W … W·2^(levels-1)); with ``clicks``, also fed :func:`click_maps`
    of the prompt's points."""

    def __init__(self, width: int = 8, clicks: bool = False, levels: int = 4) -> None:
        super().__init__()
        self.width = width
        self.image_branch = DetailUNet([width * 2 ** i for i in range(levels)])
        self.mask_branch = nn.Sequential(
            nn.Conv2d(width + 1, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, 1, 3, padding=1))
        nn.init.zeros_(self.mask_branch[-1].weight)
        nn.init.zeros_(self.mask_branch[-1].bias)
        self.click_branch: nn.Conv2d | None = None
        if clicks:
            self.add_click_branch()

    def add_click_branch(self) -> None:
        """Give the mask branch the click maps' input: a 5x5 convolution (2 → width) added to its first
        layer, at zero, so the refiner's output is unchanged until the branch is trained."""
        param = next(self.parameters())
        self.click_branch = nn.Conv2d(2, self.width, 5, padding=2).to(param.device)
        nn.init.zeros_(self.click_branch.weight)
        nn.init.zeros_(self.click_branch.bias)

    @property
    def takes_clicks(self) -> bool:
        return self.click_branch is not None

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised, padded images → (B, width, S, S) features."""
        return self.image_branch(images)

    def feature_term(self, features: torch.Tensor) -> torch.Tensor:
        """The image's share of the mask branch's first convolution: ``features`` (B, width, S, S) through
        that layer's feature weights, plus its bias → (B, width, S, S).  A convolution is linear, so
        first(cat[features, decision]) = feature_term(features) + conv(decision); computed once per image,
        it leaves each prompt only the one-channel decision map to convolve (1/(width + 1) of that layer's work)."""
        first = self.mask_branch[0]
        return F.conv2d(features, first.weight[:, : self.width], first.bias, padding=first.padding)

    def forward(self, logits: torch.Tensor, features: torch.Tensor, clicks: torch.Tensor | None = None,
                feature_term: torch.Tensor | None = None) -> torch.Tensor:
        """logits (N, 1, h, w); features (N or 1, width, S, S); ``clicks`` (N, 2, S, S) :func:`click_maps`
        (used when the refiner takes clicks; None = no clicks, the same as all-zero maps); ``feature_term``
        (N or 1, width, S, S): :meth:`feature_term` of ``features``, when the caller keeps it per image
        → refined logits (N, 1, S, S)."""
        size = features.shape[-2:]
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        # the decoder's logits reach ±20; tanh keeps the convolutions' input in a trained range
        decision = torch.tanh(logits / 4)
        first, act, last = self.mask_branch
        if feature_term is None:
            feature_term = self.feature_term(features.to(logits.dtype))
        hidden = feature_term.to(logits.dtype) + F.conv2d(decision, first.weight[:, self.width:], None,
                                                          padding=first.padding)
        if self.click_branch is not None:
            if clicks is None:  # no clicks = all-zero maps, as training sees a prompt without points: the bias alone
                bias = self.click_branch.bias
                hidden = hidden if bias is None else hidden + bias.to(logits.dtype).view(1, -1, 1, 1)
            else:
                hidden = hidden + self.click_branch(clicks.to(logits.dtype))
        return logits + last(act(hidden))
