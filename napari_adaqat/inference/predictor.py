"""Prompt predictor: embed an image once, then prompt it many times with boxes, points and masks
(SAM's ``predict(boxes, point_coords, point_labels, mask_input)``)."""
from __future__ import annotations

import hashlib
import weakref
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import napari_adaqat._sam_import  # noqa: F401  segment_anything without torchvision (see there)
# isort: split
from segment_anything.modeling import Sam

from napari_adaqat.data.boxes import default_box
from napari_adaqat.data.transforms import PreparedImage, pixel_aspect, prepare_image, to_uint8, transform_boxes
from napari_adaqat.data.transforms import transform_coords
from napari_adaqat.inference.embedding_cache import Embedding, EmbeddingCache  # EmbeddingCache: re-exported
from napari_adaqat.inference.image_states import ImageState, ImageStates
from napari_adaqat.inference.prompt_args import as_boxes, as_points, check_multimask, mask_input_tensor
from napari_adaqat.io import ImageData, film_and_spacing, to_gray01
from napari_adaqat.model.forward import as_mask_input, decode_coarse, detail_term, embed, image_detail, refine_logits
from napari_adaqat.model.lean_decoder import ImageContext, decode_prompt_logits, image_context, supports_lean_decoder
from napari_adaqat.model.lean_decoder import upsample_logits
from napari_adaqat.model.logit_grid import upsample_on_grid
from napari_adaqat.model.runtime import keep_freed_memory
from napari_adaqat.model.vote_unet import FilmVote, film_vote


# an image as the predictor takes it: pixels (H, W[, 1|3|4]), a file, or pixels with their spacing
FilmLike = Union[np.ndarray, str, Path, ImageData]


def _digest(pixels8: np.ndarray) -> str:
    """The pixel part of an embedding cache key: SHA-1 of a :meth:`BoxPredictor._pixels8` image and its shape."""
    digest = hashlib.sha1(pixels8.tobytes())
    digest.update(str(pixels8.shape).encode())
    return digest.hexdigest()[:20]


# (weak reference to the last read-only image keyed, its digest, a sample of it): the docks hand over the same read-only plane
# (widgets/_planes.py) for every click, and each click keys it two or three times (is it embedded? set_image, the
# baseline's prompt): converting and hashing a 3000² film each time cost ~25 ms
_LAST_DIGEST: list = [None]
_SAMPLES = 4096  # pixels of an image that :func:`_sample` reads (about 0.05 ms)


