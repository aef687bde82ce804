"""The INT8 tensor layout of a model file, packed and unpacked in one place.

A fake-quantized tensor ``<name>`` is stored as ``<name>.int8`` (int8, the tensor's shape) and
``<name>.scale`` (0-dim fp32), with ``int8 * scale`` bit-for-bit the fake-quant tensor used in
training (symmetric per tensor, ``scale = max|w| / 127``, range [-127, 127]).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from napari_adaqat.model.build import ModelLoadError
from napari_adaqat.model.qat import quantize_tensor_int8

__all__ = ["INT8", "SCALE", "pack_int8", "int8_names", "unpack_int8"]

INT8, SCALE = ".int8", ".scale"


def pack_int8(name: str, weight: Tensor) -> dict[str, Tensor]:
    """``{name.int8: q (weight's shape) int8, name.scale: 0-dim fp32}`` of one fake-quantized tensor."""
    q, s = quantize_tensor_int8(weight)
    return {name + INT8: q.contiguous(), name + SCALE: s}


def int8_names(tensors: dict[str, Tensor]) -> list[str]:
    """Sorted names of the tensors stored as INT8 (without the ``.int8`` suffix)."""
    return sorted(k[: -len(INT8)] for k in tensors if k.endswith(INT8))


def unpack_int8(path: str | Path, tensors: dict[str, Tensor],
                keep: frozenset[str] | set[str] = frozenset()) -> tuple[dict[str, Tensor], dict[str, tuple[Tensor, Tensor]]]:
    """File tensors -> (fp32 state dict, ``{name: (q int8, scale 0-dim fp32)}`` of the names in ``keep``).

    The one validation of the layout: every scale has its int8 tensor, every int8 tensor an int8
    dtype and a one-element fp32 scale, every other tensor a float dtype (FP16 becomes FP32).
    INT8 tensors not in ``keep`` are dequantized (``w = q * scale``).  ``tensors`` is consumed, so each
    file tensor is released as soon as it is used; errors are one-line :class:`ModelLoadError`.
    """
    scales = {k: tensors.pop(k) for k in [k for k in tensors if k.endswith(SCALE)]}
    orphan = [k for k in scales if k[: -len(SCALE)] + INT8 not in tensors]
    if orphan:
        raise ModelLoadError(f"{path}: scale {orphan[0]} has no matching {INT8} tensor")
    state: dict[str, Tensor] = {}
    kept: dict[str, tuple[Tensor, Tensor]] = {}
    for key in list(tensors):
        value = tensors.pop(key)
        if key.endswith(INT8):
            base = key[: -len(INT8)]
            scale = scales.get(base + SCALE)
            if value.dtype != torch.int8 or scale is None or scale.numel() != 1 or scale.dtype != torch.float32:
                raise ModelLoadError(f"{path}: {key} needs int8 data and a one-element fp32 {base}{SCALE}")
            if base in keep:
                kept[base] = (value, scale)
            else:
                state[base] = value.to(torch.float32) * scale.reshape(())
        elif value.is_floating_point():
            state[key] = value.to(torch.float32)
        else:
            raise ModelLoadError(f"{path}: tensor {key} has unexpected dtype {value.dtype}")
    return state, kept
