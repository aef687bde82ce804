"""Open any model the user can name: the bundled default, our safetensors files,
or an official SAM ``.pth`` checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

from segment_anything.modeling import Sam

from napari_adaqat.model.build import ModelLoadError, load_sam_checkpoint

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL = ASSETS_DIR / "default_int8.safetensors"
DEFAULT_BASELINE = ASSETS_DIR / "default_fp32.safetensors"


def default_model_path(baseline: bool = False) -> Path:
    path = DEFAULT_BASELINE if baseline else DEFAULT_MODEL
    if not path.is_file():
        raise ModelLoadError(f"the bundled default model is missing ({path}); reinstall napari-adaqat or pass --model")
    return path


def safetensors_metadata(path: str | Path) -> dict:
    """The ``__metadata__`` of a safetensors file, without loading tensors.

    Pickles and zip archives are refused by their leading bytes before anything is parsed.
    """
    from napari_adaqat.model.export import read_safetensors_header

    header = read_safetensors_header(path)
    meta = header.get("__metadata__", {})
    return meta if isinstance(meta, dict) else {}


def load_model(path: str | Path | None = None, *, model_type: str = "vit_b", image_size: int | None = None,
               baseline: bool = False, device: str = "cpu") -> tuple[Sam, dict]:
    """Load a model for inference; returns (sam in eval mode, metadata).

    ``path=None`` gives the bundled default (``baseline=True``: its FP32 Stage-1 baseline).
    ``.pth`` files are official SAM checkpoints of ``model_type``.
    """
    path = default_model_path(baseline) if path is None else Path(path)
    if path.suffix.lower() in (".pth", ".pt"):
        sam = load_sam_checkpoint(path, model_type, image_size)
        meta = {"format": "sam-checkpoint", "source": str(path), "spec": sam.spec.to_dict()}
        return sam.to(device).eval(), meta
    kind = _file_format(path)
    if kind == "adaqat-checkpoint":
        from napari_adaqat.model.checkpoint import load_checkpoint_model

        sam, meta = load_checkpoint_model(path)
    else:
        from napari_adaqat.model.export import load_model_file

        sam, meta = load_model_file(path)
    return sam.to(device).eval(), meta


def _file_format(path: Path) -> str:
    meta = safetensors_metadata(path)
    if "adaqat" in meta:
        try:
            described = json.loads(meta["adaqat"])
        except json.JSONDecodeError:
            raise ModelLoadError(f"{path}: metadata is not valid JSON") from None
        if not isinstance(described, dict):
            raise ModelLoadError(f"{path}: metadata is not a JSON object")
        return str(described.get("format", ""))
    return meta.get("format", "")
