"""A fast, lean forward of segment_anything's ``ImageEncoderViT`` with the same results.

Stock SAM materialises, in each global-attention block, the whole (B·heads, N, N) attention
matrix plus the same-sized decomposed relative-position bias (N = 4096 tokens for ViT-B at
1024 px: 805 MB per copy, several copies alive).  Here:

* attention runs on chunks of heads and query rows (:func:`rel_pos_attention`), so neither the
  attention nor the decomposed relative-position bias matrix is ever held whole: fused SDPA with a
  reused bias buffer for inference; with gradients, the bias added in place into each chunk's scores
  and each chunk checkpointed (training keeps no N×N matrix);
* windowed blocks compute qkv on the real tokens only; padding, window partition and head split
  are then one strided copy (:func:`_window_heads`);
* AdaLoRA adapters are folded into the qkv weight when no gradient is needed (one GEMM, not
  three);
* ``grad_checkpoint`` recomputes each block in backward (only block inputs are kept).

Linear layers are called as modules, so fake-quant (QAT), INT8-runtime and adapter modules
keep their own semantics.  :func:`supports_fast_path` says when the structure is the stock one;
other encoders (e.g. a hybrid conv/attention encoder) run their own ``forward``.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)

# isort: split
from segment_anything.modeling.image_encoder import (
    Attention,
    Block,
    ImageEncoderViT,
    get_rel_pos,
    window_unpartition,
)
from torch import Tensor, nn

from napari_adaqat.model.adalora import AdaLoRALinear

__all__ = ["BIAS_CHUNK_ELEMENTS", "fast_encoder_forward", "rel_pos_attention", "supports_fast_path"]

# training: heads and query rows per checkpointed chunk, so that one chunk's scores hold at most this
# many floats (4 MB: ViT-B, 4 rows of a 64x64 grid, one head)
BIAS_CHUNK_ELEMENTS = 1 << 20
# inference: one chunk's bias buffer for the fused SDPA kernel (16 MB; ViT-B: 16 rows of one head),
# measured fastest here at 1 and 2 threads (0.31 s per global block vs 0.49 s unfused, 2 threads)
INFER_BIAS_ELEMENTS = 1 << 22
MLP_CHUNK_TOKENS = 1024  # tokens per MLP chunk without gradients (ViT-B: a 12 MB hidden, not 50 MB)


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


def _chunk_attention(q: Tensor, k: Tensor, v: Tensor, rh: Tensor, rw: Tensor, w: int, scale: float) -> Tensor:
    """One chunk: q (b, r·w, c) query rows, k/v (b, N, c), rh (r, Hk, c), rw (w, Wk, c) -> (b, r·w, c).

    The scores are one (b, r·w, N) buffer: the bias is added into it in place (never built on its
    own), then softmax and the value product."""
    b, m, c = q.shape
    r = m // w
    rel_h, rel_w = _rel_terms(q.reshape(b, r, w, c), rh, rw)
    scores = torch.bmm(q * scale, k.transpose(1, 2)).view(b, r, w, rel_h.shape[-1], rel_w.shape[-1])
    scores = scores.add_(rel_h.unsqueeze(-1)).add_(rel_w.unsqueeze(-2)).view(b, m, -1)
    return torch.bmm(torch.softmax(scores, dim=-1), v)


def _chunks(bh: int, h: int, per_row: int, max_elements: int) -> Iterator[tuple[slice, slice]]:
    """(head slice, query-row slice) of each chunk, in order (heads outer): as many whole query rows
    (``per_row`` scores each), then heads, as fit in ``max_elements`` scores (at least one of each)."""
    rows = max(1, min(h, max_elements // per_row))
    heads = max(1, min(bh, max_elements // (rows * per_row)))
    for b0 in range(0, bh, heads):
        for r0 in range(0, h, rows):
            yield slice(b0, min(bh, b0 + heads)), slice(r0, min(h, r0 + rows))


def _sdpa_chunks(q: Tensor, k: Tensor, v: Tensor, rh: Tensor, rw: Tensor, w: int, max_elements: int) -> Tensor:
    """Inference: (BH, N, c) attention through ``F.scaled_dot_product_attention`` (one fused kernel:
    QKᵀ, bias, softmax and the value product) on chunks of heads and query rows, each chunk's bias
    written into one reused buffer of at most ``max_elements`` floats."""
    bh, n, c = q.shape
    out = torch.empty_like(q)
    buf = None
    for heads, rows in _chunks(bh, n // w, w * n, max_elements):
        nb, nr = heads.stop - heads.start, rows.stop - rows.start
        tokens = slice(rows.start * w, rows.stop * w)
        qc = q[heads, tokens]
        rel_h, rel_w = _rel_terms(qc.reshape(nb, nr, w, c), rh[rows], rw)
        buf = q.new_empty(nb * nr * w * n) if buf is None else buf  # the first chunk is the largest
        bias = buf[:nb * nr * w * n].view(nb, nr, w, rh.shape[1], rw.shape[1])
        torch.add(rel_h.unsqueeze(-1), rel_w.unsqueeze(-2), out=bias)
        out[heads, tokens] = F.scaled_dot_product_attention(qc, k[heads], v[heads], attn_mask=bias.view(nb, nr * w, n))
    return out


def rel_pos_attention(q: Tensor, k: Tensor, v: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor,
                      size: tuple[int, int], max_bias_elements: int | None = None) -> Tensor:
    """Softmax attention with SAM's decomposed relative-position bias, chunked over heads and query rows.

    q, k, v: (BH, N, c) with N = h·w tokens in row-major order; rel_pos_h/w: the module's tables
    ((2h-1, c) / (2w-1, c), interpolated like stock when sizes differ).  Returns (BH, N, c), equal
    to stock ``Attention`` up to float rounding; neither the (N, N) scores nor the bias is held whole.

    * No gradients: fused SDPA per chunk, the bias of a chunk (≤ ``INFER_BIAS_ELEMENTS`` floats) in
      one reused buffer (measured 1.6x faster than unfused chunks for ViT-B's global blocks here).
    * With gradients: per chunk (≤ ``BIAS_CHUNK_ELEMENTS`` scores) the bias is added in place into the
      scores, and each chunk is checkpointed: backward recomputes its scores, so no (N, N) matrix is
      kept for backward (the training memory of the global blocks).  Inside a block that is itself
      checkpointed, the scores are thus computed three times per step (forward, the block's
      recompute, the chunk's recompute): the price of the ~4.6 GB peak (ViT-B, 1024², batch 2).
    """
    h, w = size
    bh, n, c = q.shape
    rh, rw = get_rel_pos(h, h, rel_pos_h), get_rel_pos(w, w, rel_pos_w)  # (h, h, c), (w, w, c)
    if not (torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v, rel_pos_h, rel_pos_w))):
        return _sdpa_chunks(q, k, v, rh, rw, w, max_bias_elements or INFER_BIAS_ELEMENTS)
    scale = c ** -0.5
    groups: dict[int, list[Tensor]] = {}  # head-group start -> its row chunks, in order
    for heads, rows in _chunks(bh, h, w * n, max_bias_elements or BIAS_CHUNK_ELEMENTS):
        args = (q[heads, rows.start * w:rows.stop * w], k[heads], v[heads], rh[rows], rw, w, scale)
        groups.setdefault(heads.start, []).append(
            torch.utils.checkpoint.checkpoint(_chunk_attention, *args, use_reentrant=False))
    return torch.cat([torch.cat(chunks, dim=1) for chunks in groups.values()])


def _window_heads(qkv: Tensor, ws: int, nh: int, pad_value: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """qkv (B, H, W, 3C) of the real tokens -> per-window heads (3, B·nW·nh, ws·ws, C/nh) in
    ``window_partition`` order, the padding tokens taking ``pad_value`` (3C,) (what stock's zero-padded
    tokens get: qkv(0)), and the padded size (Hp, Wp).  Padding, window partition and head split are
    one strided copy (stock: qkv of the padded tokens, then two copies)."""
    b, h, w, c3 = qkv.shape
    d = c3 // 3 // nh
    ny, nx = -(-h // ws), -(-w // ws)
    fy, ry, fx, rx = h // ws, h % ws, w // ws, w % ws  # full windows and the rest, per axis
    out = qkv.new_empty(3, b, ny, nx, nh, ws, ws, d)
    target = out.permute(0, 1, 2, 5, 3, 6, 4, 7)  # (3, B, ny, ws_y, nx, ws_x, nh, d)
    src = qkv.view(b, h, w, 3, nh, d).permute(3, 0, 1, 2, 4, 5)  # (3, B, H, W, nh, d)
    pad = pad_value.to(qkv.dtype).view(3, 1, 1, 1, 1, nh, d)
    target[:, :, :fy, :, :fx] = src[:, :, :fy * ws, :fx * ws].unflatten(2, (fy, ws)).unflatten(4, (fx, ws))
    if ry:
        target[:, :, fy, :ry, :fx] = src[:, :, fy * ws:, :fx * ws].unflatten(3, (fx, ws))
        target[:, :, fy, ry:] = pad
    if rx:
        target[:, :, :fy, :, fx, :rx] = src[:, :, :fy * ws, fx * ws:].unflatten(2, (fy, ws))
        target[:, :, :, :, fx, rx:] = pad
    if ry and rx:
        target[:, :, fy, :ry, fx, :rx] = src[:, :, fy * ws:, fx * ws:]
    return out.view(3, b * ny * nx * nh, ws * ws, d), (ny * ws, nx * ws)


def _attention(blk: Block, x: Tensor) -> Tensor:
    """The attention half of a block on normed tokens x (B, H, W, C) -> (B, H, W, C) (after proj)."""
    attn: Attention = blk.attn  # type: ignore[assignment]
    _, h, w, c = x.shape
    nh = attn.num_heads
    ws = blk.window_size
    qkv = _qkv(attn.qkv, x)  # (B, H, W, 3C) on the real tokens only
    if ws > 0:
        heads, pad_hw = _window_heads(qkv, ws, nh, _qkv(attn.qkv, x.new_zeros(1, c))[0])
        size = (ws, ws)
    else:
        size = (h, w)
        heads = qkv.reshape(-1, h * w, 3, nh, c // nh).permute(2, 0, 3, 1, 4).reshape(3, -1, h * w, c // nh)
    del x, qkv  # each large temporary is dropped as soon as it is used (ViT-B: 12-45 MB each; peak RSS)
    nb = heads.shape[1] // nh
    out = rel_pos_attention(*heads.unbind(0), attn.rel_pos_h, attn.rel_pos_w, size)  # (nb·nh, N, c/nh)
    del heads
    out = out.view(nb, nh, size[0], size[1], -1).permute(0, 2, 3, 1, 4).reshape(nb, size[0], size[1], c)
    if ws > 0:
        out = window_unpartition(out, ws, pad_hw, (h, w))
    return attn.proj(out)


def _block(blk: Block, x: Tensor) -> Tensor:
    """One transformer block: x (B, H, W, C) -> (B, H, W, C), as ``Block.forward``.

    Without gradients the residuals are added in place and the MLP runs on chunks of
    ``MLP_CHUNK_TOKENS`` tokens, so its (tokens, 4C) hidden stays small (cache-sized, and ViT-B's
    50 MB hidden is never allocated whole): the same numbers, less memory traffic."""
    if torch.is_grad_enabled():
        x = x + _attention(blk, blk.norm1(x))
        return x + blk.mlp(blk.norm2(x))
    x = x.contiguous().add_(_attention(blk, blk.norm1(x)))
    tokens = x.view(-1, x.shape[-1])
    mlp = blk.mlp
    lin1, lin2 = _once_per_block(mlp.lin1), _once_per_block(mlp.lin2)
    for t0 in range(0, tokens.shape[0], MLP_CHUNK_TOKENS):
        chunk = tokens[t0:t0 + MLP_CHUNK_TOKENS]
        chunk.add_(lin2(mlp.act(lin1(blk.norm2(chunk)))))
    return x


def _once_per_block(linear: nn.Module):
    """``linear`` as a function for the MLP chunks; an INT8-runtime layer's weight is dequantized once
    per block, not once per chunk (duck-typed ``plain_weights``, see ``int8_runtime.Int8Linear``)."""
    plain = getattr(linear, "plain_weights", None)
    weights = plain() if plain is not None else None
    if weights is None:
        return linear
    weight, bias = weights
    return lambda x: F.linear(x, weight, bias)


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
