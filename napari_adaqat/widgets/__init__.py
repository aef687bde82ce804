"""Thin napari docks over the core: Segment (box → mask + trust maps, via the inference engine), Batch
(whole folders, as ``adaqat segment``), Annotate (a folder, film by film, into a dataset) and Train
(``adaqat train`` / ``export`` as subprocesses).
Names load on first use; napari finds them through ``napari.yaml``."""
from napari_adaqat._lazy import lazy_exports

__all__ = ["AnnotateWidget", "BatchWidget", "SegmentWidget", "TrainWidget"]
__getattr__, __dir__ = lazy_exports(__name__, {"AnnotateWidget": ".annotate:AnnotateWidget",
                                               "BatchWidget": ".batch:BatchWidget",
                                               "SegmentWidget": ".segment:SegmentWidget",
                                               "TrainWidget": ".train:TrainWidget"})
