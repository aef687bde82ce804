"""One object that segments: a model opened once, with its device, loader, predictor and mask clean-up.

:func:`open_model` is the one way in.  The Python API, ``adaqat segment``, ``adaqat evaluate``, the
docks and the cross-validation scorer all prompt a :class:`Segmenter` (the latter ones through
:class:`~napari_adaqat.inference.engine.Engine`, which pairs it with a baseline and the SSIM maps), so
the same box on the same image gives the same mask everywhere::

    from napari_adaqat import open_model
    model = open_model()                                   # the bundled INT8 model, device "auto"
    mask = model.segment("chest.png", [x0, y0, x1, y1])    # (H, W) bool, cleaned as `adaqat segment`

Points and corrections use SAM's names; each prediction's ``low_res_logits`` is the next ``mask_input``::

    model.set_image("chest.png")
    mask, pred = model.predict(boxes=[x0, y0, x1, y1])
    mask, pred = model.predict(boxes=[x0, y0, x1, y1], point_coords=[[x, y]], point_labels=[0],
                               mask_input=pred.low_res_logits)   # one "not lung" click
"""
from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from napari_adaqat.data.boxes import box_outside, check_box, default_box
from napari_adaqat.data.points import check_inside, check_points
from napari_adaqat.inference.postprocess import finish_mask
from napari_adaqat.inference.predictor import BoxPredictor, Prediction
from napari_adaqat.inference.prompt_args import as_boxes, as_numbers, as_points, check_multimask
from napari_adaqat.data.transforms import pixel_aspect
from napari_adaqat.io import ImageData, check_segmentable, film_and_spacing
from napari_adaqat.io.images import image_path
from napari_adaqat.model.device import resolve_device
from napari_adaqat.model.loading import is_bundled, load_model, resolve_model_path

__all__ = ["ModelRef", "Segmenter", "model_ref", "open_model"]


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


def model_ref(model: Any, baseline: bool = False, model_type: str = "vit_b") -> Any:
    """A model argument as the engine takes it: a path, or ``None``/``"default"`` for the bundled
    file (its FP32 baseline when ``baseline``), becomes a :class:`ModelRef`; others pass through."""
    if model is not None and not isinstance(model, (str, Path)):
        return model  # a ModelRef, a Segmenter, or a ready predictor (anything with set_image/predict)
    return ModelRef(None if is_bundled(model) else Path(model), baseline=baseline, model_type=model_type)


ImageLike = Union[np.ndarray, str, Path, ImageData]  # pixels, a file, or pixels with their spacing


