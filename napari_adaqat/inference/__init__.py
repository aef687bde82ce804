"""Inference: the box predictor (embed once, prompt many), the one engine for model + baseline +
SSIM/ΔSSIM maps, mask clean-up and folder segmentation.  Names load on first use."""
from napari_adaqat._lazy import lazy_exports

__all__ = ["BoxPredictor", "EmbeddingCache", "Engine", "ModelRef", "Prediction", "ResultRow", "SegmentResult",
           "clean_lung_mask", "model_ref", "segment_files"]
__getattr__, __dir__ = lazy_exports(__name__, {
    **{n: f".predictor:{n}" for n in ("BoxPredictor", "EmbeddingCache", "Prediction")},
    **{n: f".engine:{n}" for n in ("Engine", "ModelRef", "SegmentResult", "model_ref")},
    **{n: f".batch:{n}" for n in ("ResultRow", "segment_files")},
    "clean_lung_mask": ".postprocess:clean_lung_mask",
})
