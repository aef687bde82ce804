"""The GPU path (issue 15), tested on the CPU: batched embedding (``embed_many``), bf16 autocast of the
encoder, and the read-ahead of ``segment_files`` / ``evaluate`` (forced on with ``batched``)."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import napari_adaqat.inference.batch as batch_mod
import napari_adaqat.report.evaluate as evaluate_mod
import napari_adaqat.report.scores as scores_mod
from napari_adaqat.cli.segment_cmd import add_arguments
from napari_adaqat.inference.batch import segment_files
from napari_adaqat.inference.engine import Engine, batched
from napari_adaqat.inference.predictor import BoxPredictor, EmbeddingCache
from napari_adaqat.io import read_image, read_mask
from napari_adaqat.model.build import build_sam


def _images(cxr_dir: Path, n: int = 3) -> list[np.ndarray]:
    return [read_image(p).pixels for p in sorted((cxr_dir / "images").glob("*.png"))[:n]]


def _sam(model_type: str = "vit_tiny"):
    torch.manual_seed(0)
    return build_sam(model_type)


def _features(predictor: BoxPredictor, image: np.ndarray) -> torch.Tensor:
    item = predictor.cache.get(predictor.key_of(image))
    assert item is not None, "image not in the cache"
    return item.features


def test_embed_many_equals_set_image_and_skips_cached(cxr_dir):
    sam = _sam()
    images = _images(cxr_dir)
    one = BoxPredictor(sam)
    many = BoxPredictor(sam, cache=EmbeddingCache(max_items=1))  # grows to hold a batch
    forwards = []
    hook = many.sam.image_encoder.patch_embed.register_forward_pre_hook(
        lambda module, args: forwards.append(args[0].shape[0]))  # batch size of each encoder forward
    assert many.embed_many(images, batch_size=2) == 3
    hook.remove()
    assert forwards == [2, 1] and many.cache.max_items == 2  # one forward per chunk; the cache holds a batch
    many.cache.max_items = 8
    assert many.embed_many(images, batch_size=3) == 1  # the first one was evicted by the third
    assert many.embed_many(images + [images[0]], batch_size=2) == 0  # all cached, duplicates too
    for image in images:
        a, b = _features(one.set_image(image), image), _features(many, image)
        assert b.shape == a.shape and b.shape[0] == 1 and b.dtype == torch.float32
        assert torch.allclose(a, b, rtol=0, atol=1e-5 * float(a.abs().max()))
        many.set_image(image)
        assert many.last_embed_from_cache
        assert np.array_equal(one.predict().masks, many.predict().masks)
    assert many.embed_many([images[0][::-1].copy(), images[1]]) == 1  # only the new one


def test_bf16_encoder_matches_fp32_and_caches_float32(cxr_dir):
    sam = _sam()
    image = _images(cxr_dir, 1)[0]
    fp32 = BoxPredictor(sam)
    bf16 = BoxPredictor(sam, bf16=True)
    assert not fp32.bf16  # default: bf16 on CUDA only
    a, b = _features(fp32.set_image(image), image), _features(bf16.set_image(image), image)
    assert b.dtype == torch.float32
    assert not torch.equal(a, b)  # the encoder did run in bf16
    assert torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) >= 0.99
    assert bf16.predict().logits.dtype == torch.float32
    batched_bf16 = BoxPredictor(sam, bf16=True)
    batched_bf16.embed_many([image])
    assert _features(batched_bf16, image).dtype == torch.float32


@pytest.fixture()
def scans(tmp_path, cxr_dir) -> list[Path]:
    folder = tmp_path / "scans"
    folder.mkdir()
    for path in sorted((cxr_dir / "images").glob("*.png"))[:3]:
        shutil.copy(path, folder / path.name)
    (folder / "b_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return sorted(folder.iterdir())  # the corrupt file sits inside the first chunk of 2


def _run(files: list[Path], out: Path, model, **kw) -> dict[str, object]:
    return {Path(r.file).name: r for r in segment_files(files, model, out, device="cpu", **kw)}


def test_segment_files_batched_path(scans, tmp_path, monkeypatch):
    sam = _sam("vit_nano")
    plain = _run(scans, tmp_path / "plain", BoxPredictor(sam))
    model = BoxPredictor(sam)
    sizes, reads = [], []
    embed_many = model.embed_many
    monkeypatch.setattr(model, "embed_many", lambda images, n: sizes.append(len(images)) or embed_many(images, n))
    read_input = batch_mod.read_input
    monkeypatch.setattr(batch_mod, "read_input", lambda path, frame=None: reads.append(path) or read_input(path, frame))
    monkeypatch.setattr(batch_mod, "batched", lambda device: True)  # the GPU path, on the CPU
    forwards = []
    model.sam.image_encoder.patch_embed.register_forward_pre_hook(lambda m, args: forwards.append(args[0].shape[0]))
    rows = _run(scans, tmp_path / "batched", model, batch_size=2)
    assert sizes == [1, 2]  # chunk 1: the corrupt file is not embedded; chunk 2: two images
    assert forwards == [1, 2]  # the prompts found every image cached: no encoder forward of its own
    assert sorted(reads) == scans  # every file read once
    assert {n: r.status for n, r in rows.items()} == {n: r.status for n, r in plain.items()}
    assert rows["b_broken.png"].status == "error" and rows["b_broken.png"].error
    assert [r.status for r in rows.values()].count("ok") == 3
    for name, row in rows.items():
        if row.status == "ok":
            assert np.array_equal(read_mask(row.mask), read_mask(plain[name].mask))
            assert row.area_px == plain[name].area_px and row.box == plain[name].box
    again = _run(scans, tmp_path / "batched", model, batch_size=2)  # rerun: finished files skipped
    assert [r.status for r in again.values()].count("skipped") == 3 and sizes == [1, 2]


def test_a_failing_prefetch_falls_back_to_one_by_one(scans, tmp_path, monkeypatch):
    model = BoxPredictor(_sam("vit_nano"))

    def out_of_memory(images, n):
        raise RuntimeError("CUDA out of memory\nmore lines")

    monkeypatch.setattr(model, "embed_many", out_of_memory)
    monkeypatch.setattr(batch_mod, "batched", lambda device: True)
    with pytest.warns(RuntimeWarning, match="CUDA out of memory"):
        rows = _run(scans, tmp_path / "out", model, batch_size=2)
    assert [r.status for r in rows.values()].count("ok") == 3


def test_evaluate_batched_gives_the_same_scores(cxr_dir, tmp_path, monkeypatch):
    sam = _sam("vit_nano")
    plain = evaluate_mod.evaluate(cxr_dir, BoxPredictor(sam), None, tmp_path / "plain", split="all", document=False)
    model = BoxPredictor(sam)
    sizes = []
    embed_many = model.embed_many
    monkeypatch.setattr(model, "embed_many", lambda images, n: sizes.append(len(images)) or embed_many(images, n))
    monkeypatch.setattr(evaluate_mod, "batched", lambda device: True)
    reads = []
    for module in (evaluate_mod, scores_mod):  # each image is read once: for the batch, then reused
        real = module.read_image
        monkeypatch.setattr(module, "read_image", lambda path, _real=real: reads.append(str(path)) or _real(path))
    fast = evaluate_mod.evaluate(cxr_dir, model, None, tmp_path / "fast", split="all", document=False, batch_size=3)
    assert sizes == [3, 1]
    assert len(reads) == len(set(reads)) == 4
    assert fast["n"] == plain["n"] == 4
    for metric in ("dice", "iou", "dice_256"):
        assert fast["model"][metric]["mean"] == pytest.approx(plain["model"][metric]["mean"], abs=1e-9)


def test_batched_only_off_the_cpu_and_the_cli_option():
    assert not batched("cpu") and batched("cuda") and batched("cuda:1") and batched("mps")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["x.png", "--out", "o"]
    assert parser.parse_args(base).batch_size == 8
    assert parser.parse_args(base + ["--batch-size", "2"]).batch_size == 2
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--batch-size", "0"])
    assert "ignored on the CPU" in parser.format_help()
    engine = Engine()
    model = BoxPredictor(_sam("vit_nano"))
    blank = np.zeros((64, 64), np.uint8)  # refused by check_segmentable: never embedded
    assert engine.prefetch([blank], model) >= 0 and len(model.cache) == 0