def _sample(image: np.ndarray) -> bytes:
    """About :data:`_SAMPLES` of ``image``'s pixels, spread over all of it (every k-th of the flat array)."""
    flat = image.reshape(-1)
    return flat[:: max(1, flat.size // _SAMPLES)].tobytes()


@dataclass
class Prediction:
    """Results at full image resolution for N prompts; ``probs`` is computed on first use.
    ``low_res_logits`` is what to pass back as the next ``mask_input`` (SAM's name and shape)."""

    masks: np.ndarray  # (N, H, W) bool
    iou: np.ndarray  # (N,) float32, the decoder's predicted IoU
    logits: torch.Tensor  # (N, H, W) float32 mask logits (CPU)
    low_res_logits: torch.Tensor | None = None  # (N, 1, 4E, 4E) float32 (CPU): the final logits in the input frame
    # (N, H, W) float32 (CPU): the model's own logits where a vote changed them (``logits`` are then the voted
    # ones); None without a vote.  The quality score reads them: its review threshold was measured on them
    own_logits: torch.Tensor | None = None
    _probs: np.ndarray | None = field(default=None, repr=False)

    @property
    def probs(self) -> np.ndarray:
        """(N, H, W) float32 in [0, 1]: sigmoid of the logits (computed once, when first asked)."""
        if self._probs is None:
            self._probs = torch.sigmoid(self.logits).numpy()
        return self._probs


def model_fingerprint(sam: Sam) -> str:
    """A cheap identity of a model's weights (shapes plus a sample of values)."""
    digest = hashlib.sha1()
    for name, tensor in sam.state_dict().items():
        flat = tensor.detach().reshape(-1)[:256].float().cpu().numpy()
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(flat.tobytes())
    return digest.hexdigest()[:16]


class BoxPredictor:
    """Embed once (``set_image``), prompt many times (``predict``).

    Matches ``segment_anything.SamPredictor`` with ``multimask_output=False``.  ``fast`` (default)
    uses the fast encoder (:mod:`napari_adaqat.model.fast_attention`) and the lean box decoder
    (:mod:`napari_adaqat.model.lean_decoder`) where the model has the stock structure; ``fast=False``
    runs the modules' own forwards (the reference the fast paths are tested against).  On the CPU, freed
    activations stay in the process heap for reuse (:func:`~napari_adaqat.model.runtime.keep_freed_memory`:
    ViT-B at 1024 px embeds 1.7x faster than with large blocks mmapped, at about the same peak RSS).

    ``bf16`` (default: on for CUDA, off elsewhere) runs the image encoder, the bulk of the time, under
    bfloat16 autocast; its features (cosine ≥ 0.99 with FP32, tested) are cached as float32 and the box
    decoder stays FP32.  :meth:`embed_many` embeds a list of images, several per encoder forward.  The last few
    images' other per-image parts (decoder context, refiner features, vote) are kept too (``states``,
    :mod:`~napari_adaqat.inference.image_states`), so going back to one of them computes none of them again.
    """

    def __init__(self, sam: Sam, device: str | torch.device = "cpu", cache: EmbeddingCache | None = None,
                 fast: bool = True, bf16: bool | None = None) -> None:
        self.device = torch.device(device)
        self.bf16 = self.device.type == "cuda" if bf16 is None else bool(bf16)
        if fast and self.device.type == "cpu":
            keep_freed_memory()
        self.fast = fast
        self._lean = fast and supports_lean_decoder(sam)
        self._context: ImageContext | None = None
        self._detail: torch.Tensor | None = None  # (1, W, S, S) the mask refiner's image features, if any
        self._detail_term: torch.Tensor | None = None  # (1, W, S, S) their share of each prompt's refiner work
        self._vote: FilmVote | None = None  # the film's vote, for a model that carries one (model/vote_unet.py)
        self.sam = sam.to(self.device).eval()
        with torch.no_grad():  # the decoder's dense positional encoding (1, C, E, E): the same for every image
            self._dense_pe = sam.prompt_encoder.get_dense_pe() if self._lean else None
        self.image_size = int(sam.image_encoder.img_size)
        self._pixel_mean = sam.pixel_mean.detach().view(-1).cpu()
        self._pixel_std = sam.pixel_std.detach().view(-1).cpu()
        self.model_id = model_fingerprint(sam)
        self.cache = cache if cache is not None else EmbeddingCache()
        self._current: Embedding | None = None
        self._current_features: torch.Tensor | None = None
        self.states = ImageStates()  # the last images' parts besides their features: going back costs nothing
        self.last_embed_from_cache = False

    def image_key(self, pixels8: np.ndarray, aspect: float = 1.0) -> str:
        """The embedding cache's key of a :meth:`_pixels8` image (H, W) or (H, W, 3) uint8 for this model
        (``aspect``: its pixels' height over width, :func:`~napari_adaqat.data.transforms.pixel_aspect`)."""
        return self._key(_digest(pixels8), aspect)

    def _key(self, digest: str, aspect: float = 1.0) -> str:
        return f"{digest}-{self.model_id}-{self.image_size}" + ("" if aspect == 1.0 else f"-aspect{aspect:.6g}")

    def key_of(self, image: FilmLike, spacing: Sequence[float] | None = None) -> str:
        """The cache key :meth:`set_image` gives ``image`` (as it takes it, with its ``spacing``)."""
        return self._key_and_pixels(image, spacing)[0]

    def _key_and_pixels(self, image: FilmLike, spacing: Sequence[float] | None = None
                        ) -> tuple[str, np.ndarray | None, float]:
        """(:meth:`key_of` ``image``, its :meth:`_pixels8` or None when the key came from the memo below, its
        pixel aspect: of ``spacing`` (row, col), else of the file's own spacing)."""
        if isinstance(image, ImageData):  # its pixels (the memo below knows the dock's planes) and its spacing
            image, spacing = image.pixels, image.shape_spacing if spacing is None else spacing
        memo = _LAST_DIGEST[0]
        if memo is not None and memo[0]() is image and not image.flags.writeable and memo[2] == _sample(image):
            aspect = pixel_aspect(spacing)
            return self._key(memo[1], aspect), None, aspect
        pixels8, aspect = self._film8(image, spacing)
        digest = _digest(pixels8)
        if isinstance(image, np.ndarray) and not image.flags.writeable and image.base is None:
            # (a read-only array that owns its pixels: unchanging, unless made writeable and written again; a
            # spread sample of its pixels, compared on each use, catches another film written over it, not a small
            # patch rewritten in place)
            _LAST_DIGEST[0] = (weakref.ref(image), digest, _sample(image))
        return self._key(digest, aspect), pixels8, aspect

    @classmethod
    def _film8(cls, image: FilmLike, spacing: Sequence[float] | None) -> tuple[np.ndarray, float]:
        """(:meth:`_pixels8` of ``image``, the pixel aspect of ``spacing``, else of its own: a file's or an
        :class:`~napari_adaqat.io.ImageData`'s)."""
        pixels, spacing = film_and_spacing(image, spacing)
        return cls._pixels8(pixels), pixel_aspect(spacing)

    @staticmethod
    def _pixels8(image: FilmLike) -> np.ndarray:
        """An image (H, W[, 1|3|4]) or an image file (PNG/JPEG/TIFF/DICOM) → (H, W) or (H, W, 3) uint8 (gray
        stays gray: :func:`prepare_image` repeats it, and the key hashes a third of the bytes)."""
        pixels = np.asarray(film_and_spacing(image)[0])
        pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
        if pixels.dtype.kind in "iu" and pixels.dtype != np.uint8:  # gray or RGB(A): as read_image reads their file
            pixels = to_gray01(pixels)  # 16-bit, int16 with negatives: min-max (not cut at 0 and / max)
        return to_uint8(pixels)

    def _prepare(self, rgb: np.ndarray, aspect: float = 1.0) -> PreparedImage:
        return prepare_image(rgb, self.image_size, self._pixel_mean, self._pixel_std, aspect)

    def _embed_batch(self, items: Sequence[tuple[str, np.ndarray, float]],
                     prepared: Sequence[PreparedImage] | None = None) -> list[Embedding]:
        """Embed B (cache key, (H, W) or (H, W, 3) uint8, pixel aspect) images in ONE encoder forward of
        (B, 3, S, S); each one's (1, C, E, E) float32 features go into the cache (CPU) and are returned in order.
        ``prepared``: the images already through :func:`prepare_image`, when the caller has them."""
        prepared = prepared or [self._prepare(rgb, aspect) for _key, rgb, aspect in items]
        batch = torch.stack([p.tensor for p in prepared])
        if self.device.type == "cuda":
            batch = batch.pin_memory()  # the host-to-device copy runs asynchronously
        batch = batch.to(self.device, non_blocking=True)
        autocast = torch.autocast(device_type=self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        with autocast:
            features = embed(self.sam, batch, fast=self.fast)
        features = features.float().cpu()
        out = []
        for i, ((key, _rgb, aspect), prep) in enumerate(zip(items, prepared)):
            item = Embedding(features[i:i + 1].clone() if len(items) > 1 else features,
                              prep.original_size, prep.input_size, aspect)
            self.cache.put(key, item)
            out.append(item)
        return out

    @torch.no_grad()
    def set_image(self, image: FilmLike, spacing: Sequence[float] | None = None) -> "BoxPredictor":
        """Compute (or fetch from the cache) the embedding of ``image`` (H, W[, 3]), of an image file
        (PNG/JPEG/TIFF/DICOM) or of an :class:`~napari_adaqat.io.ImageData`; returns ``self`` so that ``set_image(x).predict(box)`` chains.  ``spacing``
        (row, col) (a DICOM's PixelSpacing; a file's own when not given): non-square pixels are made square for
        the model (the lungs keep their true shape), and the masks come back on the film's own pixels."""
        key, rgb, aspect = self._key_and_pixels(image, spacing)
        cached = self.cache.get(key)
        self.last_embed_from_cache = cached is not None
        if cached is not None and cached is self._current:  # the last prompt's image, still cached:
            return self  # its features and decoder context are already here
        state = self.states.get(key, cached)  # one of the last images (A → B → A): all of it is still here
        if state is not None:
            self._use(state)
            return self
        rgb = self._pixels8(image) if rgb is None else rgb  # (gray or RGB: prepare_image makes it RGB)
        # a model with a mask refiner also needs the image itself at input size (not cached: cheap)
        prepared = self._prepare(rgb, aspect) if hasattr(self.sam, "mask_refiner") else None
        self._current = None  # until every part below is computed: a failure leaves no image half set
        if cached is None:
            cached = self._embed_batch([(key, rgb, aspect)], None if prepared is None else [prepared])[0]
        self._detail = None if prepared is None else image_detail(self.sam, prepared.tensor[None].to(self.device))
        self._detail_term = detail_term(self.sam, self._detail)  # the refiner's per-image work, once
        self._vote = film_vote(self.sam, rgb, prepared, aspect)
        # the cache holds CPU copies (memory); the current one also stays on the device, so each
        # prompt does not copy the (1, C, h, w) features to the GPU again
        features = cached.features.to(self.device)
        context = image_context(self.sam, features, self._dense_pe) if self._lean else None
        state = ImageState(cached, features, context, self._detail, self._detail_term, self._vote)
        self.states.put(key, state)
        self._use(state)
        return self

    def _use(self, state: ImageState) -> None:
        """Make ``state``'s image the one prompts go to."""
        self._current_features, self._context = state.features, state.context
        self._detail, self._detail_term, self._vote = state.detail, state.detail_term, state.vote
        self._current = state.embedding

    @torch.no_grad()
    def embed_many(self, images: Sequence[FilmLike], batch_size: int = 8,
                   spacing: Sequence[float] | None = None) -> int:
        """Embed ``images`` (as :meth:`set_image` takes them) into the cache, ``batch_size`` per encoder
        forward (a GPU's throughput); images already cached (or repeated) are skipped.  The cache grows
        to hold at least one batch; of a longer list only the last ``cache.max_items`` stay cached, so
        pass a batch at a time (as :func:`~napari_adaqat.inference.batch.segment_files` does).  ``spacing``:
        of every image given as an array (a file's own otherwise), as :meth:`set_image` takes it.
        Returns the number of images embedded."""
        batch_size = max(1, int(batch_size))
        self.cache.max_items = max(self.cache.max_items, batch_size)
        todo: dict[str, tuple[np.ndarray, float]] = {}
        for image in images:
            rgb, aspect = self._film8(image, spacing)
            key = self.image_key(rgb, aspect)
            if key not in todo and self.cache.get(key) is None:
                todo[key] = (rgb, aspect)
        items = [(key, rgb, aspect) for key, (rgb, aspect) in todo.items()]
        for start in range(0, len(items), batch_size):
            self._embed_batch(items[start:start + batch_size])
        return len(items)

    @property
    def has_image(self) -> bool:
        return self._current is not None

    @torch.no_grad()
    def predict(self, boxes: np.ndarray | None = None, point_coords: np.ndarray | None = None,
                point_labels: np.ndarray | None = None, mask_input: np.ndarray | torch.Tensor | None = None,
                *, multimask_output: bool = False, box: np.ndarray | None = None) -> Prediction:
        """One mask per prompt on the image set last, SAM's names (``multimask_output=False``; ``box=`` is SAM's
        name for ``boxes``).

        ``boxes``: (4,) or (B, 4) xyxy in image pixels; ``point_coords``: (2,), (P, 2) or (B, P, 2) x, y in image
        pixels with ``point_labels`` (a scalar, (P,) or (B, P); bool/int/float): 1 = lung, 0 = not lung (-1 = padding);
        ``mask_input``: (1, 4E, 4E) or (B, 1, 4E, 4E) logits, a previous :attr:`Prediction.low_res_logits`
        (or :meth:`mask_input_from` of an edited mask).  A single prompt part is shared by all B rows.
        Points alone work (no box); with no box, no points and no mask: the whole image minus a 2 %
        margin (:func:`~napari_adaqat.data.boxes.default_box`), as ``adaqat segment``.  A model file with a vote
        (:mod:`~napari_adaqat.model.vote_unet`) votes with every prompt that has a box (its ``combine``).  A box
        that is not finite or inverted, a label other than 1/0/-1, a mask_input of another shape: one
        ValueError/TypeError naming it;
        ``multimask_output=True`` is refused (one mask per prompt).  Not thread-safe: the image set last is
        shared (share a :class:`~napari_adaqat.inference.segmenter.Segmenter`, which locks, instead)."""
        check_multimask(multimask_output)
        if box is not None and boxes is not None:
            raise TypeError("give boxes= or box= (SAM's name), not both")
        boxes = box if boxes is None else boxes
        if self._current is None:
            raise RuntimeError("call set_image() before predict()")
        emb = self._current
        if boxes is None and point_coords is None and mask_input is None:
            boxes = default_box(emb.original_size)
        boxes_in, coords_in, labels_in, mask_in = self._prompt_tensors(boxes, point_coords, point_labels, mask_input)
        logits, iou, low = self._decode(boxes_in, coords_in, labels_in, mask_in)
        own = None
        if self._vote is not None and boxes_in is not None:  # a box: the film's vote counts (points alone: not)
            extra = coords_in is not None or mask_in is not None
            own = logits
            logits = self._vote.apply(own, boxes_in, extra, lambda b: self._decode(b, None, None, None)[0])
        masks = logits > self.sam.mask_threshold
        return Prediction(masks.numpy(), iou.float().cpu().numpy(), logits,
                          as_mask_input(self.sam, low).float().cpu(), own)

    def _decode(self, boxes_in: torch.Tensor | None, coords_in: torch.Tensor | None, labels_in: torch.Tensor | None,
                mask_in: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The model's prompts in input coordinates → its logits (N, H, W) at the film's size (CPU, float32),
        predicted IoU (N,), and its logits on its own grid (N, 1, h, w)."""
        emb = self._current
        if self._context is not None:  # straight to the original size, mask token 0 only
            low, iou = decode_prompt_logits(self.sam, self._context, boxes_in, coords_in, labels_in, mask_in)
            low = refine_logits(self.sam, low[:, None], self._detail, coords_in, labels_in, self._detail_term)
            logits = self._upsample(low[:, 0], emb)
        else:
            coarse, iou4 = decode_coarse(self.sam, self._current_features, boxes_in, coords_in, labels_in, mask_in)
            low = refine_logits(self.sam, coarse, self._detail, coords_in, labels_in, self._detail_term)
            logits = self._upsample(low, emb, stock=True)[:, 0]
            iou = iou4[:, 0]
        return logits.float().cpu(), iou, low

    def _upsample(self, low: torch.Tensor, emb: "Embedding", stock: bool = False) -> torch.Tensor:
        """(..., h, w) logits → (..., H, W) at the film's size, read where the model's cells lie
        (model/logit_grid.py; ``low_res_logits``, the next mask prompt, stays on the model's own grid)."""
        offset = getattr(self.sam.spec, "logit_offset", 0.0)
        if offset:
            return upsample_on_grid(low, self.image_size, emb.input_size, emb.original_size, offset)
        if stock:
            return self.sam.postprocess_masks(low, emb.input_size, emb.original_size)
        return upsample_logits(low, self.image_size, emb.input_size, emb.original_size)

    def _prompt_tensors(self, boxes: np.ndarray | None, point_coords: np.ndarray | None,
                        point_labels: np.ndarray | None, mask_input: np.ndarray | torch.Tensor | None
                        ) -> tuple[torch.Tensor | None, ...]:
        """The prompts in input coordinates on the device, B rows each (a single row is repeated):
        boxes (B, 4), point coords (B, P, 2) and labels (B, P), mask_input (B, 1, 4E, 4E)."""
        emb, dev = self._current, self.device
        rows: dict[str, int] = {}  # prompt argument -> its number of rows
        boxes_in = coords_in = labels_in = mask_in = None
        if boxes is not None:
            boxes_in = torch.as_tensor(transform_boxes(as_boxes(boxes), emb.original_size, self.image_size, emb.aspect),
                                       dtype=torch.float32)
            rows["boxes"] = len(boxes_in)
        if point_coords is not None or point_labels is not None:
            coords, labels = as_points(point_coords, point_labels)
            coords_in = torch.as_tensor(transform_coords(coords, emb.original_size, self.image_size, emb.aspect),
                                        dtype=torch.float32)
            labels_in = torch.as_tensor(labels, dtype=torch.int64)
            rows["point_coords"] = len(coords_in)
        if mask_input is not None:
            mask_in = mask_input_tensor(mask_input, tuple(self.sam.prompt_encoder.mask_input_size), emb.original_size)
            rows["mask_input"] = len(mask_in)
        n = max(rows.values())
        if any(r not in (1, n) for r in rows.values()):
            raise ValueError("the prompts disagree on their number of rows (each 1 or the same N): "
                             + ", ".join(f"{name} {r}" for name, r in rows.items()))

        def rows_of(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else (t.expand(n, *t.shape[1:]) if len(t) == 1 and n > 1 else t).to(dev)
        return rows_of(boxes_in), rows_of(coords_in), rows_of(labels_in), rows_of(mask_in)

    @torch.no_grad()
    def mask_input_from(self, mask: np.ndarray, strength: float = 10.0) -> torch.Tensor:
        """An edited mask (H, W) bool of the image set last → a ``mask_input`` (1, 1, 4E, 4E): logits
        ``±strength`` (lung / not lung), resized and padded as the image is for the model (the padding is
        "not lung") on the model's logit grid, then brought to the mask prompt's size as a prediction's
        ``low_res_logits`` are."""
        if self._current is None:
            raise RuntimeError("call set_image() before mask_input_from()")
        emb = self._current
        mask = np.asarray(mask)
        if mask.shape != tuple(emb.original_size):
            raise ValueError(f"the mask is {mask.shape}, the image {tuple(emb.original_size)}")
        m = torch.as_tensor(mask != 0, dtype=torch.float32)[None, None]
        m = torch.nn.functional.interpolate(m, size=tuple(emb.input_size), mode="area")
        m = torch.nn.functional.pad(m, (0, self.image_size - m.shape[-1], 0, self.image_size - m.shape[-2]))
        if offset := getattr(self.sam.spec, "logit_offset", 0.0):  # onto the model's own grid, as its logits
            m = upsample_on_grid(m, self.image_size, emb.input_size, emb.input_size, -offset)
            m = torch.nn.functional.pad(m, (0, self.image_size - m.shape[-1], 0, self.image_size - m.shape[-2]))
        return as_mask_input(self.sam, (2.0 * m - 1.0) * float(strength))
