"""Per-block activation checkpointing of the encoder: the same loss and gradients, and the peak
memory of each training step in progress.jsonl."""
from __future__ import annotations

import subprocess
import sys

import torch

from napari_adaqat.model.adalora import AdaLoRAConfig, inject_adalora
from napari_adaqat.model.build import build_sam
from napari_adaqat.model.forward import decode_boxes, embed
from napari_adaqat.train.config import make_config
from napari_adaqat.train.progress import MemoryMeter, read_progress
from napari_adaqat.train.run import run as train


def _stage1_model(model_type: str):
    torch.manual_seed(0)
    sam = build_sam(model_type)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "rel_pos" in name:
                p.normal_(0.0, 0.5)
    inject_adalora(sam, AdaLoRAConfig(r_init=8, r_target=4))
    for name, p in sam.named_parameters():  # Stage 1: adapters and the decoder train
        p.requires_grad_("lora_" in name or name.startswith("mask_decoder."))
    return sam.train()


def _loss_and_grads(sam, images, boxes, grad_checkpoint: bool, fast: bool = True):
    sam.zero_grad(set_to_none=True)
    low, _ = decode_boxes(sam, embed(sam, images, grad_checkpoint, fast=fast), boxes)
    loss = torch.nn.functional.binary_cross_entropy_with_logits(low, (low.detach() > 0).float()) + low.pow(2).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in sam.named_parameters() if p.grad is not None}


def _close(a: dict, b: dict, rtol: float) -> bool:
    """Gradients agree relative to the overall gradient norm (some are exactly zero in theory, e.g.
    the decoder's key biases, which only shift softmax rows: their float noise has no relative scale)."""
    scale = torch.sqrt(sum(g.pow(2).sum() for g in b.values()))
    return a.keys() == b.keys() and all(float((a[n] - b[n]).norm()) <= rtol * float(scale) for n in b)


def test_checkpointing_gives_the_same_loss_and_gradients():
    for model_type in ("vit_nano", "vit_tiny"):
        sam = _stage1_model(model_type)
        size = sam.image_encoder.img_size
        images = torch.randn(2, 3, size, size)
        boxes = torch.tensor([[10.0, 12.0, size - 20.0, size - 9.0], [3.0, 30.0, size / 2, size - 1.0]])
        plain_loss, plain = _loss_and_grads(sam, images, boxes, False)
        ckpt_loss, ckpt = _loss_and_grads(sam, images, boxes, True)
        assert torch.equal(plain_loss, ckpt_loss)
        assert any(n.startswith("image_encoder.blocks.0.") for n in plain)  # gradients reach the first block
        assert _close(ckpt, plain, 1e-6)
        ref_loss, reference = _loss_and_grads(sam, images, boxes, False, fast=False)  # stock encoder forward
        assert torch.allclose(plain_loss, ref_loss, rtol=1e-5) and _close(plain, reference, 1e-4)


def test_checkpointing_is_on_by_default_where_it_pays():
    """Unset, ``grad_checkpoint`` resolves per model: on for ViT-B at 1024 px (4096 tokens x 768
    channels), off for the small presets and for ViT-B at 512 px."""
    from napari_adaqat.model.forward import grad_checkpoint_pays

    with torch.device("meta"):
        assert grad_checkpoint_pays(build_sam("vit_b"))
        assert not grad_checkpoint_pays(build_sam("vit_b", 512))
        assert not grad_checkpoint_pays(build_sam("vit_tiny"))
    assert make_config(None, 1, {}).grad_checkpoint is None


def test_memory_meter_reports_a_step_peak():
    # in a fresh interpreter: in a long test session the allocator may reuse freed resident memory
    code = ("import torch\n"
            "from napari_adaqat.train.progress import MemoryMeter\n"
            "meter = MemoryMeter('cpu'); meter.reset(); before = meter.peak_mb()\n"
            "block = torch.ones(64 * 2**20 // 4); block += 1  # 64 MiB, touched\n"
            "during = meter.peak_mb()\n"
            "assert meter.kind == 'rss' and before is not None and during >= before + 32, (before, during)\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_progress_records_peak_memory_per_step(dataset, tmp_path, nano_pth):
    cfg = make_config(None, 1, dict(data=str(dataset), out=str(tmp_path / "run"), model_type="vit_nano",
                                    checkpoint=str(nano_pth), device="cpu", batch_size=2, epochs=1, patience=0,
                                    grad_checkpoint=True, log_every=1))
    train(cfg)
    records = read_progress(tmp_path / "run" / "progress.jsonl")
    steps = [r for r in records if r["kind"] == "step"]
    assert steps and all(r["peak_mem_mb"] > 50 and r["mem_kind"] == "rss" for r in steps)
    epoch = next(r for r in records if r["kind"] == "epoch")
    assert epoch["peak_mem_mb"] == max(r["peak_mem_mb"] for r in steps)
    assert records[0]["grad_checkpoint"] is True
