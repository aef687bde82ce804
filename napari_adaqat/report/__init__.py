"""Reports built on the model, inference and training layers: ``adaqat evaluate`` (the paper's
statistics over a dataset) and ``adaqat info`` (parameter budgets, file contents, compression).
Names load on first use."""
from napari_adaqat._lazy import lazy_exports

# ``evaluate`` is the function ``napari_adaqat.evaluate`` (here, ``report.evaluate`` is its module)
__all__ = ["file_report", "preset_report", "score_pair", "write_report"]
__getattr__, __dir__ = lazy_exports(__name__, {
    "score_pair": ".scores:score_pair", "write_report": ".document:write_report",
    "file_report": ".model_info:file_report", "preset_report": ".model_info:preset_report",
})
