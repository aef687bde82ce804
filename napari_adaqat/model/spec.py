"""SAM architecture presets: :class:`SamSpec` and :data:`PRESETS`, torch-free.

Building a network from a spec, and reading checkpoints, is :mod:`napari_adaqat.model.build` (which
imports torch); this module imports nothing heavy, so help texts that list the presets
(``adaqat ... --help``) and configs that check a preset name do not import torch.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from napari_adaqat.util.fields import from_fields

REFINER_LEVELS = range(2, 7)  # the U-Net depths a refiner's image branch may have (4: v3f's; model/mask_refiner.py)


class ModelLoadError(ValueError):
    """A model or checkpoint file that cannot be used; the message is one line."""


@dataclass(frozen=True)
class SamSpec:
    """Shape of a SAM-architecture network.

    ``image_size`` is the square encoder input (longest side after resizing);
    the image embedding is ``image_size // patch_size`` on each side.
    """

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    iou_hidden_dim: int = 256
    pixel_mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    pixel_std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    encoder: str = "vit"  # "vit": SAM's ImageEncoderViT; "hybrid": model/hybrid_encoder.py
    conv_widths: tuple[int, ...] = ()  # hybrid only: conv channels at strides 2, 4, 8, 16
    fine_fusion: bool = False  # hybrid only: a stride-2 top-down level folded into the embedding
    mask_refiner: int = 0  # channels of the full-resolution boundary refiner (model/mask_refiner.py); 0: none
    refiner_clicks: bool = False  # the refiner also sees the clicks (model/mask_refiner.py, click_maps)
    refiner_levels: int = 4  # U-Net levels of the refiner's image branch (5: the U-Net reference's depth)
    # input pixels from a logit cell's centre to the point it describes (model/logit_grid.py); SAM's: 0
    logit_offset: float = 0.0
    vote_unet: int = 0  # channels of a whole-film U-Net that votes in the mask (model/vote_unet.py); 0: none

    @property
    def embedding_size(self) -> int:
        return self.image_size // self.patch_size

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        if self.encoder == "vit":  # ViT specs are written as before the hybrid encoder existed
            del data["encoder"], data["conv_widths"]
        if not self.fine_fusion:  # written only where used, so older readers still load these files
            del data["fine_fusion"]
        if not self.mask_refiner:
            del data["mask_refiner"]
        if not self.refiner_clicks:
            del data["refiner_clicks"]
        if self.refiner_levels == 4:  # older readers know only 4-level refiners
            del data["refiner_levels"]
        if not self.logit_offset:  # written only where set: files without it stay readable by older readers
            del data["logit_offset"]
        if not self.vote_unet:
            del data["vote_unet"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "SamSpec":
        tuples = {k: tuple(data[k]) for k in ("global_attn_indexes", "pixel_mean", "pixel_std", "conv_widths")
                  if k in data}
        return from_fields(cls, data, "model spec", ModelLoadError, **tuples)


def _hybrid(name: str, embed_dim: int, depth: int, num_heads: int, image_size: int, prompt_dim: int,
            decoder_mlp_dim: int, decoder_heads: int, conv_widths: tuple[int, ...]) -> SamSpec:
    """A hybrid conv/attention encoder preset: patch size 4 (the embedding stride), no windows."""
    return SamSpec(name, embed_dim, depth, num_heads, (), image_size=image_size, patch_size=4, window_size=0,
                   prompt_dim=prompt_dim, decoder_mlp_dim=decoder_mlp_dim, decoder_heads=decoder_heads,
                   iou_hidden_dim=prompt_dim, encoder="hybrid", conv_widths=conv_widths)


PRESETS: dict[str, SamSpec] = {
    "vit_b": SamSpec("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamSpec("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamSpec("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    # CPU preset of the earlier default model v2: ~4 M parameters, 256 px input.
    "vit_tiny": SamSpec(
        "vit_tiny", 192, 6, 3, (2, 5), image_size=256, window_size=8,
        prompt_dim=128, decoder_mlp_dim=512, decoder_heads=4, iou_hidden_dim=128,
    ),
    # The default models v3 and (with a 16-channel mask refiner) v3f: conv stem + 4 attention blocks +
    # top-down fusion, 256 px in, 64x64 embedding, 256x256 logits (model/hybrid_encoder.py).
    "hybrid_tiny": _hybrid("hybrid_tiny", 192, 4, 4, 256, 128, 512, 4, (24, 48, 96, 192)),
    "hybrid_nano": _hybrid("hybrid_nano", 48, 1, 2, 64, 32, 64, 2, (8, 8, 16, 32)),  # at test size
    # Smallest preset, for unit tests: runs in milliseconds.
    "vit_nano": SamSpec(
        "vit_nano", 64, 2, 2, (1,), image_size=128, window_size=4,
        prompt_dim=64, decoder_mlp_dim=128, decoder_heads=2, iou_hidden_dim=64,
    ),
}

# the hybrid encoders with the stride-2 fusion level (model/hybrid_encoder.py, fine_fusion)
PRESETS["hybrid_fine"] = dataclasses.replace(PRESETS["hybrid_tiny"], name="hybrid_fine", fine_fusion=True)
PRESETS["hybrid_nano_fine"] = dataclasses.replace(PRESETS["hybrid_nano"], name="hybrid_nano_fine", fine_fusion=True)
# the hybrid encoders with the full-resolution boundary refiner behind the decoder (model/mask_refiner.py)
PRESETS["hybrid_refine"] = dataclasses.replace(PRESETS["hybrid_tiny"], name="hybrid_refine", mask_refiner=8)
PRESETS["hybrid_nano_refine"] = dataclasses.replace(PRESETS["hybrid_nano"], name="hybrid_nano_refine", mask_refiner=4)


def preset_names() -> str:
    """The preset names for help texts, e.g. ``"vit_b, vit_l, ..."`` (read from :data:`PRESETS`)."""
    return ", ".join(PRESETS)
