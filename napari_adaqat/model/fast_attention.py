"""A fast, lean forward of segment_anything's ``ImageEncoderViT`` with the same results.

Stock SAM materialises, in each global-attention block, the whole (B·heads, N, N) attention
matrix plus the same-sized decomposed relative-position bias (N = 4096 tokens for ViT-B at
1024 px: 805 MB per copy, several copies alive).  Here:

* attention runs through ``F.scaled_dot_product_attention`` on chunks of query rows, with the
  decomposed relative-position bias built per chunk (:func:`rel_pos_attention`), so neither
  matrix is ever held whole;
* ``qkv`` of windowed blocks is computed on the H·W real tokens only; the padded tokens of the
  last windows get ``qkv(0)`` (the bias), exactly what stock computes for them;
* AdaLoRA adapters are folded into the qkv weight when no gradient is needed (one GEMM, not
  three);
* ``grad_checkpoint`` recomputes each block in backward (only block inputs are kept).

Linear layers are called as modules, so fake-quant (QAT), INT8-runtime and adapter modules
keep their own semantics.  :func:`supports_fast_path` says when the structure is the stock one;
other encoders (e.g. a hybrid conv/attention encoder) run their own ``forward``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from segment_anything.modeling.image_encoder import Attention, Block, ImageEncoderViT, get_rel_pos, window_unpartition
from torch import Tensor, nn

from napari_adaqat.model.adalora import AdaLoRALinear

__all__ = ["supports_fast_path", "fast_encoder_forward", "rel_pos_attention", "BIAS_CHUNK_ELEMENTS"]

# query rows per chunk are chosen so that one chunk's bias holds at most this many floats (12 MB):
# measured fastest on a 2-core AVX2 CPU (chunks of 1 token row of a 64x64 grid for ViT-B)
BIAS_CHUNK_ELEMENTS = 3_200_000


def supports_fast_path(encoder: nn.Module) -> bool:
    """True for segment_anything's ``ImageEncoderViT`` (or a subclass that keeps its forward, e.g.
    the QAT one) whose blocks are stock ``Block``s with relative-position ``Attention``."""
    if not isinstance(encoder, ImageEncoderViT) or type(encoder).forward is not ImageEncoderViT.forward:
        return False
    blocks = getattr(encoder, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or len(blocks) == 0:
        return False
    for blk in blocks:
        if type(blk).forward is not Block.forward or not isinstance(blk.attn, Attention):
            return False
        if type(blk.attn).forward is not Attention.forward or not blk.attn.use_rel_pos:
            return False
    return True


def _qkv(module: nn.Module, x: Tensor) -> Tensor:
    """``module(x)`` for x (..., C) -> (..., 3C); an AdaLoRA wrapper is folded into one GEMM when
    no gradient is recorded (W + dW, as :func:`~napari_adaqat.model.adalora.fold_adapters`)."""
    if isinstance(module, AdaLoRALinear) and not torch.is_grad_enabled():
        weight = module.base.weight + module.delta_weight().to(module.base.weight.dtype)
        return F.linear(x, weight, module.base.bias)
    return module(x)


def _rel_terms(q: Tensor, rh: Tensor, rw: Tensor) -> tuple[Tensor, Tensor]:
    """Decomposed relative-position terms of ``add_decomposed_rel_pos``.

    q: (BH, r, W, c) query rows; rh: (r, Hk, c) table rows of those query rows; rw: (W, Wk, c).
    Returns rel_h (BH, r, W, Hk) and rel_w (BH, r, W, Wk) as batched GEMMs (no einsum permutes).
    """
    bh, r, w, c = q.shape
    rel_h = torch.matmul(q.transpose(0, 1).reshape(r, bh * w, c), rh.transpose(1, 2))  # (r, BH·W, Hk)
    rel_h = rel_h.view(r, bh, w, -1).transpose(0, 1)
    rel_w = torch.matmul(q.permute(2, 0, 1, 3).reshape(w, bh * r, c), rw.transpose(1, 2))  # (W, BH·r, Wk)
    rel_w = rel_w.view(w, bh, r, -1).permute(1, 2, 0, 3)
    return rel_h, rel_w


def rel_pos_attention(q: Tensor, k: Tensor, v: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor,
                      size: tuple[int, int], max_bias_elements: int = BIAS_CHUNK_ELEMENTS) -> Tensor:
    """Softmax attention with SAM's decomposed relative-position bias, chunked over query rows.

    q, k, v: (BH, N, c) with N = h·w tokens in row-major order; rel_pos_h/w: the module's tables
    ((2h-1, c) / (2w-1, c), interpolated like stock when sizes differ).  Returns (BH, N, c), equal
    to stock ``Attention`` up to float rounding; at most ``max_bias_elements`` bias values live at once.
    """
    h, w = size
    bh, n, c = q.shape
    rh, rw = get_rel_pos(h, h, rel_pos_h), get_rel_pos(w, w, rel_pos_w)  # (h, h, c), (w, w, c)
    rows = max(1, min(h, max_bias_elements // max(1, bh * w * n)))
    if rows >= h:  # one chunk
        rel_h, rel_w = _rel_terms(q.view(bh, h, w, c), rh, rw)
        bias = (rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)).reshape(bh, n, n)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    out = []
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        qc = q[:, r0 * w:r1 * w]
        rel_h, rel_w = _rel_terms(qc.reshape(bh, r1 - r0, w, c), rh[r0:r1], rw)
        bias = (rel_h.unsqueeze(-1) + rel_w.unsqueeze(-2)).reshape(bh, (r1 - r0) * w, n)
        out.append(F.scaled_dot_product_attention(qc, k, v, attn_mask=bias))
    return torch.cat(out, dim=1)


def _windows(t: Tensor, ws: int, pad_value: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """(B, H, W, D) -> (B·nW, ws, ws, D) windows; padded tokens take ``pad_value`` (D,)."""
    b, h, w, d = t.shape
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    if (hp, wp) != (h, w):
        padded = pad_value.to(t.dtype).expand(b, hp, wp, d).clone()
        padded[:, :h, :w] = t
        t = padded
    t = t.view(b, hp // ws, ws, wp // ws, ws, d).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws, ws, d)
    return t, (hp, wp)


def _attention(blk: Block, x: Tensor) -> Tensor:
    """The attention half of a block on normed tokens x (B, H, W, C) -> (B, H, W, C) (after proj)."""
    attn: Attention = blk.attn  # type: ignore[assignment]
    b, h, w, c = x.shape
    nh = attn.num_heads
    qkv = _qkv(attn.qkv, x)  # (B, H, W, 3C) on real tokens only
    ws = blk.window_size
    if ws > 0:
        pad_value = _qkv(attn.qkv, x.new_zeros(1, c))[0]  # what stock's zero-padded tokens get
        qkv, pad_hw = _windows(qkv, ws, pad_value)
        size = (ws, ws)
    else:
        size = (h, w)
    nb = qkv.shape[0]
    q, k, v = qkv.reshape(nb, size[0] * size[1], 3, nh, c // nh).permute(2, 0, 3, 1, 4).reshape(
        3, nb * nh, size[0] * size[1], c // nh).unbind(0)
    out = rel_pos_attention(q, k, v, attn.rel_pos_h, attn.rel_pos_w, size)  # (nb·nh, N, c/nh)
    out = out.view(nb, nh, size[0], size[1], -1).permute(0, 2, 3, 1, 4).reshape(nb, size[0], size[1], c)
    if ws > 0:
        out = window_unpartition(out, ws, pad_hw, (h, w))
    return attn.proj(out)


def _block(blk: Block, x: Tensor) -> Tensor:
    """One transformer block: x (B, H, W, C) -> (B, H, W, C), as ``Block.forward``."""
    x = x + _attention(blk, blk.norm1(x))
    return x + blk.mlp(blk.norm2(x))


def fast_encoder_forward(encoder: ImageEncoderViT, images: Tensor, grad_checkpoint: bool = False) -> Tensor:
    """(B, 3, S, S) normalised, padded images -> (B, out_chans, S/16, S/16) embeddings, as
    ``encoder(images)`` (check :func:`supports_fast_path` first).  ``grad_checkpoint`` keeps only
    each block's input for backward and recomputes the block (when gradients are recorded)."""
    x = encoder.patch_embed(images)
    if encoder.pos_embed is not None:
        x = x + encoder.pos_embed
    recompute = grad_checkpoint and torch.is_grad_enabled()
    for blk in encoder.blocks:
        if recompute:
            x = torch.utils.checkpoint.checkpoint(_block, blk, x, use_reentrant=False)
        else:
            x = _block(blk, x)
    return encoder.neck(x.permute(0, 3, 1, 2))
