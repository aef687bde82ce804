import json

import pytest

from napari_adaqat.cli import main


def _info(capsys, *args) -> dict:
    capsys.readouterr()
    assert main(["info", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_info_vit_b_parameters(capsys):
    report = _info(capsys, "vit_b")
    assert report["parameters"] == {"total": 93_735_472, "image_encoder": 89_670_912,
                                    "prompt_encoder": 6_220, "mask_decoder": 4_058_340}


def test_info_vit_b_adalora_budget(capsys):
    report = _info(capsys, "vit_b", "--mode", "adalora")
    assert report["adapters"]["nominal"] == 2_655_936
    assert report["adapters"]["effective_after_pruning"] == 1_770_624
    assert report["trainable"] == {"nominal": 2_655_936 + 4_058_340, "effective": 1_770_624 + 4_058_340,
                                   "fraction_of_total": pytest.approx(0.07163, abs=1e-5)}


def test_info_modes_on_a_small_preset(capsys):
    decoder = _info(capsys, "vit_nano", "--mode", "decoder")
    assert decoder["trainable"]["nominal"] == decoder["parameters"]["mask_decoder"]
    full = _info(capsys, "vit_nano", "--mode", "full")
    assert full["trainable"]["nominal"] == full["parameters"]["total"]
    lora = _info(capsys, "vit_nano", "--mode", "lora")
    assert lora["adapters"]["effective_after_pruning"] == lora["adapters"]["nominal"]  # fixed rank
    qat = _info(capsys, "vit_b", "--mode", "qat")
    assert qat["quantized_linears"] == 36 + 47 and qat["prompt_encoder_linears"] == 0
    assert round(qat["compression"]["ratio"], 4) == 2.2436
    assert qat["stage2_trainable_paper"] == 12 * 3 * 48  # only Λ


def test_info_unknown_target_is_one_line_error(capsys):
    assert main(["info", "no_such_model.safetensors"]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and err.count("\n") == 1


def test_info_on_a_model_file_names_its_own_architecture(capsys):
    """A QA find: a fine-tuned file's info showed only its run's train_config (model_type vit_b, mask_refiner 0,
    the options' values), not the hybrid model with a 486k-parameter refiner that it is."""
    from napari_adaqat.model import loading

    if not loading.DEFAULT_MODEL.is_file():
        pytest.skip("bundled default model not installed")
    report = _info(capsys, "default")
    assert report["architecture"]["name"].startswith("hybrid") and report["architecture"]["mask_refiner"] > 0
    assert report["parameters"]["mask_refiner"] > 0
