"""The differentiable SAM forward used by the predictor, training and evaluation alike."""
from __future__ import annotations

import torch
import torch.utils.checkpoint
import torch.nn.functional as F
import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import Sam

from napari_adaqat.data.transforms import normalize_and_pad
from napari_adaqat.model.fast_attention import fast_encoder_forward, supports_fast_path
from napari_adaqat.model.mask_refiner import click_maps


def embed(sam: Sam, images: torch.Tensor, grad_checkpoint: bool = False, fast: bool = True) -> torch.Tensor:
    """(B, 3, S, S) prepared images (:func:`~napari_adaqat.data.transforms.prepare_image`) →
    image embeddings (B, C, E, E).

    ``fast`` runs the stock ViT encoder through :func:`~napari_adaqat.model.fast_attention.fast_encoder_forward`
    (same features up to float rounding, no N×N attention matrix held whole); other encoders, or
    ``fast=False``, run the module's own forward (the reference).  ``grad_checkpoint`` recomputes
    activations in backward: block by block on the fast path (only block inputs are kept), else the
    whole encoder at once.
    """
    encoder = sam.image_encoder
    if fast and supports_fast_path(encoder):
        return fast_encoder_forward(encoder, images, grad_checkpoint)
    if grad_checkpoint and torch.is_grad_enabled():
        return torch.utils.checkpoint.checkpoint(encoder, images, use_reentrant=False)
    return encoder(images)


