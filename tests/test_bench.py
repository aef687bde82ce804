"""``adaqat bench``: stock SamPredictor vs BoxPredictor, on tiny models only."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from napari_adaqat.cli import bench_cmd
from napari_adaqat.bench.speed import BenchConfig, load_input_image, run_side, synthetic_radiograph

KEYS = {
    "stock_embed_s", "embed_s", "embed_ratio", "stock_prompt_ms", "prompt_ms", "prompt_ms_p90",
    "stock_peak_rss_mb", "peak_rss_mb", "feature_cosine", "device", "model_type", "image_size", "repeats",
    "torch", "cpu_count", "hostname", "platform", "timestamp", "mask_iou", "mask_identical",
}


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="adaqat bench")
    bench_cmd.add_arguments(parser)
    return parser.parse_args(argv)


def test_bench_end_to_end_vit_nano(tmp_path, capsys):
    out = tmp_path / "sub" / "bench.json"
    args = _parse(["--model-type", "vit_nano", "--repeats", "2", "--warmup", "1", "--prompt-repeats", "3",
                   "--device", "cpu", "--threads", "1", "--small-size", "64", "--out", str(out)])
    assert bench_cmd.run(args) == 0
    report = json.loads(out.read_text())
    assert KEYS <= report.keys()
    assert report["model_type"] == "vit_nano" and report["image_size"] == 128 and report["device"] == "cpu"
    assert report["repeats"] == 2 and report["same_weights"]
    assert report["feature_cosine"] >= 0.999 and report["mask_iou"] == 1.0
    for key in ("stock_embed_s", "embed_s", "stock_prompt_ms", "prompt_ms"):
        assert 0 < report[key] < 60_000
    assert report["prompt_ms_p90"] >= report["prompt_ms"]
    assert report["embed_ratio"] > 0  # wall time: a shared test CPU can skew it any amount (seen: 43x)
    assert 0.1 < report["embed_cpu_ratio"] < 10  # CPU time of the same network, one thread: stable
    assert 100 < report["stock_peak_rss_mb"] < 8000 and 0.5 < report["peak_rss_mb"] / report["stock_peak_rss_mb"] < 2
    assert len(report["sides"]["ours"]["embed_times_s"]) == 2
    assert report["small_image_size"] == 64 and report["sides"]["small"]["image_size"] == 64
    assert report["small_embed_ratio"] == pytest.approx(report["small_embed_s"] / report["stock_embed_s"])
    assert report["embed_cpu_s"] > 0 and report["embed_cpu_ratio"] == pytest.approx(
        report["embed_cpu_s"] / report["stock_embed_cpu_s"]) and report["prompt_cpu_ms"] > 0
    assert "feature cosine" in capsys.readouterr().out


def test_ours_keeps_an_int8_file_int8_and_matches_stock(tmp_path):
    """With an INT8 model file, stock runs the dequantized FP32 model and ours the INT8-in-memory
    one: the same weights (digest of the dequantized tensors), features and mask."""
    import torch

    from napari_adaqat.model.build import build_sam
    from napari_adaqat.model.formats.model_file import export_model
    from napari_adaqat.model.qat import apply_qat

    torch.manual_seed(0)
    sam = build_sam("vit_nano")
    apply_qat(sam, "full")
    path = tmp_path / "nano_int8.safetensors"
    export_model(sam, path, profile="paper")
    config = BenchConfig(model_type="vit_nano", model=str(path), repeats=1, warmup=0, prompt_repeats=2, threads=1,
                         small_size=64)
    image = _stock_and_ours_agree(config)
    small, small_feat, small_mask = run_side("small", config, image, log=lambda _: None)
    assert small["image_size"] == 64 and small_feat.shape[-1] == 4 and small_mask.shape == image.shape[:2]


def _stock_and_ours_agree(config: BenchConfig) -> np.ndarray:
    """Run both sides in this process: the same weights digest, embedding and mask; returns the image."""
    image = load_input_image(None)
    stock, s_feat, s_mask = run_side("stock", config, image, log=lambda _: None)
    ours, o_feat, o_mask = run_side("ours", config, image, log=lambda _: None)
    assert stock["weights_sha1"] == ours["weights_sha1"]
    assert np.allclose(s_feat, o_feat, atol=1e-5) and np.array_equal(s_mask, o_mask)
    assert s_mask.shape == image.shape[:2]
    return image


def test_sides_in_process_on_a_model_file(nano_pth, tmp_path):
    """The --model path: both sides load the same .pth and give the same embedding and mask."""
    _stock_and_ours_agree(BenchConfig(model_type="vit_nano", model=str(nano_pth), repeats=1, warmup=0,
                                      prompt_repeats=2, threads=1))


def test_synthetic_image_and_errors(tmp_path):
    img = synthetic_radiograph(512, seed=0)
    assert img.shape == (512, 512) and img.dtype == np.uint8 and img.std() > 20
    assert np.array_equal(img, synthetic_radiograph(512, seed=0))
    with pytest.raises(ValueError):
        bench_cmd.run(_parse(["--model-type", "vit_nano", "--repeats", "0", "--device", "cpu",
                              "--out", str(tmp_path / "x.json")]))
    with pytest.raises(FileNotFoundError):
        bench_cmd.run(_parse(["--model", str(tmp_path / "missing.pth"), "--device", "cpu",
                              "--out", str(tmp_path / "x.json")]))
    assert "peak RSS" in _parse_help()


def _parse_help() -> str:
    parser = argparse.ArgumentParser(prog="adaqat bench")
    bench_cmd.add_arguments(parser)
    return parser.format_help()
