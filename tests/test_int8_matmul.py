"""INT8 GEMMs for the INT8 runtime (``int8_matmul=True``): the kernel equals its fake-quant maths
exactly, and whole models stay close to the exact (dequantizing) path: random vit_tiny / vit_b
weights and the bundled model, trained on real radiographs, on a real radiograph."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.io import read_image
from napari_adaqat.model.build import build_sam
from napari_adaqat.model.forward import embed
from napari_adaqat.model import int8_runtime
from napari_adaqat.model.int8_runtime import Int8Linear, int8_linear, quantize_rows
from napari_adaqat.model.loading import resolve_model_path
from napari_adaqat.model.formats.model_file import export_model, load_model_file
from napari_adaqat.model.qat import apply_qat, quantize_tensor_int8


def test_int8_linear_is_exactly_its_fake_quant_maths():
    torch.manual_seed(0)
    x = torch.randn(37, 48) * torch.linspace(0.01, 5.0, 37)[:, None]  # rows of very different ranges
    x[3] = 0.0  # an all-zero row
    q, s = quantize_tensor_int8(torch.randn(24, 48) * 0.05)
    bias = torch.randn(24)
    xq, row_scale = quantize_rows(x)
    assert xq.dtype == torch.int8 and int(xq.abs().max()) == 127 and torch.all(xq[3] == 0)
    assert torch.all((xq.float() * row_scale - x).abs() <= row_scale / 2 + 1e-6)  # round to nearest
    reference = (xq.double() @ q.double().t()) * (row_scale.double() * float(s)) + bias.double()
    got = int8_linear(x.view(1, 37, 48), q, s, bias)
    assert got.shape == (1, 37, 24)
    assert torch.allclose(got[0].double(), reference, rtol=1e-6, atol=1e-6)
    exact = F.linear(x, q.float() * s, bias)
    assert float((got[0] - exact).norm() / exact.norm()) < 0.02  # the price of 8-bit activations


def _int8_file(tmp_path, model_type: str, image_size: int | None = None):
    torch.manual_seed(0)
    sam = build_sam(model_type, image_size)
    apply_qat(sam, "full")
    path = tmp_path / f"{model_type}.safetensors"
    export_model(sam, path, profile="paper")
    return path


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0))


def test_int8_matmul_models_stay_close_to_the_exact_path(tmp_path, monkeypatch):
    monkeypatch.setattr(int8_runtime, "INT8_GEMM_MIN_ROWS", 0)  # these small inputs too
    for model_type, size in (("vit_tiny", None), ("vit_b", 256)):
        path = _int8_file(tmp_path, model_type, size)
        exact = load_model_file(path, keep_int8=True)
        fast = load_model_file(path, keep_int8=True, int8_matmul=True)
        layers = [m for m in fast.modules() if isinstance(m, Int8Linear)]
        assert layers and all(m.int8_matmul for m in layers)
        s = int(exact.image_encoder.img_size)
        x = torch.randn(1, 3, s, s)
        with torch.inference_mode():
            got, want = embed(fast, x), embed(exact, x)
        assert not torch.equal(got, want)  # the INT8 GEMMs did run
        assert _cosine(got, want) >= 0.999, model_type


def test_bundled_model_gives_the_same_mask_with_int8_gemms(monkeypatch, cxr_dir):
    """On real weights (the bundled model; forced: its 256 tokens are below INT8_GEMM_MIN_ROWS) and a
    real radiograph: features agree to cosine ≥ 0.9999 and masks to IoU ≥ 0.998 (a 64x64 logit map
    upsampled: a few boundary pixels flip)."""
    monkeypatch.setattr(int8_runtime, "INT8_GEMM_MIN_ROWS", 0)
    path = resolve_model_path(None)
    exact = load_model_file(path, keep_int8=True)
    fast = load_model_file(path, keep_int8=True, int8_matmul=True)
    images = sorted((cxr_dir / "images").iterdir())
    assert images, "tests/data/cxr/images holds real radiographs"
    pixels = read_image(images[0]).pixels
    image = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
    h, w = image.shape[:2]
    box = [0.05 * w, 0.05 * h, 0.95 * w, 0.95 * h]
    pa, pb = BoxPredictor(exact).set_image(image), BoxPredictor(fast).set_image(image)
    assert not torch.equal(pb._current_features, pa._current_features)  # the INT8 GEMMs did run
    assert _cosine(pb._current_features, pa._current_features) >= 0.9999
    a, b = pa.predict(box).masks[0], pb.predict(box).masks[0]
    assert a.sum() > 0.1 * a.size
    assert np.logical_and(a, b).sum() / np.logical_or(a, b).sum() >= 0.998


def test_small_inputs_keep_the_exact_path():
    q, s = quantize_tensor_int8(torch.randn(8, 16))
    layer = Int8Linear(q, s, None, int8_matmul=True)
    x = torch.randn(int8_runtime.INT8_GEMM_MIN_ROWS - 1, 16)
    assert torch.equal(layer(x), F.linear(x, q.float() * s))
