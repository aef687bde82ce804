"""SAM networks, adapters, quantization and their files.  The names below load on first use.

Import order, lowest first (no module imports one below it in this list):

* :mod:`~napari_adaqat.model.spec`, :mod:`~napari_adaqat.model.adalora_config` -- ``SamSpec`` presets,
  ``ModelLoadError``, the adapters' settings: torch-free, so help texts and configs read them without torch
* :mod:`~napari_adaqat.model.build` -- building SAM, ``.pth`` loading
* :mod:`~napari_adaqat.model.device`, :mod:`~napari_adaqat.model.forward` -- device choice, batched forward passes
* :mod:`~napari_adaqat.model.adalora`, :mod:`~napari_adaqat.model.rank_allocator` -- AdaLoRA adapters, rank pruning
* :mod:`~napari_adaqat.model.qat` -- INT8 fake-quant modules (QAT)
* :mod:`~napari_adaqat.model.ptq`, :mod:`~napari_adaqat.model.compression`,
  :mod:`~napari_adaqat.model.quant_report` -- post-training quantization, compression figures, INT8 error statistics
* :mod:`~napari_adaqat.model.int8_runtime` -- ``Int8Linear``: INT8 weights kept INT8 in memory
* :mod:`~napari_adaqat.model.formats` -- the file formats, one home: safetensors container, INT8 layout,
  model files (export, the one loader), training checkpoints
* :mod:`~napari_adaqat.model.loading` -- ``load_model`` for any file and the bundled default model
  (the model comes back with its metadata as ``sam.meta``)
"""
from napari_adaqat._lazy import lazy_exports

_MODULES = {
    "build": ("ModelLoadError", "PRESETS", "SamSpec", "build_sam", "get_spec", "load_sam_checkpoint"),
    "device": ("DEVICES", "resolve_device"),
    "adalora": ("AdaLoRAConfig", "inject_adalora"),
    "qat": ("apply_qat",),
    "ptq": ("ptq_from_checkpoint",),
    "formats.model_file": ("export_model", "load_model_file", "read_model_metadata"),
    "loading": ("load_model", "resolve_model_path"),
}
__all__ = sorted(name for names in _MODULES.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, {n: f".{m}:{n}" for m, names in _MODULES.items() for n in names})
