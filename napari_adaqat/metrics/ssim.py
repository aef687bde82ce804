"""SSIM maps and the ΔSSIM trust overlay (DESIGN.md, "SSIM and ΔSSIM").

Inputs are soft probability maps, float (H, W) in [0, 1], at image resolution.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from skimage.metrics import structural_similarity


def _win_size(shape: tuple[int, ...]) -> int:
    """skimage's default 7, or the largest odd size that fits a smaller image."""
    side = min(shape)
    if side < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {shape}")
    return min(7, side if side % 2 else side - 1)


def ssim_map(a: np.ndarray, b: np.ndarray) -> tuple[float, np.ndarray]:
    """SSIM of two (H, W) maps with data_range=1 -> (mean, float32 map (H, W)).

    The mean is skimage's (the map cropped by half a window at the borders).  skimage computes in
    float32 here (it keeps float32 inputs): on real probability maps the mean agrees with float64 to
    1e-7 and each pixel to 3e-4 (clipped to SSIM's range [-1, 1]: float32 variances of near-constant
    windows can round past 1), while a 3000² film's map takes a quarter of the time (0.56 s against
    1.1-2.5 s here) and half the memory.
    """
    a32 = np.asarray(a, dtype=np.float32)
    b32 = np.asarray(b, dtype=np.float32)
    if a32.shape != b32.shape or a32.ndim != 2:
        raise ValueError(f"expected two (H, W) maps of equal shape, got {a32.shape}, {b32.shape}")
    mean, full = structural_similarity(
        a32, b32, full=True, data_range=1.0, win_size=_win_size(a32.shape)
    )
    return float(mean), np.clip(full.astype(np.float32, copy=False), -1.0, 1.0)


@dataclass
class TrustMaps:
    """Per-pixel trust overlays, all (H, W) float32.

    ssim:  with a reference SSIM(model, ref); without, SSIM(model, baseline) (agreement).
    delta: with a reference SSIM(model, ref) - SSIM(base, ref) (>0: model better). In practice
           within [-1, 1]; not clipped, so it can reach [-2, 2] where one map is anti-correlated
           with the reference. Without a reference, the signed mask difference in {-1, 0, 1}:
           +1 only the model, -1 only the baseline, 0 agree.
    """

    ssim: np.ndarray
    delta: np.ndarray
    ssim_mean: float
    delta_mean: float
    has_reference: bool


def trust_maps(
    p_model: np.ndarray,
    p_baseline: np.ndarray,
    reference: Optional[np.ndarray] = None,
    threshold: float = 0.5,
) -> TrustMaps:
    """Build the SSIM / ΔSSIM maps for a model against its baseline.

    p_model, p_baseline: probability maps (H, W) in [0, 1].
    reference: optional bool/label mask (H, W); any non-zero label counts as foreground.
    threshold: masks are ``p > threshold`` (used only without a reference).
    """
    pm = np.asarray(p_model, dtype=np.float32)
    pb = np.asarray(p_baseline, dtype=np.float32)
    if pm.shape != pb.shape:
        raise ValueError(f"shape mismatch: model {pm.shape} vs baseline {pb.shape}")
    if reference is not None:
        ref = (np.asarray(reference) != 0).astype(np.float32)
        if ref.shape != pm.shape:
            raise ValueError(f"shape mismatch: reference {ref.shape} vs maps {pm.shape}")
        m_mean, m_map = ssim_map(pm, ref)
        b_mean, b_map = ssim_map(pb, ref)
        return TrustMaps(
            ssim=m_map,
            delta=(m_map - b_map).astype(np.float32),
            ssim_mean=m_mean,
            delta_mean=m_mean - b_mean,
            has_reference=True,
        )
    a_mean, a_map = ssim_map(pm, pb)
    delta = (pm > threshold).astype(np.float32) - (pb > threshold).astype(np.float32)
    return TrustMaps(
        ssim=a_map,
        delta=delta,
        ssim_mean=a_mean,
        delta_mean=float(delta.mean()),
        has_reference=False,
    )
