"""Symmetric per-tensor INT8 fake quantization for quantization-aware training (Stage 2).

``w_q = clamp(round(w / s), -127, 127) * s`` with one scale ``s = max|w| / 127`` per
tensor and a straight-through gradient (passes where ``|w/s| <= 127``, zero outside),
via the core op ``torch.fake_quantize_per_tensor_affine``.

Quantized modules keep their class's parameter names (``weight``, ``bias``), so state
dict keys do not change; :func:`apply_qat` swaps the class of existing modules in place,
sharing their Parameters.  Targets (DESIGN "Stage 2"): every encoder block's
``attn.proj``, ``mlp.lin1``, ``mlp.lin2`` and every ``nn.Linear`` in the mask decoder.
``attn.qkv`` (plain or AdaLoRA-wrapped) and the adapters P, Q, Lambda stay FP32.  The
prompt encoder has **no** ``nn.Linear``; its Embedding/Conv weights can optionally be
fake-quantized (``quantize_prompt_encoder=True``).

``quantize_extra=True`` (off by default, not in the paper) also fake-quantizes the biases
of the quantized layers, the conv weights/biases of the encoder (``patch_embed``,
``neck``) and decoder (``output_upscaling``) and the encoder's position tensors
(``pos_embed``, ``rel_pos_h``/``rel_pos_w``), so that the exported file may store them as
INT8 too: only what the network saw fake-quantized is stored INT8 (see ``export.py``).
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F
import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling.image_encoder import Attention, ImageEncoderViT
from torch import Tensor, nn

QMAX = 127
QAT_VARIANTS = ("full", "decoder")
_EPS = 1e-12
_ENCODER_TARGET = re.compile(r"^image_encoder\.blocks\.\d+\.(attn\.proj|mlp\.lin1|mlp\.lin2)$")


def int8_scale(w: Tensor) -> Tensor:
    """0-dim fp32 scale ``max|w| / 127`` (detached; floored at 1e-12 for an all-zero ``w``)."""
    return (w.detach().abs().max().float() / QMAX).clamp_min(_EPS)


def fake_quant_int8(w: Tensor, scale: Tensor | None = None) -> Tensor:
    """Fake-quantize ``w`` (any shape) to the symmetric INT8 grid ``{-127..127} * scale``.

    ``scale`` defaults to :func:`int8_scale` (w).  Gradient is straight-through for
    ``|w / scale| <= 127`` (rounded) and zero outside; no gradient flows to ``scale``.
    Returns a tensor of ``w``'s shape and dtype.
    """
    s = int8_scale(w) if scale is None else scale.detach().float().reshape(())
    s = s.to(w.device)
    zp = torch.zeros((), dtype=torch.int32, device=w.device)
    return torch.fake_quantize_per_tensor_affine(w.float(), s, zp, -QMAX, QMAX).to(w.dtype)


def quantize_tensor_int8(w: Tensor) -> tuple[Tensor, Tensor]:
    """(q int8 of ``w``'s shape, 0-dim fp32 scale) with ``q * scale == fake_quant_int8(w)`` bit-exactly."""
    w = w.detach().float()
    s = int8_scale(w)
    fq = fake_quant_int8(w, s)
    q = torch.round(fq / s).clamp_(-QMAX, QMAX).to(torch.int8)
    return q, s


class _QuantMixin:
    """Shared bookkeeping: which of the module's tensors are fake-quantized."""

    quant_bias: bool = False  # instance attribute set by apply_qat(quantize_extra=True)

    def quantized_tensor_names(self) -> tuple[str, ...]:
        """Names of parameters seen through :func:`fake_quant_int8` in forward (stored INT8 on export)."""
        params = self._parameters  # type: ignore[attr-defined]
        names = ["weight"]
        if self.quant_bias and params.get("bias") is not None:
            names.append("bias")
        return tuple(names)

    def _q(self, name: str) -> Tensor | None:
        p = self._parameters[name]  # type: ignore[attr-defined]
        if p is None or name not in self.quantized_tensor_names():
            return p
        return fake_quant_int8(p)


class QuantLinear(_QuantMixin, nn.Linear):
    """``nn.Linear`` whose forward uses the fake-quantized weight: x (..., in) -> (..., out)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self._q("weight"), self._q("bias"))


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """``nn.Conv2d`` with a fake-quantized weight: (B, Cin, H, W) -> (B, Cout, H', W')."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self._q("weight"), self._q("bias"))


class QuantConvTranspose2d(_QuantMixin, nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` with a fake-quantized weight (no ``output_size`` argument)."""

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None:
            raise NotImplementedError("QuantConvTranspose2d does not support output_size")
        return F.conv_transpose2d(x, self._q("weight"), self._q("bias"), self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


def _quant_view(name: str) -> property:
    """A read-only attribute returning the fake-quantized Parameter ``name``."""
    return property(lambda self: fake_quant_int8(self._parameters[name]),
                    doc=f"fake_quant_int8 of the Parameter {name!r} (kept in _parameters)")


class _ViewQuantMixin(_QuantMixin):
    """For modules whose forward (or whose owner) reads the Parameter attribute directly.

    The attributes in ``_quant_params`` read back fake-quantized; the trainable
    Parameters stay in ``_parameters`` (state-dict keys and ``named_parameters``
    unchanged).
    """

    _quant_params: tuple[str, ...] = ()

    def quantized_tensor_names(self) -> tuple[str, ...]:
        return tuple(n for n in self._quant_params if self._parameters.get(n) is not None)  # type: ignore[attr-defined]


class QuantEmbedding(_ViewQuantMixin, nn.Embedding):
    """``nn.Embedding`` whose ``.weight`` (num_embeddings, dim) reads back fake-quantized
    (SAM's prompt encoder uses ``embedding.weight`` directly, never ``forward``)."""

    _quant_params = ("weight",)
    weight = _quant_view("weight")  # type: ignore[assignment]


class QuantAttention(_ViewQuantMixin, Attention):
    """Encoder attention whose ``rel_pos_h``/``rel_pos_w`` ((2S-1), head_dim) read back
    fake-quantized (``quantize_extra``); its ``qkv`` stays FP32, its ``proj`` is a QuantLinear."""

    _quant_params = ("rel_pos_h", "rel_pos_w")
    rel_pos_h = _quant_view("rel_pos_h")
    rel_pos_w = _quant_view("rel_pos_w")


class QuantImageEncoderViT(_ViewQuantMixin, ImageEncoderViT):
    """Image encoder whose ``pos_embed`` (1, E, E, C) reads back fake-quantized (``quantize_extra``)."""

    _quant_params = ("pos_embed",)
    pos_embed = _quant_view("pos_embed")


_SWAP: dict[type, type] = {
    nn.Linear: QuantLinear, nn.Conv2d: QuantConv2d, nn.ConvTranspose2d: QuantConvTranspose2d,
    nn.Embedding: QuantEmbedding, Attention: QuantAttention, ImageEncoderViT: QuantImageEncoderViT,
}
QUANT_CLASSES = tuple(_SWAP.values())


def _adapter_prefixes(model: nn.Module) -> list[str]:
    """Names of modules that carry adapter parameters (AdaLoRA wrappers): never quantized."""
    return [n for n, m in model.named_modules() if hasattr(m, "lora_P") or hasattr(m, "lora_A")]


def _allowed(name: str, excluded: list[str]) -> bool:
    last = name.rsplit(".", 1)[-1]
    if last == "qkv" or ".qkv." in name + ".":
        return False
    return not any(name == p or name.startswith(p + ".") for p in excluded)


def _check_variant(variant: str) -> None:
    if variant not in QAT_VARIANTS:
        raise ValueError(f"unknown QAT variant {variant!r}; choose one of {QAT_VARIANTS}")


def quantize_targets(sam: nn.Module, variant: str = "full") -> list[str]:
    """Names of the Linears to quantize (``named_modules`` order).

    ``full``: encoder blocks' ``attn.proj``, ``mlp.lin1``, ``mlp.lin2`` (36 in ViT-B) plus
    every Linear in ``mask_decoder``; ``decoder``: the mask decoder's Linears only.
    Never ``attn.qkv`` (plain or AdaLoRA-wrapped) nor anything inside an adapter module.
    """
    _check_variant(variant)
    excluded = _adapter_prefixes(sam)
    out = []
    for name, m in sam.named_modules():
        if not isinstance(m, nn.Linear) or not _allowed(name, excluded):
            continue
        if name.startswith("mask_decoder.") or (variant == "full" and _ENCODER_TARGET.match(name)):
            out.append(name)
    return out


def extra_targets(sam: nn.Module, variant: str = "full") -> list[str]:
    """Modules fake-quantized in addition by ``quantize_extra`` (``named_modules`` order).

    Variant ``full``: the image encoder itself (``pos_embed``), every block's ``attn``
    (``rel_pos_h``/``rel_pos_w``) and the encoder convs (``patch_embed.proj``, ``neck``);
    both variants: the decoder's ``output_upscaling`` transposed convs.  (The biases of
    all quantized Linears/convs are added by :func:`apply_qat`.)
    """
    _check_variant(variant)
    out = []
    for n, m in sam.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if n.startswith("mask_decoder.") or (variant == "full" and n.startswith("image_encoder.")):
                out.append(n)
        elif variant == "full" and isinstance(m, ImageEncoderViT) and n == "image_encoder":
            out.append(n)
        elif variant == "full" and isinstance(m, Attention) and n.startswith("image_encoder.") and m.use_rel_pos:
            out.append(n)
    return out


def prompt_encoder_targets(sam: nn.Module) -> list[str]:
    """Embedding and Conv2d layers of the prompt encoder (it has no ``nn.Linear``)."""
    return [n for n, m in sam.named_modules()
            if n.startswith("prompt_encoder.") and isinstance(m, (nn.Embedding, nn.Conv2d))]


def _swap(module: nn.Module, quant_bias: bool) -> None:
    if not isinstance(module, QUANT_CLASSES):
        module.__class__ = _SWAP[type(module)]
    if quant_bias:
        module.quant_bias = True  # type: ignore[attr-defined]


def apply_qat(sam: nn.Module, variant: str = "full", quantize_prompt_encoder: bool = False,
              quantize_extra: bool = False) -> list[str]:
    """Swap the target modules' classes to their fake-quant versions, in place.

    Parameters are shared (no copies; optimizers built before stay valid); idempotent.
    Returns the names of all quantized modules.  See the module docstring for the
    optional ``quantize_prompt_encoder`` and ``quantize_extra`` sets.
    """
    names = quantize_targets(sam, variant)
    convs = extra_targets(sam, variant) if quantize_extra else []
    prompt = prompt_encoder_targets(sam) if quantize_prompt_encoder else []
    for name in names + convs:
        _swap(sam.get_submodule(name), quant_bias=quantize_extra)
    for name in prompt:
        _swap(sam.get_submodule(name), quant_bias=False)
    return names + convs + prompt


def quantized_modules(model: nn.Module) -> dict[str, nn.Module]:
    """{name: module} for every fake-quantized module, in ``named_modules`` order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, QUANT_CLASSES)}


def qat_summary(model: nn.Module) -> dict:
    """What is quantized: variant (``full``/``decoder``/None), counts per part, options.

    ``prompt_encoder_linears`` is always 0: SAM's prompt encoder has no Linear layers.
    """
    mods = quantized_modules(model)
    lin = [n for n, m in mods.items() if isinstance(m, QuantLinear)]
    enc = [n for n in lin if n.startswith("image_encoder.")]
    dec = [n for n in lin if n.startswith("mask_decoder.")]
    variant = "full" if enc else ("decoder" if dec else None)
    return {
        "variant": variant,
        "n_quantized_linears": len(lin),
        "encoder_linears": len(enc),
        "decoder_linears": len(dec),
        "prompt_encoder_linears": 0,
        "prompt_encoder_quantized": any(n.startswith("prompt_encoder.") for n in mods),
        "quantize_extra": any(getattr(m, "quant_bias", False) for m in mods.values()),
        "n_quantized_tensors": sum(len(m.quantized_tensor_names()) for m in mods.values()),
    }