def grad_checkpoint_pays(sam: Sam) -> bool:
    """Whether per-block activation checkpointing pays for its recomputation: encoders of at least
    4096 tokens of at least 768 channels (ViT-B and larger at 1024 px, where the kept activations of
    12+ blocks reach GBs); small encoders train faster without it."""
    enc = sam.image_encoder
    tokens = (int(enc.img_size) // 16) ** 2
    width = int(getattr(getattr(getattr(enc, "patch_embed", None), "proj", None), "out_channels", 0))
    return tokens >= 4096 and width >= 768


def encode(sam: Sam, images: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) resized RGB in 0..255 → image embeddings (B, C, E, E), normalised and padded
    by the one preprocessing transform (as ``Sam.preprocess``)."""
    size = int(sam.image_encoder.img_size)
    return embed(sam, normalize_and_pad(images, sam.pixel_mean.view(-1), sam.pixel_std.view(-1), size))


def image_detail(sam: Sam, images: torch.Tensor) -> torch.Tensor | None:
    """(B, 3, S, S) prepared images → the mask refiner's per-image features (B, W, S, S), or None
    for a model without a refiner (:mod:`~napari_adaqat.model.mask_refiner`)."""
    refiner = getattr(sam, "mask_refiner", None)
    return None if refiner is None else refiner.image_features(images)


def detail_term(sam: Sam, detail: torch.Tensor | None) -> torch.Tensor | None:
    """The image's part of the refiner's per-prompt work (B, W, S, S), to compute once per image and pass
    to :func:`refine_logits` with each prompt of that image; None without a refiner
    (:meth:`~napari_adaqat.model.mask_refiner.MaskRefiner.feature_term`)."""
    refiner = getattr(sam, "mask_refiner", None)
    return None if refiner is None or detail is None else refiner.feature_term(detail)


def refine_logits(sam: Sam, logits: torch.Tensor, detail: torch.Tensor | None,
                  point_coords: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                  term: torch.Tensor | None = None) -> torch.Tensor:
    """Decoder logits (N, 1, h, w) → the refiner's (N, 1, S, S) logits; unchanged without a refiner.
    ``detail``: :func:`image_detail` of the image (1 row, or one per logit row); ``point_coords`` (N or 1,
    P, 2) x, y in input pixels and ``point_labels`` (N or 1, P) (-1 = padding): the clicks, for a refiner
    that takes them (:func:`~napari_adaqat.model.mask_refiner.click_maps`); ``term``: :func:`detail_term`
    of ``detail`` when the caller keeps it (prompts then skip the image's part of the work)."""
    refiner = getattr(sam, "mask_refiner", None)
    if refiner is None:
        return logits
    if detail is None:
        raise ValueError("this model has a mask refiner: pass the image's detail features (image_detail)")
    clicks = None
    if refiner.takes_clicks and point_coords is not None:
        clicks = click_maps(point_coords, point_labels, logits.shape[0], tuple(detail.shape[-2:]), logits.device)
    return refiner(logits, detail, clicks, term)


def decode_boxes(sam: Sam, features: torch.Tensor, boxes: torch.Tensor,
                 detail: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode one box per embedding, or many boxes for a single embedding.

    features: (B, C, E, E); boxes: (B, 4) or, when B == 1, (N, 4) in input coordinates; ``detail``
    (B, W, S, S): :func:`image_detail` of the same images, needed by a model with a mask refiner.
    Returns logits (N, 1, 4E, 4E) — (N, 1, S, S) with a refiner — and predicted IoU (N, 1).
    """
    coarse, ious = decode_coarse(sam, features, boxes)
    return refine_logits(sam, coarse, detail), ious


def decode_coarse(sam: Sam, features: torch.Tensor, boxes: torch.Tensor | None,
                  point_coords: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                  mask_input: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The mask decoder's own logits (N, 1, 4E, 4E) and predicted IoU (N, 1), before any refiner.

    features: (B, C, E, E).  Prompts in input coordinates, one set per embedding (or N sets for a single
    embedding): ``boxes`` (N, 4) xyxy, a row of NaN = no box for that row (or None: no boxes);
    ``point_coords`` (N, P, 2) x, y and ``point_labels`` (N, P) with 1 = lung, 0 = not lung, -1 = padding
    (SAM's names and convention; a row's padding points are left out, so every row sees only its real
    points, as the inference sends them); ``mask_input`` (N, 1, 4E, 4E): a previous prediction's low-resolution
    logits, SAM's dense mask prompt.

    segment_anything 1.0's ``MaskDecoder`` repeats every embedding for every prompt, so prompts are decoded
    one row at a time here (a row without a box, points or mask is refused: nothing to decode).
    """
    n = next((len(t) for t in (boxes, point_coords, mask_input) if t is not None), 0)
    if n == 0:
        raise ValueError("nothing to decode: pass a box, points or a mask_input")
    if features.shape[0] not in (1, n):
        raise ValueError(f"{features.shape[0]} embeddings but {n} prompts")
    if (point_coords is None) != (point_labels is None):
        raise ValueError("point_coords and point_labels go together")
    pe = sam.prompt_encoder.get_dense_pe()
    logits, ious = [], []
    for i in range(n):
        feat = features[i:i + 1] if features.shape[0] == n else features
        box = None if boxes is None or torch.isnan(boxes[i]).any() else boxes[i:i + 1]
        points = None
        if point_coords is not None:
            real = point_labels[i] >= 0  # padding slots are dropped: the decoder sees what inference sends
            if bool(real.any()):
                points = (point_coords[i:i + 1, real], point_labels[i:i + 1, real])
        masks = None if mask_input is None else mask_input[i:i + 1]
        if box is None and points is None and masks is None:
            raise ValueError(f"prompt {i}: no box, no points and no mask_input")
        sparse, dense = sam.prompt_encoder(points=points, boxes=box, masks=masks)
        low_res, iou = sam.mask_decoder(
            image_embeddings=feat, image_pe=pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=False,
        )
        logits.append(low_res)
        ious.append(iou)
    return torch.cat(logits), torch.cat(ious)


def as_mask_input(sam: Sam, logits: torch.Tensor) -> torch.Tensor:
    """A prediction's final logits (N, 1, h, w) in the input frame (the refiner's S x S, or the decoder's
    4E x 4E) → SAM's dense mask prompt (N, 1, 4E, 4E): what ``mask_input`` (and ``low_res_logits``) holds,
    in training and inference alike."""
    size = tuple(sam.prompt_encoder.mask_input_size)
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
