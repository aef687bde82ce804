import numpy as np
import torch
from segment_anything import SamPredictor

from napari_adaqat.inference.predictor import BoxPredictor, EmbeddingCache
from napari_adaqat.io import read_image
from napari_adaqat.model.build import build_sam


def _image(cxr_dir):
    return read_image(next((cxr_dir / "images").glob("*5782ae15.png"))).pixels


def test_identical_to_stock_sam_predictor(cxr_dir):
    torch.manual_seed(1)
    sam = build_sam("vit_tiny")
    image = _image(cxr_dir)
    boxes = np.array([[40, 60, 470, 480], [10, 10, 300, 400]], dtype=float)
    ours = BoxPredictor(sam)
    ours.set_image(image)
    pred = ours.predict(boxes)
    stock = SamPredictor(sam)
    stock.set_image(np.repeat(np.round(image * 255).astype(np.uint8)[..., None], 3, axis=2))
    for i, box in enumerate(boxes):
        masks, iou, _ = stock.predict(box=box, multimask_output=False)
        assert masks.shape == pred.masks[i][None].shape
        assert np.array_equal(masks[0], pred.masks[i])
        assert np.isclose(iou[0], pred.iou[i], atol=1e-5)
    assert pred.probs.dtype == np.float32 and 0 <= pred.probs.min() and pred.probs.max() <= 1


def test_embedding_cache_memory_and_disk(tmp_path, cxr_dir):
    sam = build_sam("vit_nano")
    image = _image(cxr_dir)
    cache = EmbeddingCache(max_items=1, directory=tmp_path / "cache")
    p = BoxPredictor(sam, cache=cache)
    p.set_image(image)
    assert not p.last_embed_from_cache
    first = p.predict([50, 50, 400, 400]).probs
    p.set_image(image)
    assert p.last_embed_from_cache
    p.set_image(image[::-1].copy())  # evicts the first from memory (max_items=1)
    fresh = BoxPredictor(sam, cache=EmbeddingCache(max_items=1, directory=tmp_path / "cache"))
    fresh.set_image(image)
    assert fresh.last_embed_from_cache  # served from disk
    assert np.allclose(fresh.predict([50, 50, 400, 400]).probs, first)
    other = BoxPredictor(build_sam("vit_nano"), cache=cache)  # another model: other key
    other.set_image(image)
    assert not other.last_embed_from_cache


def test_prompting_the_same_image_again_reuses_its_decoder_context(cxr_dir, monkeypatch):
    """The dock and the engine call set_image before every box: the image's decoder context (layer-0
    projections of all E·E tokens) and the dense positional encoding are computed once, not per box."""
    import napari_adaqat.inference.predictor as predictor_module

    torch.manual_seed(0)
    sam = build_sam("vit_nano")
    image = _image(cxr_dir)
    calls = []
    real = predictor_module.image_context
    monkeypatch.setattr(predictor_module, "image_context", lambda *a: calls.append(1) or real(*a))
    pe_calls = []
    real_pe = sam.prompt_encoder.get_dense_pe
    monkeypatch.setattr(sam.prompt_encoder, "get_dense_pe", lambda: pe_calls.append(1) or real_pe())
    p = BoxPredictor(sam)
    first = p.set_image(image).predict([50, 50, 400, 400]).probs
    again = p.set_image(image.copy()).predict([50, 50, 400, 400]).probs
    assert len(calls) == 1 and p.last_embed_from_cache
    assert np.array_equal(first, again)
    p.set_image(image[::-1].copy())  # another image: a new context, the same positional encoding
    assert len(calls) == 2 and len(pe_calls) == 1
    back = p.set_image(image).predict([50, 50, 400, 400]).probs  # one of the last images: its context is kept
    assert len(calls) == 2 and np.array_equal(back, first)
    reference = BoxPredictor(sam, fast=False).set_image(image).predict([50, 50, 400, 400]).probs
    assert np.allclose(reference, first, atol=1e-5)


def test_a_fresh_cache_still_means_a_fresh_embedding(cxr_dir):
    """Swapping in an empty cache (as ``adaqat bench`` does to time the encoder) re-embeds even the
    image of the last prompt."""
    p = BoxPredictor(build_sam("vit_nano"))
    image = _image(cxr_dir)
    p.set_image(image)
    p.set_image(image)
    assert p.last_embed_from_cache
    p.cache = EmbeddingCache(max_items=1)
    p.set_image(image)
    assert not p.last_embed_from_cache


def test_the_last_images_prompt_parts_are_kept_within_bounds():
    """:class:`ImageStates` keeps the parts of the last few images (the newest always, however large), and gives a
    state back only while the embedding cache holds the very embedding it was made from (a fresh cache: none)."""
    from napari_adaqat.inference.embedding_cache import Embedding
    from napari_adaqat.inference.image_states import ImageState, ImageStates

    def state() -> ImageState:
        features = torch.zeros(1, 4, 8, 8)
        return ImageState(Embedding(features, (8, 8), (8, 8)), torch.zeros(1, 4, 8, 8),
                          detail=torch.zeros(1, 1, 16, 16))

    states = ImageStates(max_items=2, max_bytes=1 << 20)
    kept = {key: state() for key in "abc"}
    for key, item in kept.items():
        states.put(key, item)
    assert len(states) == 2 and states.get("a", kept["a"].embedding) is None  # the oldest went
    assert states.get("c", kept["c"].embedding) is kept["c"]
    assert states.get("c", Embedding(torch.zeros(1, 4, 8, 8), (8, 8), (8, 8))) is None  # another embedding: stale
    assert kept["c"].nbytes() == (4 * 64 + 256) * 4  # the device features and the detail, not the cache's copy
    small = ImageStates(max_items=3, max_bytes=kept["b"].nbytes())
    small.put("b", kept["b"])
    small.put("c", kept["c"])
    assert len(small) == 1 and small.get("c", kept["c"].embedding) is kept["c"]
