"""Which parameters train in each mode, and their optimizer groups (a model concept: training
uses it, and ``adaqat info`` reports the budget of a mode without training).

Stage 1 modes: ``adalora`` (the paper), ``decoder`` (decoder-only baseline),
``lora`` (fixed rank ablation), ``full`` (everything; also trains from scratch).
Stage 2 trainable choices (``TrainConfig.qat.trainable``): ``paper`` (only Λ) and
``authors`` (P, Q, decoder, prompt encoder).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Callable

from napari_adaqat.model.adalora_config import AdaLoRAConfig

if TYPE_CHECKING:  # torch only where a model is at hand: the mode names serve torch-free configs and help texts
    from torch import nn

TRAIN_MODES = ("adalora", "decoder", "lora", "full")
STAGE2_TRAINABLE = ("paper", "authors")


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {choices}")


def add_adapters(sam: nn.Module, mode: str, config: AdaLoRAConfig) -> AdaLoRAConfig | None:
    """Inject adapters for ``adalora``/``lora`` (lora = fixed rank, no pruning); returns the config used."""
    from napari_adaqat.model.adalora import adalora_modules, inject_adalora

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
    if name.startswith("mask_refiner.click_branch."):  # it encodes the clicks: a prompt, at the prompt's rate
        return "prompt"
    if name.startswith(("mask_decoder.", "mask_refiner.")):  # the refiner finishes the decoder's masks
        return "decoder"
    if name.startswith("prompt_encoder."):
        return "prompt"
    return "encoder"


def set_stage1_trainable(sam: nn.Module, mode: str, train_prompt_encoder: bool = False) -> None:
    """Freeze/unfreeze parameters for a Stage-1 mode (adapters must already be injected)."""
    _check_choice(mode, TRAIN_MODES, "mode")
    if mode == "full":
        _set_trainable(sam, lambda name, role: not _is_base_of_adapter(name))
        return
    trains = {"adapter": mode in ("adalora", "lora"), "decoder": True, "prompt": train_prompt_encoder, "encoder": False}
    _set_trainable(sam, lambda name, role: trains[role])


def _is_base_of_adapter(name: str) -> bool:
    # The frozen Linear inside an adapter wrapper trains only in 'full' mode without adapters,
    # where no wrapper exists; inside a wrapper it stays frozen.
    return ".base." in name


def set_stage2_trainable(sam: nn.Module, trainable: str) -> None:
    """``paper``: only Λ trains. ``authors``: P, Q, decoder and prompt encoder train, Λ frozen."""
    _check_choice(trainable, STAGE2_TRAINABLE, "Stage-2 trainable choice")
    if trainable == "paper":
        _set_trainable(sam, lambda name, role: name.endswith("lora_lambda"))
    else:
        _set_trainable(sam, lambda name, role: (role == "adapter" and not name.endswith("lora_lambda"))
                       or role in ("decoder", "prompt"))


def _set_trainable(sam: nn.Module, rule: Callable[[str, str], bool]) -> None:
    """``requires_grad = rule(name, role)`` for every parameter (role: :func:`parameter_role`)."""
    for name, param in sam.named_parameters():
        param.requires_grad = rule(name, parameter_role(name))


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
