"""The inference engine: a model (a :class:`~napari_adaqat.inference.segmenter.Segmenter`) paired with
an optional baseline and the SSIM/ΔSSIM trust maps on an image and a box, with one result type.

``adaqat segment`` (:mod:`.batch`), ``adaqat evaluate`` (:mod:`napari_adaqat.report.evaluate`) and
the docks all run through :class:`Engine`, which keeps the opened segmenters; the mask of a box is
:meth:`Segmenter.prompt`'s, so it equals :func:`~napari_adaqat.inference.segmenter.open_model`'s.
No napari or Qt here: the docks call it from worker threads, tests call it directly.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from napari_adaqat.io import check_segmentable, film_and_spacing, read_image
from napari_adaqat.data.boxes import default_box
from napari_adaqat.inference.postprocess import clip_probabilities
from napari_adaqat.inference.predictor import BoxPredictor, FilmLike, Prediction
from napari_adaqat.inference.segmenter import ModelRef, Segmenter, load_segmenter, model_ref
from napari_adaqat.metrics import dice, ssim_map, trust_maps
from napari_adaqat.model.device import resolve_device

__all__ = ["Engine", "ModelLike", "ModelRef", "SegmentResult", "Segmenter", "batched", "model_ref", "torch_threads"]


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
    return str(resolve_device(device) if device == "auto" else device).split(":")[0] != "cpu"


def _segmentable(image: Any) -> bool:
    try:
        check_segmentable(film_and_spacing(image)[0])
    except Exception:  # too small, blank, not an image: its prompt reports it
        return False
    return True


ModelLike = Union[ModelRef, Segmenter, BoxPredictor]


@dataclass
class _Prompted:
    """One model's answer to one box prompt."""

    mask: np.ndarray  # (H, W) bool, after the clean-up rule when ``cleaned``
    pred: Prediction
    latency_ms: float  # the prompt alone (embedding cached)
    seconds: float  # embedding (or cache lookup) + prompt
    cpu_seconds: Optional[float]  # the same span's thread CPU time on a CPU predictor, else None
    cleaned: bool
    path: Optional[Path]  # the model file (None for a ready predictor)
    clipped: bool = True
    takes_clicks: bool = True  # Segmenter.takes_clicks of the model


@dataclass
class SegmentResult:
    """Everything one prompt (a box and/or points, and a mask prompt) produced, at the image's (slice's)
    resolution.  ``low_res_logits`` is the model's next ``mask_input`` (a corrective click feeds it back)."""

    box: Optional[np.ndarray]  # (4,) xyxy pixels; None for points alone
    slice_index: Optional[int]  # plane of a 3-D stack, None for 2-D images
    mask: np.ndarray  # (H, W) bool, cleaned when ``cleaned``
    p_model: Optional[np.ndarray]  # (H, W) float32 probabilities (the Segment dock frees them once its maps are made)
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
    point_coords: Optional[np.ndarray] = None  # (P, 2) x, y pixels of the prompt's points
    point_labels: Optional[np.ndarray] = None  # (P,) 1 = lung, 0 = not lung
    low_res_logits: Any = None  # torch (1, 1, 4E, 4E): the model's logits, its next mask_input
    clipped: bool = True  # whether the box-clipping rule was applied (when there is a box)
    takes_clicks: bool = True  # whether the model was trained with point prompts (Segmenter.takes_clicks)
    own_logits: Any = None  # torch (H, W): the model's own logits where a vote changed them (Prediction.own_logits)
    spacing: Optional[tuple[float, float]] = None  # (row, col) of the image's pixels as prompted (add_maps: the same)
    p_baseline: Optional[np.ndarray] = None  # filled by Engine.add_maps
    baseline_mask: Optional[np.ndarray] = None
    baseline_seconds: Optional[float] = None
    baseline_low_res_logits: Any = None  # torch (1, 1, 4E, 4E): the baseline's next mask_input
    ssim: Optional[np.ndarray] = None  # (H, W) float32
    delta: Optional[np.ndarray] = None
    ssim_mean: Optional[float] = None
    delta_mean: Optional[float] = None

    @property
    def p_own(self) -> Optional[np.ndarray]:
        """(H, W) float32: the model's own probabilities (before a vote; ``p_model`` without one), or None once
        freed: what the quality score reads."""
        if self.own_logits is not None:
            return torch.sigmoid(self.own_logits).numpy()
        return self.p_model

    def summary(self) -> str:
        """The dock's status: latency and area, then SSIM/ΔSSIM, then Dice (one line each)."""
        lines = [f"latency {self.latency_ms:.0f} ms · area {int(self.mask.sum())} px"]
        if self.ssim_mean is not None:
            kind = "SSIM vs reference" if self.has_reference else "SSIM model~baseline"
            line = f"{kind} {self.ssim_mean:.3f}"
            if self.has_reference and self.delta_mean is not None:  # (a reference without a baseline: no ΔSSIM)
                line += f" · ΔSSIM {self.delta_mean:+.3f}"
            lines.append(line)
        if self.dice is not None:
            lines.append(f"Dice vs reference {self.dice:.3f}")
        if self.point_coords is not None and len(self.point_coords) and not self.takes_clicks:
            lines.append("⚠ this model was trained with boxes only: its clicks may not help (see the README)")
        return "\n".join(lines)


