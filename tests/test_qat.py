"""INT8 fake quantization (Stage 2): the op, the module swap, the targets, the report."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from napari_adaqat.model.build import build_sam
from napari_adaqat.model.qat import (
    QMAX,
    QuantEmbedding,
    QuantLinear,
    apply_qat,
    fake_quant_int8,
    int8_scale,
    qat_summary,
    quantize_targets,
    quantize_tensor_int8,
    quantized_modules,
)

adalora = pytest.importorskip("napari_adaqat.model.adalora")


def _on_grid(t: torch.Tensor, scale: torch.Tensor) -> bool:
    k = t.detach() / scale
    return bool((k - k.round()).abs().max() < 1e-3 and k.round().abs().max() <= QMAX)


def _vit_b_meta():
    with torch.device("meta"):
        return build_sam("vit_b")


def test_representable_values_pass_through_exactly():
    s = torch.tensor(2.0 ** -7)
    w = torch.arange(-QMAX, QMAX + 1, dtype=torch.float32) * s  # every grid point, max|w| = 127 s
    assert int8_scale(w) == s
    assert torch.equal(fake_quant_int8(w), w)
    assert torch.equal(fake_quant_int8(w, s), w)
    # off-grid values snap to the nearest grid point
    off = w[:-1] + 0.3 * s
    assert torch.equal(fake_quant_int8(off, s), w[:-1])


def test_straight_through_gradient_inside_range_zero_outside():
    s = torch.tensor(0.1)
    w = torch.tensor([-20.0, -12.7, -3.33, 0.0, 0.04, 5.55, 12.7, 12.9, 15.0], requires_grad=True)
    fake_quant_int8(w, s).sum().backward()
    inside = torch.tensor([0, 1, 1, 1, 1, 1, 1, 0, 0], dtype=torch.float32)
    assert torch.equal(w.grad, inside)


def test_one_scale_per_tensor():
    torch.manual_seed(0)
    w = torch.randn(64, 32)
    w[3, 7] = 50.0  # one outlier sets the scale for the whole tensor
    s = int8_scale(w)
    assert s.ndim == 0 and s.dtype == torch.float32
    assert torch.isclose(s, torch.tensor(50.0 / 127))
    fq = fake_quant_int8(w)
    assert _on_grid(fq, s)
    assert fq.unique().numel() <= 2 * QMAX + 1
    assert (w - fq).abs().max() <= s / 2 + 1e-6
    # all-zero tensor: no NaN, stays zero
    z = torch.zeros(4, 4)
    assert torch.equal(fake_quant_int8(z), z)


def test_quantize_tensor_int8_bit_exact():
    torch.manual_seed(1)
    for shape in [(128, 64), (7,), (1, 16, 16, 8)]:
        w = torch.randn(shape) * 0.02
        q, s = quantize_tensor_int8(w)
        assert q.dtype == torch.int8 and q.shape == w.shape and s.ndim == 0
        assert torch.equal(q.float() * s, fake_quant_int8(w))
        assert q.abs().max() == QMAX


def test_quant_linear_forward_and_grad_match_linear_on_quantized_weight():
    torch.manual_seed(2)
    lin = nn.Linear(16, 8)
    ql = nn.Linear(16, 8)
    ql.load_state_dict(lin.state_dict())
    ql.__class__ = QuantLinear
    x = torch.randn(5, 16)
    wq = fake_quant_int8(lin.weight).detach().requires_grad_(True)
    ref = F.linear(x, wq, lin.bias)
    out = ql(x)
    assert torch.equal(out, ref)
    assert not torch.equal(out, lin(x))
    out.square().sum().backward()
    ref.square().sum().backward()
    # max-abs scaling never clips, so the STE gradient is the gradient at the quantized weight
    assert torch.allclose(ql.weight.grad, wq.grad)
    assert set(ql.state_dict()) == {"weight", "bias"}


def test_vit_b_targets_full_and_decoder():
    sam = _vit_b_meta()
    dec_linears = [n for n, m in sam.named_modules() if isinstance(m, nn.Linear) and n.startswith("mask_decoder.")]
    full = quantize_targets(sam, "full")
    enc = [n for n in full if n.startswith("image_encoder.")]
    assert len(enc) == 36
    assert {n.split(".", 3)[3] for n in enc} == {"attn.proj", "mlp.lin1", "mlp.lin2"}
    assert [n for n in full if n.startswith("mask_decoder.")] == dec_linears and len(dec_linears) == 47
    assert not any("qkv" in n or n.startswith("prompt_encoder") for n in full)
    assert quantize_targets(sam, "decoder") == dec_linears
    with pytest.raises(ValueError):
        quantize_targets(sam, "encoder")
    names = apply_qat(sam, "full")
    summary = qat_summary(sam)
    assert names == full
    assert summary["encoder_linears"] == 36 and summary["decoder_linears"] == 47
    assert summary["prompt_encoder_linears"] == 0 and summary["variant"] == "full"


def test_apply_qat_leaves_qkv_untouched_and_shares_parameters():
    torch.manual_seed(3)
    sam = build_sam("vit_nano")
    before = {k: v.clone() for k, v in sam.state_dict().items()}
    params = {n: p for n, p in sam.named_parameters()}
    x = torch.randn(1, 4, 4, 64)
    qkv = sam.image_encoder.blocks[0].attn.qkv
    qkv_out = qkv(x)
    names = apply_qat(sam, "full")
    assert len(names) == 2 * 3 + 47
    assert type(qkv) is nn.Linear and sam.image_encoder.blocks[0].attn.qkv is qkv
    assert torch.equal(qkv(x), qkv_out)
    assert all(type(sam.get_submodule(n)) is QuantLinear for n in names)
    assert {n: p for n, p in sam.named_parameters()}.keys() == params.keys()
    assert all(p is params[n] for n, p in sam.named_parameters())
    state = sam.state_dict()
    assert state.keys() == before.keys() and all(torch.equal(state[k], before[k]) for k in state)
    assert apply_qat(sam, "full") == names  # idempotent
    proj = sam.image_encoder.blocks[0].attn.proj
    y = torch.randn(3, 64)
    assert not torch.equal(proj(y), F.linear(y, proj.weight, proj.bias))


def test_decoder_variant_only_quantizes_decoder():
    sam = build_sam("vit_nano")
    names = apply_qat(sam, "decoder")
    assert names and all(n.startswith("mask_decoder.") for n in names)
    assert not any(n.startswith("image_encoder") for n in quantized_modules(sam))
    assert qat_summary(sam)["variant"] == "decoder"


def test_adalora_wrapped_qkv_and_adapters_never_quantized():
    sam = build_sam("vit_nano")
    adalora.inject_adalora(sam, adalora.AdaLoRAConfig(r_init=8, r_target=4))
    names = apply_qat(sam, "full")
    assert not any("qkv" in n for n in names)
    for name, mod in adalora.adalora_modules(sam).items():
        assert type(mod) is adalora.AdaLoRALinear and type(mod.base) is nn.Linear
    quant_params = {f"{n}.{t}" for n, m in quantized_modules(sam).items() for t in m.quantized_tensor_names()}
    assert not any("lora" in p or "qkv" in p for p in quant_params)


def test_quantize_extra_and_prompt_encoder_options():
    torch.manual_seed(4)
    sam = build_sam("vit_nano")
    with torch.no_grad():
        sam.image_encoder.pos_embed.normal_(0, 0.02)  # zeros at init
        for blk in sam.image_encoder.blocks:
            blk.attn.rel_pos_h.normal_()
    keys = set(sam.state_dict())
    names = apply_qat(sam, "full", quantize_prompt_encoder=True, quantize_extra=True)
    assert set(sam.state_dict()) == keys
    enc = sam.image_encoder
    assert "image_encoder" in names and "image_encoder.patch_embed.proj" in names
    assert "mask_decoder.output_upscaling.0" in names
    raw = enc._parameters["pos_embed"]
    assert isinstance(raw, nn.Parameter) and not torch.equal(enc.pos_embed, raw)
    assert _on_grid(enc.pos_embed, int8_scale(raw))
    attn = enc.blocks[0].attn
    assert _on_grid(attn.rel_pos_h, int8_scale(attn._parameters["rel_pos_h"]))
    lin1 = enc.blocks[0].mlp.lin1
    assert lin1.quantized_tensor_names() == ("weight", "bias")
    emb = sam.prompt_encoder.point_embeddings[2]
    assert isinstance(emb, QuantEmbedding) and _on_grid(emb.weight, int8_scale(emb._parameters["weight"]))
    # gradients still reach the raw Parameters through the views
    sparse, _ = sam.prompt_encoder(points=None, boxes=torch.tensor([[5.0, 5.0, 90.0, 100.0]]), masks=None)
    out = enc(torch.randn(1, 3, 128, 128))
    (sparse.sum() + out.sum()).backward()
    assert emb._parameters["weight"].grad is not None and raw.grad is not None
    assert qat_summary(sam)["prompt_encoder_quantized"] and qat_summary(sam)["quantize_extra"]


def test_quantization_report(tmp_path):
    from napari_adaqat.report.quant_figures import quantization_report

    torch.manual_seed(5)
    sam = build_sam("vit_nano")
    report = quantization_report(sam, tmp_path)  # FP32 model: the layers "full" would quantize
    assert report["n_layers"] == 53 and report["prompt_encoder_linears"] == 0
    assert not any("qkv" in n for n in report["layers"])
    for name, layer in report["layers"].items():
        assert layer["error_max_abs"] <= layer["scale"] / 2 * (1 + 1e-4), name
        assert layer["pearson_r"] > 0.999
    assert abs(report["overall"]["error_mean"]) < 1e-5 and report["overall"]["error_std"] > 0
    assert 0.95 < report["qq"]["r"] <= 1.0
    assert sum(report["error_vs_abs_w"]["count"]) == report["n_weights"]
    for fig in report["figures"].values():
        assert (tmp_path / fig).stat().st_size > 1000
    assert json.loads((tmp_path / "report.json").read_text())["n_layers"] == 53
    apply_qat(sam, "decoder")  # a QAT model: exactly its quantized layers
    assert quantization_report(sam, tmp_path / "q")["n_layers"] == 47
