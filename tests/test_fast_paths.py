"""The fast paths equal the reference paths: encoder features (vit_tiny, vit_b), box → mask (stock
SamPredictor), and INT8-in-memory loading (the FP32 load).  Random weights; relative-position
tables randomised, since SAM initialises them to zero (which would hide a wrong bias)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling.image_encoder import Block

from napari_adaqat.inference.embedding_cache import Embedding
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.model.adalora import AdaLoRAConfig, inject_adalora
from napari_adaqat.model.build import build_sam
from napari_adaqat.model.fast_attention import _block, fast_encoder_forward, rel_pos_attention, supports_fast_path
from napari_adaqat.model.forward import embed
from napari_adaqat.model.int8_runtime import Int8Linear, plain_state_items
from napari_adaqat.model.lean_decoder import image_context, supports_lean_decoder, upsample_logits
from napari_adaqat.model.formats.model_file import export_model, load_model_file
from napari_adaqat.model.qat import apply_qat


def _sam(model_type: str, image_size: int | None = None, seed: int = 0):
    torch.manual_seed(seed)
    sam = build_sam(model_type, image_size)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "rel_pos" in name:
                p.normal_(0.0, 0.5)
    return sam


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("image_size", [256, 320])  # 320: a 20x20 grid, padded to 24x24 windows
def test_fast_encoder_equals_reference_vit_tiny(image_size):
    sam = _sam("vit_tiny", image_size)
    x = torch.randn(2, 3, image_size, image_size)
    with torch.no_grad():
        ref = sam.image_encoder(x)
        fast = embed(sam, x)
    assert fast.shape == ref.shape and _rel_err(fast, ref) < 1e-4


def test_fast_encoder_with_adapters_and_fake_quant():
    """Adapters are folded into qkv, QAT modules keep their fake-quant weights."""
    sam = _sam("vit_tiny")
    inject_adalora(sam, AdaLoRAConfig(r_init=8, r_target=4))
    apply_qat(sam, "full", quantize_extra=True)
    with torch.no_grad():
        for name, p in sam.named_parameters():
            if "lora_lambda" in name:
                p.normal_(0.0, 1.0)  # adapters that matter
    x = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        ref, fast = sam.image_encoder(x), embed(sam, x)
    assert _rel_err(fast, ref) < 1e-4


def test_vit_b_global_block_at_full_size():
    """A ViT-B global-attention block on the 64x64 grid of a 1024-px input (the chunked path)."""
    torch.manual_seed(0)
    block = Block(768, 12, use_rel_pos=True, window_size=0, input_size=(64, 64)).eval()
    with torch.no_grad():
        block.attn.rel_pos_h.normal_(0, 0.5)
        block.attn.rel_pos_w.normal_(0, 0.5)
        x = torch.randn(1, 64, 64, 768)
        ref = block(x)
        fast = _block(block, x)
    assert _rel_err(fast, ref) < 1e-4


def test_vit_b_encoder_512():
    """The whole ViT-B encoder (windowed blocks padded 32 -> 42, global blocks) at 512 px."""
    sam = _sam("vit_b", 512)
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        ref = sam.image_encoder(x)
        fast = fast_encoder_forward(sam.image_encoder, x)
    assert _rel_err(fast, ref) < 1e-4


def test_rel_pos_attention_chunks_agree():
    """One chunk or many: the same attention (the bias budget only changes memory)."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(6, 12 * 10, 16) for _ in range(3))
    rh, rw = torch.randn(23, 16), torch.randn(19, 16)
    whole = rel_pos_attention(q, k, v, rh, rw, (12, 10))
    chunked = rel_pos_attention(q, k, v, rh, rw, (12, 10), max_bias_elements=1)
    assert torch.allclose(whole, chunked, atol=1e-6)
    per_head = 12 * 10 * 12 * 10  # one head's whole (N, N) bias
    for heads in (2, 4):  # 6 heads in groups of 2, and of 4 + a partial group of 2 (reused buffer sliced)
        grouped = rel_pos_attention(q, k, v, rh, rw, (12, 10), max_bias_elements=heads * per_head)
        assert torch.allclose(whole, grouped, atol=1e-6)


