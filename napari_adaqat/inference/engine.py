"""The one inference engine: a model, an optional baseline and the SSIM/ΔSSIM trust maps on an
image and a box, with one result type.

``adaqat segment`` (:mod:`.batch`), ``adaqat evaluate`` (:mod:`napari_adaqat.report.evaluate`) and
the Segment dock all run through :class:`Engine`.  No napari or Qt here: the dock calls it from
worker threads, tests call it directly.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from napari_adaqat.inference.postprocess import clean_lung_mask
from napari_adaqat.io import check_segmentable
from napari_adaqat.data.transforms import to_uint8_rgb
from napari_adaqat.inference.predictor import BoxPredictor
from napari_adaqat.metrics import dice, ssim_map, trust_maps
from napari_adaqat.model.loading import is_bundled, load_model, resolve_model_path


@contextmanager
def torch_threads(n: Optional[int]) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (``None``: unchanged), then restore the count.

    Box prompts are small: on a 2-core laptop one thread is as fast, and leaves the other core to
    napari's rendering instead of spinning OpenMP workers against it.
    """
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def batched(device: str) -> bool:
    """Whether to embed several images per encoder forward: on a GPU (CUDA, MPS), not on the CPU,
    where a batch is no faster than its images one by one and only costs memory."""
    return str(device).split(":")[0] != "cpu"


def _segmentable(image: np.ndarray) -> bool:
    try:
        check_segmentable(image)
    except Exception:  # too small, blank, not an image: its prompt reports it
        return False
    return True


@dataclass(frozen=True)
class ModelRef:
    """Which model file to use: ``path=None`` is the bundled default (``baseline``: its FP32 twin)."""

    path: Optional[Path] = None
    baseline: bool = False
    model_type: str = "vit_b"  # architecture of an official SAM ``.pth`` checkpoint

    def resolved(self) -> Path:
        """The file this reference names (the bundled default is looked up at call time)."""
        return resolve_model_path(self.path, baseline=self.baseline)

    def available(self) -> bool:
        """True when the file exists (a missing bundled model is reported, not raised)."""
        try:
            return self.resolved().is_file()
        except ValueError:
            return False

    def label(self) -> str:
        if self.path is not None:
            return Path(self.path).name
        return "bundled FP32 baseline" if self.baseline else "bundled INT8 model"


ModelLike = Union[ModelRef, BoxPredictor]


def model_ref(model: ModelLike | str | Path | None, baseline: bool = False, model_type: str = "vit_b") -> ModelLike:
    """A model argument as the engine takes it: a path, or ``None``/``"default"`` for the bundled
    file (its FP32 baseline when ``baseline``), becomes a :class:`ModelRef`; others pass through."""
    if model is not None and not isinstance(model, (str, Path)):
        return model  # a ModelRef, or a ready predictor (anything with set_image/predict)
    return ModelRef(None if is_bundled(model) else Path(model), baseline=baseline, model_type=model_type)


@dataclass
class SegmentResult:
    """Everything one box prompt produced, at the image's (slice's) resolution."""

    box: np.ndarray  # (4,) xyxy pixels
    slice_index: Optional[int]  # plane of a 3-D stack, None for 2-D images
    mask: np.ndarray  # (H, W) bool, cleaned when ``cleaned``
    p_model: np.ndarray  # (H, W) float32 probabilities
    has_reference: bool
    dice: Optional[float]  # of ``mask`` against the reference
    latency_ms: float  # model prompt latency (embedding cached)
    iou_pred: float  # the decoder's predicted IoU
    model_seconds: float = 0.0  # embedding (or cache lookup) + prompt
    # the same span's CPU time of the calling thread, on a CPU predictor (None on a GPU): what the prompt
    # costs without the time it waited for the cores (prompt jobs run with one torch thread)
    model_cpu_seconds: Optional[float] = None
    model_file: Optional[str] = None  # the model file that made the mask (None for a ready predictor)
    cleaned: bool = True
    p_baseline: Optional[np.ndarray] = None  # filled by Engine.add_maps
    baseline_mask: Optional[np.ndarray] = None
    baseline_seconds: Optional[float] = None
    ssim: Optional[np.ndarray] = None  # (H, W) float32
    delta: Optional[np.ndarray] = None
    ssim_mean: Optional[float] = None
    delta_mean: Optional[float] = None

    def summary(self) -> str:
        """The dock's status: latency and area, then SSIM/ΔSSIM, then Dice (one line each)."""
        lines = [f"latency {self.latency_ms:.0f} ms · area {int(self.mask.sum())} px"]
        if self.ssim_mean is not None:
            kind = "SSIM vs reference" if self.has_reference else "SSIM model~baseline"
            line = f"{kind} {self.ssim_mean:.3f}"
            if self.has_reference and self.delta_mean is not None and self.p_baseline is not None:
                line += f" · ΔSSIM {self.delta_mean:+.3f}"
            lines.append(line)
        if self.dice is not None:
            lines.append(f"Dice vs reference {self.dice:.3f}")
        return "\n".join(lines)


