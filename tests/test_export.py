"""The INT8 model file (safetensors + JSON metadata), its validation, and compression figures."""
from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from napari_adaqat.model.build import OFFICIAL_CHECKPOINT_BYTES, ModelLoadError, PRESETS, build_sam
from napari_adaqat.model.compression import arithmetic_compression, file_compression, fp32_state_bytes
from napari_adaqat.model.formats.model_file import export_model, load_model_file
from napari_adaqat.model.ptq import ptq_from_checkpoint
from napari_adaqat.model.forward import decode_boxes, encode
from napari_adaqat.model.qat import QuantLinear, apply_qat, fake_quant_int8, quantized_modules

adalora = pytest.importorskip("napari_adaqat.model.adalora")

BOX = torch.tensor([[12.0, 20.0, 100.0, 118.0]])


def _image() -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.rand(1, 3, 128, 128, generator=g) * 255


@torch.no_grad()
def _logits(sam: nn.Module) -> torch.Tensor:
    return decode_boxes(sam, encode(sam, _image()), BOX)[0]


def _qat_model(extra: bool = False) -> nn.Module:
    """vit_nano with AdaLoRA (non-trivial lambdas, some components masked) and full QAT."""
    torch.manual_seed(0)
    sam = build_sam("vit_nano")
    with torch.no_grad():
        sam.image_encoder.pos_embed.normal_(0, 0.05)
    adalora.inject_adalora(sam, adalora.AdaLoRAConfig(r_init=8, r_target=4))
    with torch.no_grad():
        for m in adalora.adalora_modules(sam).values():
            m.lora_lambda.normal_(0, 0.5)
            m.rank_mask[1::3] = 0
    apply_qat(sam, "full", quantize_extra=extra)
    return sam


@pytest.fixture(scope="module")
def qat_model():
    return _qat_model()


