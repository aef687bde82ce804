"""Simulated interactive segmentation in training (issue 32), as SAM was trained (Kirillov et al. 2023, §A)
and micro-sam's ``training/sam_trainer.py`` does it.

Per batch the image is embedded once; the first prompt (a box, or points alone) is decoded, then
``rounds`` times a corrective click is drawn from the error of the current prediction (uniformly from the
wrongly predicted pixels, or by the evaluation's rule with chance ``deepest_prob``, half by default
(``click_deepest_prob`` in the training config): positive on a missed lung pixel, negative on a false
one), added to the points, and the prompt is decoded again, mostly with the previous
prediction's logits as the dense mask prompt
(``mask_input``, :func:`~napari_adaqat.model.forward.as_mask_input`: the same call the inference makes).
The loss averages over every round, so one model learns the box, the clicks and the refinement.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from napari_adaqat.data.boxes import clip_rectangle
from napari_adaqat.metrics.clicks import next_click
from napari_adaqat.model.forward import as_mask_input, decode_coarse, detail_term, embed, image_detail, refine_logits
from napari_adaqat.train.config import DEEPEST_CLICK_PROB  # the default lives with the config's


OUTSIDE_LOGIT = -20.0  # what a clipped pixel's logit becomes (sigmoid ~ 2e-9: certainly not lung)
NO_MASK_PROMPT_PROB = 0.25  # of the rounds: decoded without the previous mask (as after a point is moved)


def _uniform(n: int, generator: torch.Generator | None) -> torch.Tensor:
    """(n,) U(0, 1) draws from ``generator`` (on its device)."""
    return torch.rand(n, generator=generator, device=generator.device if generator is not None else "cpu")


@torch.no_grad()
def sample_clicks(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                  generator: torch.Generator | None = None,
                  deepest_prob: float = DEEPEST_CLICK_PROB) -> tuple[torch.Tensor, torch.Tensor]:
    """One corrective click per sample: logits, target (B, 1, S, S); valid (B, 2) = the unpadded (h, w).

    With chance ``deepest_prob`` the click follows the evaluation's rule
    (:func:`~napari_adaqat.metrics.clicks.next_click`: the deepest point of the largest error region, as
    users click), else it is drawn uniformly from the wrongly predicted pixels (SAM's training rule: the
    thin slivers along a boundary too).  Returns coords (B, 1, 2) x, y in input pixels and labels (B, 1):
    1 on a missed lung pixel, 0 on a false one, -1 (padding) for a sample without error.
    """
    b = logits.shape[0]
    pred, ref = logits[:, 0] > 0, target[:, 0] > 0.5
    coords = torch.zeros(b, 1, 2, device=logits.device)
    labels = -torch.ones(b, 1, device=logits.device)
    draws = _uniform(b, generator) if deepest_prob < 1 else torch.zeros(b)  # (no draw: validation stays pure)
    for i in range(b):
        h, w = int(valid[i, 0]), int(valid[i, 1])
        p, r = pred[i, :h, :w], ref[i, :h, :w]
        error = p != r
        if not bool(error.any()):
            continue
        if float(draws[i]) < deepest_prob:
            x, y, label = next_click(p.cpu().numpy(), r.cpu().numpy())
        else:
            k = int(torch.multinomial(error.flatten().float(), 1, generator=generator))
            y, x = divmod(k, w)
            label = float(r[y, x])
        coords[i, 0] = torch.tensor([float(x), float(y)])
        labels[i, 0] = float(label)
    return coords, labels


def box_region(boxes: torch.Tensor, coords: torch.Tensor, labels: torch.Tensor, margin: torch.Tensor,
               size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) bool: what the inference's clipping keeps (:func:`~napari_adaqat.data.boxes.clip_rectangle`,
    the one rule), in input pixels: each row's box (B, 4) widened to its positive points (B, P, 2) with
    ``labels`` (B, P), grown by ``margin`` (B,) pixels; a row without a box (NaN) keeps everything."""
    inside = torch.ones(boxes.shape[0], 1, *size, dtype=torch.bool, device=boxes.device)
    for i, box in enumerate(boxes.detach().cpu().numpy()):
        if np.isnan(box).any():
            continue
        positive = coords[i][labels[i] == 1].detach().cpu().numpy()
        r0, r1, c0, c1 = clip_rectangle(size, box, positive, float(margin[i]))
        inside[i] = False
        inside[i, :, r0:r1, c0:c1] = True
    return inside


