"""Thin napari docks over the core: Segment (box → mask + trust maps, via the inference engine) and
Train (runs ``adaqat train`` as a subprocess).  Names load on first use; napari finds them through
``napari.yaml``."""
from napari_adaqat._lazy import lazy_exports

__all__ = ["SegmentWidget", "TrainWidget"]
__getattr__, __dir__ = lazy_exports(__name__, {"SegmentWidget": ".segment:SegmentWidget",
                                               "TrainWidget": ".train:TrainWidget"})