@pytest.fixture(scope="module")
def paper_file(qat_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "model.safetensors"
    export_model(qat_model, path, profile="paper", spec=qat_model.spec,
                 metadata={"provenance": {"command": "adaqat train --stage 2", "commit": "abc123"}})
    return path


def test_round_trip_paper_matches_fake_quant_model(qat_model, paper_file):
    ref = _logits(qat_model)
    state_before = {k: v.clone() for k, v in qat_model.state_dict().items()}
    sam = load_model_file(paper_file)
    meta = sam.meta
    out = _logits(sam)
    assert (out - ref).abs().max() <= 1e-5
    assert ref.abs().max() > 1e-2  # the comparison is not between two near-zero maps
    # the caller's model was not touched (adapters still injected, still QAT)
    assert len(adalora.adalora_modules(qat_model)) == 2
    assert type(qat_model.image_encoder.blocks[0].mlp.lin1) is QuantLinear
    assert all(torch.equal(v, state_before[k]) for k, v in qat_model.state_dict().items())
    # the loaded model is a plain inference SAM
    assert not sam.training and sam.spec == qat_model.spec
    assert all(type(m) is not QuantLinear for m in sam.modules())
    assert not adalora.adalora_modules(sam)


def test_metadata_contents(qat_model, paper_file):
    meta = load_model_file(paper_file).meta
    assert meta["format"] == "adaqat-model" and meta["format_version"] == 1 and meta["profile"] == "paper"
    assert meta["spec"] == qat_model.spec.to_dict() | {"global_attn_indexes": [1], "pixel_mean": list(
        qat_model.spec.pixel_mean), "pixel_std": list(qat_model.spec.pixel_std)}
    assert len(meta["int8_layers"]) == 53 and not any("qkv" in n for n in meta["int8_layers"])
    assert meta["qat"]["variant"] == "full" and meta["qat"]["prompt_encoder_linears"] == 0
    pre = meta["preprocessing"]
    assert pre["image_size"] == 128 and pre["resize"] == "longest_side" and pre["gray_to_rgb"] is True
    masks = meta["rank_masks"]["image_encoder.blocks.0.attn.qkv"]
    assert masks == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    assert meta["provenance"]["commit"] == "abc123"


def test_int8_tensors_reproduce_fake_quant_weights_bit_exactly(qat_model, paper_file):
    with safe_open(str(paper_file), "pt") as f:
        keys = set(f.keys())
        q = f.get_tensor("image_encoder.blocks.1.mlp.lin1.weight.int8")
        s = f.get_tensor("image_encoder.blocks.1.mlp.lin1.weight.scale")
        bias = f.get_tensor("image_encoder.blocks.1.mlp.lin1.bias")
        qkv = f.get_tensor("image_encoder.blocks.1.attn.qkv.weight")
    assert q.dtype == torch.int8 and s.dtype == torch.float32 and s.numel() == 1
    assert bias.dtype == torch.float32 and qkv.dtype == torch.float32
    w = qat_model.image_encoder.blocks[1].mlp.lin1.weight
    assert torch.equal(q.float() * s, fake_quant_int8(w).detach())
    assert sum(k.endswith(".int8") for k in keys) == 53
    assert not any("lora" in k or "rank_mask" in k for k in keys)


def test_deploy_and_fp32_profiles(qat_model, paper_file, tmp_path):
    ref = _logits(qat_model)
    deploy = export_model(qat_model, tmp_path / "d.safetensors", profile="deploy", spec=qat_model.spec)
    fp32 = export_model(qat_model, tmp_path / "f.safetensors", profile="fp32", spec=qat_model.spec)
    paper = paper_file.stat().st_size
    assert deploy["bytes"] < paper < fp32["bytes"]
    with safe_open(str(tmp_path / "d.safetensors"), "pt") as f:
        assert f.get_tensor("image_encoder.blocks.0.attn.qkv.weight").dtype == torch.float16
        assert f.get_tensor("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix").dtype == torch.float32
    sam = load_model_file(tmp_path / "d.safetensors")
    meta = sam.meta
    assert meta["profile"] == "deploy"
    assert (_logits(sam) - ref).abs().max() <= 2e-3 * max(1.0, ref.abs().max().item())
    sam = load_model_file(tmp_path / "f.safetensors")
    meta = sam.meta
    assert meta["int8_layers"] == [] and fp32["n_int8_tensors"] == 0
    assert (_logits(sam) - ref).abs().max() <= 1e-5  # stores the effective (fake-quant) weights
    comp = file_compression(paper_file, qat_model.spec, own_fp32_bytes=fp32["bytes"])
    assert comp["ratio_vs_own_fp32"] == pytest.approx(fp32["bytes"] / paper)
    assert comp["ratio_vs_official"] is None  # no official checkpoint for vit_nano
    assert file_compression(paper_file, qat_model.spec)["own_fp32_estimated"] is True


def test_quantize_extra_round_trip(tmp_path):
    sam = _qat_model(extra=True)
    summary = export_model(sam, tmp_path / "x.safetensors", spec=sam.spec)
    with safe_open(str(tmp_path / "x.safetensors"), "pt") as f:
        keys = set(f.keys())
    for key in ("image_encoder.pos_embed", "image_encoder.blocks.0.attn.rel_pos_h",
                "image_encoder.patch_embed.proj.weight", "image_encoder.blocks.0.mlp.lin1.bias",
                "mask_decoder.output_upscaling.0.weight"):
        assert key + ".int8" in keys and key not in keys, key
    assert "image_encoder.blocks.0.attn.qkv.bias" in keys
    assert summary["n_int8_tensors"] > 53 * 2
    loaded = load_model_file(tmp_path / "x.safetensors")
    assert (_logits(loaded) - _logits(sam)).abs().max() <= 1e-5


def test_ptq_from_official_style_checkpoint(tmp_path):
    torch.manual_seed(1)
    torch.save(build_sam("vit_nano").state_dict(), tmp_path / "sam.pth")
    with pytest.raises(ModelLoadError):  # vit_nano is not a preset shape of vit_b
        ptq_from_checkpoint(tmp_path / "sam.pth")
    sam = ptq_from_checkpoint(tmp_path / "sam.pth", "vit_nano")
    assert sum(type(m) is QuantLinear for m in sam.modules()) == 53
    export_model(sam, tmp_path / "ptq.safetensors", spec=sam.spec)
    loaded = load_model_file(tmp_path / "ptq.safetensors")
    meta = loaded.meta
    assert (_logits(loaded) - _logits(sam)).abs().max() <= 1e-5


def test_export_is_atomic_and_rejects_reserved_keys(qat_model, tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    export_model(qat_model, path, spec=qat_model.spec)
    original = path.read_bytes()
    with pytest.raises(ValueError, match="format"):
        export_model(qat_model, path, spec=qat_model.spec, metadata={"format": "other"})
    with pytest.raises(ValueError, match="profile"):
        export_model(qat_model, path, spec=qat_model.spec, profile="int4")

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as fh:
            fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken_save)
    with pytest.raises(OSError):
        export_model(qat_model, path, spec=qat_model.spec)
    assert path.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_truncated_files_refused(paper_file, tmp_path):
    data = paper_file.read_bytes()
    for n, cut in [("empty", 0), ("head", 5), ("header", 200), ("data", len(data) - 1000)]:
        bad = tmp_path / f"{n}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(ModelLoadError) as err:
            load_model_file(bad)
        assert "\n" not in str(err.value) and str(bad) in str(err.value)
    with pytest.raises(ModelLoadError, match="not found"):
        load_model_file(tmp_path / "missing.safetensors")


def _rewrite(src, dst, meta=None, drop=None):
    with safe_open(str(src), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != drop}
        original = json.loads(f.metadata()["adaqat"])
    save_file(tensors, str(dst), metadata=None if meta is None else {"adaqat": json.dumps(meta(original))})
    return dst


@pytest.mark.parametrize("case, edit, match", [
    ("no metadata", None, "format missing"),
    ("format missing", lambda m: {k: v for k, v in m.items() if k != "format"}, "unknown model format"),
    ("wrong format", lambda m: m | {"format": "sam-checkpoint"}, "unknown model format"),
    ("version", lambda m: m | {"format_version": 99}, "version 99"),
    ("spec missing", lambda m: {k: v for k, v in m.items() if k != "spec"}, "invalid model spec"),
    ("spec unknown field", lambda m: m | {"spec": m["spec"] | {"colour": 3}}, "invalid model spec"),
    ("spec bad value", lambda m: m | {"spec": m["spec"] | {"embed_dim": "big"}}, "invalid model spec"),
    ("spec other shape", lambda m: m | {"spec": m["spec"] | {"embed_dim": 96, "num_heads": 2}}, "shape mismatch"),
    ("spec absurd size", lambda m: m | {"spec": m["spec"] | {"depth": 10**6}}, "implausibly large depth"),
    ("not an object", lambda m: [m], "unknown model format"),
])
def test_bad_metadata_refused(paper_file, tmp_path, case, edit, match):
    bad = _rewrite(paper_file, tmp_path / "bad.safetensors", edit)
    with pytest.raises(ModelLoadError, match=match):
        load_model_file(bad)


def test_missing_tensor_refused(paper_file, tmp_path):
    bad = _rewrite(paper_file, tmp_path / "bad.safetensors", lambda m: m, drop="mask_decoder.iou_token.weight")
    with pytest.raises(ModelLoadError, match="missing keys"):
        load_model_file(bad)
    bad = _rewrite(paper_file, tmp_path / "bad2.safetensors", lambda m: m,
                   drop="image_encoder.blocks.0.mlp.lin1.weight.scale")
    with pytest.raises(ModelLoadError, match="scale"):
        load_model_file(bad)


class _Payload:
    """Unpickling this object creates the marker file (it must never happen)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_files_refused_without_executing(tmp_path):
    control = tmp_path / "control_marker"
    pickle.loads(pickle.dumps(_Payload(control))).close()
    assert control.exists()  # the payload really would run when unpickled
    marker = tmp_path / "marker"
    zipped = tmp_path / "model.safetensors"
    torch.save({"weights": _Payload(marker)}, zipped)  # torch.save: zip archive holding a pickle
    plain = tmp_path / "plain.safetensors"
    plain.write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    for path in (zipped, plain):
        with pytest.raises(ModelLoadError, match="is a pickle/zip file; only safetensors model files are accepted"):
            load_model_file(path)
    assert not marker.exists()


def test_header_length_with_low_byte_0x80_is_not_mistaken_for_a_pickle(paper_file, tmp_path):
    """0x80 is the first byte of every safetensors file whose header length is 128 mod 256."""
    for pad in range(0, 400, 4):
        path = _rewrite(paper_file, tmp_path / "pad.safetensors", lambda m: m | {"pad": "x" * pad})
        if path.read_bytes()[:1] == b"\x80":
            break
    else:
        pytest.fail("could not produce a header length of 128 mod 256")
    sam = load_model_file(path)
    meta = sam.meta
    assert meta["pad"] == "x" * pad


def test_arithmetic_compression_vit_b():
    c = arithmetic_compression("vit_b", r_init=48, variant="full")
    assert round(c["ratio"], 4) == 2.2436 and c["ratio_str"] == "2.2436\u00d7"
    assert round(c["fp32_mib"], 2) == 349.62 and round(c["int8_mib"], 2) == 155.83
    assert c["adapter_params"] == 2_655_936
    assert c["n_quantized_linears"] == 36 + 47 and c["n_fp32_linears"] == 12 and c["prompt_encoder_linears"] == 0
    d = arithmetic_compression("vit_b", variant="decoder")
    assert d["fp32_bytes"] == c["fp32_bytes"] and 1.0 < d["ratio"] < c["ratio"]


@pytest.mark.slow
def test_measured_file_ratios_vit_b(tmp_path):
    """Writes ~550 MB at peak: a random ViT-B .pth (same size as the official one) and PTQ files."""
    pth = tmp_path / "sam_vit_b.pth"
    torch.save(build_sam("vit_b").state_dict(), pth)
    pth_bytes = pth.stat().st_size
    assert abs(pth_bytes - OFFICIAL_CHECKPOINT_BYTES["vit_b"]) < 100_000
    ratios = {}
    for extra in (False, True):
        sam = ptq_from_checkpoint(pth, "vit_b", quantize_extra=extra)
        for profile in ("paper", "deploy"):
            out = tmp_path / "m.safetensors"
            summary = export_model(sam, out, profile=profile, spec=sam.spec)
            ratios[(profile, extra)] = file_compression(out, sam.spec)["ratio_vs_official"]
            if (profile, extra) == ("paper", False):
                assert summary["int8_params"] == 67_666_944
                assert load_model_file(out).spec == sam.spec
            out.unlink()
        del sam
    pth.unlink()
    assert 2.17 < ratios[("paper", False)] < 2.19  # DESIGN rule set only: short of 2.24 (known)
    assert ratios[("paper", True)] >= 2.24  # quantize_extra: + biases, convs, position tensors
    assert ratios[("deploy", False)] >= 3.0 and ratios[("deploy", True)] >= 3.0
    assert fp32_state_bytes("vit_b") / pth_bytes == pytest.approx(1.0, abs=1e-3)


def test_bad_training_checkpoint_metadata_refused(tmp_path):
    """Checkpoint metadata that is valid JSON but not a checkpoint description gets a one-line error."""
    from napari_adaqat.model.formats.checkpoint import describe_model, load_checkpoint_model, save_checkpoint
    from napari_adaqat.model.loading import load_model

    sam = build_sam("vit_nano")
    good = tmp_path / "good.safetensors"
    description = describe_model(PRESETS["vit_nano"], None, {"variant": "full", "unknown_option": 1})
    apply_qat(sam, "full")
    save_checkpoint(good, sam, description, {"epoch": 1})
    loaded = load_checkpoint_model(good)
    meta = loaded.meta  # unknown qat options are ignored, not passed on
    assert meta["epoch"] == 1 and quantized_modules(loaded)
    tensors = load_file(str(good))
    for name, raw in {"list": "[1, 2]", "string": '"checkpoint"',
                      "model not an object": json.dumps({"format": "adaqat-checkpoint", "model": 3}),
                      "absurd spec": json.dumps({"format": "adaqat-checkpoint", "format_version": 1, "model":
                                                 {**description, "spec": {**description["spec"], "embed_dim": 10**7}}})}.items():
        bad = tmp_path / f"{name.replace(' ', '_')}.safetensors"
        save_file(tensors, str(bad), metadata={"adaqat": raw})
        for loader in (load_checkpoint_model, load_model):
            with pytest.raises(ModelLoadError) as err:
                loader(bad)
            assert "\n" not in str(err.value) and str(bad) in str(err.value), (name, str(err.value))


@pytest.mark.parametrize("variant, quantized", [("full", 53), ("decoder", 47)])
def test_info_describes_the_files_own_variant_and_adapters(nano_pth, tmp_path, variant, quantized):
    """A QA find: ``adaqat info FILE`` gave the paper's arithmetic for full QAT with rank-48 adapters whatever the
    file held (a decoder-only INT8 file read "53 quantized linears, 2.43x")."""
    from napari_adaqat.report.model_info import file_report

    sam = ptq_from_checkpoint(nano_pth, "vit_nano", variant=variant)
    export_model(sam, tmp_path / "m.safetensors", spec=sam.spec)
    info = file_report(tmp_path / "m.safetensors")
    arithmetic = info["paper_arithmetic_compression"]
    assert info["int8_layers"] == arithmetic["n_quantized_linears"] == quantized
    assert arithmetic["variant"] == variant and arithmetic["r_init"] == 0 and arithmetic["adapter_params"] == 0
