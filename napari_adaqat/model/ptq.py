"""Post-training quantization (PTQ): fake-quant modules on a model that had no QAT.

The PTQ INT8 file is the baseline that quantization-aware training has to beat.
"""
from __future__ import annotations

from pathlib import Path

import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import Sam

from napari_adaqat.model.build import load_sam_checkpoint
from napari_adaqat.model.qat import apply_qat, quantized_modules

__all__ = ["ptq_from_checkpoint", "quantize_post_training"]


def quantize_post_training(sam: Sam, variant: str = "full", quantize_extra: bool = False,
                           source: str | Path = "model") -> Sam:
    """Apply fake-quant modules to an FP32 ``sam`` in place; refuses a model that already has them."""
    if quantized_modules(sam):
        raise ValueError(f"{source}: already quantization-aware trained; --ptq is for FP32 models")
    apply_qat(sam, variant, quantize_extra=quantize_extra)
    return sam


def ptq_from_checkpoint(pth_path: str | Path, model_type: str = "vit_b", image_size: int | None = None,
                        variant: str = "full", quantize_extra: bool = False) -> Sam:
    """Post-training quantization of an official SAM ``.pth`` (no training).

    Returns the SAM with fake-quant modules applied;
    :func:`napari_adaqat.model.formats.model_file.export_model` of it writes the PTQ INT8 file.
    """
    sam = load_sam_checkpoint(pth_path, model_type, image_size)
    apply_qat(sam, variant, quantize_extra=quantize_extra)
    return sam