def prompted_logits(sam, images: torch.Tensor, batch: dict, device: str, rounds: int = 0,
                    grad_checkpoint: bool = False, generator: torch.Generator | None = None,
                    clip_to_box: bool = False, deterministic: bool = False,
                    deepest_prob: float = DEEPEST_CLICK_PROB) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Logits (B, 1, S, S) at the input size after the first prompt and after each of ``rounds`` corrective
    clicks (a list of 1 + rounds; a round keeps the previous mask as its prompt, except with chance
    ``NO_MASK_PROMPT_PROB``), and the decoder's own logits of the first prompt (B, 1, S, S; before
    any refiner).  ``batch``: a :class:`~napari_adaqat.train.dataset.LungDataset` batch (``box`` NaN rows
    = points alone; ``points``/``point_labels`` the start points; ``mask``, ``valid``, ``clip_margin``).

    With ``clip_to_box`` the returned logits are clipped as the inference clips the mask (outside
    :func:`box_region`: :data:`OUTSIDE_LOGIT`), so the loss and the next click see what the user sees,
    and the model is not asked to erase, outside the box, what the clipping erases anyway; the next round's
    mask prompt is the unclipped prediction, as the inference passes ``low_res_logits`` back.
    ``deepest_prob``: the chance that a click follows the evaluation's rule (:func:`sample_clicks`).
    ``deterministic`` (validation): every click by the evaluation's rule (``deepest_prob`` ignored), every
    round with the mask prompt."""
    size = images.shape[-2:]

    def to_input_size(t: torch.Tensor) -> torch.Tensor:
        return F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False)

    features = embed(sam, images, grad_checkpoint)
    detail = image_detail(sam, images)
    term = detail_term(sam, detail)  # the image's part of the refiner's work, shared by every round
    boxes = batch["box"].to(device)
    b = images.shape[0]
    coords = batch["points"].to(device) if "points" in batch else torch.zeros(b, 0, 2, device=device)
    labels = batch["point_labels"].to(device) if "point_labels" in batch else torch.zeros(b, 0, device=device)

    def clipped(logits: torch.Tensor) -> torch.Tensor:
        if not clip_to_box:
            return logits
        inside = box_region(boxes, coords, labels, batch["clip_margin"].to(device), tuple(size))
        return logits.masked_fill(~inside, OUTSIDE_LOGIT)

    coarse, _ = decode_coarse(sam, features, boxes, coords, labels)
    raw = to_input_size(refine_logits(sam, coarse, detail, coords, labels, term))
    outputs = [clipped(raw)]
    for _ in range(rounds):
        target, valid = batch["mask"].to(device), batch["valid"]
        click, label = sample_clicks(outputs[-1].detach(), target, valid, generator,
                                     deepest_prob=1.0 if deterministic else deepest_prob)
        coords, labels = torch.cat([coords, click], 1), torch.cat([labels, label], 1)
        keep_mask = deterministic or float(_uniform(1, generator)) >= NO_MASK_PROMPT_PROB
        mask_input = as_mask_input(sam, raw.detach()) if keep_mask else None
        step, _ = decode_coarse(sam, features, boxes, coords, labels, mask_input)
        raw = to_input_size(refine_logits(sam, step, detail, coords, labels, term))
        outputs.append(clipped(raw))
    return outputs, clipped(to_input_size(coarse))