ONE_SHOT = float("inf")  # recheck_seconds of a run that opens its model files once (CLI, batch, evaluate)


class Engine:
    """Keeps opened models (:class:`Segmenter`: a model and its baseline) between prompts.

    A model file is keyed by its identity (path, size, modification time) and device, so a file
    rewritten in place (e.g. by a training run) is loaded again; only the ``MAX_LOADED`` most
    recently used models stay in memory.  ``recheck_seconds``: how long a reference's file identity
    is trusted before it is looked at again (0: at every call; the docks' shared engine waits a
    while, so a prompt does not stat the file; :meth:`forget_files` makes the next call look).  A
    :class:`Segmenter` or a :class:`BoxPredictor` (any object with ``set_image`` and ``predict``)
    may be passed instead of a :class:`ModelRef`; it is used as it is.
    """

    MAX_LOADED = 2

    def __init__(self, max_loaded: int = MAX_LOADED, recheck_seconds: float = 0.0) -> None:
        self.max_loaded = max(1, int(max_loaded))  # e.g. several models + a baseline in one evaluation
        self.recheck_seconds = float(recheck_seconds)
        self._segmenters: OrderedDict[tuple, Segmenter] = OrderedDict()
        self._keys: dict[tuple, tuple[tuple, float]] = {}  # (ref, device) -> (file key, when looked at)
        # one prompt or embedding at a time: docks share one engine, and a predictor holds "the image
        # set last" (set_image then predict must not interleave with another thread's set_image)
        self.lock = threading.RLock()

    def _key(self, ref: ModelRef, device: str) -> tuple:
        """The identity of ``ref``'s file on ``device``; looked up again after ``recheck_seconds``."""
        known = self._keys.get((ref, device))
        now = time.monotonic()
        if known is not None and now - known[1] < self.recheck_seconds and known[0] in self._segmenters:
            return known[0]
        path = ref.resolved()
        try:
            stat = path.stat()
            identity = (stat.st_size, stat.st_mtime_ns)
        except OSError:
            identity = None  # load_model gives the one-line error
        arch = ref.model_type if path.suffix.lower() in (".pth", ".pt") else None  # ours carry their config
        key = (str(path.resolve()), identity, arch, device)
        self._keys[(ref, device)] = (key, now)
        return key

    def forget_files(self) -> None:
        """Look at every model file again at its next use (e.g. when the dock's file choice changes)."""
        self._keys.clear()

    def segmenter(self, model: ModelLike, device: str = "auto") -> Segmenter:
        """Open (once per file version) and return the segmenter of ``model`` on ``device``."""
        if isinstance(model, Segmenter):
            return model
        if model is None or isinstance(model, (str, Path)):
            model = model_ref(model)  # a file path, or None / "default": the bundled model
        if not isinstance(model, ModelRef):
            if not (hasattr(model, "set_image") and hasattr(model, "predict")):
                raise TypeError(f"model must be a model file, 'default', a ModelRef, a Segmenter or a predictor "
                                f"(with set_image and predict); got {type(model).__name__}")
            return Segmenter(model)  # a ready predictor (anything with set_image and predict)
        device = resolve_device(device)  # ("auto": a GPU where there is one, as open_model and the CLI)
        key = self._key(model, device)
        if key not in self._segmenters:
            self._segmenters[key] = load_segmenter(model, device)
            while len(self._segmenters) > self.max_loaded:
                self._segmenters.popitem(last=False)  # least recently used
        self._segmenters.move_to_end(key)
        return self._segmenters[key]

    def predictor(self, model: ModelLike, device: str = "auto") -> BoxPredictor:
        """The predictor of :meth:`segmenter` (opened once per file version)."""
        return self.segmenter(model, device).predictor

    def is_embedded(self, image: FilmLike, model: ModelLike, device: str = "auto") -> bool:
        """True when ``model`` (this version of its file) is loaded and ``image``'s embedding is in its
        cache, so a prompt needs no loading and no embedding (what the dock checks before prompting on
        the GUI thread); never loads or embeds anything itself."""
        if not isinstance(model, ModelRef):
            return False
        try:
            segmenter = self._segmenters.get(self._key(model, resolve_device(device)))
        except Exception:  # e.g. a bundled model that is missing: not embedded
            return False
        if segmenter is None:
            return False
        predictor = segmenter.predictor
        pixels, spacing = film_and_spacing(image)
        return predictor.cache.get(predictor.key_of(pixels, spacing)) is not None  # as set_image keys it

    def embed(self, image: FilmLike, model: ModelLike, baseline: Optional[ModelLike], device: str = "auto") -> float:
        """Compute (or fetch cached) embeddings of ``image`` for both models; return seconds."""
        pixels, spacing = film_and_spacing(image)
        check_segmentable(pixels)  # too small or blank: one line, before any model runs
        t0 = time.perf_counter()
        with self.lock:
            self.segmenter(model, device).set_image(pixels, spacing)
            if baseline is not None:
                self.segmenter(_baseline(baseline), device).set_image(pixels, spacing)
        return time.perf_counter() - t0

    def prefetch(self, images: Sequence[FilmLike], model: ModelLike, baseline: Optional[ModelLike] = None,
                 device: str = "auto", batch_size: int = 8) -> float:
        """Embed ``images`` (each (H, W[, 3]), or an ImageData with its spacing) into the caches of both models,
        ``batch_size`` per encoder forward (:meth:`BoxPredictor.embed_many`), so later prompts find them cached;
        return seconds.

        Images :func:`check_segmentable` refuses are left out (their prompt gives the error); a ready
        predictor without ``embed_many`` is left as it is."""
        t0 = time.perf_counter()
        usable = [image for image in images if _segmentable(image)]
        with self.lock:
            self._prefetch(usable, model, _baseline(baseline), device, batch_size)
        return time.perf_counter() - t0

    def _prefetch(self, usable: Sequence[np.ndarray], model: ModelLike, baseline: Optional[ModelLike],
                  device: str, batch_size: int) -> None:
        for ref in (model, baseline):
            embed_many = getattr(self.predictor(ref, device), "embed_many", None) if ref is not None else None
            if usable and embed_many is not None:
                embed_many(usable, batch_size)

    def _prompt(self, image: np.ndarray, box: Optional[np.ndarray], model: ModelLike, device: str,
                clean: Optional[bool], point_coords: Optional[np.ndarray] = None,
                point_labels: Optional[np.ndarray] = None, mask_input: Any = None,
                clip: Optional[bool] = None, spacing: Optional[Sequence[float]] = None) -> "_Prompted":
        """One model's prompt of ``image`` (its pixels' ``spacing``) with ``box`` and/or points (and a mask
        prompt), timed (see :class:`_Prompted`); :meth:`Segmenter.predict` does it."""
        check_segmentable(image)
        with self.lock:
            segmenter = self.segmenter(model, device)
            with segmenter.lock:  # a Segmenter passed in may also be prompted elsewhere (a script, another engine)
                t0, c0 = time.perf_counter(), time.thread_time()
                segmenter.set_image(image, spacing)  # cached after the first call
                t1 = time.perf_counter()
                mask, pred = segmenter.predict(box, point_coords, point_labels, mask_input, clean, clip)
                t2, c2 = time.perf_counter(), time.thread_time()
        return _Prompted(mask, pred, (t2 - t1) * 1000.0, t2 - t0,
                         (c2 - c0) if segmenter.device.startswith("cpu") else None,
                         segmenter.clean if clean is None else bool(clean), segmenter.path,
                         segmenter.clip if clip is None else bool(clip), segmenter.takes_clicks)

    def predict(self, image: FilmLike, box: Optional[np.ndarray], model: ModelLike, device: str = "auto",
                reference: Optional[np.ndarray] = None, slice_index: Optional[int] = None,
                clean: Optional[bool] = None, *, point_coords: Optional[np.ndarray] = None,
                point_labels: Optional[np.ndarray] = None, mask_input: Any = None,
                clip: Optional[bool] = None) -> SegmentResult:
        """Phase 1, fast: prompt ``image`` (H, W[, 3] pixels, a file, or an :class:`~napari_adaqat.io.ImageData`,
        whose spacing makes non-square pixels square for the model) with one xyxy ``box`` (None: points alone, or the default
        box when none of the points is lung, :meth:`Segmenter.predict`; ``SegmentResult.box`` stays None) and optional points (P, 2) x, y pixels with labels (P,)
        1 = lung / 0 = not lung and a ``mask_input`` (the previous result's ``low_res_logits``, or
        :meth:`Segmenter.mask_input_from` of an edited mask); the mask and its Dice.

        ``clean`` keeps the two largest regions and fills holes, ``clip`` clears what lies outside the
        box plus a margin (``None``: the segmenter's rules, both on for model files; the maps use the
        probabilities, not cleaned, but clipped as the mask is)."""
        image, spacing = film_and_spacing(image)
        if reference is not None and reference.shape != image.shape[:2]:
            raise ValueError(f"reference layer has shape {reference.shape}, the image slice {image.shape}")
        coords, labels = _points(point_coords, point_labels)
        run = self._prompt(image, box, model, device, clean, coords, labels, mask_input, clip, spacing)
        score = float(dice(run.mask, reference != 0)) if reference is not None else None
        return SegmentResult(
            box=None if box is None else np.asarray(box, dtype=np.float64), slice_index=slice_index, mask=run.mask,
            p_model=run.pred.probs[0], has_reference=reference is not None, dice=score, latency_ms=run.latency_ms,
            iou_pred=float(run.pred.iou[0]), model_seconds=run.seconds, model_cpu_seconds=run.cpu_seconds,
            cleaned=run.cleaned, model_file=None if run.path is None else str(run.path),
            point_coords=coords, point_labels=labels, low_res_logits=_first_row(run.pred), clipped=run.clipped,
            takes_clicks=run.takes_clicks, own_logits=None if run.pred.own_logits is None else run.pred.own_logits[0],
            spacing=None if spacing is None else (float(spacing[0]), float(spacing[1])),
        )

    def add_maps(self, result: SegmentResult, image: FilmLike, baseline: Optional[ModelLike], device: str = "auto",
                 reference: Optional[np.ndarray] = None, baseline_mask_input: Any = None) -> SegmentResult:
        """Phase 2, slower (SSIM is ~20-40 ms per map on 512²): the baseline's prediction of the same
        prompts (box, points; its own ``baseline_mask_input``, e.g. its previous ``baseline_low_res_logits``,
        else no mask prompt) and the SSIM/ΔSSIM maps of DESIGN.md, filled into ``result`` (returned).  The maps
        compare the two models' own probabilities (a vote both files carry would hide their differences), both
        cleared outside the box as the masks are (``result.clipped``: nothing outside the box counts), while
        ``p_model`` / ``p_baseline`` stay as the models gave them.  ``baseline`` may be a file path, or
        ``"default"`` for the bundled FP32 baseline."""
        (image, spacing), baseline = film_and_spacing(image, result.spacing), _baseline(baseline)  # (as prompted)
        clip = _map_clip(result, image.shape[:2])
        if baseline is not None:
            run = self._prompt(image, result.box, baseline, device, result.cleaned, result.point_coords,
                               result.point_labels, baseline_mask_input, result.clipped, spacing)
            result.p_baseline, result.baseline_mask, result.baseline_seconds = run.pred.probs[0], run.mask, run.seconds
            result.baseline_low_res_logits = _first_row(run.pred)
            own = run.pred.probs[0] if run.pred.own_logits is None else torch.sigmoid(run.pred.own_logits[0]).numpy()
            maps = trust_maps(clip_probabilities(result.p_own, *clip), clip_probabilities(own, *clip),
                              reference)  # INT8 against FP32, each its own (a shared vote apart)
            result.ssim, result.delta = maps.ssim, maps.delta
            result.ssim_mean, result.delta_mean = maps.ssim_mean, maps.delta_mean
        elif reference is not None:
            result.ssim_mean, result.ssim = ssim_map(clip_probabilities(result.p_model, *clip),
                                                     (reference != 0).astype(np.float32))
        return result

    def segment(self, image: FilmLike, box: Optional[np.ndarray], model: ModelLike,
                baseline: Optional[ModelLike] = None, device: str = "auto", reference: Optional[np.ndarray] = None,
                slice_index: Optional[int] = None, clean: Optional[bool] = None, *,
                point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                mask_input: Any = None, baseline_mask_input: Any = None, clip: Optional[bool] = None) -> SegmentResult:
        """Both phases at once: :meth:`predict`, then :meth:`add_maps` (same prompts for the baseline).  ``image``
        may be a file (read once, as ``adaqat segment`` reads it)."""
        image = read_image(image) if isinstance(image, (str, Path)) else image  # (read once, for both phases)
        result = self.predict(image, box, model, device, reference, slice_index, clean, point_coords=point_coords,
                              point_labels=point_labels, mask_input=mask_input, clip=clip)
        return self.add_maps(result, image, baseline, device, reference, baseline_mask_input)


