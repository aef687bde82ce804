"""Open any model the user can name: the bundled default, our safetensors files,
or an official SAM ``.pth`` checkpoint."""
from __future__ import annotations

import json
import struct
from pathlib import Path

from segment_anything.modeling import Sam

from napari_adaqat.model.build import ModelLoadError, load_sam_checkpoint

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
DEFAULT_MODEL = DATA_DIR / "default_int8.safetensors"
DEFAULT_BASELINE = DATA_DIR / "default_fp32.safetensors"


def default_model_path(baseline: bool = False) -> Path:
    path = DEFAULT_BASELINE if baseline else DEFAULT_MODEL
    if not path.is_file():
        raise ModelLoadError(f"the bundled default model is missing ({path}); reinstall napari-adaqat or pass --model")
    return path


def safetensors_metadata(path: str | Path) -> dict:
    """Read the JSON header's ``__metadata__`` of a safetensors file without loading tensors.

    Refuses pickles/zip archives by their leading bytes before anything is parsed.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    with path.open("rb") as fh:
        head = fh.read(8)
        if head[:1] == b"\x80" or head[:2] == b"PK":
            raise ModelLoadError(f"{path}: is a pickle/zip file; only safetensors model files are accepted")
        if len(head) < 8:
            raise ModelLoadError(f"{path}: truncated or empty file")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000 or n > path.stat().st_size - 8:
            raise ModelLoadError(f"{path}: not a safetensors file (bad header length)")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelLoadError(f"{path}: not a safetensors file (unreadable header)") from None
    return header.get("__metadata__", {}) if isinstance(header, dict) else {}


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
            return json.loads(meta["adaqat"]).get("format", "")
        except json.JSONDecodeError:
            raise ModelLoadError(f"{path}: metadata is not valid JSON") from None
    return meta.get("format", "")
