"""The "Segment lungs (AdaLoRA-QAT)" dock: draw a box, get a lung mask plus SSIM/ΔSSIM trust maps; correct
it with clicks (positive / negative points, each click re-segments with the previous logits as mask
prompt), with undo / redo / reset (:mod:`._clicks`).

Model loading, embedding and prediction run in napari worker threads, one job at a time; a new
request of the same kind replaces a queued one, so the UI never blocks and never piles up work.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, ProgressBar, PushButton
from napari.layers import Image, Labels
from napari.utils.notifications import show_error

from napari_adaqat.widgets._compat import guard_triton_import

guard_triton_import()  # before torch/torchvision load: see _compat.py

from napari_adaqat.inference.engine import ModelRef, SegmentResult  # noqa: E402
from napari_adaqat.metrics import dice  # noqa: E402
from napari_adaqat.model.device import DEVICES  # noqa: E402
from napari_adaqat.widgets import _layers as L  # noqa: E402
from napari_adaqat.widgets import _kept_edits as K  # noqa: E402
from napari_adaqat.widgets import _points as P  # noqa: E402
from napari_adaqat.widgets._annotate_ui import on_removed  # noqa: E402
from napari_adaqat.widgets._box_in_use import BoxInUse, no_lung_line  # noqa: E402
from napari_adaqat.widgets._clicks import HELP, ClickPrompts  # noqa: E402
from napari_adaqat.widgets._embedding import Embedding  # noqa: E402
from napari_adaqat.widgets._film_choice import FilmChoice  # noqa: E402
from napari_adaqat.widgets._film_reading import watch_film_reading  # noqa: E402
from napari_adaqat.widgets._planes import image_plane, plane_film  # noqa: E402
from napari_adaqat.widgets._prompt_history import drop_probabilities  # noqa: E402
from napari_adaqat.widgets._jobs import JobQueue  # noqa: E402
from napari_adaqat.widgets._left_prompts import LeftPrompts  # noqa: E402
from napari_adaqat.widgets._legend import MapLegends, scrolling  # noqa: E402
from napari_adaqat.widgets._model_choice import ModelChoice  # noqa: E402
from napari_adaqat.widgets._segment_models import ModelSpecs  # noqa: E402
from napari_adaqat.widgets._shared import shared_engine  # noqa: E402
from napari_adaqat.widgets._orientation import watch_orientation  # noqa: E402
from napari_adaqat.widgets._prompt_jobs import PromptJobs, RecentCosts, _prompt_cost, _prompt_key  # noqa: E402,F401
from napari_adaqat.widgets._prompt_history import BOX, CLICK, EDIT, PromptState  # noqa: E402


class SegmentWidget(Embedding, ClickPrompts, BoxInUse, LeftPrompts, PromptJobs, FilmChoice, ModelSpecs, Container):
    """Dock widget: image, model, baseline, reference and device choices; boxes and points drive predictions."""

    def __init__(self, viewer: napari.viewer.Viewer, *, model_path: str | Path | None = None,
                 baseline_path: str | Path | None = None, use_baseline: bool = True,
                 model_type: str = "vit_b", device: str = "auto") -> None:
        super().__init__(labels=True)
        # napari hands plugins a proxy that wraps each layer anew on access (so `is` fails: a click's mask
        # selected 'boxes' instead of 'points', and the next click drew no point); the dock keeps the viewer
        self.viewer = getattr(viewer, "__wrapped__", viewer)
        watch_orientation(self.viewer)  # films stored sideways (EXIF orientation) are shown upright
        watch_film_reading(self.viewer)  # white-is-zero, palette, CMYK, YCbCr TIFFs: as 'adaqat segment' reads them
        self.engine = shared_engine()  # one loaded model per viewer, shared with the other docks
        self._choice: Optional[tuple[ModelRef, Optional[ModelRef], str]] = None  # (model, baseline, device)
        self.last_result: Optional[SegmentResult] = None
        self._costs = RecentCosts()  # of the recent prompts on one image plane and model (_prompt_key): the inline rule
        self.last_error: Optional[str] = None
        # mask before maps; the maps start after Qt has painted the new mask
        self.jobs = JobQueue(("embed", "predict", "maps"), self._on_error, self._on_idle, self._on_start,
                             deferred=("maps",))
        self._job_texts: dict[str, str] = {}  # the status line of each queued job, shown when it starts
        self._closed = False  # set when the dock is closed: late worker results and the layers' events are dropped
        self.native.destroyed.connect(self._on_destroyed)
        on_removed(self.native, self._on_destroyed)  # napari's ×: the dock is taken out of the window, not deleted
        self._boxes: Any = None
        self._last_box_index: Optional[int] = None

        self._help = Label(value=HELP)
        self.image = ComboBox(label="image", choices=self._image_choices)
        self.models = ModelChoice(model_path=model_path, baseline_path=baseline_path, use_baseline=use_baseline,
                                  model_type=model_type)
        self.model, self.model_file, self.baseline, self.baseline_file, self.model_type = self.models.widgets
        self.reference = ComboBox(label="reference", choices=self._reference_choices, nullable=True,
                                  tooltip="a ground-truth or corrected Labels layer: enables ΔSSIM and Dice")
        self.device = ComboBox(label="device", choices=list(DEVICES), value=device)
        self.clean = CheckBox(text="clean up mask (two largest regions, holes filled)", value=True)
        self.rerun = PushButton(text="Segment last box again [G]", tooltip="the same box and points once more "
                                "(e.g. after choosing a reference or a model)")
        self.progress = ProgressBar(label="", min=0, max=0, visible=False)
        self.status = Label(label="status", value="Choose an image.")
        self.extend([self._help, self.image, self.model, self.model_file, self.baseline, self.baseline_file,
                     self.model_type, self.reference, self.device, self.clean, *self._build_click_controls(),
                     self.rerun, self.progress, self.status])
        for w in (self._help, self.status):  # wrapped, never squeezed below their lines (a 5-line status was cut)
            w.native.setWordWrap(True)
            w.native.setSizePolicy(w.native.sizePolicy().horizontalPolicy(), w.native.sizePolicy().Policy.Minimum)
        self.status.native.setMinimumWidth(260)
        self.legends = MapLegends()  # colour bars of the SSIM and ΔSSIM layers, shown with their maps
        self.native.layout().addWidget(scrolling(self.legends))  # (scrolled where the dock is short)
        self.models.update_visibility()

        self.image.changed.connect(self._on_image_changed)
        for w in (self.model, self.model_file, self.baseline, self.baseline_file, self.model_type, self.device):
            w.changed.connect(self._on_model_changed)
        self.reference.changed.connect(lambda _=None: self.segment_last_box())
        self.rerun.changed.connect(lambda _=None: self.segment_last_box())
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self._on_layers_changed)
        self._watch_films()  # starts on the film seen; follows the film picked in the layer list
        if self.image.value is not None:
            self._on_image_changed(self.image.value)

    # ----------------------------------------------------------------- choices
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(ly.name, ly) for ly in self.viewer.layers
                if isinstance(ly, Image) and ly.name not in L.OUTPUT_NAMES]

    def _reference_choices(self, _widget: Any = None) -> list[tuple[str, Labels]]:
        return [(ly.name, ly) for ly in self.viewer.layers if isinstance(ly, Labels) and ly.name != L.MASK]

    def _on_layers_changed(self, event: Any = None) -> None:
        if self._closed:
            return
        if self._boxes is not None and not self._present(self._boxes):
            self._boxes, self._last_box_index = None, None
        if self._points is not None and not self._present(self._points):
            self._points = None
        self._forget_removed_images()
        self.legends.follow_layers(self.viewer.layers)
        self.reset_choices()
        self._refresh_hidden_note()  # a film deleted or moved: its "lies over" line goes (or says what is so now)

    def _present(self, layer: Any) -> bool:
        return any(ly.unique_id == layer.unique_id for ly in self.viewer.layers)

    # ------------------------------------------------------------------- jobs
    @property
    def busy(self) -> bool:
        """True while a job runs or waits."""
        return self.jobs.busy

    def _submit(self, kind: str, fn: Callable[[], Any], on_done: Callable[[Any], None], text: str) -> None:
        self._job_texts[kind] = text
        self.jobs.submit(kind, fn, on_done)  # replaces a queued job of the same kind

    def _on_start(self, kind: str) -> None:
        self.status.value = self._job_texts.pop(kind, self.status.value)
        self.progress.visible = True

    def _on_idle(self) -> None:
        self.progress.visible = False

    def _on_destroyed(self, *_args: Any) -> None:
        self._closed = True
        self.jobs.close()
        self._leave_points()  # (a click after the dock closed would add a point that nothing answers)

    def _on_error(self, exc: BaseException) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        if self.jobs.running in ("predict", None):  # (a failed SSIM map: the clicks on their way stay)
            self._pending, self._in_flight = None, ()
        if self._closed:
            return
        self.status.value = f"Error: {exc}"
        show_error(f"AdaLoRA-QAT: {exc}")

    def _fail(self, message: str) -> None:
        self.last_error = message
        self.status.value = message
        show_error(f"AdaLoRA-QAT: {message}")

    # ---------------------------------------------------------------- actions
    def _on_image_changed(self, layer: Optional[Image]) -> None:
        if layer is None:
            self.status.value = "Choose an image."
            return
        self._leave_image()  # its results still on their way are dropped, its prompt kept to run on coming back
        self._switch_image(layer)  # the image before keeps its brush edit; 'lung mask' shows this image's
        self._attach_boxes(layer)
        self.start_embedding()
        self._resume_prompt(layer)

    def _attach_boxes(self, image: Image) -> None:
        boxes = L.ensure_boxes(self.viewer, image)
        if self._boxes is None or boxes.unique_id != self._boxes.unique_id:
            boxes.events.data.connect(self._on_boxes_data)
            self._watch_prompt_name(boxes, L.BOXES)
        self._boxes = boxes
        self._attach_points(image)
        L.stack_over(self.viewer, image)  # a film opened later must not hide the box being drawn

    def _on_boxes_data(self, event: Any) -> None:
        action = str(getattr(event, "action", "added"))
        if self._closed or self._restoring or action not in ("added", "changed") or self._boxes is None \
                or len(self._boxes.data) == 0 or self.image.value is None:
            return
        if self._annotated(self.image.value):
            return  # the Annotate dock segments its own boxes on its film
        indices = tuple(getattr(event, "data_indices", ()) or (-1,))
        index = int(indices[-1]) % len(self._boxes.data)
        problem = P.box_problem(self._boxes, index, self.image.value) if action == "added" else None
        if problem:  # a click without a drag, or a box beside the film: taken back, the mask stays
            self.status.value = P.take_back_box(self._boxes, index, problem)
            return
        self.segment_shape(index)

    def segment_last_box(self) -> None:
        """Run the current prompts again (e.g. after choosing another reference; G): same box, points and
        mask prompt, so the same mask."""
        if self._boxes is not None and (self._last_box_index is not None or len(P.snapshot_points(self._points)[0])):
            self._segment("rerun")
        elif self._boxes is not None and len(self._boxes.data) and not self._annotated(self.image.value):
            self.segment_shape(len(self._boxes.data) - 1)  # a box no prompt of this dock used (closed, reopened)
        else:
            self.status.value = "Nothing to segment again yet: draw a box around both lungs in 'boxes'."

    def segment_shape(self, index: int) -> None:
        """Predict the lung mask for shape ``index`` of the ``boxes`` layer (with the points), in a worker."""
        self._segment(BOX, index)

    def _segment(self, kind: str, index: Optional[int] = None, into: Optional[PromptState] = None) -> None:
        """Prompt with the box (shape ``index``, else the last one) and the points on its plane. ``kind``: a new
        box (no mask prompt), a point "added" (the previous logits as mask prompt), "removed" or "changed" (no
        mask prompt), or "rerun" (the current state's mask prompt); a brush edit is the mask prompt instead.
        ``into``: the current state, never answered, that the result completes (no new undo step)."""
        image = self.image.value
        if image is None:
            self._fail("choose an image layer first")
            return
        if self._boxes is None:  # 'boxes' was deleted: made again (empty) for the next box; the points prompt alone
            active = self.viewer.layers.selection.active
            self._attach_boxes(image)
            self.viewer.layers.selection.active = active
        boxes = self._boxes
        if self._annotate_film_elsewhere(image):  # the Annotate dock's film is in 'lung mask': not overwritten
            return
        annotated = self._annotated(image)
        if index is None and self._last_box_index is not None and self._last_box_index < len(boxes.data):
            index = self._last_box_index
        elif index is None and kind != BOX and len(boxes.data) and annotated:
            index = len(boxes.data) - 1  # the Annotate dock's rectangle: the box of a click on its film
        if kind not in (BOX, "rerun"):  # a click on a stack's plane: a box on that plane, or none
            index = P.box_on_plane(boxes, image, L.current_plane(self.viewer, image), index)
        try:
            box, z = L.box_in_pixels(boxes, index, image) if index is not None else (None, None)
            plane, z = image_plane(image, z if index is not None else L.current_plane(self.viewer, image))
            plane = plane_film(image, plane)  # non-square pixels: with their spacing
            ref = self._reference_plane(z, plane.shape)
            model, base, device = self._chosen()
        except ValueError as exc:
            self._fail(str(exc))
            return
        if box is not None and (box[2] - box[0] < 2 or box[3] - box[1] < 2):
            self.status.value = "Box too small (or outside the image); draw it around both lungs."
            return
        coords, labels = P.points_in_pixels(self._points, image, z)
        if box is None and not len(coords):
            self.status.value = "No box and no points: draw a box, or click in 'points'."
            return
        history = self.history
        painted_here = not annotated or history.painted(z) is not None  # else the Annotate dock's mask
        edit = self._brush_edit(image, z)  # (recorded with the edits it keeps)
        if kind == BOX and index is not None and not annotated:
            index = self._keep_only_box(index, image)  # only the box in use stays (Undo brings the others back)
        self._last_box_index = index
        previous = history.current
        kept = K.kept_for(kind, history.kept_on(z), coords) if into is None else into.kept
        if edit is None and kind != BOX and previous.kind == EDIT and previous.plane == z:
            edit = previous.mask  # an edit whose prompt never showed (replaced or undone) is still the prompt
        same = previous.plane == z and previous.models == (model, base)  # logits fit this plane and models only
        source: Any = None  # the mask prompt: the previous logits, or the edited mask
        note = ""
        if kind == BOX and (edit is not None or history.kept_on(z) is not None):  # afresh; the edit one Undo away
            note = " · the new box replaced your brush edit of 'lung mask' (Undo [Ctrl+Z] brings it back)"
        elif edit is not None:
            source = edit
            note = " · your brush edit of 'lung mask' was the mask prompt" if painted_here else \
                " · the mask in 'lung mask' was the mask prompt"
        elif kind == "added" and same:
            source = previous.logits
        elif kind == "rerun" and same:
            source = previous.mask_input
        if box is None and not (np.asarray(labels) == 1).any():
            note += (" · within the default box (the film less 2 %): 'not lung' points alone do not say where the "
                     "lung is")
        note += K.describe(kept)  # (the line on a film hidden under another: made when shown)
        request = self._request(BOX if kind == BOX else CLICK, index, z) if into is None else into
        request.models, request.kept = (model, base), kept
        request.action = kind if into is None else request.action
        base_source = previous.result.baseline_low_res_logits if kind == "added" and same and previous.result else None
        self._run_prompt(request, image, plane, z, box, coords, labels, source, base_source, ref, note,
                         fill=into is not None)

    def _run_prompt(self, request: PromptState, image: Image, plane: np.ndarray, z: Optional[int],
                    box: Optional[np.ndarray], coords: np.ndarray, labels: np.ndarray, source: Any,
                    base_source: Any, ref: Optional[np.ndarray], note: str, fill: bool = False) -> None:
        model, base, device = self._chosen()
        generation, history = self._generation, self.history  # another film in the layer: another history

        def show(result: SegmentResult, mask: Optional[np.ndarray] = None) -> bool:
            if generation != self._generation or not self._present(image) or self.history is not history \
                    or self._annotate_film_elsewhere(image):  # (an Annotate dock opened meanwhile)
                return False  # an undo, reset or another image (or film, Annotate dock) came after this prompt
            self._show_state(image, result, mask)
            empty = no_lung_line(result.mask if mask is None else mask, request.box_index is not None)
            self.status.value = (f"{empty}{result.summary()}\n{request.prompt_text()}{note}{self._hidden_note(image)}"
                                 f"{self._renamed_note(image)}")
            return True

        def maps_done(result: SegmentResult) -> None:
            drop_probabilities(result)  # the maps are made: the undo state keeps what is shown
            if not self.jobs.waiting("predict"):  # else a newer prompt is on its way
                show(result, self._shown_mask(image, z))  # brush strokes made meanwhile stay

        def mask_done(result: SegmentResult, inline: bool = False) -> None:
            if self._pending is request:
                self._pending = None
            if generation != self._generation or self.history is not history:
                self._drop_answered(request)  # (and the clicks before it: not this film's history)
                return  # an undo, reset, another image or the Annotate dock's next film came meanwhile
            mask = K.apply_edits(result.mask, request.kept)  # the user's brush edits stay where no click undid them
            if request.kept is not None:  # the status line's area and Dice are of the mask shown
                result.mask = mask
                result.dice = None if ref is None else float(dice(mask, ref != 0))
            request.mask, request.logits, request.result = mask, result.low_res_logits, result
            if not fill:
                self._push_answered(history, request)
            elif history.current is not request or self._waiting_clicks():  # (a new click came first: the
                # state is complete for Undo; the newer click's mask is what the screen waits for)
                drop_probabilities(result)
                return
            self._update_buttons()
            wanted = (base is not None or ref is not None) and L.maps_wanted(self.viewer)
            shown = show(result, mask if request.kept is not None else None)
            if shown:
                self._costs.add(_prompt_key(image, z, model, device), _prompt_cost(result), inline)
            if not (shown and wanted):
                drop_probabilities(result)  # no maps will be made of them
            if shown and wanted:  # the mask at once; the maps follow
                self.status.value += "\ncomputing SSIM maps…"
                self._submit("maps", lambda: self._prompt_job(self._add_maps, result, plane, base, device, ref,
                                                              base_source,
                                                              source if isinstance(source, np.ndarray) else None),
                             maps_done, self.status.value)

        clean = bool(self.clean.value)
        self.jobs.drop("maps")  # maps of an older prompt are no longer wanted
        job = lambda: self._prompt_job(self._predict, request, plane, box, coords, labels, source,  # noqa: E731
                                       model, device, ref, z, clean)
        # inline only when no other dock's job holds the shared engine (never wait on the GUI thread)
        if (not self._in_flight and self._quick_prompt(image, z, model, device)  # (no prompt jumps the queue)
                and self.engine.is_embedded(plane, model, device) and self.engine.lock.acquire(blocking=False)):
            try:
                result = job()
            except Exception as exc:  # as a worker's error: one line in the status and a notification
                self._on_error(exc)
                return
            finally:
                self.engine.lock.release()
            mask_done(result, inline=True)
            return
        if not fill:  # (a state filled in is in the history already, and Undo goes past it as usual)
            self._pending, self._pending_history = request, history
            self._sent(history, request)
        self._submit("predict", job, mask_done, f"Segmenting with {model.label()}… (busy)")

    def _show_state(self, image: Image, result: SegmentResult, mask: Optional[np.ndarray] = None) -> None:
        """Show ``result`` (``mask`` instead of its own mask) and remember it as the last result."""
        self.last_result = result
        active = self.viewer.layers.selection.active
        L.show_result(self.viewer, image, result, mask)  # (selects 'boxes' unless 'points' by name was active)
        if active is not None and active is self._points and self.viewer.layers.selection.active is not active:
            self.viewer.layers.selection.active = active  # a renamed 'points' layer stays selected for the next click
        self.legends.show_for(result)

    def _annotated(self, image: Optional[Image]) -> bool:
        """Whether ``image`` is the Annotate dock's film (it owns the rectangles of ``boxes`` then)."""
        owner = None if self._boxes is None else self._boxes.metadata.get(L.ANNOTATE_OWNER)
        return image is not None and owner == str(image.unique_id)
