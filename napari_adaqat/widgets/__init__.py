"""Thin napari docks over the core: Segment (box → mask + trust maps, via the inference engine), Batch
(whole folders, as ``adaqat segment``) and Train (``adaqat train`` / ``export`` as subprocesses).
Names load on first use; napari finds them through ``napari.yaml``."""
from napari_adaqat._lazy import lazy_exports

__all__ = ["BatchWidget", "SegmentWidget", "TrainWidget"]
__getattr__, __dir__ = lazy_exports(__name__, {"BatchWidget": ".batch:BatchWidget",
                                               "SegmentWidget": ".segment:SegmentWidget",
                                               "TrainWidget": ".train:TrainWidget"})