class Engine:
    """Keeps loaded models (a model and its baseline) between prompts.

    A model file is keyed by its identity (path, size, modification time) and device, so a file
    rewritten in place (e.g. by a training run) is loaded again; only the ``MAX_LOADED`` most
    recently used models stay in memory.  A :class:`BoxPredictor` (or any object with ``set_image``
    and ``predict``) may be passed instead of a :class:`ModelRef`; it is used as it is.
    """

    MAX_LOADED = 2

    def __init__(self, max_loaded: int = MAX_LOADED) -> None:
        self.max_loaded = max(1, int(max_loaded))  # e.g. several models + a baseline in one evaluation
        self._predictors: OrderedDict[tuple, BoxPredictor] = OrderedDict()

    @staticmethod
    def _key(path: Path, ref: ModelRef, device: str) -> tuple:
        try:
            stat = path.stat()
            identity = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            identity = None  # load_model gives the one-line error
        arch = ref.model_type if path.suffix.lower() in (".pth", ".pt") else None  # ours carry their config
        return (str(path.resolve()), identity, arch, device)

    def predictor(self, model: ModelLike, device: str = "cpu") -> BoxPredictor:
        """Load (once per file version) and return the predictor for ``model`` on ``device``."""
        if not isinstance(model, ModelRef):
            return model  # a ready predictor (anything with set_image and predict)
        path = model.resolved()
        key = self._key(path, model, device)
        if key not in self._predictors:
            sam, _meta = load_model(path, model_type=model.model_type, device=device, keep_int8=True)
            self._predictors[key] = BoxPredictor(sam, device)
            while len(self._predictors) > self.max_loaded:
                self._predictors.popitem(last=False)  # least recently used
        self._predictors.move_to_end(key)
        return self._predictors[key]

    def is_embedded(self, image: np.ndarray, model: ModelLike, device: str = "cpu") -> bool:
        """True when ``model`` (this version of its file) is loaded and ``image``'s embedding is in its
        cache, so a prompt needs no loading and no embedding (what the dock checks before prompting on
        the GUI thread); never loads or embeds anything itself."""
        if not isinstance(model, ModelRef):
            return False
        try:
            predictor = self._predictors.get(self._key(model.resolved(), model, device))
        except Exception:  # e.g. a bundled model that is missing: not embedded
            return False
        if predictor is None:
            return False
        return predictor.cache.get(predictor.image_key(to_uint8_rgb(image))) is not None

    def embed(self, image: np.ndarray, model: ModelLike, baseline: Optional[ModelLike], device: str = "cpu") -> float:
        """Compute (or fetch cached) embeddings of ``image`` for both models; return seconds."""
        check_segmentable(image)  # too small or blank: one line, before any model runs
        t0 = time.perf_counter()
        self.predictor(model, device).set_image(image)
        if baseline is not None:
            self.predictor(baseline, device).set_image(image)
        return time.perf_counter() - t0

    def prefetch(self, images: Sequence[np.ndarray], model: ModelLike, baseline: Optional[ModelLike] = None,
                 device: str = "cpu", batch_size: int = 8) -> float:
        """Embed ``images`` (each (H, W[, 3])) into the caches of both models, ``batch_size`` per encoder
        forward (:meth:`BoxPredictor.embed_many`), so later prompts find them cached; return seconds.

        Images :func:`check_segmentable` refuses are left out (their prompt gives the error); a ready
        predictor without ``embed_many`` is left as it is."""
        t0 = time.perf_counter()
        usable = [image for image in images if _segmentable(image)]
        for ref in (model, baseline):
            embed_many = getattr(self.predictor(ref, device), "embed_many", None) if ref is not None else None
            if usable and embed_many is not None:
                embed_many(usable, batch_size)
        return time.perf_counter() - t0

    def _prompt(self, image: np.ndarray, box: np.ndarray, model: ModelLike, device: str, clean: bool):
        """(mask, prediction, prompt ms, seconds incl. embedding, their thread CPU seconds on a CPU
        predictor else None) of one model."""
        check_segmentable(image)
        predictor = self.predictor(model, device)
        t0, c0 = time.perf_counter(), time.thread_time()
        predictor.set_image(image)  # cached after the first call
        t1 = time.perf_counter()
        pred = predictor.predict(box)
        t2, c2 = time.perf_counter(), time.thread_time()
        on_cpu = str(getattr(predictor, "device", "cpu")).startswith("cpu")
        mask = clean_lung_mask(pred.masks[0]) if clean else pred.masks[0]
        return mask, pred, (t2 - t1) * 1000.0, t2 - t0, (c2 - c0) if on_cpu else None

    def predict(self, image: np.ndarray, box: np.ndarray, model: ModelLike, device: str = "cpu",
                reference: Optional[np.ndarray] = None, slice_index: Optional[int] = None,
                clean: bool = True) -> SegmentResult:
        """Phase 1, fast: prompt ``image`` (H, W) with one xyxy ``box``; the mask and its Dice.

        ``clean`` keeps the two largest regions and fills holes (the maps use the raw probabilities)."""
        if reference is not None and reference.shape != image.shape[:2]:
            raise ValueError(f"reference layer has shape {reference.shape}, the image slice {image.shape}")
        mask, pred, latency, seconds, cpu_seconds = self._prompt(image, box, model, device, clean)
        score = float(dice(mask, reference != 0)) if reference is not None else None
        return SegmentResult(
            box=np.asarray(box, dtype=np.float64), slice_index=slice_index, mask=mask, p_model=pred.probs[0],
            has_reference=reference is not None, dice=score, latency_ms=latency, iou_pred=float(pred.iou[0]),
            model_seconds=seconds, model_cpu_seconds=cpu_seconds, cleaned=clean,
            model_file=str(model.resolved()) if isinstance(model, ModelRef) else None,
        )

    def add_maps(self, result: SegmentResult, image: np.ndarray, baseline: Optional[ModelLike], device: str = "cpu",
                 reference: Optional[np.ndarray] = None) -> SegmentResult:
        """Phase 2, slower (SSIM is ~20-40 ms per map on 512²): the baseline's prediction and the
        SSIM/ΔSSIM maps of DESIGN.md, filled into ``result`` (returned)."""
        if baseline is not None:
            mask, pred, _latency, seconds, _cpu = self._prompt(image, result.box, baseline, device, result.cleaned)
            result.p_baseline, result.baseline_mask, result.baseline_seconds = pred.probs[0], mask, seconds
            maps = trust_maps(result.p_model, result.p_baseline, reference)
            result.ssim, result.delta = maps.ssim, maps.delta
            result.ssim_mean, result.delta_mean = maps.ssim_mean, maps.delta_mean
        elif reference is not None:
            result.ssim_mean, result.ssim = ssim_map(result.p_model, (reference != 0).astype(np.float32))
        return result

    def segment(self, image: np.ndarray, box: np.ndarray, model: ModelLike, baseline: Optional[ModelLike] = None,
                device: str = "cpu", reference: Optional[np.ndarray] = None,
                slice_index: Optional[int] = None, clean: bool = True) -> SegmentResult:
        """Both phases at once: :meth:`predict`, then :meth:`add_maps`."""
        result = self.predict(image, box, model, device, reference, slice_index, clean)
        return self.add_maps(result, image, baseline, device, reference)
