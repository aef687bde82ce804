"""Run an INT8 model file with its encoder weights kept as INT8 in memory.

:func:`~napari_adaqat.model.formats.model_file.load_model_file` either dequantizes every INT8 tensor into
an FP32 model (the reference, and what stock ``segment_anything`` runs) or, with ``keep_int8``, swaps
every image-encoder ``nn.Linear`` stored as INT8 for an :class:`Int8Linear`, which keeps ``int8``
weights plus one FP32 scale and dequantizes per layer, per call (``w = q · s``, bit-for-bit the
weight of the FP32 load, so the results are identical).  The mask
decoder and everything else are small and stay FP32, so box prompts pay no dequantization.

``int8_matmul=True`` (opt-in: ``adaqat bench --int8-gemm``; the app runs the exact path) computes those
layers, for inputs of at least ``INT8_GEMM_MIN_ROWS`` tokens, as INT8 x INT8 GEMMs
(``torch._int_mm``, int32 accumulation): each token's activations are quantized on the fly to INT8
with their own scale (symmetric, ``max|x|/127`` per row), the weight is used as stored.  On CPUs with
VNNI (AVX-512 or AVX-VNNI) this is ~2x faster than the FP32 GEMM and needs no dequantized weight; it
is an approximation of the FP32 maths (feature cosine ≥ 0.999 is checked by the tests and by
``adaqat bench``), while the default dequantizing path is exact.
"""
from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Int8Linear", "int8_bytes", "int8_linear", "plain_state_items", "quantize_rows"]

# INT8 GEMMs pay for their per-row quantization from about this many rows (tokens); below it (e.g. the
# bundled 256-px model's 256 tokens) the exact dequantizing path is as fast, so it is kept there
INT8_GEMM_MIN_ROWS = 1024


class Int8Linear(nn.Module):
    """A Linear (in → out) whose weight stays int8: ``y = x (q·s)ᵀ + b``, dequantized at each call.

    Buffers: ``qweight`` (out, in) int8, ``scale`` 0-dim fp32, ``bias`` (out,) fp32 or None.
    """

    def __init__(self, qweight: Tensor, scale: Tensor, bias: Tensor | None, int8_matmul: bool = False) -> None:
        super().__init__()
        self.int8_matmul = int8_matmul
        if qweight.dtype != torch.int8 or qweight.ndim != 2 or scale.numel() != 1:
            raise ValueError("Int8Linear needs a 2-D int8 weight and a one-element scale")
        self.out_features, self.in_features = qweight.shape
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale.reshape(()).to(torch.float32))
        self.register_buffer("bias", None if bias is None else bias.to(torch.float32))

    @property
    def weight(self) -> Tensor:
        """(out, in) fp32 dequantized weight (a new tensor at each access)."""
        return self.qweight * self.scale  # int8 × fp32 -> fp32, exact as q.float() * s

    def plain_weights(self) -> tuple[Tensor, Tensor | None] | None:
        """(dequantized (out, in) weight, bias) for callers that apply this layer to many chunks
        (dequantize once), or None when the layer computes as an INT8 GEMM."""
        return None if self.int8_matmul else (self.weight, self.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out)."""
        if (self.int8_matmul and x.device.type == "cpu" and x.dtype == torch.float32
                and x.numel() >= INT8_GEMM_MIN_ROWS * x.shape[-1] and not (torch.is_grad_enabled() and x.requires_grad)):
            return int8_linear(x, self.qweight, self.scale, self.bias)
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 weight"


def quantize_rows(x: Tensor) -> tuple[Tensor, Tensor]:
    """x (M, K) fp32 -> (q (M, K) int8, scale (M, 1) fp32) with ``q · scale ≈ x``: symmetric per row,
    ``scale = max|x_row| / 127`` (a zero row gets a tiny scale and q = 0)."""
    # max(amax, -amin): 10x faster here than vector_norm(ord=inf) or aminmax, and no |x| temporary
    scale = torch.maximum(x.amax(1, keepdim=True), x.amin(1, keepdim=True).neg_()).clamp_min_(1e-12).div_(127.0)
    return torch.div(x, scale).round_().to(torch.int8), scale


def int8_linear(x: Tensor, qweight: Tensor, scale: Tensor, bias: Tensor | None) -> Tensor:
    """``x (q·s)ᵀ + b`` as an INT8 GEMM: x (..., in) fp32, qweight (out, in) int8, scale 0-dim ->
    (..., out) fp32.  Rows of x are quantized per row (:func:`quantize_rows`); int32 accumulation."""
    rows = x.reshape(-1, x.shape[-1])
    q, row_scale = quantize_rows(rows)
    out = torch._int_mm(q, qweight.t()).to(torch.float32).mul_(row_scale * scale)
    if bias is not None:
        out.add_(bias)
    return out.view(*x.shape[:-1], qweight.shape[0])


def plain_state_items(model: nn.Module) -> Iterator[tuple[str, Tensor]]:
    """(name, tensor) of ``model.state_dict()`` with each :class:`Int8Linear` shown as the plain
    ``weight``/``bias`` of the Linear it replaces, dequantized one layer at a time (no whole FP32 copy)."""
    int8 = {n: m for n, m in model.named_modules() if isinstance(m, Int8Linear)}
    for name, tensor in model.state_dict().items():
        owner, _, leaf = name.rpartition(".")
        if owner in int8:
            if leaf == "qweight":
                yield f"{owner}.weight", int8[owner].weight
            elif leaf == "bias":
                yield name, tensor
            continue
        yield name, tensor


def int8_bytes(model: nn.Module) -> int:
    """Bytes of INT8 weights held by :class:`Int8Linear` modules."""
    return sum(m.qweight.numel() for m in model.modules() if isinstance(m, Int8Linear))
