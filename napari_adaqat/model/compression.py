"""Compression figures: the paper's arithmetic ratio and the measured file ratio.

*Arithmetic* ("Linear layers only", the paper's 349.6 MB -> 155.8 MB = 2.2436x for
ViT-B): the FP32 size is 4 bytes x (weights + biases of every ``nn.Linear`` in the image
encoder and mask decoder + the AdaLoRA adapter parameters at ``r_init``); the INT8 size
is 1 byte x (weights + biases of the quantized Linears) + 4 bytes x (the rest of those:
``qkv`` and the adapters).  The prompt encoder has no Linear layers and counts 0.
MiB = 2**20 bytes.

*Measured*: the size on disk of a model file against the official FP32 checkpoint
(``OFFICIAL_CHECKPOINT_BYTES``) and against our own FP32 export of the same network.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from napari_adaqat.model.build import OFFICIAL_CHECKPOINT_BYTES, SamSpec, build_sam, get_spec
from napari_adaqat.model.qat import quantize_targets

MIB = 2 ** 20


def _meta_model(spec: SamSpec | str) -> nn.Module:
    """The network of ``spec`` on the meta device (shapes only, no memory, no init cost)."""
    with torch.device("meta"):
        return build_sam(get_spec(spec))


def _numel(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters(recurse=False))


def adapter_parameter_count(spec: SamSpec | str, r_init: int = 48, n_parts: int = 3) -> int:
    """AdaLoRA parameters on every encoder block's fused qkv: depth * n_parts * (d*r + r + r*d)."""
    spec = get_spec(spec)
    d = spec.embed_dim
    return spec.depth * n_parts * (d * r_init + r_init + r_init * d)


def arithmetic_compression(spec: SamSpec | str, r_init: int = 48, variant: str = "full") -> dict:
    """The paper's "Linear layers only" size arithmetic for ``spec`` (see module docstring).

    ``r_init=0`` leaves adapters out.  Returns sizes (bytes, MiB), ``ratio`` and
    ``ratio_str``, layer counts (``n_quantized_linears``, ``n_fp32_linears``,
    ``prompt_encoder_linears`` = 0) and parameter counts.
    """
    spec = get_spec(spec)
    sam = _meta_model(spec)
    quantized = set(quantize_targets(sam, variant))
    q_params = fp_params = n_q = n_fp = 0
    prompt_linears = 0
    for name, m in sam.named_modules():
        if not isinstance(m, nn.Linear):
            continue
        if name.startswith("prompt_encoder."):
            prompt_linears += 1
            continue
        if name in quantized:
            q_params += _numel(m)
            n_q += 1
        else:
            fp_params += _numel(m)
            n_fp += 1
    adapters = adapter_parameter_count(spec, r_init) if r_init else 0
    fp32_bytes = 4 * (q_params + fp_params + adapters)
    int8_bytes = 1 * q_params + 4 * (fp_params + adapters)
    ratio = fp32_bytes / int8_bytes
    return {
        "basis": "Linear layers only (image encoder + mask decoder) + AdaLoRA adapters at r_init",
        "model": spec.name, "variant": variant, "r_init": r_init,
        "fp32_bytes": fp32_bytes, "int8_bytes": int8_bytes,
        "fp32_mib": fp32_bytes / MIB, "int8_mib": int8_bytes / MIB,
        "ratio": ratio, "ratio_str": f"{ratio:.4f}\u00d7",
        "n_quantized_linears": n_q, "n_fp32_linears": n_fp, "prompt_encoder_linears": prompt_linears,
        "quantized_params": q_params, "fp32_linear_params": fp_params, "adapter_params": adapters,
    }


def fp32_state_bytes(spec: SamSpec | str) -> int:
    """4 bytes x every state-dict element of ``spec``'s plain SAM (an FP32 export's payload)."""
    return 4 * sum(t.numel() for t in _meta_model(spec).state_dict().values())


def file_compression(path: str | Path, spec: SamSpec | str, fp32_reference_bytes: int | None = None,
                     own_fp32_bytes: int | None = None) -> dict:
    """Measured size of the model file at ``path`` and its ratios.

    ``ratio_vs_official``: against ``fp32_reference_bytes`` (default: the official
    checkpoint of ``spec.name`` when known, else None).  ``ratio_vs_own_fp32``: against
    ``own_fp32_bytes`` (the size of our ``fp32``-profile export); when not given it is
    estimated as the FP32 payload (4 bytes per state-dict element) and flagged so.
    """
    spec = get_spec(spec)
    size = Path(path).stat().st_size
    official = fp32_reference_bytes if fp32_reference_bytes is not None else OFFICIAL_CHECKPOINT_BYTES.get(spec.name)
    estimated = own_fp32_bytes is None
    own = fp32_state_bytes(spec) if estimated else int(own_fp32_bytes)
    return {
        "file_bytes": size, "file_mib": size / MIB, "file_mb": size / 1e6,
        "official_fp32_bytes": official,
        "ratio_vs_official": (official / size) if official else None,
        "own_fp32_bytes": own, "own_fp32_estimated": estimated,
        "ratio_vs_own_fp32": own / size,
    }
