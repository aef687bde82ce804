"""Inference: the box predictor (embed once, prompt many), :func:`open_model` and its :class:`Segmenter`
(the one object that segments), the engine for model + baseline + SSIM/ΔSSIM maps, mask clean-up and
folder segmentation.  Names load on first use."""
from napari_adaqat._lazy import lazy_exports

__all__ = ["BoxPredictor", "EmbeddingCache", "Engine", "ModelRef", "Prediction", "ResultRow", "SegmentResult",
           "Segmenter", "clean_lung_mask", "model_ref", "open_model", "segment_files"]
__getattr__, __dir__ = lazy_exports(__name__, {
    **{n: f".predictor:{n}" for n in ("BoxPredictor", "EmbeddingCache", "Prediction")},
    **{n: f".segmenter:{n}" for n in ("ModelRef", "Segmenter", "model_ref", "open_model")},
    **{n: f".engine:{n}" for n in ("Engine", "SegmentResult")},
    **{n: f".batch:{n}" for n in ("ResultRow", "segment_files")},
    "clean_lung_mask": ".postprocess:clean_lung_mask",
})
