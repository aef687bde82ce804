"""The INT8 model file: safetensors tensors + JSON metadata (no pickle anywhere).

Layout (DESIGN "INT8 model file"):

* every fake-quantized tensor ``<name>`` (a :mod:`~napari_adaqat.model.qat` module's weight, and
  its bias with ``quantize_extra``) is stored INT8 (:mod:`.int8`: ``<name>.int8`` + ``<name>.scale``);
* every other state-dict tensor is FP32 (profile ``paper``) or FP16 (profile ``deploy``;
  buffers stay FP32); profile ``fp32`` stores no INT8 at all (FP32 baselines, Stage 1);
* the safetensors header ``__metadata__`` holds one key ``"adaqat"``: a JSON string with
  ``format="adaqat-model"``, ``format_version``, ``profile``, ``spec``, ``int8_layers``,
  ``int8_tensors``, ``qat``, ``preprocessing`` and the caller's provenance.

Adapters are folded into ``qkv`` before writing, so the file holds a plain SAM state dict.
:func:`load_model_file` is the one loader of these files: INT8 encoder Linears either stay INT8 in
memory (:class:`~napari_adaqat.model.int8_runtime.Int8Linear`, what the app runs) or are dequantized
into a plain FP32 SAM (for training and for stock ``segment_anything``); both give the same weights.
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
from napari_adaqat.model.build import (ModelLoadError, SamSpec, build_image_encoder, build_sam, check_state_keys,
                                       spec_from_metadata)
from napari_adaqat.model.formats.container import META_KEY, read_adaqat_metadata, read_tensors, write_safetensors
from napari_adaqat.model.formats.int8 import int8_names, pack_int8, unpack_int8
from napari_adaqat.model.int8_runtime import Int8Linear
from napari_adaqat.model.qat import fake_quant_int8, qat_summary, quantized_modules

__all__ = ["PROFILES", "FORMAT", "FORMAT_VERSION", "export_model", "read_model_metadata", "load_model_file"]

PROFILES = ("paper", "deploy", "fp32")
FORMAT = "adaqat-model"
FORMAT_VERSION = 1
RESERVED_KEYS = ("format", "format_version", "profile", "spec", "int8_layers", "int8_tensors")


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
            tensors.update(pack_int8(key, w))
            int8_tensors.append(key)
            int8_params += w.numel()
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


def _int8_linears(sam: nn.Module, names: list[str]) -> frozenset[str]:
    """Weights of image-encoder ``nn.Linear`` layers stored as INT8 (kept INT8 in memory)."""
    linears = {n for n, m in sam.named_modules() if isinstance(m, nn.Linear) and n.startswith("image_encoder.")}
    return frozenset(n for n in names if n.endswith(".weight") and n[: -len(".weight")] in linears)


def _empty_sam(path: Path, spec: SamSpec) -> Sam:
    """The spec's SAM with its image encoder (the bulk) on the ``meta`` device: no FP32 copy is allocated
    before the file's tensors are assigned; the caller's random seed does not move."""
    try:
        # only the encoder on the meta device: building the prompt encoder there would import
        # torch._dynamo (its meta randn is a dynamo-disabled ref: +155 MB RSS, +1 s)
        with torch.device("meta"):
            encoder = build_image_encoder(spec)
        with torch.random.fork_rng(devices=[]):
            return build_sam(spec, image_encoder=encoder)
    except Exception as exc:  # a spec that passed the checks but cannot be built
        raise ModelLoadError(f"{path}: cannot build the model described by its spec: {exc}") from None


def load_model_file(path: str | Path, device: str | torch.device = "cpu", *, keep_int8: bool = False,
                    int8_matmul: bool = False) -> Sam:
    """Load a model file for inference: a Sam in eval mode with ``sam.spec`` and ``sam.meta`` (the
    validated metadata, :func:`read_model_metadata`).

    Tensor names and shapes must match the model built from the stored spec (one-line errors).
    ``keep_int8``: image-encoder Linears stored as INT8 stay INT8 in memory
    (:class:`~napari_adaqat.model.int8_runtime.Int8Linear`, dequantized per call, the same results;
    no gradients), computed as INT8 GEMMs with ``int8_matmul`` (approximate, faster with VNNI).
    Otherwise every INT8 tensor is dequantized (``w = q * scale``) into a plain FP32 SAM, and FP16
    tensors are cast back to FP32.
    """
    path = Path(path)
    meta = read_model_metadata(path)
    spec = spec_from_metadata(path, meta.get("spec"))
    tensors = read_tensors(path)
    int8 = int8_names(tensors)
    if int8 != sorted(meta.get("int8_tensors", [])):
        raise ModelLoadError(f"{path}: int8 tensors in the file do not match its metadata")
    sam = _empty_sam(path, spec)
    state, kept = unpack_int8(path, tensors, _int8_linears(sam, int8) if keep_int8 else frozenset())
    check_state_keys(path, sam.state_dict(), {**state, **{k: q for k, (q, _s) in kept.items()}})
    for name, (q, s) in kept.items():
        module_name = name[: -len(".weight")]
        bias = state.pop(module_name + ".bias", None)
        parent, _, child = module_name.rpartition(".")
        setattr(sam.get_submodule(parent), child, Int8Linear(q, s, bias, int8_matmul))
    sam.load_state_dict(state, strict=False, assign=True)
    if keep_int8:
        sam.requires_grad_(False)
    sam.spec = spec  # type: ignore[attr-defined]
    sam.meta = meta  # type: ignore[attr-defined]
    return sam.to(device).eval()