def _baseline(baseline: Any) -> Any:
    """A baseline given by name: a file path, or ``"default"`` for the bundled model's FP32 baseline."""
    return model_ref(baseline, baseline=True) if isinstance(baseline, (str, Path)) else baseline


def _map_clip(result: SegmentResult, shape: tuple[int, int]) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """(box, lung points) that the mask of ``result`` was clipped to (:meth:`Segmenter.predict`'s rule: its box, or
    the default box for "not lung" points alone), or (None, None) when it was not clipped."""
    coords, labels = result.point_coords, result.point_labels
    positive = None if coords is None else coords[np.asarray(labels) == 1]
    box = result.box
    if box is None and positive is not None and not len(positive):
        box = default_box(shape)
    return (None, None) if box is None or not result.clipped else (box, positive)


def _points(point_coords: Optional[np.ndarray], point_labels: Optional[np.ndarray]
            ) -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """Points as (P, 2) float64 x, y and labels (P,) int64, or (None, None) when there are none."""
    if point_coords is None and point_labels is None:
        return None, None
    if point_coords is None or point_labels is None:
        raise ValueError("point_coords and point_labels go together (labels: 1 = lung, 0 = not lung)")
    coords = np.asarray(point_coords, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(point_labels, dtype=np.int64).reshape(-1)
    if len(coords) != len(labels):
        raise ValueError(f"{len(coords)} points but {len(labels)} labels")
    return (coords, labels) if len(coords) else (None, None)


def _first_row(pred: Prediction) -> Any:
    """The first prompt's ``low_res_logits`` (1, 1, 4E, 4E), or None for a predictor without them."""
    low = getattr(pred, "low_res_logits", None)
    return None if low is None else low[:1]