def test_checkpointed_chunks_give_the_same_gradients():
    """With gradients, every chunk is checkpointed (its scores recomputed in backward): the gradients
    of q, k, v and of both relative-position tables equal those of one unchunked, uncheckpointed pass."""
    torch.manual_seed(1)
    leaves = [torch.randn(4, 8 * 6, 8, requires_grad=True) for _ in range(3)]
    tables = [torch.randn(15, 8, requires_grad=True), torch.randn(11, 8, requires_grad=True)]
    upstream = torch.randn(4, 8 * 6, 8)

    def grads(max_elements: int) -> list[torch.Tensor]:
        out = rel_pos_attention(*leaves, *tables, (8, 6), max_bias_elements=max_elements)
        return list(torch.autograd.grad((out * upstream).sum(), leaves + tables))

    with torch.no_grad():
        reference_out = rel_pos_attention(*leaves, *tables, (8, 6))
    plain = list(torch.autograd.grad((_stock_attention(*leaves, *tables, (8, 6)) * upstream).sum(), leaves + tables))
    for max_elements in (1, 8 * 6 * 6 * 2, 10 ** 9):
        saved: list[int] = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
            got_grads = grads(max_elements)
        assert saved and max(saved) < 4 * 48 * 48  # no whole (BH, N, N) scores kept for backward
        for got, want in zip(got_grads, plain):
            assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    assert torch.allclose(_stock_attention(*leaves, *tables, (8, 6)), reference_out, atol=1e-5)


def _stock_attention(q, k, v, rel_pos_h, rel_pos_w, size):
    """segment_anything's attention maths on (BH, N, c) tensors: whole scores plus add_decomposed_rel_pos."""
    from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

    attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    attn = add_decomposed_rel_pos(attn, q, rel_pos_h, rel_pos_w, size, size)
    return attn.softmax(dim=-1) @ v


def test_other_encoders_use_their_own_forward():
    class Conv(torch.nn.Module):
        img_size = 128

        def forward(self, x):
            return x[:, :1, ::16, ::16].repeat(1, 64, 1, 1)

    sam = _sam("vit_nano")
    assert supports_fast_path(sam.image_encoder)
    sam.image_encoder = Conv()
    assert not supports_fast_path(sam.image_encoder)
    x = torch.randn(1, 3, 128, 128)
    assert torch.equal(embed(sam, x), sam.image_encoder(x))


@pytest.mark.parametrize("model_type, shape", [("vit_tiny", (300, 220)), ("vit_b", (512, 512))])
def test_lean_decoder_equals_stock_predictor(model_type, shape):
    """Box → mask on a given embedding: our lean decoder and one-step upsampling vs SamPredictor."""
    sam = _sam(model_type)
    assert supports_lean_decoder(sam)
    size = sam.image_encoder.img_size
    emb = sam.prompt_encoder.image_embedding_size
    features = torch.randn(1, sam.prompt_encoder.embed_dim, *emb)
    input_size = tuple(int(round(d * size / max(shape))) for d in shape)
    ours, stock = BoxPredictor(sam), SamPredictor(sam)  # the same embedding on both sides, no encoder run
    ours._current = Embedding(features, shape, input_size)
    ours._current_features, ours._context = features, image_context(sam, features)
    stock.features, stock.original_size, stock.input_size, stock.is_image_set = features, shape, input_size, True
    boxes = np.array([[10, 12, shape[1] - 20, shape[0] - 9], [30, 40, 120, 150], [0, 0, shape[1] - 1, shape[0] - 1]])
    pred = ours.predict(boxes)
    for i, box in enumerate(boxes):
        logits, iou, _low = stock.predict(box=box, multimask_output=False, return_logits=True)
        scale = np.abs(logits).max()
        assert np.abs(pred.logits[i].numpy() - logits[0]).max() < 1e-4 * scale
        assert np.array_equal(pred.masks[i], logits[0] > sam.mask_threshold)
        assert pred.iou[i] == pytest.approx(iou[0], abs=1e-5)
    assert pred.probs.dtype == np.float32 and pred.probs.shape == (3, *shape)


