"""Segmentation metrics (Dice, IoU, NSD, HD95), SSIM trust maps and paired statistics.

Pure numpy/scipy/scikit-image: importable without napari or Qt.
"""
from .overlap import dice, iou
from .ssim import TrustMaps, ssim_map, trust_maps
from .stats import (
    EQUIVALENCE_MARGIN, SegmentationScores, rank_biserial, score_masks, score_masks_at, summarize, tost_paired,
    wilcoxon_paired,
)
from .surface import boundary, hd95, nsd, surface_distances

__all__ = [
    "dice", "iou", "boundary", "surface_distances", "nsd", "hd95",
    "ssim_map", "TrustMaps", "trust_maps",
    "SegmentationScores", "rank_biserial", "score_masks", "score_masks_at", "wilcoxon_paired", "summarize",
    "EQUIVALENCE_MARGIN", "tost_paired",
]
