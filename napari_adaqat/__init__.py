"""napari-adaqat: AdaLoRA-QAT lung segmentation for chest X-rays.

The public API, in three lines::

    from napari_adaqat import load_model, BoxPredictor
    predictor = BoxPredictor(load_model()[0])          # the bundled INT8 model, or load_model("file")
    mask = predictor.set_image("chest.png").predict([x0, y0, x1, y1]).masks[0]

``train(data=..., out=..., preset="paper")`` runs a training stage as ``adaqat train`` does, and
``evaluate(data, model, baseline, out_dir)`` writes the paper's statistics as ``adaqat evaluate``.
Names resolve on first use, so ``import napari_adaqat`` (what napari does to read the plugin
manifest) does not import torch.
"""
from napari_adaqat._lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["BoxPredictor", "Engine", "ModelRef", "SegmentResult", "TrainConfig", "evaluate", "load_model", "train"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "load_model": "napari_adaqat.model.loading:load_model",
    "BoxPredictor": "napari_adaqat.inference.predictor:BoxPredictor",
    "Engine": "napari_adaqat.inference.engine:Engine",
    "ModelRef": "napari_adaqat.inference.engine:ModelRef",
    "SegmentResult": "napari_adaqat.inference.engine:SegmentResult",
    "evaluate": "napari_adaqat.report.evaluate:evaluate",
    "TrainConfig": "napari_adaqat.train.config:TrainConfig",
    "train": "napari_adaqat.train",  # the subpackage is callable: train(...) runs one stage (train/__init__.py)
})
