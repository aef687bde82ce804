"""The INT8 model file: safetensors tensors + JSON metadata (no pickle anywhere).

Layout (DESIGN "INT8 model file"):

* every fake-quantized tensor ``<name>`` (a :mod:`qat` module's weight, and its bias with
  ``quantize_extra``) is stored as ``<name>.int8`` (int8, same shape) and ``<name>.scale``
  (0-dim fp32), with ``int8 * scale`` equal bit-for-bit to the fake-quant tensor used in
  training;
* every other state-dict tensor is FP32 (profile ``paper``) or FP16 (profile ``deploy``;
  buffers stay FP32); profile ``fp32`` stores no INT8 at all (FP32 baselines, Stage 1);
* the safetensors header ``__metadata__`` holds one key ``"adaqat"``: a JSON string with
  ``format="adaqat-model"``, ``format_version``, ``profile``, ``spec``, ``int8_layers``,
  ``int8_tensors``, ``qat``, ``preprocessing`` and the caller's provenance.

Adapters are folded into ``qkv`` before writing, so the file holds a plain SAM state dict.
"""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import Sam
from torch import Tensor, nn

from napari_adaqat.model.adalora import adalora_modules, fold_adapters
from napari_adaqat.model.build import ModelLoadError, SamSpec, build_sam, load_state_strict, spec_from_metadata
from napari_adaqat.model.files import META_KEY, read_adaqat_metadata, read_tensors, write_safetensors
from napari_adaqat.model.qat import fake_quant_int8, qat_summary, quantize_tensor_int8, quantized_modules

__all__ = ["PROFILES", "FORMAT", "FORMAT_VERSION", "export_model", "read_model_metadata", "load_model_file"]

PROFILES = ("paper", "deploy", "fp32")
FORMAT = "adaqat-model"
FORMAT_VERSION = 1
RESERVED_KEYS = ("format", "format_version", "profile", "spec", "int8_layers", "int8_tensors")
_INT8, _SCALE = ".int8", ".scale"


def _json_default(obj: object) -> object:
    if isinstance(obj, Tensor):
        return obj.detach().cpu().tolist()
    if hasattr(obj, "tolist"):  # numpy arrays and scalars
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (Path, set, frozenset)):
        return str(obj) if isinstance(obj, Path) else sorted(obj)
    return str(obj)


def _prepare(sam: nn.Module) -> tuple[nn.Module, dict]:
    """Deep copy on the CPU with adapters folded; returns (copy, {module: rank mask list})."""
    model = copy.deepcopy(sam).to("cpu")
    ranks = {n: m.rank_mask.detach().cpu().tolist() for n, m in adalora_modules(model).items()}
    fold_adapters(model)
    return model, ranks


def _preprocessing(spec: SamSpec) -> dict:
    return {"image_size": spec.image_size, "pixel_mean": list(spec.pixel_mean), "pixel_std": list(spec.pixel_std),
            "resize": "longest_side", "gray_to_rgb": True, "pad": "bottom_right_zero"}


