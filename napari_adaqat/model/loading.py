"""Open any model the user can name: the bundled default, our safetensors files
(model files and training checkpoints), or an official SAM ``.pth`` checkpoint."""
from __future__ import annotations

from pathlib import Path

import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import Sam

from napari_adaqat.model.build import ModelLoadError, load_sam_checkpoint
from napari_adaqat.model.formats.checkpoint import FORMAT as CHECKPOINT_FORMAT
from napari_adaqat.model.formats.checkpoint import load_checkpoint_model
from napari_adaqat.model.formats.container import file_format
from napari_adaqat.model.formats.model_file import load_model_file

__all__ = ["ASSETS_DIR", "DEFAULT_MODEL", "DEFAULT_BASELINE", "is_bundled", "resolve_model_path", "load_model"]

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS_DIR / "default_int8.safetensors"
DEFAULT_BASELINE = ASSETS_DIR / "default_fp32.safetensors"


def is_bundled(path: str | Path | None) -> bool:
    """True when a model argument names the bundled model: ``None`` or ``"default"``."""
    return path is None or str(path) == "default"


def resolve_model_path(path: str | Path | None, baseline: bool = False) -> Path:
    """The file a model argument names: ``None`` or ``"default"`` is the bundled model
    (its FP32 Stage-1 baseline with ``baseline=True``); anything else is taken as a path."""
    if not is_bundled(path):
        if Path(path).is_dir():  # e.g. a folder named model.safetensors: never "file not found"
            own = Path(path) / ("baseline_fp32.safetensors" if baseline else "model_int8.safetensors")
            hint = f": {own}" if own.is_file() else " (a training run's: RUN/model_int8.safetensors)"
            raise ModelLoadError(f"{path}: is a folder, not a model file; give the .safetensors or .pth file in it"
                                 + hint)
        return Path(path)
    bundled = DEFAULT_BASELINE if baseline else DEFAULT_MODEL
    if not bundled.is_file():
        raise ModelLoadError(f"the bundled default model is missing ({bundled}); "
                             "reinstall napari-adaqat or pass --model")
    return bundled


def load_model(path: str | Path | None = None, *, model_type: str = "vit_b", image_size: int | None = None,
               baseline: bool = False, device: str = "cpu", keep_int8: bool = False,
               int8_matmul: bool = False) -> Sam:
    """Load a model: a Sam in eval mode on ``device``, with its metadata as ``sam.meta`` (a dict).

    ``path`` is resolved by :func:`resolve_model_path` (``None``/``"default"``: the bundled
    model).  ``.pth`` files are official SAM checkpoints of ``model_type``; safetensors
    files are dispatched on the format they declare.  ``keep_int8`` keeps a model file's INT8
    encoder weights INT8 in memory (:mod:`~napari_adaqat.model.int8_runtime`; same results, less
    memory, no gradients: what :func:`~napari_adaqat.inference.segmenter.open_model` uses); otherwise
    they are dequantized into a plain FP32 SAM.  ``int8_matmul`` (with ``keep_int8``) computes those
    layers as INT8 GEMMs: faster on CPUs with VNNI, approximate.
    """
    path = resolve_model_path(path, baseline)
    if path.suffix.lower() in (".pth", ".pt"):
        sam = load_sam_checkpoint(path, model_type, image_size)
        sam.meta = {"format": "sam-checkpoint", "source": str(path), "spec": sam.spec.to_dict()}
    elif file_format(path) == CHECKPOINT_FORMAT:
        sam = load_checkpoint_model(path)
    else:
        sam = load_model_file(path, keep_int8=keep_int8, int8_matmul=int8_matmul)
    return sam.to(device).eval()
