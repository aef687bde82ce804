"""A lean prompt → mask path: segment_anything's mask decoder for box and point prompts (and a
dense mask prompt) with ``multimask_output=False``, computing only what that output needs, with the
same results.

Per image (:class:`ImageContext`, built once after ``set_image``): the image tokens plus the
no-mask embedding, the dense positional encoding, and the first layer's image-side projections
(keys and values of the token→image attention, queries of the image→token attention); none of
them depends on the sparse prompts.  A ``mask_input`` adds its own dense embedding to the image
tokens instead of the no-mask one, so :func:`with_mask` recomputes those projections for that call
(E·E tokens, cheap).  Per prompt (:func:`decode_prompt_logits`): the two-way transformer on the
tokens, the transposed convolutions of ``output_upscaling`` as GEMMs on channels-last pixels
(k=2, s=2 convolutions do not overlap), and only the first mask token's hypernetwork.

Upsampling: stock upsamples the 4E×4E logits bilinearly to S×S, crops the input region and
upsamples again to the original size.  Both steps are linear and separable, so
:func:`upsample_matrices` composes them into one (H, 4E) and one (W, 4E) matrix, applied with two
GEMMs straight to the original size.  Their work grows as H·W·4E, so a film over
:data:`GEMM_MAX_PIXELS` (hospital films: 4-16 M px) takes stock's two bilinear resizes instead
(3000²: 20 ms against 87 ms on one thread; the same logits to 1e-6).

:func:`supports_lean_decoder` says when the decoder has the stock structure; otherwise the
caller uses :func:`~napari_adaqat.model.forward.decode_boxes` and ``Sam.postprocess_masks``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import MaskDecoder, Sam, TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.transformer import Attention as DecoderAttention
from segment_anything.modeling.transformer import TwoWayAttentionBlock
from torch import Tensor, nn

__all__ = ["ImageContext", "supports_lean_decoder", "image_context", "with_mask",
           "decode_prompt_logits", "upsample_matrices"]


def supports_lean_decoder(sam: Sam) -> bool:
    """True when ``sam.mask_decoder`` is the stock MaskDecoder/TwoWayTransformer with the stock
    ``output_upscaling`` (ConvTranspose2d k=s=2, LayerNorm2d, GELU, ConvTranspose2d k=s=2, GELU)."""
    dec = getattr(sam, "mask_decoder", None)
    if type(dec) is not MaskDecoder or type(dec.transformer) is not TwoWayTransformer:
        return False
    if not all(type(layer) is TwoWayAttentionBlock for layer in dec.transformer.layers):
        return False
    up = list(dec.output_upscaling)
    kinds = (nn.ConvTranspose2d, LayerNorm2d, nn.GELU, nn.ConvTranspose2d, nn.GELU)
    if len(up) != 5 or not all(isinstance(m, k) for m, k in zip(up, kinds)):
        return False
    return all(tuple(m.kernel_size) == (2, 2) and tuple(m.stride) == (2, 2) and tuple(m.padding) == (0, 0)
               and tuple(m.output_padding) == (0, 0) and m.groups == 1 and tuple(m.dilation) == (1, 1)
               for m in (up[0], up[3])) and up[2].approximate == up[4].approximate == "none"


@dataclass
class ImageContext:
    """What the decoder needs of one image embedding, independent of the sparse prompts (N = E·E
    tokens; M = 1, or one row per prompt after :func:`with_mask`)."""

    keys: Tensor  # (M, N, C) image tokens + no-mask embedding (or a mask prompt's dense embedding)
    key_pe: Tensor  # (1, N, C) dense positional encoding
    t2i_k: Tensor  # (M, N, Ci) layer 0 token→image keys
    t2i_v: Tensor  # (M, N, Ci) layer 0 token→image values
    i2t_q: Tensor  # (M, N, Ci) layer 0 image→token queries
    size: tuple[int, int]  # (E, E)
    tokens: Tensor | None = None  # (1, N, C) the image tokens alone (for with_mask)


def _heads(x: Tensor, n: int) -> Tensor:
    """(B, T, C) -> (B, n, T, C/n)."""
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _effective(module: nn.Module) -> tuple[Tensor, Tensor | None]:
    """(weight, bias) as the module's forward uses them (fake-quantized for QAT modules)."""
    q = getattr(module, "_q", None)
    return (q("weight"), q("bias")) if q is not None else (module.weight, module.bias)


def _head_weights(linear: nn.Module, heads: int) -> tuple[Tensor, Tensor | None]:
    """A projection's effective weight (Ci, C) as (heads, Ci/heads, C), and its bias (heads, 1, Ci/heads)."""
    weight, bias = _effective(linear)
    w = weight.view(heads, -1, weight.shape[-1])
    return w, (bias.view(heads, 1, -1) if bias is not None else None)


