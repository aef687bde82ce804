import pytest
import torch

from napari_adaqat.model.build import ModelLoadError, PRESETS, build_sam, load_sam_checkpoint, parameter_breakdown


def test_vit_b_parameter_counts_match_official():
    counts = parameter_breakdown(build_sam("vit_b"))
    assert counts == {"total": 93_735_472, "image_encoder": 89_670_912,
                      "mask_decoder": 4_058_340, "prompt_encoder": 6_220}


@pytest.mark.parametrize("name", ["vit_tiny", "vit_nano"])
def test_small_presets_run_forward(name):
    sam = build_sam(name)
    size = PRESETS[name].image_size
    with torch.no_grad():
        feats = sam.image_encoder(torch.zeros(1, 3, size, size))
    assert feats.shape == (1, PRESETS[name].prompt_dim, size // 16, size // 16)


def test_checkpoint_roundtrip_and_resize(nano_pth):
    sam = load_sam_checkpoint(nano_pth, "vit_nano")
    assert sam.image_encoder.img_size == 128
    ref = torch.load(nano_pth, weights_only=True)
    assert torch.equal(sam.state_dict()["mask_decoder.iou_token.weight"], ref["mask_decoder.iou_token.weight"])
    bigger = load_sam_checkpoint(nano_pth, "vit_nano", image_size=192)
    assert bigger.image_encoder.pos_embed.shape[1:3] == (12, 12)
    assert bigger.prompt_encoder.image_embedding_size == (12, 12)
    with torch.no_grad():
        assert bigger.image_encoder(torch.zeros(1, 3, 192, 192)).shape[-1] == 12


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_checkpoint_errors_are_one_line(tmp_path, nano_pth):
    with pytest.raises(ModelLoadError) as exc:
        load_sam_checkpoint(tmp_path / "missing.pth", "vit_nano")
    assert "not found" in _one_line(exc)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"garbage" * 100)
    with pytest.raises(ModelLoadError) as exc:
        load_sam_checkpoint(corrupt, "vit_nano")
    assert "corrupt.pth" in _one_line(exc)
    truncated = tmp_path / "trunc.pth"
    truncated.write_bytes(nano_pth.read_bytes()[:5000])
    with pytest.raises(ModelLoadError) as exc:
        load_sam_checkpoint(truncated, "vit_nano")
    assert "trunc.pth" in _one_line(exc)
    state = torch.load(nano_pth, weights_only=True)
    state.pop("mask_decoder.iou_token.weight")
    state["extra.weight"] = torch.zeros(1)
    bad_keys = tmp_path / "keys.pth"
    torch.save(state, bad_keys)
    with pytest.raises(ModelLoadError) as exc:
        load_sam_checkpoint(bad_keys, "vit_nano")
    msg = _one_line(exc)
    assert "missing" in msg and "unexpected" in msg and "iou_token" in msg
    with pytest.raises(ModelLoadError) as exc:  # nano weights into the tiny architecture
        load_sam_checkpoint(nano_pth, "vit_tiny")
    assert "missing keys" in _one_line(exc)
    state = torch.load(nano_pth, weights_only=True)
    state["mask_decoder.iou_token.weight"] = torch.zeros(1, 7)
    bad_shape = tmp_path / "shape.pth"
    torch.save(state, bad_shape)
    with pytest.raises(ModelLoadError) as exc:
        load_sam_checkpoint(bad_shape, "vit_nano")
    msg = _one_line(exc)
    assert "shape mismatch" in msg and "iou_token" in msg and "(1, 7)" in msg


def test_pickled_code_is_not_executed(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, evil)
    with pytest.raises(ModelLoadError):
        load_sam_checkpoint(evil, "vit_nano")
    assert not marker.exists()
