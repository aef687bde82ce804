"""napari-adaqat: AdaLoRA-QAT lung segmentation for chest X-rays.

The public API, in three lines::

    from napari_adaqat import open_model
    model = open_model()                                   # the bundled INT8 model; open_model("file", device="cpu")
    mask = model.segment("chest.png", [x0, y0, x1, y1])    # (H, W) bool, the same mask as `adaqat segment`

``open_model`` returns a :class:`Segmenter`, the one object that segments (the CLI and the docks use it
too): it cleans masks as ``adaqat segment`` does (two largest regions, holes filled);
``open_model(clean=False)`` or ``model.segment(..., clean=False)`` gives the raw mask, as ``--no-clean``.
``load_model(path)`` gives the bare SAM network with its metadata as ``sam.meta`` (for training or
stock ``segment_anything``); :class:`Engine` pairs a model with a baseline and the SSIM maps.
``model.set_image(image).predict(boxes=..., point_coords=..., point_labels=..., mask_input=...)`` takes SAM's
names and returns ``(mask, Prediction)``; ``Prediction.low_res_logits`` is the next call's ``mask_input``.
A Segmenter is shared by threads one call at a time (``with model.lock:`` around set_image + predict).

``train(data=..., out=..., preset="paper")`` runs a training stage as ``adaqat train`` does, and
``evaluate(data, model, baseline, out_dir)`` writes the paper's statistics as ``adaqat evaluate``.
Names resolve on first use, so ``import napari_adaqat`` (what napari does to read the plugin
manifest) does not import torch.
"""
from napari_adaqat._lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["BoxPredictor", "Engine", "ModelRef", "Prediction", "SegmentResult", "Segmenter", "TrainConfig", "evaluate",
           "load_model", "open_model", "train"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "open_model": "napari_adaqat.inference.segmenter:open_model",
    "Segmenter": "napari_adaqat.inference.segmenter:Segmenter",
    "load_model": "napari_adaqat.model.loading:load_model",
    "BoxPredictor": "napari_adaqat.inference.predictor:BoxPredictor",
    "Prediction": "napari_adaqat.inference.predictor:Prediction",
    "Engine": "napari_adaqat.inference.engine:Engine",
    "ModelRef": "napari_adaqat.inference.segmenter:ModelRef",
    "SegmentResult": "napari_adaqat.inference.engine:SegmentResult",
    "evaluate": "napari_adaqat.report.evaluate:evaluate",
    "TrainConfig": "napari_adaqat.train.config:TrainConfig",
    "train": "napari_adaqat.train",  # the subpackage is callable: train(...) runs one stage (train/__init__.py)
})