class Segmenter:
    """An opened model: ``segment(image, box)`` gives the lung mask.

    ``predictor`` is a :class:`~napari_adaqat.inference.predictor.BoxPredictor` (embed once, prompt
    many; or any object with ``set_image``/``predict``).  ``clean`` is the clean-up rule of every
    mask this model returns unless a call says otherwise: keep the two largest regions and fill holes
    (:func:`~napari_adaqat.inference.postprocess.clean_lung_mask`), as ``adaqat segment`` and the
    Segment dock do by default; ``clean=False`` gives the raw thresholded mask (``--no-clean``).
    ``clip``: nothing of a box prompt's mask outside the box plus a margin
    (:func:`~napari_adaqat.inference.postprocess.clip_margin`; on by default, ``--no-clip`` turns it off).

    Threads: one call at a time (``lock``, an RLock): ``segment`` is safe from several threads (a GUI's worker
    and a script); a thread that calls ``set_image`` then ``predict`` holds ``with model.lock:`` around both, so
    another thread's ``set_image`` cannot come between them.  Two Segmenters run side by side.
    """

    def __init__(self, predictor: Any, *, path: Optional[Path] = None, clean: bool = True, clip: bool = True) -> None:
        self.predictor = predictor
        self.path = path  # the model file (None for a ready predictor)
        self.clean = bool(clean)
        self.clip = bool(clip)
        self.image_shape: Optional[tuple[int, int]] = None  # (H, W) of the image set last
        self.lock = threading.RLock()  # one set_image / predict at a time (see the class docstring)

    @property
    def device(self) -> str:
        return str(getattr(self.predictor, "device", "cpu"))

    @property
    def sam(self) -> Any:
        """The SAM network (``sam.spec``, ``sam.meta``: the file's metadata)."""
        return self.predictor.sam

    @property
    def meta(self) -> dict:
        return dict(getattr(self.sam, "meta", {}) or {})

    @cached_property  # the model of a Segmenter never changes
    def takes_clicks(self) -> bool:
        """Whether the model learnt point prompts: official SAM files did; a file of ours did when its training
        simulated corrective clicks (``click_rounds`` > 0 in the recorded training config) or its mask refiner
        takes clicks (``refiner_clicks``: trained with them, and kept by any fine-tune of it).  The earlier
        default v3f learnt boxes only.  A ready predictor without a network (``sam``) is not judged: True."""
        sam = getattr(self.predictor, "sam", None)
        meta = getattr(sam, "meta", None) or {}
        if meta.get("format") != "adaqat-model":
            return True
        config = (meta.get("provenance") or {}).get("train_config") or {}
        return int(config.get("click_rounds") or 0) > 0 or bool(getattr(sam.spec, "refiner_clicks", False))

    def set_image(self, image: ImageLike, spacing: Optional[Sequence[float]] = None) -> "Segmenter":
        """Embed ``image`` (H, W[, 1|3|4], an image file or an :class:`~napari_adaqat.io.ImageData`), or fetch its
        cached embedding.  A float array outside [0, 1] (0..255, Hounsfield-like values) is min-max scaled
        (``to_uint8_rgb``), as a float TIFF is read.  ``spacing`` (row, col), else the file's own (a DICOM's
        PixelSpacing): non-square pixels are made square for the model, the mask comes back on the film's pixels.
        What ``adaqat segment`` refuses is refused with its line: an image too small, a strip, a blank image."""
        image = image_path(image) or image  # (a path as bytes, os.listdir(b".")'s: a path)
        named = isinstance(image, (str, Path))
        pixels, spacing = film_and_spacing(image, spacing)
        pixels = np.asarray(pixels)
        pixels = pixels[..., 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels  # (H, W, 1): gray
        if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] not in (3, 4)):
            raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {pixels.shape}")
        check_segmentable(pixels, image if named else None)
        with self.lock:
            self.image_shape = (int(pixels.shape[0]), int(pixels.shape[1]))
            if pixel_aspect(spacing) != 1.0 and isinstance(self.predictor, BoxPredictor):
                self.predictor.set_image(pixels, spacing=spacing)
            else:  # (a ready predictor takes the pixels as they are)
                self.predictor.set_image(pixels)
        return self

    def clean_mask(self, mask: np.ndarray, clean: Optional[bool] = None, box: Optional[Sequence[float]] = None,
                   clip: Optional[bool] = None, point_coords: Optional[np.ndarray] = None,
                   point_labels: Optional[np.ndarray] = None) -> np.ndarray:
        """``mask`` (H, W) bool after this model's rules (:func:`~napari_adaqat.inference.postprocess.finish_mask`):
        clipped to ``box`` (xyxy pixels, widened to the positive points; no box: not clipped), then cleaned;
        ``clean`` / ``clip`` override the rules."""
        positive = negative = None
        if point_coords is not None and point_labels is not None:
            coords = np.asarray(point_coords, dtype=np.float64).reshape(-1, 2)
            labels = np.asarray(point_labels).reshape(-1)
            positive, negative = coords[labels == 1], coords[labels == 0]
        return finish_mask(mask, None if box is None else np.asarray(box, dtype=np.float64).reshape(-1)[:4],
                           self.clean if clean is None else bool(clean), self.clip if clip is None else bool(clip),
                           positive, negative)

    def predict(self, boxes: Optional[Sequence[float]] = None, point_coords: Optional[np.ndarray] = None,
                point_labels: Optional[np.ndarray] = None, mask_input: Any = None, clean: Optional[bool] = None,
                clip: Optional[bool] = None, *, multimask_output: bool = False,
                box: Optional[Sequence[float]] = None) -> tuple[np.ndarray, Prediction]:
        """Prompt the image set last, with SAM's names (see :meth:`BoxPredictor.predict
        <napari_adaqat.inference.predictor.BoxPredictor.predict>`): an xyxy box (4,) in image pixels (list, tuple
        or array; float), points (P, 2) or one (2,) x, y in image pixels with labels (P,) or a scalar, 1 = lung /
        0 = not lung (bool, int or float), a ``mask_input`` (1, 1, 4E, 4E) (a previous prediction's
        ``low_res_logits`` on this image, or :meth:`mask_input_from`; another image's logits have the same shape
        and are not detected).  ``box=`` is SAM's name for ``boxes``.  Nothing given, or no box and no point
        that is lung (in any row): the default box, as ``adaqat segment --points`` and the docks
        do ("not lung" points alone say nothing about where the lung is).  Unlike :meth:`segment`, a box
        partly outside the image is taken as SAM takes it (not refused; one wholly outside gives a warning); a
        point outside the image is refused, as everywhere (it prompts nothing: a point of a resized copy?).

        Returns (mask (H, W) bool of the first prompt after clipping and clean-up (:meth:`clean_mask`), the
        raw :class:`Prediction`, whose ``low_res_logits`` feed the next call).  Several boxes (N, 4): ``pred``
        has N masks; the mask returned is the first one's.  ``multimask_output=True`` is refused (one mask per
        prompt); bad prompts are one ValueError/TypeError line naming the argument."""
        check_multimask(multimask_output)
        if box is not None and boxes is not None:
            raise TypeError("give boxes= or box= (SAM's name), not both")
        boxes = box if boxes is None else boxes
        box = None if boxes is None else as_boxes(boxes).reshape(np.shape(boxes))  # checked, as given
        points = None if point_coords is None else as_points(point_coords, point_labels)  # (B, P, 2), (B, P)
        with self.lock:
            if points is not None and self.image_shape is not None:  # (a point outside the image prompts nothing;
                check_inside(points[0][points[1] != -1].reshape(-1, 2), self.image_shape)  # SAM's padding: -1)
            if box is None and points is not None and self.image_shape is not None and not (points[1] == 1).any():
                box = default_box(self.image_shape)  # "not lung" points alone (or none): within the default box
            if point_coords is None and point_labels is None and mask_input is None:
                pred = self.predictor.predict(box)  # box-only: as a ready predictor without points takes it
            else:
                pred = self.predictor.predict(box, point_coords=point_coords, point_labels=point_labels,
                                              mask_input=mask_input)
            shape = self.image_shape  # (of this prediction's image: another thread may set another after)
        first_box = None if box is None else np.atleast_2d(box)[0]
        coords, labels = (None, None) if points is None else (points[0][0], points[1][0])
        mask = self.clean_mask(pred.masks[0], clean, first_box, clip, coords, labels)
        if first_box is not None and shape is not None and box_outside(first_box, shape):
            warnings.warn(f"box {','.join(f'{float(v):g}' for v in first_box)} lies outside the {shape[1]}x{shape[0]} "
                          "image (segment() refuses it; SAM's call takes it): "
                          + ("the mask is empty" if not mask.any() else "the mask comes from the other prompts"),
                          stacklevel=2)
        elif first_box is not None and (first_box[2] <= first_box[0] or first_box[3] <= first_box[1]):
            warnings.warn(f"box {','.join(f'{float(v):g}' for v in first_box)} has no area (segment() refuses it; "
                          "SAM's call takes it): give x1 > x0 and y1 > y0, around the lungs", stacklevel=2)
        return mask, pred

    def prompt(self, box: Optional[Sequence[float]] = None,
               clean: Optional[bool] = None) -> tuple[np.ndarray, Prediction]:
        """(mask (H, W) bool after the clip and clean-up rules, the raw :class:`Prediction`) of one xyxy
        ``box`` in image pixels on the image set last (``None``: the whole image minus a 2 % margin)."""
        return self.predict(box, clean=clean)

    def mask_input_from(self, mask: np.ndarray) -> Any:
        """An edited mask (H, W) bool of the image set last (e.g. after a brush edit) → a ``mask_input``
        (1, 1, 4E, 4E) torch logits for :meth:`predict`: the edit becomes the next call's mask prompt."""
        with self.lock:
            return self.predictor.mask_input_from(mask)

    def segment(self, image: ImageLike, box: Optional[Sequence[float]] = None, clean: Optional[bool] = None,
                *, point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                clip: Optional[bool] = None, spacing: Optional[Sequence[float]] = None) -> np.ndarray:
        """The lung mask (H, W) bool of ``image`` (array, file or ImageData; ``spacing``: :meth:`set_image`) for one xyxy ``box`` in pixels and/or
        points (P, 2) x, y with labels (P,) 1 = lung / 0 = not lung.  What ``adaqat segment`` refuses is
        refused here with its line: an image too small or blank, a box that is inverted, not finite or
        outside the image, a point outside the image."""
        with self.lock:  # set_image and predict together (another thread's image must not come between)
            self.set_image(image, spacing)
            if box is not None and np.size(box) == 4:
                check_box(as_numbers(box, "boxes", "x0, y0, x1, y1 pixels").reshape(4), self.image_shape)
            coords = None if point_coords is None else as_points(point_coords, point_labels, finite=False)[0]
            if coords is not None and coords.shape[0] == 1:  # (B, P, 2) rows: predict checks them
                check_points(coords[0], self.image_shape)
            return self.predict(box, point_coords, point_labels, clean=clean, clip=clip)[0]

    def __repr__(self) -> str:
        return (f"Segmenter({self.path or type(self.predictor).__name__}, device={self.device!r}, "
                f"clean={self.clean}, clip={self.clip})")


