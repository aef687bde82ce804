"""The model a training run starts from: Stage 1 (start weights + adapters) or Stage 2
(the Stage-1 model + INT8 fake quantization), with its trainable parameters set."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import Sam

from napari_adaqat.model.adalora import AdaLoRAConfig, adalora_modules
from napari_adaqat.model.build import add_refiner_clicks, attach_mask_refiner, build_sam, get_spec
from napari_adaqat.model.formats.checkpoint import describe_model, load_checkpoint_model
from napari_adaqat.model.loading import load_model
from napari_adaqat.model.logit_grid import FRESH_MODEL_OFFSET
from napari_adaqat.model.qat import apply_qat
from napari_adaqat.model.vote_unet import detach_vote_unet
from napari_adaqat.train.config import TrainConfig
from napari_adaqat.model.modes import add_adapters, set_stage1_trainable, set_stage2_trainable
from napari_adaqat.train.paths import run_paths
from napari_adaqat.train.preflight import start_checkpoint, start_weights_problem


def _start_weights(cfg: TrainConfig) -> tuple[Sam, dict]:
    sam, info = _load_start_weights(cfg)
    if cfg.mask_refiner and not hasattr(sam, "mask_refiner"):
        attach_mask_refiner(sam, cfg.mask_refiner, levels=cfg.mask_refiner_levels)
        info["mask_refiner_added"] = cfg.mask_refiner
    if cfg.refiner_clicks:
        if not hasattr(sam, "mask_refiner"):
            raise ValueError("refiner_clicks needs a model with a mask refiner (or mask_refiner: N to add one)")
        if add_refiner_clicks(sam):
            info["refiner_clicks_added"] = True
    return sam, info


def _load_start_weights(cfg: TrainConfig) -> tuple[Sam, dict]:
    if cfg.checkpoint is None:
        if problem := start_weights_problem(cfg):
            raise ValueError(problem)
        spec = dataclasses.replace(get_spec(cfg.model_type, cfg.image_size), logit_offset=FRESH_MODEL_OFFSET)
        return build_sam(spec), {"source": "random init"}
    sam = load_model(start_checkpoint(cfg.checkpoint), model_type=cfg.model_type, image_size=cfg.image_size)
    meta = sam.meta
    if cfg.image_size and sam.image_encoder.img_size != cfg.image_size:
        raise ValueError(f"{cfg.checkpoint}: trained at {sam.image_encoder.img_size} px; "
                         f"--image-size {cfg.image_size} is only supported for official .pth files")
    info = {"source": str(start_checkpoint(cfg.checkpoint)), "source_format": meta.get("format")}
    if detach_vote_unet(sam):  # it votes for the convention it was trained on, not the one this run teaches
        info["vote_unet_left_out"] = True
    if meta.get("model", {}).get("adalora"):
        info["adalora"] = meta["model"]["adalora"]
    return sam, info


@torch.no_grad()
def reset_mask_prompt(sam: Sam) -> None:
    """Make SAM's dense mask prompt start as 'no mask': the last 1x1 convolution of ``mask_downscaling`` gets
    zero weights and the no-mask embedding as its bias, so any ``mask_input`` embeds as no mask until training
    teaches the path (whose weights a box-only model never trained: random, they would shift every image token)."""
    encoder = sam.prompt_encoder
    last = encoder.mask_downscaling[-1]
    last.weight.zero_()
    last.bias.copy_(encoder.no_mask_embed.weight[0])


def build_stage1(cfg: TrainConfig) -> tuple[Sam, dict, dict]:
    """Start weights + adapters + trainable flags → (sam, model description, provenance)."""
    sam, provenance = _start_weights(cfg)
    existing = adalora_modules(sam)
    if existing:  # continue with the file's own adapters (its ranks and schedule)
        saved = provenance.pop("adalora", None)
        used = AdaLoRAConfig.from_dict(saved) if saved else cfg.adalora
    else:
        used = add_adapters(sam, cfg.mode, cfg.adalora)
    # what as_started() undoes to show the start model's own predictions (plain attributes: not saved)
    sam.fresh_adapters = [] if existing else list(adalora_modules(sam).values())  # type: ignore[assignment]
    sam.start_hidden = bool(cfg.reset_mask_prompt and cfg.click_rounds)  # type: ignore[assignment]
    if cfg.reset_mask_prompt:
        reset_mask_prompt(sam)
    set_stage1_trainable(sam, cfg.mode, cfg.train_prompt_encoder)
    for name, param in sam.named_parameters():
        if any(name.startswith(prefix) for prefix in cfg.freeze):
            param.requires_grad = False
    adalora_used = used if (existing or cfg.mode in ("adalora", "lora")) else None
    return sam, describe_model(sam.spec, adalora_used, None), provenance


@contextmanager
def as_started(sam: Sam) -> Iterator[bool]:
    """Within: ``sam`` predicts as its start file does (the adapters :func:`build_stage1` added, whose Λ starts at
    ``init_lambda``, switched off); yields False where it cannot (a mask prompt reset that clicks would read)."""
    fresh = list(getattr(sam, "fresh_adapters", []))
    saved = [module.lora_lambda.detach().clone() for module in fresh]
    with torch.no_grad():
        for module in fresh:
            module.lora_lambda.zero_()
    try:
        yield not getattr(sam, "start_hidden", False)
    finally:
        with torch.no_grad():
            for module, value in zip(fresh, saved):
                module.lora_lambda.copy_(value)


def build_stage2(cfg: TrainConfig) -> tuple[Sam, dict, dict]:
    """Stage-1 best checkpoint + INT8 fake quantization; rank masks stay frozen."""
    if not cfg.from_run and not cfg.checkpoint:
        raise ValueError("Stage 2 needs --from RUN1 (a Stage-1 run folder) or --checkpoint FILE")
    source = run_paths(cfg.from_run)["best"] if cfg.from_run else Path(cfg.checkpoint)
    if not source.is_file():
        raise ValueError(f"{source}: Stage-1 checkpoint not found")
    sam = load_checkpoint_model(source)
    qat = {"variant": cfg.qat.variant}
    if cfg.qat.quantize_extra:
        qat["quantize_extra"] = True
    layers = apply_qat(sam, **qat)
    set_stage2_trainable(sam, cfg.qat.trainable)
    adalora = sam.meta["model"].get("adalora")
    description = {**sam.meta["model"], "qat": qat}
    provenance = {"source": str(source), "stage1_metrics": sam.meta.get("metrics"), "quantized_layers": len(layers),
                  "adalora": adalora}
    return sam, description, provenance