def test_upsampling_matrices_equal_postprocess_masks():
    sam = _sam("vit_nano")
    low = torch.randn(2, 1, 128, 128)
    for original, inp in (((300, 180), (128, 77)), ((50, 64), (100, 128)), ((128, 128), (128, 128)),
                          ((1100, 1000), (128, 116))):  # over GEMM_MAX_PIXELS: the stock resizes
        ref = sam.postprocess_masks(low, inp, original)[:, 0]
        assert torch.allclose(upsample_logits(low[:, 0], 128, inp, original), ref, atol=1e-5)


def test_int8_weights_stay_int8_and_predict_the_same(tmp_path):
    sam = _sam("vit_tiny")
    apply_qat(sam, "full")
    path = tmp_path / "m.safetensors"
    export_model(sam, path, profile="paper")
    fp32 = load_model_file(path)
    lean = load_model_file(path, keep_int8=True)
    meta = lean.meta
    int8 = {n: m for n, m in lean.named_modules() if isinstance(m, Int8Linear)}
    assert len(int8) == 3 * sam.spec.depth and all(m.qweight.dtype == torch.int8 for m in int8.values())
    assert not any(t.is_meta for t in lean.state_dict().values())
    plain = dict(plain_state_items(lean))
    reference = fp32.state_dict()
    assert list(plain) == list(reference) and all(torch.equal(plain[k], reference[k]) for k in reference)
    image = (np.random.default_rng(1).random((256, 256)) * 255).astype(np.uint8)
    a = BoxPredictor(fp32).set_image(image).predict([20, 30, 230, 240])
    b = BoxPredictor(lean).set_image(image).predict([20, 30, 230, 240])
    assert np.array_equal(a.masks, b.masks) and torch.equal(a.logits, b.logits)
    reference_path = BoxPredictor(fp32, fast=False).set_image(image).predict([20, 30, 230, 240])
    assert np.array_equal(reference_path.masks, a.masks)


def test_a_read_only_plane_is_converted_and_hashed_once_per_click(monkeypatch):
    """The docks pass the same read-only plane to every call of a click (is it embedded? set_image, the baseline):
    it is converted and hashed once; a writable array is converted each time, so an in-place edit is seen."""
    predictor = BoxPredictor(_sam("vit_nano"), "cpu")
    calls = []
    original = BoxPredictor._pixels8
    monkeypatch.setattr(BoxPredictor, "_pixels8", staticmethod(lambda image: calls.append(1) or original(image)))
    plane = np.random.default_rng(0).random((96, 80)).astype(np.float32)
    plane.flags.writeable = False
    key = predictor.key_of(plane)
    predictor.set_image(plane)  # embeds: needs the pixels once more
    assert predictor.key_of(plane) == key and len(calls) == 2
    predictor.set_image(plane)
    assert len(calls) == 2  # the embedded image again: neither converted nor hashed
    writable = plane.copy()
    assert predictor.key_of(writable) == key
    writable[:10] = 0.0
    assert predictor.key_of(writable) != key and len(calls) == 4


def test_a_read_only_plane_made_writeable_and_written_again_is_keyed_afresh():
    """A QA find: the memo recognised the read-only array by identity, so an array made writeable, overwritten with
    another film and made read-only again kept the first film's key (and got its mask)."""
    predictor = BoxPredictor(_sam("vit_nano"), "cpu")
    rng = np.random.default_rng(0)
    plane = rng.random((96, 80)).astype(np.float32)
    plane.flags.writeable = False
    key = predictor.key_of(plane)
    plane.flags.writeable = True
    plane[:] = rng.random((96, 80))
    plane.flags.writeable = False
    assert predictor.key_of(plane) != key and predictor.key_of(plane) == predictor.key_of(plane.copy())
