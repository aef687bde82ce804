"""A hybrid convolution/attention image encoder with SAM's interface (the default models v3 and v3f).

A ViT trained from scratch on a few hundred radiographs has too little inductive bias
and too coarse an output (SAM's 16-px patches give 4E-px logits).  This encoder keeps
what the two stages and the mask decoder need, and adds what a U-Net has:

* a convolutional stem (strides 2, 4, 8, 16; widths ``conv_widths``) for the inductive bias,
  as MobileSAM's TinyViT and EfficientViT-SAM do;
* ``depth`` global-attention blocks of ``segment_anything`` (``Block`` with a fused
  ``attn.qkv`` Linear and relative positions) on the stride-16 grid, so AdaLoRA (Stage 1)
  and the encoder's INT8 Linears (Stage 2) apply unchanged;
* a U-Net-style top-down path that fuses the stride-8 and stride-4 features back in
  (high-resolution features for the mask decoder, as HQ-SAM fuses early features), and a
  SAM-style neck (1x1 conv + LayerNorm2d);
* with ``fine_fusion``, one more top-down level at stride 2 (fused with the stem's stride-2
  features, as a U-Net's last decoder level), folded back to stride 4 by space-to-depth
  (``PixelUnshuffle``) and fed to the neck with the stride-4 features.  The embedding keeps its
  shape, so the decoder and every interface are unchanged, but each embedding pixel now carries
  its 2x2 sub-pixels' features, which the decoder's k=s=2 transposed convs can unfold into
  sharper boundaries.

Output: image embeddings (B, out_chans, S/4, S/4) for a (B, 3, S, S) input, i.e. the
mask decoder's logits are at the full input size S (4x upscaling of S/4).
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import Block
from torch import Tensor, nn

EMBED_STRIDE = 4  # the embedding's stride in input pixels (SamSpec.patch_size of a hybrid spec)


def conv_unit(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias) → GroupNorm (8 groups, batch-size independent) → ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.GroupNorm(8, c_out), nn.ReLU(inplace=True))


def conv_stage(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """Two conv units; the first one strides."""
    return nn.Sequential(conv_unit(c_in, c_out, stride), conv_unit(c_out, c_out))


class HybridImageEncoder(nn.Module):
    """Conv stem → global-attention blocks at stride 16 → top-down fusion to stride 4.

    ``img_size``: square input S (a multiple of 16); ``conv_widths``: channels at strides
    2, 4, 8, 16; ``embed_dim``/``depth``/``num_heads``: the attention blocks;
    ``out_chans``: channels of the embedding (the prompt dimension); ``fine_fusion``: add the
    stride-2 level (see the module docstring).
    """

    def __init__(self, img_size: int, conv_widths: tuple[int, int, int, int], embed_dim: int, depth: int,
                 num_heads: int, out_chans: int, fine_fusion: bool = False) -> None:
        super().__init__()
        if img_size % 16 or len(conv_widths) != 4:
            raise ValueError("the hybrid encoder needs img_size % 16 == 0 and four conv widths")
        self.img_size = img_size
        w2, w4, w8, w16 = conv_widths
        self.down = nn.ModuleList([conv_stage(3, w2, 2), conv_stage(w2, w4, 2), conv_stage(w4, w8, 2),
                                   conv_stage(w8, w16, 2)])
        grid = img_size // 16
        self.proj_in = nn.Conv2d(w16, embed_dim, 1)
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6),
                  use_rel_pos=True, window_size=0, input_size=(grid, grid))
            for _ in range(depth)
        ])
        self.proj_out = nn.Conv2d(embed_dim, w8, 1)
        self.fuse8 = conv_stage(2 * w8, w8, 1)
        self.fuse4 = conv_stage(w8 + w4, w4, 1)
        self.fine_fusion = fine_fusion
        if fine_fusion:
            self.fuse2 = conv_stage(w4 + w2, w2, 1)
            self.unshuffle = nn.PixelUnshuffle(2)
        neck_in = w4 + 4 * w2 if fine_fusion else w4
        # SAM's neck without its 3x3 conv, which would cost more than the whole stem at stride 4
        self.neck = nn.Sequential(nn.Conv2d(neck_in, out_chans, 1, bias=False), LayerNorm2d(out_chans))

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, S, S) normalised image → (B, out_chans, S/4, S/4)."""
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        t = self.proj_in(x).permute(0, 2, 3, 1)  # (B, S/16, S/16, D): segment_anything's block layout
        for block in self.blocks:
            t = block(t)
        x = self.proj_out(t.permute(0, 3, 1, 2))
        x = self.fuse8(torch.cat([F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), skips[2]], 1))
        x = self.fuse4(torch.cat([F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), skips[1]], 1))
        if self.fine_fusion:
            fine = self.fuse2(torch.cat([F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), skips[0]], 1))
            x = torch.cat([x, self.unshuffle(fine)], 1)  # (B, w4 + 4 w2, S/4, S/4)
        return self.neck(x)
