"""The model-file formats, one home: nothing is ever unpickled.

* :mod:`.container` -- the safetensors rules of every file (header checks, ``"adaqat"`` JSON metadata,
  one-line errors, atomic writes)
* :mod:`.int8` -- the INT8 tensor layout (``<name>.int8`` + ``<name>.scale``): one pack, one unpack
  with its validation
* :mod:`.model_file` -- INT8/FP32 model files: :func:`export_model` and the one loader
  :func:`load_model_file`
* :mod:`.checkpoint` -- training checkpoints (model + optimizer, resumable)

Official SAM ``.pth`` checkpoints are read by :mod:`napari_adaqat.model.build`;
:func:`napari_adaqat.model.loading.load_model` opens any of them.  Every loader returns the model with
its metadata as ``sam.meta``.
"""
