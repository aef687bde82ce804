"""Segmentation losses and the batch Dice used for validation."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-6,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
    """1 − soft Dice with squared denominators (as MedSAM / MONAI ``squared_pred``).

    logits, target: (B, 1, H, W); the mean over the batch is returned (weighted by ``weight`` (B,)).
    """
    prob = torch.sigmoid(logits).flatten(1)
    target = target.flatten(1)
    inter = (prob * target).sum(1)
    denom = (prob * prob).sum(1) + (target * target).sum(1)
    return _mean(1 - (2 * inter + eps) / (denom + eps), weight)


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """BCE-with-logits + soft Dice; (B, 1, H, W) each; ``weight`` (B,): each sample's share (None: equal;
    all zero: a zero loss that still carries the graph)."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none").flatten(1).mean(1)
    return _mean(bce, weight) + soft_dice_loss(logits, target, weight=weight)


def _mean(per_sample: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """(B,) → the mean, or the ``weight``-weighted mean (B,)."""
    if weight is None:
        return per_sample.mean()
    weight = weight.to(per_sample)
    return (per_sample * weight).sum() / weight.sum().clamp(min=1.0)


def batch_dice(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Hard Dice per sample inside its valid (unpadded) region → (B,)."""
    scores = []
    for i in range(logits.shape[0]):
        h, w = int(valid[i, 0]), int(valid[i, 1])
        pred = logits[i, 0, :h, :w] > 0
        ref = target[i, 0, :h, :w] > 0.5
        total = pred.sum() + ref.sum()
        inter = (pred & ref).sum()
        scores.append(torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones((), device=logits.device)))
    return torch.stack(scores).float()
