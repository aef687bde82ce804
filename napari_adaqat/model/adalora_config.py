"""The AdaLoRA adapters' settings (:class:`AdaLoRAConfig`), torch-free: the training config and its
help texts (``adaqat train --help``) read them without importing torch.  The adapters themselves
are :mod:`napari_adaqat.model.adalora`, which re-exports this class."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from napari_adaqat.util.fields import from_fields

_BUDGETS = ("global", "per_block")


@dataclass
class AdaLoRAConfig:
    """Adapter hyper-parameters (defaults: the paper / authors' code).

    ``budget``: ``"global"`` = adaptive across modules, total budget ``r_target * M``
    reached in equal steps at ``prune_epochs``; ``"per_block"`` = every module cut to
    ``r_target`` once, at ``prune_epochs[0]``.  ``scaling = alpha / r_target`` (also with
    ``fixed_rank``, the plain-LoRA ablation at rank ``r_init`` that is never pruned).
    """

    r_init: int = field(default=48, metadata={"help": "initial rank of every adapter (components per q/k/v part)"})
    r_target: int = field(default=32, metadata={
        "help": "average rank after pruning: the rank budget is r_target per module"})
    alpha: float = field(default=32.0, metadata={"help": "adapter scaling numerator: scaling = alpha / r_target"})
    targets: tuple[str, ...] = field(default=("attn.qkv",), metadata={
        "help": "module-name suffixes that get adapters (SAM's fused attn.qkv)"})
    init_lambda: float = field(default=0.1, metadata={"help": "initial value of the singular values Λ"})
    ema_beta: float = field(default=0.9, metadata={"help": "EMA factor of the component importance |Λ · dL/dΛ|"})
    prune_epochs: tuple[int, ...] = field(default=(3, 7, 12), metadata={
        "help": "epochs after which ranks are pruned (global: in equal steps; per_block: once, at the first)"})
    budget: str = field(default="global", metadata={
        "help": "rank pruning budget: global = adaptive across layers (paper), per_block = every block cut "
                "to r_target (authors' code)", "choices": _BUDGETS})
    ortho_weight: float = field(default=0.003, metadata={
        "help": "weight of the orthogonality regularizer on P and Q (Stage 1)"})
    lambda_grad_clip: float | None = field(default=0.02, metadata={
        "help": "clamp of the Λ gradients before each optimizer step; null = off"})
    fixed_rank: bool = field(default=False, metadata={"help": "plain LoRA: rank r_init, never pruned (set by mode lora)"})

    def __post_init__(self) -> None:
        self.targets = tuple(self.targets)
        self.prune_epochs = tuple(int(e) for e in self.prune_epochs)
        if not 1 <= self.r_target <= self.r_init:
            raise ValueError(f"need 1 <= r_target <= r_init, got r_target={self.r_target}, r_init={self.r_init}")
        if self.budget not in _BUDGETS:
            raise ValueError(f"budget must be one of {_BUDGETS}, got {self.budget!r}")
        if not 0.0 <= self.ema_beta < 1.0:
            raise ValueError(f"ema_beta must be in [0, 1), got {self.ema_beta}")
        pe = self.prune_epochs
        if any(e < 1 for e in pe) or list(pe) != sorted(set(pe)):
            raise ValueError(f"prune_epochs must be strictly increasing epochs >= 1, got {list(pe)}")
        if not self.targets:
            raise ValueError("targets must name at least one module suffix")

    @property
    def scaling(self) -> float:
        return float(self.alpha) / float(self.r_target)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets)
        d["prune_epochs"] = list(self.prune_epochs)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "AdaLoRAConfig":
        return from_fields(cls, d, "AdaLoRA config")