def _recombine(x: Tensor) -> Tensor:
    """(B, n, T, d) -> (B, T, n·d)."""
    b, n, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, n * d)


def _attend(mod: DecoderAttention, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Stock decoder attention on already projected q (B, Tq, Ci), k, v (B, Tk, Ci) -> (B, Tq, C)."""
    qh, kh = _heads(q, mod.num_heads), _heads(k, mod.num_heads)
    attn = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1]), dim=-1)
    return mod.out_proj(_recombine(attn @ _heads(v, mod.num_heads)))


def _tokens_to_image(mod: DecoderAttention, queries: Tensor, x: Tensor, xp: Tensor) -> Tensor:
    """Stock ``mod(q=queries, k=xp, v=x)`` for few token queries (B, T, C) on many image tokens
    x, xp (B, P, C), without projecting the P image tokens: the query is pulled through the key
    projection (q_hᵀ W_k,h), and the values through the attention (A_h x) W_v,hᵀ + b_v,h (rows of A
    sum to 1).  The key bias adds one constant per softmax row and is dropped.  (B, T, C)."""
    n = mod.num_heads
    qh = _heads(mod.q_proj(queries), n)  # (B, n, T, d)
    wk, _bk = _head_weights(mod.k_proj, n)  # (n, d, C)
    wv, bv = _head_weights(mod.v_proj, n)
    b, _, t, d = qh.shape
    scores = (qh @ wk).reshape(b, n * t, -1) @ xp.transpose(-1, -2)  # (B, n·T, P)
    attn = torch.softmax(scores / math.sqrt(d), dim=-1)
    out = (attn @ x).view(b, n, t, -1) @ wv.transpose(-1, -2)  # (B, n, T, d)
    return mod.out_proj(_recombine(out + bv if bv is not None else out))


def _image_to_tokens(mod: DecoderAttention, xp: Tensor | None, q_img: Tensor | None, keys: Tensor,
                     values: Tensor, residual: Tensor) -> Tensor:
    """``residual + mod(q=xp, k=keys, v=values)`` (stock) for many image queries xp (B, P, C) and few
    token keys and values (B, T, C): scores come from kᵀ W_q,h (or from already projected queries
    ``q_img`` (1, P, Ci)), softmax runs over the T tokens with P innermost, and the values go through
    ``out_proj`` per head before the attention (the same sum, reassociated; the bias is spread over
    the n·T value rows, whose weights sum to n).  (B, P, C)."""
    n = mod.num_heads
    kh = _heads(mod.k_proj(keys), n)  # (B, n, T, d)
    vh = _heads(mod.v_proj(values), n)
    b, _, t, d = kh.shape
    if q_img is not None:
        scores = kh @ _heads(q_img, n).transpose(-1, -2)  # (B, n, T, P)
    else:
        wq, bq = _head_weights(mod.q_proj, n)
        scores = ((kh @ wq).reshape(b, n * t, -1) @ xp.transpose(-1, -2)).view(b, n, t, -1)
        if bq is not None:
            scores = scores + (kh @ bq.transpose(-1, -2))  # (B, n, T, 1)
    attn = torch.softmax(scores / math.sqrt(d), dim=-2)  # over the T tokens
    wo, bo = _effective(mod.out_proj)  # (C, Ci)
    vw = vh @ wo.view(wo.shape[0], n, d).permute(1, 2, 0)  # (B, n, T, C)
    if bo is not None:
        vw = vw + bo / n
    attn = attn.reshape(b, n * t, -1).transpose(-1, -2)  # (B, P, n·T)
    return torch.baddbmm(residual.expand(b, -1, -1), attn, vw.reshape(b, n * t, -1))


def _conv_t(x: Tensor, conv: nn.ConvTranspose2d) -> Tensor:
    """A k=2, s=2 transposed convolution on channels-last pixels: x (P, Cin) -> (P, 2, 2, Cout)
    (output pixel (2i+di, 2j+dj) of input pixel p = (i, j) at [p, di, dj])."""
    weight, bias = _effective(conv)  # (Cin, Cout, 2, 2)
    cout = weight.shape[1]
    w = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], 4 * cout)  # columns (di, dj, Cout)
    y = torch.addmm(bias.repeat(4), x, w) if bias is not None else x @ w
    return y.view(-1, 2, 2, cout)


@torch.no_grad()
def image_context(sam: Sam, features: Tensor, dense_pe: Tensor | None = None) -> ImageContext:
    """The box-independent part of decoding ``features`` (1, C, E, E) (see :class:`ImageContext`);
    ``dense_pe``: ``sam.prompt_encoder.get_dense_pe()`` (1, C, E, E) if the caller keeps it."""
    pe = sam.prompt_encoder
    h, w = pe.image_embedding_size
    keys = (features + pe.no_mask_embed.weight.reshape(1, -1, 1, 1)).flatten(2).transpose(1, 2).contiguous()
    key_pe = (pe.get_dense_pe() if dense_pe is None else dense_pe).to(features).flatten(2).transpose(1, 2).contiguous()
    return _with_keys(sam, keys, key_pe, (h, w), features.flatten(2).transpose(1, 2))


def _with_keys(sam: Sam, keys: Tensor, key_pe: Tensor, size: tuple[int, int], tokens: Tensor) -> ImageContext:
    """An :class:`ImageContext` of ``keys`` (M, N, C): the layer-0 image-side projections computed."""
    layer = sam.mask_decoder.transformer.layers[0]
    k_in = keys + key_pe
    return ImageContext(
        keys=keys, key_pe=key_pe, size=size, tokens=tokens,
        t2i_k=layer.cross_attn_token_to_image.k_proj(k_in), t2i_v=layer.cross_attn_token_to_image.v_proj(keys),
        i2t_q=layer.cross_attn_image_to_token.q_proj(k_in),
    )


@torch.no_grad()
def with_mask(sam: Sam, ctx: ImageContext, mask_input: Tensor) -> ImageContext:
    """``ctx`` with a dense mask prompt: ``mask_input`` (M, 1, 4E, 4E) logits (SAM's ``mask_input``)
    go through the prompt encoder's ``mask_downscaling`` and replace the no-mask embedding; the
    layer-0 projections are recomputed for these (M, N, C) keys."""
    if ctx.tokens is None:
        raise ValueError("this ImageContext keeps no image tokens: build it with image_context()")
    dense = sam.prompt_encoder.mask_downscaling(mask_input.to(ctx.tokens))  # (M, C, E, E)
    keys = (ctx.tokens + dense.flatten(2).transpose(1, 2)).contiguous()
    return _with_keys(sam, keys, ctx.key_pe, ctx.size, ctx.tokens)


def _layer(layer: TwoWayAttentionBlock, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor,
           ctx: ImageContext | None) -> tuple[Tensor, Tensor]:
    """``TwoWayAttentionBlock.forward``; ``ctx`` gives the cached image-side projections (layer 0)."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    queries = layer.norm1(queries)
    t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
    q = queries + query_pe
    if ctx is not None:
        attn_out = _attend(t2i, t2i.q_proj(q), ctx.t2i_k, ctx.t2i_v)
        xp = None
    else:
        xp = keys + key_pe
        attn_out = _tokens_to_image(t2i, q, keys, xp)
    queries = layer.norm2(queries + attn_out)
    queries = layer.norm3(queries + layer.mlp(queries))
    q = queries + query_pe
    iq = ctx.i2t_q if ctx is not None else None
    keys = layer.norm4(_image_to_tokens(i2t, xp, iq, q, queries, keys))
    return queries, keys


@torch.no_grad()
def decode_prompt_logits(sam: Sam, ctx: ImageContext, boxes: Tensor | None = None,
                         point_coords: Tensor | None = None, point_labels: Tensor | None = None,
                         mask_input: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """N prompts on one image, in input coordinates -> low-resolution logits (N, 4E, 4E) and predicted
    IoU (N,), as :func:`~napari_adaqat.model.forward.decode_coarse` (up to float rounding).

    ``boxes`` (N, 4) xyxy; ``point_coords`` (N, P, 2) x, y with ``point_labels`` (N, P): 1 lung, 0 not
    lung, -1 padding (as SAM, points without a box get one padding point); ``mask_input`` (N or 1, 1,
    4E, 4E) logits: the dense prompt (:func:`with_mask`).  At least one of the three is needed."""
    if boxes is None and point_coords is None and mask_input is None:
        raise ValueError("nothing to decode: pass a box, points or a mask_input")
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels go together")
    if mask_input is not None:
        ctx = with_mask(sam, ctx, mask_input)
    if boxes is None and point_coords is None:  # a mask prompt alone: no sparse tokens
        n = ctx.keys.shape[0]
        sparse = torch.empty((n, 0, ctx.keys.shape[-1]), dtype=ctx.keys.dtype, device=ctx.keys.device)
    else:
        points = None if point_coords is None else (point_coords, point_labels)
        sparse = _sparse(sam, points, boxes)
    return _decode(sam, ctx, sparse)


def _sparse(sam: Sam, points: tuple[Tensor, Tensor] | None, boxes: Tensor | None) -> Tensor:
    """The prompt encoder's sparse embeddings (N, T, C) of points and/or boxes (the dense output,
    the no-mask embedding expanded per prompt, is not computed)."""
    pe = sam.prompt_encoder
    parts = []
    if points is not None:
        parts.append(pe._embed_points(points[0], points[1], pad=boxes is None))
    if boxes is not None:
        parts.append(pe._embed_boxes(boxes))
    return torch.cat(parts, dim=1)


def _decode(sam: Sam, ctx: ImageContext, sparse: Tensor) -> tuple[Tensor, Tensor]:
    """The decoder on sparse prompt embeddings (N, T, C) -> logits (N, 4E, 4E), IoU (N,)."""
    dec = sam.mask_decoder
    out_tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0)
    tokens = torch.cat((out_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1), sparse), dim=1)  # (N, T, C)
    tr = dec.transformer
    queries, keys = tokens, ctx.keys
    for i, layer in enumerate(tr.layers):
        queries, keys = _layer(layer, queries, keys, tokens, ctx.key_pe, ctx if i == 0 else None)
    fa = tr.final_attn_token_to_image
    queries = tr.norm_final_attn(queries + _tokens_to_image(fa, queries + tokens, keys, keys + ctx.key_pe))
    iou = dec.iou_prediction_head(queries[:, 0, :])[:, 0]
    hyper = dec.output_hypernetworks_mlps[0](queries[:, 1, :])  # (N, C/8): mask token 0 only
    conv1, norm, act1, conv2, act2 = dec.output_upscaling
    h, w = ctx.size
    n, c = keys.shape[0], keys.shape[-1]
    y = _conv_t(keys.reshape(-1, c), conv1)  # (N·h·w, 2, 2, C/4)
    y = act1(F.layer_norm(y, (y.shape[-1],), norm.weight, norm.bias, norm.eps))  # LayerNorm2d over channels
    y = act2(_conv_t(y.reshape(-1, y.shape[-1]), conv2))  # (N·h·w·4, 2, 2, C/8)
    m = (y.view(n, -1, y.shape[-1]) @ hyper.unsqueeze(-1)).view(n, h, w, 2, 2, 2, 2)  # [i, j, di, dj, ei, ej]
    low = m.permute(0, 1, 3, 5, 2, 4, 6).reshape(n, 4 * h, 4 * w)  # row 4i+2di+ei, column 4j+2dj+ej
    return low, iou


@lru_cache(maxsize=16)
def _axis_matrix(low: int, size: int, crop: int, out: int) -> Tensor:
    """(out, low): bilinear ``low`` -> ``size``, crop to ``crop``, bilinear -> ``out``, as one matrix."""
    eye = torch.eye(low).unsqueeze(0)  # (1, low basis, low)
    up = F.interpolate(eye, size=size, mode="linear", align_corners=False)[..., :crop]
    return F.interpolate(up, size=out, mode="linear", align_corners=False)[0].T.contiguous()


def upsample_matrices(low_size: tuple[int, int], image_size: int, input_size: tuple[int, int],
                      original_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """(H, h) and (W, w) matrices with ``Mh @ low @ Mw.T`` equal to ``Sam.postprocess_masks`` of a
    (h, w) = ``low_size`` logit map (up to float rounding)."""
    mh = _axis_matrix(low_size[0], image_size, input_size[0], original_size[0])
    mw = _axis_matrix(low_size[1], image_size, input_size[1], original_size[1])
    return mh, mw


GEMM_MAX_PIXELS = 768 * 768  # above: two bilinear resizes are cheaper (one thread: 512² 3.5 vs 4.9 ms, 1024² 8.6 vs 4.9)


def upsample_logits(low: Tensor, image_size: int, input_size: tuple[int, int],
                    original_size: tuple[int, int]) -> Tensor:
    """(N, h, w) low-resolution logits -> (N, H, W) at the original image size: ``Sam.postprocess_masks``,
    in two GEMMs up to :data:`GEMM_MAX_PIXELS`, else as stock computes it."""
    if original_size[0] * original_size[1] > GEMM_MAX_PIXELS:
        x = F.interpolate(low[:, None], (image_size, image_size), mode="bilinear", align_corners=False)
        x = x[..., :input_size[0], :input_size[1]]
        return F.interpolate(x, tuple(original_size), mode="bilinear", align_corners=False)[:, 0]
    mh, mw = upsample_matrices(tuple(low.shape[-2:]), image_size, input_size, original_size)
    mh, mw = mh.to(low), mw.to(low)
    return torch.matmul(torch.matmul(mh, low), mw.T)

