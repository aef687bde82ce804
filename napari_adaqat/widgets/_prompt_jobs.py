"""What the Segment dock's prompt jobs run (in a worker, or inline when quick): the engine's prompt with
box, points and mask prompt, then the baseline and the SSIM / ΔSSIM maps of the same prompts (a mixin of
:class:`~napari_adaqat.widgets.segment.SegmentWidget`)."""
from __future__ import annotations

from collections import deque
from typing import Any, Callable, Hashable, Optional

import numpy as np

from napari_adaqat.inference.engine import ModelRef, SegmentResult, torch_threads
from napari_adaqat.widgets._layers import plane_count
from napari_adaqat.widgets._prompt_history import PromptState

PROMPT_THREADS = 1  # torch threads of prompt jobs (embedding jobs use torch's default)

# A box prompt whose last run on this image took less than this runs at once on the GUI thread when no
# job is running: handing a ~10 ms prompt to a worker thread made it wait ~60 ms for the cores that
# Qt/OpenGL painting the new box takes (measured under Xvfb on 2 cores); anything slower, or while
# a job runs, goes to the worker as before, so the viewer never waits longer than this (up to 50 ms of GUI
# blocking per box). 50 ms, not 30: the default model v3f's prompt costs 25-41 ms of one core, and at 30 ms it
# went to the worker: ~125 ms from box to mask instead of 51-56 ms (benchmarks/dock_latency.py, BENCHMARKS.md).
INLINE_PROMPT_MS = 50.0


RECENT_PROMPTS = 5  # the inline rule looks at the median cost of this many recent prompts
# After this many prompts in a row in the worker, the next one runs inline once more (a probe), when their cost is
# under PROBE_BELOW_MS: a prompt costs a worker thread about twice what it costs the GUI thread (measured: 80-118 ms
# against 42-50 ms of CPU, benchmarks/dock_latency.py), so worker costs alone would keep every later click there
# (clicks at 110-150 ms instead of 65-75 ms, after one slow run).  A truly slow prompt (a 3000-px film's) never probes.
PROBE_EVERY, PROBE_BELOW_MS = 3, 120.0


