"""Training checkpoints: one safetensors file holding the model (with adapters and
QAT wrappers as they are), optionally the optimizer state, and JSON metadata.

One file keeps a checkpoint atomic (:func:`~napari_adaqat.model.formats.container.write_safetensors`).
Nothing is pickled: the optimizer's tensors are flattened to ``optim.<i>.<key>``
and its param groups go into the JSON.
"""
from __future__ import annotations

from pathlib import Path

import torch
import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import Sam

from napari_adaqat.model.adalora import AdaLoRAConfig, inject_adalora
from napari_adaqat.model.build import ModelLoadError, SamSpec, build_sam, load_state_strict, spec_from_metadata
from napari_adaqat.model.formats.container import read_adaqat_metadata, read_tensors, write_safetensors
from napari_adaqat.model.qat import apply_qat

__all__ = ["FORMAT", "describe_model", "assemble_model", "save_checkpoint", "read_checkpoint", "split_optimizer",
           "optimizer_state", "flatten_optimizer", "load_checkpoint_model"]

FORMAT = "adaqat-checkpoint"
OPTIM_PREFIX = "optim."


def describe_model(spec: SamSpec, adalora: AdaLoRAConfig | None, qat: dict | None) -> dict:
    """JSON description from which :func:`assemble_model` rebuilds the architecture."""
    return {"spec": spec.to_dict(), "adalora": adalora.to_dict() if adalora else None, "qat": qat}


def assemble_model(description: dict) -> Sam:
    """Build the architecture of a description (random weights): SAM, adapters, QAT wrappers."""
    sam = build_sam(SamSpec.from_dict(description["spec"]))
    if description.get("adalora"):
        inject_adalora(sam.image_encoder, AdaLoRAConfig.from_dict(description["adalora"]))
    qat = description.get("qat")
    if qat:
        options = ("quantize_prompt_encoder", "quantize_extra")
        apply_qat(sam, qat.get("variant", "full"), **{k: bool(qat[k]) for k in options if k in qat})
    return sam


def save_checkpoint(path: str | Path, sam: Sam, description: dict, info: dict,
                    optimizer: torch.optim.Optimizer | None = None) -> None:
    """Write model (+ optimizer) tensors and ``{format, model: description, **info}`` atomically."""
    tensors = dict(sam.state_dict())
    meta = {"format": FORMAT, "format_version": 1, "model": description, **info}
    if optimizer is not None:
        optim_tensors, meta["optimizer_groups"] = flatten_optimizer(optimizer)
        tensors.update(optim_tensors)
    write_safetensors(path, tensors, meta)


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """(``optim.<i>.<key>`` tensors, JSON param groups) of an optimizer's state: what a safetensors file holds
    of it (the inverse of :func:`split_optimizer` + :func:`optimizer_state`)."""
    state = optimizer.state_dict()
    tensors = {f"{OPTIM_PREFIX}{idx}.{key}": torch.as_tensor(value)
               for idx, entries in state["state"].items() for key, value in entries.items()}
    return tensors, [dict(g) for g in state["param_groups"]]


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(all tensors, metadata) of a checkpoint, refusing anything that is not one."""
    path = Path(path)
    meta = read_adaqat_metadata(path) or {}
    if meta.get("format") != FORMAT or not isinstance(meta.get("model"), dict):
        raise ModelLoadError(f"{path}: not an adaqat training checkpoint")
    spec_from_metadata(path, meta["model"].get("spec"))  # refuse a bad spec before anything is built
    for part in ("adalora", "qat"):
        if meta["model"].get(part) is not None and not isinstance(meta["model"][part], dict):
            raise ModelLoadError(f"{path}: invalid {part!r} description in metadata")
    return read_tensors(path), meta


def split_optimizer(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    model = {k: v for k, v in tensors.items() if not k.startswith(OPTIM_PREFIX)}
    optim = {k[len(OPTIM_PREFIX):]: v for k, v in tensors.items() if k.startswith(OPTIM_PREFIX)}
    return model, optim


def optimizer_state(optim_tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    """Rebuild an ``Optimizer.state_dict()`` from flattened tensors and JSON groups."""
    state: dict[int, dict] = {}
    for key, value in optim_tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": groups}


def load_checkpoint_model(path: str | Path) -> Sam:
    """Rebuild the model of a checkpoint and load its weights: a Sam in eval mode with ``sam.meta``
    (the checkpoint's metadata)."""
    tensors, meta = read_checkpoint(path)
    sam = assemble_model(meta["model"])
    model_tensors, _ = split_optimizer(tensors)
    load_state_strict(sam, model_tensors, str(path))
    sam.meta = meta  # type: ignore[attr-defined]
    return sam.eval()
