"""Which parameters train in each mode, and their optimizer groups.

Stage 1 modes: ``adalora`` (the paper), ``decoder`` (decoder-only baseline),
``lora`` (fixed rank ablation), ``full`` (everything; also trains from scratch).
Stage 2 trainable choices (``TrainConfig.qat.trainable``): ``paper`` (only Λ) and
``authors`` (P, Q, decoder, prompt encoder).
"""
from __future__ import annotations

import dataclasses

import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import Sam
from torch import nn

from napari_adaqat.model.adalora import AdaLoRAConfig, adalora_modules, inject_adalora
from napari_adaqat.train.config import STAGE2_TRAINABLE, TRAIN_MODES


def add_adapters(sam: Sam, mode: str, config: AdaLoRAConfig) -> AdaLoRAConfig | None:
    """Inject adapters for ``adalora``/``lora`` (lora = fixed rank, no pruning); returns the config used."""
    if mode not in ("adalora", "lora"):
        return None
    if adalora_modules(sam):
        return config
    if mode == "lora":
        config = dataclasses.replace(config, fixed_rank=True, ortho_weight=0.0, r_target=config.r_init)
    inject_adalora(sam.image_encoder, config)
    return config


def _is_adapter(name: str) -> bool:
    return ".lora_" in name or name.startswith("lora_")


def parameter_role(name: str) -> str:
    """'adapter', 'decoder', 'prompt' or 'encoder' for a parameter name of a Sam."""
    if _is_adapter(name):
        return "adapter"
    if name.startswith(("mask_decoder.", "mask_refiner.")):  # the refiner finishes the decoder's masks
        return "decoder"
    if name.startswith("prompt_encoder."):
        return "prompt"
    return "encoder"


def set_stage1_trainable(sam: nn.Module, mode: str, train_prompt_encoder: bool = False) -> None:
    """Freeze/unfreeze parameters for a Stage-1 mode (adapters must already be injected)."""
    if mode not in TRAIN_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {TRAIN_MODES}")
    for name, param in sam.named_parameters():
        role = parameter_role(name)
        if mode == "full":
            param.requires_grad = not _is_base_of_adapter(name)
        elif role == "adapter":
            param.requires_grad = mode in ("adalora", "lora")
        elif role == "decoder":
            param.requires_grad = True
        elif role == "prompt":
            param.requires_grad = train_prompt_encoder
        else:
            param.requires_grad = False


def _is_base_of_adapter(name: str) -> bool:
    # The frozen Linear inside an adapter wrapper trains only in 'full' mode without adapters,
    # where no wrapper exists; inside a wrapper it stays frozen.
    return ".base." in name


def set_stage2_trainable(sam: nn.Module, trainable: str) -> None:
    """``paper``: only Λ trains. ``authors``: P, Q, decoder and prompt encoder train, Λ frozen."""
    if trainable not in STAGE2_TRAINABLE:
        raise ValueError(f"unknown Stage-2 trainable choice {trainable!r}; choose one of {STAGE2_TRAINABLE}")
    for name, param in sam.named_parameters():
        role = parameter_role(name)
        if trainable == "paper":
            param.requires_grad = name.endswith("lora_lambda")
        else:
            param.requires_grad = (role == "adapter" and not name.endswith("lora_lambda")) or role in ("decoder", "prompt")


def param_groups(sam: nn.Module, lr_adapter: float, lr_decoder: float, lr_other: float,
                 weight_decay: float) -> list[dict]:
    """AdamW groups by role; only trainable parameters; empty groups dropped."""
    groups = {"adapter": [], "decoder": [], "other": []}
    for name, param in sam.named_parameters():
        if not param.requires_grad:
            continue
        role = parameter_role(name)
        groups[role if role in ("adapter", "decoder") else "other"].append(param)
    lrs = {"adapter": lr_adapter, "decoder": lr_decoder, "other": lr_other}
    return [
        {"params": params, "lr": lrs[role], "weight_decay": weight_decay, "name": role}
        for role, params in groups.items() if params
    ]


def trainable_count(sam: nn.Module) -> int:
    return sum(p.numel() for p in sam.parameters() if p.requires_grad)
