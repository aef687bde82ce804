"""Tests for the AdaLoRA adapters and the rank allocator (CPU, toy sizes)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from napari_adaqat.model.adalora import (
    AdaLoRAConfig,
    AdaLoRALinear,
    adalora_modules,
    adapter_parameters,
    clamp_lambda_grads,
    count_adapter_parameters,
    fold_adapters,
    inject_adalora,
    orthogonal_regularizer,
)
from napari_adaqat.model.build import PRESETS, build_sam
from napari_adaqat.model.rank_allocator import RankAllocator


class _Attn(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.attn = _Attn(d)


class _Toy(nn.Module):
    def __init__(self, n_blocks: int, d: int = 64) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(_Block(d) for _ in range(n_blocks))


def _layer(d: int = 64, dtype=torch.float64, **kw) -> AdaLoRALinear:
    torch.manual_seed(0)
    cfg = AdaLoRAConfig(**kw)
    return AdaLoRALinear(nn.Linear(d, 3 * d, dtype=dtype), 3, cfg)


def _explicit_delta(m: AdaLoRALinear) -> torch.Tensor:
    parts = [m.lora_P[x] @ torch.diag(m.lora_lambda[x] * m.rank_mask) @ m.lora_Q[x] for x in range(m.n_parts)]
    return torch.cat(parts, 0) * m.scaling


def test_config_roundtrip_and_validation():
    cfg = AdaLoRAConfig(budget="per_block", prune_epochs=(2, 5), lambda_grad_clip=None)
    back = AdaLoRAConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.prune_epochs == (2, 5) and back.targets == ("attn.qkv",)
    assert AdaLoRAConfig().scaling == 1.0
    for bad in ({"r_target": 64}, {"budget": "cubic"}, {"prune_epochs": (7, 3)}, {"prune_epochs": (0,)}):
        with pytest.raises(ValueError):
            AdaLoRAConfig(**bad)
    with pytest.raises(ValueError):
        AdaLoRAConfig.from_dict({"rank": 3})


def test_delta_weight_formula_and_forward():
    m = _layer(alpha=16.0, r_target=8, r_init=12)
    with torch.no_grad():
        m.lora_lambda.normal_()
        m.rank_mask[[1, 4, 7]] = 0
    assert m.scaling == 2.0
    dw = m.delta_weight()
    assert dw.shape == (192, 64)
    assert torch.allclose(dw, _explicit_delta(m), atol=1e-12)
    x = torch.randn(2, 5, 7, 64, dtype=torch.float64)
    assert torch.allclose(m(x), m.base(x) + x @ dw.T, atol=1e-10)
    # the delta is not trivially zero
    assert dw.abs().max() > 1e-3


def test_orthogonal_init_and_ortho_loss():
    m = _layer(dtype=torch.float32)
    eye = torch.eye(48)
    for x in range(3):
        assert torch.allclose(m.lora_P[x].T @ m.lora_P[x], eye, atol=1e-5)
        assert torch.allclose(m.lora_Q[x] @ m.lora_Q[x].T, eye, atol=1e-5)
    assert torch.allclose(m.lora_lambda, torch.full((3, 48), 0.1))
    assert m.ortho_loss().item() < 1e-4
    with torch.no_grad():
        m.rank_mask[10:20] = 0  # subsets of orthonormal columns stay orthonormal
    assert m.ortho_loss().item() < 1e-4
    with torch.no_grad():
        m.lora_P[1, 0, 3] += 0.5
    assert m.ortho_loss().item() > 0.1


def test_importance_matches_autograd_ema():
    m = _layer(r_init=8, r_target=4, ema_beta=0.9)
    with torch.no_grad():
        m.rank_mask[2] = 0
    expected = torch.zeros(8, dtype=torch.float64)
    for step in range(2):
        with torch.no_grad():
            m.lora_lambda.normal_()
        x = torch.randn(4, 64, dtype=torch.float64)
        g, = torch.autograd.grad((m(x) ** 2).sum(), m.lora_lambda)
        m.lora_lambda.grad = None
        (m(x) ** 2).sum().backward()
        assert torch.allclose(m.lora_lambda.grad, g)
        m.update_importance()
        s = (m.lora_lambda.detach() * g).abs().mean(0) * m.rank_mask
        expected = 0.9 * expected + 0.1 * s
        assert torch.allclose(m.importance, expected, rtol=1e-12, atol=0)
    assert m.importance[2] == 0 and (m.importance[[0, 1, 3]] > 0).all()


def test_masked_components_no_effect_no_gradient():
    m = _layer()
    masked = [0, 5, 17, 47]
    with torch.no_grad():
        m.rank_mask[masked] = 0
    x = torch.randn(3, 64, dtype=torch.float64)
    y = m(x)
    with torch.no_grad():
        m.lora_P[:, :, masked] += torch.randn(3, 64, len(masked), dtype=torch.float64)
        m.lora_Q[:, masked, :] += torch.randn(3, len(masked), 64, dtype=torch.float64)
        m.lora_lambda[:, masked] = 7.0
    assert torch.equal(m(x), y)
    loss = (m(x) ** 2).sum() + m.ortho_loss()
    loss.backward()
    assert (m.lora_P.grad[:, :, masked] == 0).all()
    assert (m.lora_Q.grad[:, masked, :] == 0).all()
    assert (m.lora_lambda.grad[:, masked] == 0).all()
    assert (m.lora_lambda.grad[:, 1] != 0).all() and m.lora_P.grad[:, :, 1].abs().sum() > 0
    assert m.base.weight.grad is None and not m.base.weight.requires_grad


def test_inject_names_freeze_idempotence_and_parts():
    sam = build_sam("vit_nano")
    cfg = AdaLoRAConfig()
    names = inject_adalora(sam, cfg)
    assert names == ["image_encoder.blocks.0.attn.qkv", "image_encoder.blocks.1.attn.qkv"]
    mods = adalora_modules(sam)
    assert list(mods) == names and all(m.n_parts == 3 and m.d_in == 64 for m in mods.values())
    assert all(not p.requires_grad for m in mods.values() for p in m.base.parameters())
    assert "image_encoder.blocks.0.attn.qkv.rank_mask" in sam.state_dict()
    with pytest.raises(ValueError, match="already"):
        inject_adalora(sam.image_encoder, cfg)
    plain = build_sam("vit_nano").image_encoder
    names = inject_adalora(plain, AdaLoRAConfig(targets=("mlp.lin1",)))
    assert names == ["blocks.0.mlp.lin1", "blocks.1.mlp.lin1"]
    m = adalora_modules(plain)["blocks.0.mlp.lin1"]
    assert m.n_parts == 1 and m.lora_P.shape == (1, 256, 48) and m.lora_Q.shape == (1, 48, 64)
    with pytest.raises(ValueError, match="matches"):
        inject_adalora(nn.Sequential(nn.Linear(4, 4)), cfg)
    with pytest.raises(ValueError, match="r_init"):
        AdaLoRALinear(nn.Linear(16, 48), 3, cfg)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_width(name):
    d = PRESETS[name].embed_dim
    m = AdaLoRALinear(nn.Linear(d, 3 * d), 3, AdaLoRAConfig())
    assert m.lora_P.shape == (3, d, 48) and m.lora_Q.shape == (3, 48, d) and m.lora_lambda.shape == (3, 48)
    assert m(torch.randn(2, d)).shape == (2, 3 * d)


def test_fold_adapters_matches_encoder_output():
    torch.manual_seed(1)
    enc = build_sam("vit_nano").image_encoder
    inject_adalora(enc, AdaLoRAConfig())
    for m in adalora_modules(enc).values():
        with torch.no_grad():
            m.lora_lambda.normal_(0, 0.5)
            m.rank_mask[::3] = 0
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        y = enc(x)
        w_before = {n: m.base.weight + m.delta_weight() for n, m in adalora_modules(enc).items()}
        assert fold_adapters(enc) == 2
        y2 = enc(x)
    assert not adalora_modules(enc)
    qkv = enc.blocks[0].attn.qkv
    assert type(qkv) is nn.Linear and qkv.bias is not None
    assert torch.equal(qkv.weight, w_before["blocks.0.attn.qkv"])
    assert torch.allclose(y, y2, atol=1e-5)


def test_vit_b_adapter_count():
    enc = build_sam("vit_b").image_encoder
    inject_adalora(enc, AdaLoRAConfig())
    counts = count_adapter_parameters(enc)
    assert counts["nominal"] == 2_655_936 == 12 * 3 * (768 * 48 + 48 + 48 * 768)
    assert sum(p.numel() for p in adapter_parameters(enc)) == 2_655_936
    assert counts["effective"] == 2_655_936 and len(counts["per_module_rank"]) == 12
    alloc = RankAllocator(enc, AdaLoRAConfig(budget="per_block"))
    assert alloc.on_epoch_end(3)
    counts = count_adapter_parameters(enc)
    assert counts["effective"] == 12 * 3 * 32 * (768 + 1 + 768)
    assert set(counts["per_module_rank"].values()) == {32} and counts["nominal"] == 2_655_936


def test_budget_schedule_48_to_32():
    model = _Toy(12)
    inject_adalora(model, AdaLoRAConfig())
    alloc = RankAllocator(model, AdaLoRAConfig())
    expect = {0: 576, 1: 576, 2: 576, 3: 512, 6: 512, 7: 448, 11: 448, 12: 384, 25: 384}
    assert {e: alloc.budget_for_epoch(e) for e in expect} == expect
    assert alloc.schedule() == {3: 512, 7: 448, 12: 384}
    for m in adalora_modules(model).values():  # random importances -> adaptive ranks
        m.importance.uniform_()
    for epoch in range(1, 15):
        pruned = alloc.on_epoch_end(epoch)
        assert pruned == (epoch in (3, 7, 12))
        assert alloc.current_budget() == alloc.budget_for_epoch(epoch)
    ranks = alloc.state()["per_module_rank"]
    assert sum(ranks.values()) == 384 and len(set(ranks.values())) > 1  # uneven across layers
    json.dumps(alloc.state())
    nano = _Toy(2)
    inject_adalora(nano, AdaLoRAConfig())
    assert RankAllocator(nano, AdaLoRAConfig()).schedule() == {3: 85, 7: 75, 12: 64}
    pb = RankAllocator(nano, AdaLoRAConfig(budget="per_block"))
    assert [pb.budget_for_epoch(e) for e in (2, 3, 7, 12)] == [96, 64, 64, 64]
    fixed = RankAllocator(nano, AdaLoRAConfig(fixed_rank=True))
    assert not any(fixed.on_epoch_end(e) for e in range(1, 20))
    assert fixed.current_budget() == 96 and fixed.budget_for_epoch(12) == 96


def test_global_pruning_planted_importance():
    cfg = AdaLoRAConfig(r_init=8, r_target=2, prune_epochs=(1, 2))
    model = _Toy(3)
    inject_adalora(model, cfg)
    m0, m1, m2 = adalora_modules(model).values()
    perm = [3, 7, 1, 8, 5, 2, 6, 4]
    m0.importance.copy_(torch.arange(80, 0, -10, dtype=torch.float32))
    m1.importance.copy_(torch.tensor(perm, dtype=torch.float32))
    m2.importance.fill_(0.01)
    m2.importance[3] = 0.02
    alloc = RankAllocator(model, cfg)
    assert alloc.budget_for_epoch(1) == 15 and alloc.budget_for_epoch(2) == 6
    assert alloc.on_epoch_end(1)
    assert m0.rank_mask.tolist() == [1.0] * 8
    assert m1.rank_mask.tolist() == [float(v >= 3) for v in perm]  # top 6 of module 1
    assert m2.rank_mask.nonzero().flatten().tolist() == [3]  # at least one, the best one
    assert alloc.current_budget() == 15
    assert m1.importance[perm.index(1)] == 0  # pruned importance zeroed
    # now module 1 dominates; a pruned component with huge importance must not come back
    m1.importance.mul_(100)
    m1.importance[perm.index(1)] = 1e9
    assert alloc.on_epoch_end(2)
    assert m1.rank_mask.nonzero().flatten().tolist() == sorted(perm.index(v) for v in (8, 7, 6, 5))
    assert m0.rank_mask.nonzero().flatten().tolist() == [0]
    assert m2.rank_mask.nonzero().flatten().tolist() == [3]
    assert alloc.current_budget() == 6 and not alloc.on_epoch_end(2)


def test_per_block_pruning():
    cfg = AdaLoRAConfig(r_init=8, r_target=3, budget="per_block", prune_epochs=(2, 4))
    model = _Toy(2)
    inject_adalora(model, cfg)
    m0, m1 = adalora_modules(model).values()
    m0.importance.copy_(torch.tensor([5.0, 1, 9, 2, 8, 0, 3, 4]))  # top3: idx 2, 4, 0
    alloc = RankAllocator(model, cfg)  # m1: all zero -> ties -> lowest indices
    assert not alloc.on_epoch_end(1)
    assert alloc.on_epoch_end(2)
    assert m0.rank_mask.nonzero().flatten().tolist() == [0, 2, 4]
    assert m1.rank_mask.nonzero().flatten().tolist() == [0, 1, 2]
    assert not alloc.on_epoch_end(4) and alloc.current_budget() == 6


def test_regularizer_and_clamp_lambda_grads():
    model = _Toy(2)
    assert orthogonal_regularizer(model).item() == 0.0
    inject_adalora(model, AdaLoRAConfig())
    reg = orthogonal_regularizer(model)
    assert reg.dim() == 0 and reg.item() < 1e-4
    with torch.no_grad():
        for m in adalora_modules(model).values():
            m.lora_Q.mul_(1.1)
    assert orthogonal_regularizer(model).item() > 0.1
    for m in adalora_modules(model).values():
        m.lora_lambda.grad = torch.linspace(-1, 1, 3 * 48).reshape(3, 48)
    clamp_lambda_grads(model, 0.02)
    for m in adalora_modules(model).values():
        g = m.lora_lambda.grad
        assert g.max().item() == pytest.approx(0.02) and g.min().item() == pytest.approx(-0.02)
        assert g.abs().max().item() <= 0.02 + 1e-9
        assert (g.abs() < 0.02).sum() > 0  # small gradients untouched
