"""Reports built on the model, inference and training layers: ``adaqat evaluate`` (the paper's
statistics over a dataset) and ``adaqat info`` (parameter budgets, file contents, compression).
Names load on first use."""
from napari_adaqat._lazy import lazy_exports

__all__ = ["evaluate", "file_report", "preset_report", "score_pair"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "evaluate": ".evaluate:evaluate", "score_pair": ".evaluate:score_pair",
    "file_report": ".model_info:file_report", "preset_report": ".model_info:preset_report",
})
