"""AdaLoRA adapters for SAM's fused ``attn.qkv`` Linears (pure tensor maths, no peft).

Each wrapped Linear ``W`` (``n_parts * d_out_part`` x ``d_in``; q/k/v for a fused qkv)
gets one SVD-like triplet per part::

    dW_x = P_x @ diag(lambda_x * m) @ Q_x * scaling,   P_x: (d_out_part, r), Q_x: (r, d_in)

The rank mask ``m`` (r,) is shared by the parts; component importance is
``EMA_beta(|lambda * dL/dlambda|)`` averaged over the parts.  Rank pruning lives in
:mod:`napari_adaqat.model.rank_allocator` (:class:`RankAllocator`).

Recommended order in a training step::

    loss = task_loss + w * orthogonal_regularizer(model); loss.backward()
    (scaler.unscale_(opt) with AMP)   allocator.update_importance()   # raw, unscaled grads
    clamp_lambda_grads(model, config.lambda_grad_clip); opt.step()
    ... at the end of epoch e (1-based): allocator.on_epoch_end(e)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_adaqat.model.adalora_config import AdaLoRAConfig

__all__ = [
    "AdaLoRAConfig", "AdaLoRALinear", "inject_adalora", "adalora_modules",
    "adapter_parameters", "orthogonal_regularizer", "clamp_lambda_grads",
    "count_adapter_parameters", "fold_adapters",
]


class AdaLoRALinear(nn.Module):
    """Wraps a frozen fused Linear(d_in, n_parts*d_out_part). One SVD triplet per part (q, k, v).

    Parameters: ``lora_P`` (n_parts, d_out_part, r), ``lora_lambda`` (n_parts, r),
    ``lora_Q`` (n_parts, r, d_in).  Buffers (saved in the state dict): ``rank_mask`` (r,)
    0/1 float and ``importance`` (r,).  Masked components change no output and get
    exactly zero gradient (the mask multiplies lambda inside the forward, and the
    orthogonality loss only sees active components).
    """

    def __init__(self, base: nn.Linear, n_parts: int, config: AdaLoRAConfig) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"AdaLoRALinear wraps nn.Linear, got {type(base).__name__}")
        d_in, d_out = base.in_features, base.out_features
        if n_parts < 1 or d_out % n_parts:
            raise ValueError(f"out_features {d_out} is not divisible into {n_parts} parts")
        d_part, r = d_out // n_parts, config.r_init
        if r > min(d_part, d_in):
            raise ValueError(f"r_init={r} exceeds the layer size (d_in={d_in}, d_out_part={d_part}); "
                             "orthogonal P/Q need r <= both")
        for p in base.parameters():
            p.requires_grad_(False)
        self.base = base
        self.n_parts, self.d_in, self.d_out_part, self.r = n_parts, d_in, d_part, r
        self.scaling = config.scaling
        self.ema_beta = float(config.ema_beta)
        kw = dict(device=base.weight.device, dtype=base.weight.dtype)
        P = torch.empty(n_parts, d_part, r, **kw)
        Q = torch.empty(n_parts, r, d_in, **kw)
        for i in range(n_parts):
            nn.init.orthogonal_(P[i])  # tall: orthonormal columns
            nn.init.orthogonal_(Q[i])  # wide: orthonormal rows
        self.lora_P = nn.Parameter(P)
        self.lora_Q = nn.Parameter(Q)
        self.lora_lambda = nn.Parameter(torch.full((n_parts, r), float(config.init_lambda), **kw))
        self.register_buffer("rank_mask", torch.ones(r, **kw))
        self.register_buffer("importance", torch.zeros(r, **kw))

    def _coeff(self) -> Tensor:
        """(n_parts, r) = lambda * mask * scaling."""
        return self.lora_lambda * self.rank_mask * self.scaling

    def delta_weight(self) -> Tensor:
        """(n_parts*d_out_part, d_in) = cat_x [P_x diag(lambda_x * m) Q_x] * scaling."""
        dw = torch.einsum("npr,nr,nri->npi", self.lora_P, self._coeff(), self.lora_Q)
        return dw.reshape(self.n_parts * self.d_out_part, self.d_in)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., d_in) -> (..., n_parts*d_out_part) = base(x) + x @ dW^T, without forming dW."""
        h = F.linear(x, self.lora_Q.reshape(self.n_parts * self.r, self.d_in))  # (..., n*r)
        h = h.unflatten(-1, (self.n_parts, self.r)) * self._coeff()  # (..., n, r)
        delta = torch.einsum("...nr,npr->...np", h, self.lora_P).flatten(-2)  # (..., n*d_out_part)
        out = self.base(x)
        return out + delta.to(out.dtype)

    def ortho_loss(self) -> Tensor:
        """sum_x ||P_x^T P_x - I||_F + ||Q_x Q_x^T - I||_F over the ACTIVE components only.

        Restricting to active components keeps masked components gradient-free
        (they can never come back, so keeping them orthogonal is pointless).
        """
        m = self.rank_mask
        P = self.lora_P * m  # zero masked columns
        Q = self.lora_Q * m[:, None]  # zero masked rows
        eye = torch.diag_embed(m).expand(self.n_parts, self.r, self.r)
        lp = torch.linalg.matrix_norm(P.transpose(1, 2) @ P - eye)
        lq = torch.linalg.matrix_norm(Q @ Q.transpose(1, 2) - eye)
        return (lp + lq).sum()

    @torch.no_grad()
    def update_importance(self) -> None:
        """importance <- beta*importance + (1-beta)*mean_parts|lambda*dL/dlambda|, masked -> 0.

        Starts from 0 (as peft).  No-op when ``lora_lambda.grad`` is None.
        """
        g = self.lora_lambda.grad
        if g is None:
            return
        s = (self.lora_lambda * g).abs().mean(0).to(self.importance.dtype)  # (r,)
        s = torch.nan_to_num(s, nan=0.0, posinf=0.0)
        self.importance.mul_(self.ema_beta).add_(s, alpha=1.0 - self.ema_beta).mul_(self.rank_mask)

    @property
    def effective_rank(self) -> int:
        return int(self.rank_mask.sum().item())

    @torch.no_grad()
    def prune(self, keep: Tensor) -> bool:
        """Keep only components where ``keep`` (r,) bool is True (and already active).

        Returns True when a component was removed.  Pruned importance is zeroed.
        """
        new = self.rank_mask * keep.to(self.rank_mask)
        changed = bool((new != self.rank_mask).any())
        self.rank_mask.copy_(new)
        self.importance.mul_(new)
        return changed

    def extra_repr(self) -> str:
        return (f"d_in={self.d_in}, n_parts={self.n_parts}, d_out_part={self.d_out_part}, "
                f"r={self.r}, r_eff={self.effective_rank}, scaling={self.scaling:g}")


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def inject_adalora(model: nn.Module, config: AdaLoRAConfig) -> list[str]:
    """Replace every ``nn.Linear`` whose name ends with a ``config.targets`` suffix, in place.

    A target whose last name component is ``qkv`` (out = 3k) becomes 3 parts (q, k, v);
    any other Linear one part.  Returns the full names.  Raises ValueError if ``model``
    already holds adapters or nothing matches.
    """
    if adalora_modules(model):
        raise ValueError("model already has AdaLoRA adapters injected")
    found = [(n, m) for n, m in model.named_modules()
             if isinstance(m, nn.Linear) and n and any(_matches(n, t) for t in config.targets)]
    if not found:
        raise ValueError(f"no nn.Linear in the model matches targets {list(config.targets)}")
    for name, lin in found:
        n_parts = 3 if name.rsplit(".", 1)[-1] == "qkv" and lin.out_features % 3 == 0 else 1
        _replace(model, name, AdaLoRALinear(lin, n_parts, config))
    return [n for n, _ in found]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def adalora_modules(model: nn.Module) -> dict[str, AdaLoRALinear]:
    """{full name: module} in ``named_modules`` order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, AdaLoRALinear)}


def adapter_parameters(model: nn.Module) -> list[nn.Parameter]:
    """All lora_P, lora_Q, lora_lambda (module order; P, Q, lambda per module)."""
    return [p for m in adalora_modules(model).values() for p in (m.lora_P, m.lora_Q, m.lora_lambda)]


def orthogonal_regularizer(model: nn.Module) -> Tensor:
    """Sum of :meth:`AdaLoRALinear.ortho_loss` over modules (0-dim; 0.0 if none)."""
    losses = [m.ortho_loss() for m in adalora_modules(model).values()]
    return torch.stack(losses).sum() if losses else torch.zeros(())


@torch.no_grad()
def clamp_lambda_grads(model: nn.Module, clip: float | None) -> None:
    """Clamp every ``lora_lambda.grad`` to [-clip, clip] in place (no-op for None)."""
    if clip is None:
        return
    for m in adalora_modules(model).values():
        if m.lora_lambda.grad is not None:
            m.lora_lambda.grad.clamp_(-clip, clip)


def count_adapter_parameters(model: nn.Module) -> dict:
    """{"nominal": P,Q,lambda numel, "effective": active components only, "per_module_rank": {name: r_eff}}."""
    mods = adalora_modules(model)
    nominal = sum(p.numel() for p in adapter_parameters(model))
    effective = sum(m.n_parts * m.effective_rank * (m.d_out_part + 1 + m.d_in) for m in mods.values())
    return {"nominal": int(nominal), "effective": int(effective),
            "per_module_rank": {n: m.effective_rank for n, m in mods.items()}}


@torch.no_grad()
def fold_adapters(model: nn.Module) -> int:
    """Replace each AdaLoRALinear by a plain frozen nn.Linear with weight = W + dW (bias kept).

    Returns the number folded.  Exact up to float rounding.
    """
    mods = adalora_modules(model)
    for name, m in mods.items():
        base = m.base
        lin = nn.Linear(m.d_in, base.out_features, bias=base.bias is not None,
                        device=base.weight.device, dtype=base.weight.dtype)
        lin.weight.copy_(base.weight + m.delta_weight().to(base.weight.dtype))
        if base.bias is not None:
            lin.bias.copy_(base.bias)
        lin.requires_grad_(False)
        _replace(model, name, lin)
    return len(mods)