def load_segmenter(ref: ModelRef, device: str, clean: bool = True, int8_matmul: bool = False,
                   clip: bool = True) -> Segmenter:
    """The one loader behind :func:`open_model` and the engine: ``ref``'s file with its INT8 encoder
    weights kept INT8 in memory (exact, less memory), on ``device`` (already resolved)."""
    path = ref.resolved()
    sam = load_model(path, model_type=ref.model_type, device=device, keep_int8=True, int8_matmul=int8_matmul)
    return Segmenter(BoxPredictor(sam, device), path=path, clean=clean, clip=clip)


def open_model(model: str | Path | None = "default", device: str = "auto", *, baseline: bool = False,
               model_type: str = "vit_b", clean: bool = True, int8_matmul: bool = False,
               clip: bool = True) -> Segmenter:
    """Open a model to segment with.

    ``model``: ``"default"``/``None`` is the bundled INT8 model (``baseline=True``: its FP32 Stage-1
    baseline), else a model file (``.safetensors``) or an official SAM ``.pth`` of ``model_type``.
    ``device``: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda"`` or ``"mps"``.
    ``clean``: the mask clean-up rule (see :class:`Segmenter`; on, as ``adaqat segment``).
    ``int8_matmul``: INT8 GEMMs in the encoder (faster on CPUs with VNNI, approximate).
    ``clip``: the box-clipping rule (see :class:`Segmenter`; on, as ``adaqat segment``).
    """
    ref = model_ref(model, baseline=baseline, model_type=model_type)
    return load_segmenter(ref, resolve_device(device), clean=clean, int8_matmul=int8_matmul, clip=clip)
