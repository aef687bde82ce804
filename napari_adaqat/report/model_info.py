"""What ``adaqat info`` reports: parameter budgets of presets and contents of files."""
from __future__ import annotations

import json
from pathlib import Path

from napari_adaqat.model.adalora import AdaLoRAConfig, adalora_modules, count_adapter_parameters
from napari_adaqat.model.build import build_sam, get_spec, parameter_breakdown
from napari_adaqat.model.compression import arithmetic_compression, file_compression
from napari_adaqat.model.loading import is_bundled, load_model, resolve_model_path
from napari_adaqat.model.qat import apply_qat
from napari_adaqat.report.quant_figures import quantization_report
from napari_adaqat.model.modes import add_adapters, set_stage1_trainable, set_stage2_trainable, trainable_count
from napari_adaqat.data.runs import CHAIN_FILE, run_paths

__all__ = ["preset_report", "file_report"]


def preset_report(name: str, mode: str | None = None, image_size: int | None = None,
                  config: AdaLoRAConfig | None = None) -> dict:
    """Parameter budget of a preset in a training mode, without training (random weights)."""
    spec = get_spec(name, image_size)
    sam = build_sam(spec)
    report: dict = {"preset": name, "image_size": spec.image_size, "parameters": parameter_breakdown(sam)}
    if mode is None:
        return report
    config = config or AdaLoRAConfig()
    stage1_mode = "adalora" if mode == "qat" else mode
    used = add_adapters(sam, stage1_mode, config)
    set_stage1_trainable(sam, stage1_mode)
    adapters = adalora_modules(sam)
    nominal = trainable_count(sam)
    report["mode"] = mode
    report["total_with_adapters"] = sum(p.numel() for p in sam.parameters())
    if adapters:
        counts = count_adapter_parameters(sam)
        r_eff = used.r_init if used.fixed_rank else used.r_target
        per_module = sum(m.n_parts * r_eff * (m.d_in + m.d_out_part + 1) for m in adapters.values())
        report["adapters"] = {"modules": len(adapters), "r_init": used.r_init, "r_target": r_eff,
                              "nominal": counts["nominal"], "effective_after_pruning": per_module}
        effective = nominal - counts["nominal"] + per_module
    else:
        effective = nominal
    report["trainable"] = {"nominal": nominal, "effective": effective,
                           "fraction_of_total": round(nominal / report["parameters"]["total"], 5)}
    if mode == "qat":
        layers = apply_qat(sam, "full")
        report["quantized_linears"] = len(layers)
        report["prompt_encoder_linears"] = 0
        for preset in ("paper", "authors"):
            set_stage2_trainable(sam, preset)
            report[f"stage2_trainable_{preset}"] = trainable_count(sam)
        report["compression"] = arithmetic_compression(spec)
    return report


def file_report(path: str | Path, model_type: str = "vit_b", quant_report_dir: str | None = None) -> dict:
    """Report on a model file, a checkpoint, a run folder (its best checkpoint; a ``--stage all`` run's: its
    ``model_int8.safetensors``), or ``"default"`` (the bundled model)."""
    path = resolve_model_path(path) if is_bundled(path) else Path(path)
    chain = path.is_dir() and (path / CHAIN_FILE).is_file()  # (a --stage all run)
    if chain and (path / "model_int8.safetensors").is_file():
        path = path / "model_int8.safetensors"  # a --stage all run's folder: its model (newcomer QA: refused)
    elif path.is_dir() and (run_paths(path)["config"].is_file() or run_paths(path)["best"].is_file()):  # a run
        path = run_paths(path)["best"]
    sam = load_model(path, model_type=model_type)  # any other folder: "is a folder, not a model file"
    meta = sam.meta
    spec = sam.spec  # the file's own architecture (a run's train_config says "vit_b" when its start file set it)
    report: dict = {"file": str(path), "bytes": path.stat().st_size, "format": meta.get("format"),
                    "architecture": {"name": spec.name, "image_size": spec.image_size,
                                     "mask_refiner": getattr(spec, "mask_refiner", 0)},
                    "parameters": parameter_breakdown(sam)}
    adapters = adalora_modules(sam)
    if adapters:
        counts = count_adapter_parameters(sam)
        report["adapters"] = {"nominal": counts["nominal"], "effective": counts["effective"],
                              "ranks": counts["per_module_rank"]}
    if meta.get("format") == "adaqat-checkpoint":
        report["epoch"] = meta.get("epoch")
        report["metrics"] = meta.get("metrics")
        report["trainable_in_run"] = {"stage": meta.get("stage"), "mode": meta.get("config", {}).get("mode")}
    for key in ("profile", "int8_layers", "vote", "provenance", "metrics"):  # vote: what vote_file recorded
        if key in meta and key not in report:
            value = meta[key]
            report[key] = len(value) if key == "int8_layers" else value
    try:
        report["compression"] = file_compression(path, sam.spec)
        report["paper_arithmetic_compression"] = _own_arithmetic(sam.spec, meta, adapters)
    except (ValueError, KeyError) as exc:
        report["compression"] = {"error": str(exc)}
    if quant_report_dir:
        report["quant_report"] = quantization_report(sam, quant_report_dir)
    return json.loads(json.dumps(report, default=str))


def _own_arithmetic(spec, meta: dict, adapters: dict) -> dict:
    """The paper's size arithmetic for this file: its QAT variant ("decoder" when every INT8 Linear is the mask
    decoder's) and its adapters' nominal rank (0 when it holds none: merged into the weights, or never trained)."""
    int8 = meta.get("int8_layers") or []
    variant = "decoder" if int8 and all(str(n).startswith("mask_decoder.") for n in int8) else "full"
    r_init = max((m.r for m in adapters.values()), default=0)
    result = arithmetic_compression(spec, r_init=r_init, variant=variant)
    quantized = f"QAT variant {variant}" if int8 else "an FP32 file, counted as if fully quantized"
    result["basis"] += f" (this file: {quantized}, " + (
        f"adapters at rank {r_init})" if r_init else "no adapters in the file)")
    return result