def _lower_median(costs: Any) -> float:
    return sorted(costs)[(len(costs) - 1) // 2] * 1000.0


def _prompt_cost(result: SegmentResult) -> float:
    """Seconds a prompt costs: its thread CPU time on a CPU (a worker's wall time also counts its wait
    for the cores while napari paints), else its wall time."""
    return result.model_cpu_seconds if result.model_cpu_seconds is not None else result.model_seconds


class RecentCosts:
    """The costs (s, :func:`_prompt_cost`) of the last :data:`RECENT_PROMPTS` prompts on one key (image plane,
    model, device), those run inline and those run in the worker apart.  The median of the inline ones decides
    whether the next prompt runs inline: judged by the last prompt alone, one slow run on a busy machine sent the
    next prompts to the worker, where each waited ~50 ms for the cores while napari painted (issue 32: clicks
    alternated between 60 and 120 ms, BENCHMARKS.md).  Worker costs decide only before any inline one, and a
    probe (:data:`PROBE_EVERY`) after a run of them starts the inline record afresh."""

    def __init__(self) -> None:
        self._key: Optional[Hashable] = None
        self._inline: deque[float] = deque(maxlen=RECENT_PROMPTS)
        self._worker: deque[float] = deque(maxlen=RECENT_PROMPTS)
        self._streak = 0  # prompts in a row run in the worker

    def add(self, key: Hashable, seconds: float, inline: bool = False) -> None:
        """Record one prompt's cost (``inline``: it ran on the GUI thread); a new key starts a new record."""
        if key != self._key:
            self._key = key
            self._inline.clear()
            self._worker.clear()
            self._streak = 0
        if not inline:
            self._worker.append(seconds)
            self._streak += 1
            return
        if self._streak:  # the first inline run after worker runs: the inline record starts again from it
            self._inline.clear()
        self._inline.append(seconds)
        self._streak = 0

    def quick(self, key: Hashable) -> bool:
        """Whether prompts on ``key`` typically cost under :data:`INLINE_PROMPT_MS` (the lower median: the
        first prompt on an image also paid for its embedding, so one quick prompt after it is enough)."""
        if key != self._key or not (self._inline or self._worker):
            return False
        if self._inline and _lower_median(self._inline) < INLINE_PROMPT_MS:
            return True
        if self._worker and self._streak >= PROBE_EVERY and _lower_median(self._worker) < PROBE_BELOW_MS:
            return True  # a probe
        return not self._inline and _lower_median(self._worker) < INLINE_PROMPT_MS


def _prompt_key(image: Any, z: Optional[int], model: ModelRef, device: str) -> tuple:
    """What a prompt's cost depends on: the image layer and its data, the plane, the model and device."""
    return (image.unique_id, id(image.data), z, model, device)


class PromptJobs:
    """The engine calls of a prompt (needs the dock's ``engine``; :meth:`_quick_prompt` also ``_closed``, ``jobs``,
    ``last_result`` and ``_costs``)."""

    engine: Any

    def _quick_prompt(self, image: Any, z: Optional[int], model: ModelRef, device: str) -> bool:
        """Whether a prompt may run at once on the GUI thread: no job runs or waits, and the recent ones,
        on this image plane with this model, took under :data:`INLINE_PROMPT_MS` (their median,
        :class:`RecentCosts`; the caller also checks that the model file is unchanged and the embedding
        cached: ``Engine.is_embedded``)."""
        dock: Any = self
        return (not dock._closed and not dock.jobs.busy and dock.last_result is not None
                and dock._costs.quick(_prompt_key(image, z, model, device)))

    @staticmethod
    def _prompt_job(fn: Callable[..., Any], *args: Any) -> Any:
        """Run a box-prompt job (in a worker) with :data:`PROMPT_THREADS` torch threads."""
        with torch_threads(PROMPT_THREADS):
            return fn(*args)

    def _reference_plane(self, z: Optional[int], shape: tuple[int, int]) -> Optional[np.ndarray]:
        """The plane ``z`` of the chosen reference Labels layer (a copy), None without one (raises ValueError when
        its shape is not the image's)."""
        dock: Any = self
        layer = dock.reference.value
        if layer is None:
            return None
        data = np.asarray(layer.data[0] if layer.multiscale else layer.data)
        if data.ndim == 3 and z is not None:
            planes = plane_count(dock.image.value)
            if data.shape[0] != planes:
                raise ValueError(f"reference {layer.name!r} has {data.shape[0]} planes, the image {planes}")
            data = data[z]
        if data.shape != shape:
            raise ValueError(f"reference {layer.name!r} has shape {data.shape}, the image plane {shape}")
        return np.array(data, copy=True)  # the worker must not see later brush strokes

    def _mask_input(self, source: Any, plane: np.ndarray, model: Any, device: str) -> Any:
        """The mask prompt: logits as they are, an edited mask (H, W) bool through the model's
        ``mask_input_from`` (in the job: it needs the image set)."""
        if not isinstance(source, np.ndarray):
            return source
        with self.engine.lock:
            segmenter = self.engine.segmenter(model, device)
            segmenter.set_image(plane)
            return segmenter.mask_input_from(source)

    def _predict(self, request: PromptState, plane: np.ndarray, box: Optional[np.ndarray], coords: np.ndarray,
                 labels: np.ndarray, source: Any, model: ModelRef, device: str, ref: Optional[np.ndarray],
                 z: Optional[int], clean: bool) -> SegmentResult:
        """The engine's prompt (a job): box and/or points (x, y pixels, 1 = lung / 0 = not lung), mask prompt."""
        kwargs: dict[str, Any] = {}
        if len(coords):
            kwargs.update(point_coords=coords, point_labels=labels)
        request.mask_input = self._mask_input(source, plane, model, device)
        if request.mask_input is not None:
            kwargs["mask_input"] = request.mask_input
        result = self.engine.predict(plane, box, model, device, ref, z, clean, **kwargs)
        if result.own_logits is not None:  # the dock reads probabilities for its maps only, which compare the two
            result.p_model, result.own_logits = result.p_own, None  # models' own: one full-film array kept, not two
        return result

    def _add_maps(self, result: SegmentResult, plane: np.ndarray, base: Optional[ModelRef], device: str,
                  ref: Optional[np.ndarray], base_source: Any, edit: Optional[np.ndarray]) -> SegmentResult:
        """The maps (a job): the baseline gets the same points, and its own previous logits or the edit."""
        if base is None:
            return self.engine.add_maps(result, plane, base, device, ref)
        source = self._mask_input(edit if edit is not None else base_source, plane, base, device)
        kwargs = {} if source is None else {"baseline_mask_input": source}
        return self.engine.add_maps(result, plane, base, device, ref, **kwargs)
