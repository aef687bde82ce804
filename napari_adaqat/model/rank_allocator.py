"""Rank schedule for AdaLoRA adapters: importance bookkeeping and pruning at epoch ends.

Epochs are counted from 1: pruning "at epoch e" happens in ``on_epoch_end(e)``.

* ``budget="global"`` (the paper): with M modules and K prune epochs, after the k-th
  prune epoch the total number of active components is
  ``r_init*M - round(k*(r_init-r_target)*M/K)``; the components kept are those with the
  highest importance across ALL modules (at least 1 per module; ties -> lower module
  index, then lower component index).
* ``budget="per_block"`` (authors' code): at ``prune_epochs[0]`` each module keeps its
  top ``r_target`` components; later prune epochs do nothing.

A pruned component never comes back.  ``fixed_rank=True`` disables pruning.
"""
from __future__ import annotations

import torch
from torch import nn

from napari_adaqat.model.adalora import AdaLoRAConfig, AdaLoRALinear, adalora_modules

__all__ = ["RankAllocator"]


class RankAllocator:
    """Drives importance updates and rank pruning for every AdaLoRALinear in ``model``."""

    def __init__(self, model: nn.Module, config: AdaLoRAConfig) -> None:
        self.config = config
        self.modules: dict[str, AdaLoRALinear] = adalora_modules(model)
        if not self.modules:
            raise ValueError("model has no AdaLoRA adapters; call inject_adalora first")
        self.n_modules = len(self.modules)

    def update_importance(self) -> None:
        """Call after each backward, before the optimizer step (and before clamping)."""
        for m in self.modules.values():
            m.update_importance()

    def budget_for_epoch(self, epoch: int) -> int:
        """Total active components after the prunings scheduled at epochs <= ``epoch``."""
        c, M = self.config, self.n_modules
        full = c.r_init * M
        k = sum(1 for e in c.prune_epochs if e <= epoch)
        if c.fixed_rank or k == 0:
            return full
        if c.budget == "per_block":
            return c.r_target * M
        return full - int(round(k * (c.r_init - c.r_target) * M / len(c.prune_epochs)))

    def schedule(self) -> dict[int, int]:
        """{prune epoch: budget after it} (empty with ``fixed_rank``)."""
        if self.config.fixed_rank:
            return {}
        return {e: self.budget_for_epoch(e) for e in self.config.prune_epochs}

    def current_budget(self) -> int:
        return sum(m.effective_rank for m in self.modules.values())

    def on_epoch_end(self, epoch: int) -> bool:
        """Prune down to ``budget_for_epoch(epoch)``; True if a component was removed.

        Catches up when prune epochs were skipped (e.g. resumed training); calling it
        twice for the same epoch is harmless.
        """
        c = self.config
        if c.fixed_rank or not any(e <= epoch for e in c.prune_epochs):
            return False
        if c.budget == "per_block":
            return self._prune_per_block(c.r_target)
        target = self.budget_for_epoch(epoch)
        if self.current_budget() <= target:
            return False
        return self._prune_global(target)

    def _prune_per_block(self, r_keep: int) -> bool:
        changed = False
        for m in self.modules.values():
            ranked = _ranked_active(m)
            keep = torch.zeros(m.r, dtype=torch.bool)
            keep[[i for _, i in ranked[:r_keep]]] = True
            changed |= m.prune(keep.to(m.rank_mask.device))
        return changed

    def _prune_global(self, budget: int) -> bool:
        mods = list(self.modules.values())
        keeps = [torch.zeros(m.r, dtype=torch.bool) for m in mods]
        rest: list[tuple[float, int, int]] = []  # (-importance, module index, component)
        for j, m in enumerate(mods):
            ranked = _ranked_active(m)
            if not ranked:
                continue
            keeps[j][ranked[0][1]] = True  # at least one component per module
            rest.extend((-imp, j, i) for imp, i in ranked[1:])
        rest.sort()
        for _, j, i in rest[: max(budget - len(mods), 0)]:
            keeps[j][i] = True
        changed = False
        for m, keep in zip(mods, keeps):
            changed |= m.prune(keep.to(m.rank_mask.device))
        return changed

    def state(self) -> dict:
        """JSON-safe summary of the schedule and the current ranks."""
        c = self.config
        return {
            "mode": "fixed" if c.fixed_rank else c.budget,
            "budget": self.current_budget(),
            "initial_budget": c.r_init * self.n_modules,
            "target_budget": (c.r_init if c.fixed_rank else c.r_target) * self.n_modules,
            "schedule": {str(e): b for e, b in self.schedule().items()},
            "n_modules": self.n_modules,
            "per_module_rank": {n: m.effective_rank for n, m in self.modules.items()},
        }


def _ranked_active(m: AdaLoRALinear) -> list[tuple[float, int]]:
    """Active components of ``m`` as (importance, index), most important first (ties: lower index)."""
    imp = m.importance.detach().float().cpu().tolist()
    active = m.rank_mask.detach().cpu().tolist()
    ranked = [(imp[i], i) for i in range(m.r) if active[i] > 0.5]
    ranked.sort(key=lambda t: (-t[0], t[1]))
    return ranked