def _merge(meta: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if key in RESERVED_KEYS:
            raise ValueError(f"metadata key {key!r} is written by export_model and cannot be overridden")
        if isinstance(value, dict) and isinstance(meta.get(key), dict):
            meta[key] = {**meta[key], **value}
        else:
            meta[key] = value
    return meta


def export_model(sam: nn.Module, path: str | Path, *, profile: str = "paper", spec: SamSpec | None = None,
                 metadata: dict | None = None) -> dict:
    """Write ``sam`` (QAT or FP32, adapters possibly injected) as a model file; never mutates ``sam``.

    Returns a summary: ``path``, ``bytes``, ``profile``, ``n_int8_tensors``, ``int8_params``,
    ``float_params``, ``float_dtype``.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown export profile {profile!r}; choose one of {PROFILES}")
    spec = spec if spec is not None else getattr(sam, "spec", None)
    if not isinstance(spec, SamSpec):
        raise ValueError("export_model needs the model's SamSpec (spec=...)")
    model, ranks = _prepare(sam)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    buffers = {n for n, _ in model.named_buffers()}
    tensors: dict[str, Tensor] = {}
    int8_layers, int8_tensors = [], []
    int8_params = 0
    for name, module in quantized_modules(model).items():
        for tname in module.quantized_tensor_names():
            key = f"{name}.{tname}"
            w = state.pop(key)
            if profile == "fp32":  # the effective (fake-quant) weight, in fp32
                tensors[key] = fake_quant_int8(w.float()).contiguous()
                continue
            q, s = quantize_tensor_int8(w)
            tensors[key + _INT8], tensors[key + _SCALE] = q.contiguous(), s
            int8_tensors.append(key)
            int8_params += q.numel()
        if profile != "fp32":
            int8_layers.append(name)
    float_dtype = torch.float16 if profile == "deploy" else torch.float32
    float_params = 0
    for key, value in state.items():
        if value.is_floating_point():
            value = value.to(torch.float32 if key in buffers else float_dtype)
            float_params += value.numel()
        tensors[key] = value.contiguous().clone()
    qat = qat_summary(model)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "profile": profile, "spec": spec.to_dict(),
        "int8_layers": int8_layers, "int8_tensors": int8_tensors,
        "qat": {**qat, "scheme": "symmetric per-tensor int8, scale=max|w|/127, range [-127, 127]"},
        "preprocessing": _preprocessing(spec),
        "float_dtype": str(float_dtype).replace("torch.", ""),
    }
    if ranks:
        meta["rank_masks"] = ranks
    meta = _merge(meta, metadata or {})
    path = write_safetensors(path, tensors, meta, json_default=_json_default)
    return {"path": str(path), "bytes": path.stat().st_size, "profile": profile,
            "n_int8_tensors": len(int8_tensors), "int8_params": int8_params, "float_params": float_params,
            "float_dtype": meta["float_dtype"], "int8_layers": len(int8_layers)}


def read_model_metadata(path: str | Path) -> dict:
    """Validated ``adaqat`` metadata of a model file (no tensor is read, nothing unpickled).

    Raises :class:`ModelLoadError` (one line) for pickles/zip archives (checked on the
    leading bytes first), broken headers, and a missing/unknown format or version.
    """
    meta = read_adaqat_metadata(path)
    if meta is None:
        raise ModelLoadError(f"{path}: not an adaqat model file (no {META_KEY!r} metadata; format missing)")
    if meta.get("format") != FORMAT:
        found = meta.get("format")
        raise ModelLoadError(f"{path}: unknown model format {found!r} (expected {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: unsupported {FORMAT} version {meta.get('format_version')!r}"
                             f" (this napari-adaqat reads version {FORMAT_VERSION})")
    if meta.get("profile") not in PROFILES:
        raise ModelLoadError(f"{path}: unknown export profile {meta.get('profile')!r}")
    return meta


def _dequantize(path: Path, tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """File tensors -> fp32 state dict (``w = q * scale``) and the list of int8 tensor names."""
    state, int8 = {}, []
    for key, value in tensors.items():
        if key.endswith(_SCALE):
            if key[: -len(_SCALE)] + _INT8 not in tensors:
                raise ModelLoadError(f"{path}: scale {key} has no matching {_INT8} tensor")
            continue
        if key.endswith(_INT8):
            base = key[: -len(_INT8)]
            scale = tensors.get(base + _SCALE)
            if value.dtype != torch.int8 or scale is None or scale.numel() != 1 or scale.dtype != torch.float32:
                raise ModelLoadError(f"{path}: {key} needs int8 data and a one-element fp32 {base}{_SCALE}")
            state[base] = value.to(torch.float32) * scale.reshape(())
            int8.append(base)
        elif value.is_floating_point():
            state[key] = value.to(torch.float32)
        else:
            raise ModelLoadError(f"{path}: tensor {key} has unexpected dtype {value.dtype}")
    return state, int8


def load_model_file(path: str | Path, device: str | torch.device = "cpu") -> tuple[Sam, dict]:
    """Load a model file for inference: (Sam in eval mode with ``sam.spec``, metadata).

    Everything is validated before use (see :func:`read_model_metadata`); tensor names
    and shapes must match the model built from the stored spec.  INT8 tensors are
    dequantized to plain fp32 ``nn.Linear``/conv weights (``w = q * scale``): INT8
    kernels are not faster than FP32 on the target CPUs (AVX2 only), so INT8 buys disk
    and download size, not speed; FP16 tensors are cast back to fp32.
    """
    path = Path(path)
    meta = read_model_metadata(path)
    spec = spec_from_metadata(path, meta.get("spec"))
    state, int8 = _dequantize(path, read_tensors(path))
    if sorted(int8) != sorted(meta.get("int8_tensors", [])):
        raise ModelLoadError(f"{path}: int8 tensors in the file do not match its metadata")
    try:
        sam = build_sam(spec)
    except Exception as exc:  # a spec that passed the checks but cannot be built
        raise ModelLoadError(f"{path}: cannot build the model described by its spec: {exc}") from None
    load_state_strict(sam, state, str(path))
    sam.spec = spec  # type: ignore[attr-defined]
    return sam.to(device).eval(), meta
