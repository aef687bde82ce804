"""The Segment dock's engine: model loading/caching, embedding, prediction and trust maps.

No napari or Qt here: the dock runs these functions in worker threads, tests call them directly.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from napari_adaqat.inference.postprocess import clean_lung_mask
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.metrics import dice, ssim_map, trust_maps


@dataclass(frozen=True)
class ModelSpec:
    """Which model to use: ``path=None`` is the bundled default (``baseline``: its FP32 twin)."""

    path: Optional[Path] = None
    baseline: bool = False
    model_type: str = "vit_b"  # architecture of a ``.pth`` SAM checkpoint

    def resolved(self) -> Path:
        """The file this spec names (the bundled default looked up at call time)."""
        from napari_adaqat.model import loading

        if self.path is not None:
            return Path(self.path)
        return loading.DEFAULT_BASELINE if self.baseline else loading.DEFAULT_MODEL

    def label(self) -> str:
        if self.path is not None:
            return Path(self.path).name
        return "bundled FP32 baseline" if self.baseline else "bundled INT8 model"


@dataclass
class SegmentResult:
    """Everything one box prompt produced, at the image slice's resolution."""

    box: np.ndarray  # (4,) xyxy pixels
    slice_index: Optional[int]  # plane of a 3-D stack, None for 2-D images
    mask: np.ndarray  # (H, W) bool
    p_model: np.ndarray  # (H, W) float32
    p_baseline: Optional[np.ndarray]
    ssim: Optional[np.ndarray]  # (H, W) float32 or None
    delta: Optional[np.ndarray]
    ssim_mean: Optional[float]
    delta_mean: Optional[float]
    has_reference: bool
    dice: Optional[float]
    latency_ms: float  # model prompt latency (embedding cached)
    iou_pred: float

    def summary(self) -> str:
        """The dock's status: latency and area, then SSIM/ΔSSIM, then Dice (one line each)."""
        lines = [f"latency {self.latency_ms:.0f} ms · area {int(self.mask.sum())} px"]
        if self.ssim_mean is not None:
            kind = "SSIM vs reference" if self.has_reference else "SSIM model~baseline"
            line = f"{kind} {self.ssim_mean:.3f}"
            if self.has_reference and self.delta_mean is not None and self.p_baseline is not None:
                line += f" · ΔSSIM {self.delta_mean:+.3f}"
            lines.append(line)
        if self.dice is not None:
            lines.append(f"Dice vs reference {self.dice:.3f}")
        return "\n".join(lines)


class Engine:
    """Keeps the loaded models (the model and its baseline) between prompts.

    A model is keyed by its file's identity (path, size, modification time) and device, so a
    file rewritten in place (e.g. by a training run) is loaded again; only the ``MAX_LOADED``
    most recently used models stay in memory.
    """

    MAX_LOADED = 2

    def __init__(self) -> None:
        self._predictors: OrderedDict[tuple, BoxPredictor] = OrderedDict()

    @staticmethod
    def _key(path: Path, spec: ModelSpec, device: str) -> tuple:
        try:
            stat = path.stat()
            identity = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            identity = None  # load_model gives the one-line error
        arch = spec.model_type if path.suffix.lower() in (".pth", ".pt") else None  # ours carry their config
        return (str(path.resolve()), identity, arch, device)

    def predictor(self, spec: ModelSpec, device: str) -> BoxPredictor:
        """Load (once per file version) and return the predictor for ``spec`` on ``device``."""
        from napari_adaqat.model.loading import load_model

        path = spec.resolved()
        key = self._key(path, spec, device)
        if key not in self._predictors:
            sam, _meta = load_model(path, model_type=spec.model_type, device=device)
            self._predictors[key] = BoxPredictor(sam, device)
            while len(self._predictors) > self.MAX_LOADED:
                self._predictors.popitem(last=False)  # least recently used
        self._predictors.move_to_end(key)
        return self._predictors[key]

    def embed(self, image: np.ndarray, model: ModelSpec, baseline: Optional[ModelSpec], device: str) -> float:
        """Compute (or fetch cached) embeddings of ``image`` for both models; return seconds."""
        t0 = time.perf_counter()
        self.predictor(model, device).set_image(image)
        if baseline is not None:
            self.predictor(baseline, device).set_image(image)
        return time.perf_counter() - t0

    def predict(self, image: np.ndarray, box: np.ndarray, model: ModelSpec, device: str,
                reference: Optional[np.ndarray] = None, slice_index: Optional[int] = None,
                clean: bool = True) -> SegmentResult:
        """Phase 1, fast: prompt ``image`` (H, W) with one xyxy ``box``; the mask and its Dice.

        ``clean`` keeps the two largest regions and fills holes (the maps use the raw probabilities)."""
        if reference is not None and reference.shape != image.shape:
            raise ValueError(f"reference layer has shape {reference.shape}, the image slice {image.shape}")
        main = self.predictor(model, device)
        main.set_image(image)  # cached after the first call
        t0 = time.perf_counter()
        pred = main.predict(box)
        latency = (time.perf_counter() - t0) * 1000.0
        mask = clean_lung_mask(pred.masks[0]) if clean else pred.masks[0]
        score = float(dice(mask, reference != 0)) if reference is not None else None
        return SegmentResult(
            box=np.asarray(box, dtype=np.float64), slice_index=slice_index, mask=mask, p_model=pred.probs[0],
            p_baseline=None, ssim=None, delta=None, ssim_mean=None, delta_mean=None,
            has_reference=reference is not None, dice=score, latency_ms=latency, iou_pred=float(pred.iou[0]),
        )

    def add_maps(self, result: SegmentResult, image: np.ndarray, baseline: Optional[ModelSpec], device: str,
                 reference: Optional[np.ndarray] = None) -> SegmentResult:
        """Phase 2, slower (SSIM is ~20-40 ms per map on 512²): the baseline's prediction and the
        SSIM/ΔSSIM maps of DESIGN.md, filled into ``result`` (returned)."""
        if baseline is not None:
            base = self.predictor(baseline, device)
            base.set_image(image)
            result.p_baseline = base.predict(result.box).probs[0]
            maps = trust_maps(result.p_model, result.p_baseline, reference)
            result.ssim, result.delta = maps.ssim, maps.delta
            result.ssim_mean, result.delta_mean = maps.ssim_mean, maps.delta_mean
        elif reference is not None:
            result.ssim_mean, result.ssim = ssim_map(result.p_model, (reference != 0).astype(np.float32))
        return result

    def segment(self, image: np.ndarray, box: np.ndarray, model: ModelSpec, baseline: Optional[ModelSpec],
                device: str, reference: Optional[np.ndarray] = None,
                slice_index: Optional[int] = None, clean: bool = True) -> SegmentResult:
        """Both phases at once: :meth:`predict`, then :meth:`add_maps`."""
        result = self.predict(image, box, model, device, reference, slice_index, clean)
        return self.add_maps(result, image, baseline, device, reference)
