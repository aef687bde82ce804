"""The "Annotate folder (AdaLoRA-QAT)" dock: go through a folder of films, correct each model mask, and
keep the accepted ones as a dataset for ``adaqat train`` (micro-sam's image series annotator is the anchor).

The first film without an accepted mask opens with the model's mask for the last box drawn around both lungs
(scaled to the film), else the default box; a new rectangle in ``boxes`` re-segments, the brush edits
``lung mask``; Accept [Enter] saves (:class:`~napari_adaqat.data.annotation.AnnotationFolder`) and opens the next
film. Reading, embedding and prompting run in a worker thread through the one shared engine, so the viewer never
waits for the model. Nothing painted is thrown away: brush edits survive a new box, a film left keeps a draft.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import napari
import numpy as np
from napari.utils.notifications import show_error

from napari_adaqat.widgets._compat import guard_triton_import

guard_triton_import()  # before torch/torchvision load: see _compat.py

from napari_adaqat.data.annotation import AnnotationFolder  # noqa: E402
from napari_adaqat.inference.engine import ModelRef, SegmentResult  # noqa: E402
from napari_adaqat.inference.lock import FolderBusy  # noqa: E402
from napari_adaqat.io import read_image  # noqa: E402
from napari_adaqat.model.device import resolve_device  # noqa: E402
from napari_adaqat.util.errors import first_line  # noqa: E402
from napari_adaqat.util.recent import remember  # noqa: E402
from napari_adaqat.util.text import listed  # noqa: E402
from napari_adaqat.widgets._annotate_accept import AcceptFlow  # noqa: E402
from napari_adaqat.widgets._annotate_boxes import BoxPrompts  # noqa: E402
from napari_adaqat.widgets._annotate_check import EarlierMasks  # noqa: E402
from napari_adaqat.widgets._annotate_clicks import CLICKS_HELP, ClicksDock  # noqa: E402
from napari_adaqat.widgets._annotate_drafts import Drafts  # noqa: E402
from napari_adaqat.widgets._annotate_layers import FilmLayers  # noqa: E402
from napari_adaqat.widgets._annotate_lock import busy_line, holder, took_over  # noqa: E402
from napari_adaqat.widgets._annotate_open import SOURCES, Opened, read_film  # noqa: E402
from napari_adaqat.widgets._annotate_ui import (  # noqa: E402
    CLICKS_KEY, OPEN_KEY, RECENT_KEY, AnnotateControls, dock_error, folder_text, install_hotkeys, on_removed)
from napari_adaqat.widgets._jobs import JobQueue  # noqa: E402
from napari_adaqat.widgets._model_choice import DEFAULT, note_model, noted_model  # noqa: E402
from napari_adaqat.widgets._shared import shared_engine, tab_with_folder_docks  # noqa: E402

DRAFT_DELAY_MS = 1500  # a brush stroke is kept as a draft this long after the last one


class AnnotateWidget(Drafts, BoxPrompts, AcceptFlow, EarlierMasks, AnnotateControls):
    """Dock widget: image and dataset folders, model, Back/Skip/Accept, progress and the list of films."""

    def __init__(self, viewer: napari.viewer.Viewer, *, model_path: str | Path | None = None) -> None:
        super().__init__(labels=False)
        tab_with_folder_docks(self.native)  # beside Segment, one tabbed area
        # napari hands plugins a proxy that makes a new wrapper per attribute access (so `is` fails) and
        # warns on private names; the dock keeps its layers by identity and resets their undo history
        self.viewer = getattr(viewer, "__wrapped__", viewer)
        self.engine = shared_engine()
        self.folder: Optional[AnnotationFolder] = None
        self.index: Optional[int] = None  # the film on screen
        self.opening: Optional[int] = None  # the film being read
        self.last_error: Optional[str] = None
        self.last_result: Optional[SegmentResult] = None  # of the last box prompt
        self._gen = 0  # bumped per film opened: results for an older film are dropped
        self._pixels: Optional[np.ndarray] = None
        self._spacing: Optional[tuple[float, float]] = None  # the film's (row, col) mm, for the model
        self._base_mask: Optional[np.ndarray] = None
        self._touched = False  # work on this film not yet kept (as a draft or by Accept)
        self._chosen: Optional[tuple[ModelRef, str]] = None  # (model, device): built when the choice changes
        self._carry: list[str] = []  # what happened to the last film, said above the next film's line
        self._clicks = ClicksDock()  # the Segment dock "Correct with clicks" opened
        self.layers = FilmLayers(self.viewer, self._on_paint, self._on_boxes)
        self.jobs = JobQueue(("open", "predict", "prefetch", "check"), self._on_error, self._on_idle)
        self._start_drafts(DRAFT_DELAY_MS)

        self._build_controls(model_path)
        self._update_visibility()

        self.open_button.changed.connect(lambda *_: self.open_folder())
        self.accept_button.changed.connect(lambda *_: self.accept())
        self.skip_button.changed.connect(lambda *_: self.skip())
        self.back_button.changed.connect(lambda *_: self.back())
        self.clicks_button.changed.connect(lambda *_: self.correct_with_clicks())
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_film(row))
        for w in (self.models.model, self.models.model_file, self.models.model_type):
            w.changed.connect(self._on_model_changed)
        self.native.destroyed.connect(self._on_destroyed)
        on_removed(self.native, self._on_destroyed)  # napari's close button: taken out, not deleted
        self.viewer.layers.events.removing.connect(self._on_layer_removing)  # napari closing, or a delete
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)  # a film opened over this dock's
        install_hotkeys(self.native, self.viewer, [("Return", self.accept), ("Enter", self.accept),
                                                   ("PgDown", self.skip), ("PgUp", self.back),
                                                   (OPEN_KEY, self.open_folder),
                                                   (CLICKS_KEY, self.correct_with_clicks)])
        self._set_buttons()

    # ------------------------------------------------------------------ model
    def _update_visibility(self) -> None:
        self.models.update_visibility()
        self.models.baseline.visible = self.models.baseline_file.visible = False  # no SSIM maps here

    def use_model(self, model: Path | str | None, baseline: Path | str | None = None) -> None:
        """Pre-segment the next films with this model file (None: the bundled default); ``baseline`` is
        kept with it (the Train dock's "Use in Annotate dock" passes the exported pair)."""
        self.models.choose_quietly(model, baseline)
        self._on_model_changed()

    def _model_and_device(self) -> tuple[ModelRef, str]:
        """The chosen model and device, built (and the file checked) once per choice, not per prompt."""
        if self._chosen is None:
            model = self.models.model_ref()
            if not model.available():
                raise ValueError(f"Not installed: {model.label()}. Choose a model file.")
            self._chosen = (model, resolve_device("auto"))
        return self._chosen

    def _on_model_changed(self, *_: Any) -> None:
        self._chosen = None
        self.engine.forget_files()  # the next prompt looks at the chosen file afresh
        self._update_visibility()
        try:
            model = self._model_and_device()[0]
        except ValueError as exc:
            self._say(str(exc))
            return
        if self.folder is not None:  # a restarted dock on this dataset comes back to it
            note_model(self.folder.dataset, self.models)
        self._clicks.follow(model, self._baseline())  # the Segment dock that corrects these films, if open
        label = model.label()
        if self.index is not None and self.layers.present(self.layers.boxes) and len(self.layers.boxes.data) \
                and not self._touched and not self._edited():  # an untouched model mask: redo it
            self._say(f"Segmenting with {label}…")
            self.segment_box(len(self.layers.boxes.data) - 1, by_user=False)
        else:
            self._say(f"The next films are pre-segmented by {label}.")

    # ----------------------------------------------------------------- folder
    def open_folder(self) -> bool:
        """Open the chosen folders and the first film not yet accepted or skipped; False when refused."""
        if not folder_text(self.images) or not folder_text(self.dataset):
            return self._fail("Choose an image folder and a dataset folder.")
        dataset, before = folder_text(self.dataset), self.folder
        try:  # the dataset folder's lock first: a second dock on it writes nothing
            folder = AnnotationFolder(folder_text(self.images), dataset, hold=holder(before))
        except ValueError as exc:
            return self._fail(first_line(exc))
        except FolderBusy as exc:
            return self._fail(busy_line(Path(dataset), exc))
        if not self._leave_film():  # work on the film shown that cannot be kept: nothing else opens
            if before is None or before.lock is not folder.lock:
                folder.release()
            return False
        if before is None or before.lock is not folder.lock:  # another dataset folder (its lock is new)
            if before is not None:
                before.release()
            if line := took_over(folder.lock):
                self._carry.append(line)
        self.folder, self.index, self.last_error = folder, None, None
        remember(RECENT_KEY, images=folder_text(self.images), dataset=dataset)  # shown by a dock opened next time
        if self.models.model.value == DEFAULT and (noted := noted_model(folder.dataset)) is not None:
            self.use_model(*noted)  # the model file this dataset was last annotated with (e.g. a fine-tuned one)
            self._carry.append(f"Pre-segmenting with {noted[0].name}, as last time in this dataset "
                               "(model: choose another to change).")
        if folder.skipped_note:  # said above the first film's line: files of other kinds are not films here
            self._carry.append(folder.skipped_note[0].upper() + folder.skipped_note[1:])
        if lone := folder.without_film():  # (their masks count; once checked, their films are linked into images/)
            self._carry.append(f"{len(lone)} accepted mask(s) have no film in {folder.dataset / 'images'} (another "
                               f"tool's?): their films are added there once the masks are checked ({listed(lone, 3)}).")
        self.table.fill([f.path.name for f in folder.films], [str(f.path) for f in folder.films])
        self._refresh_rows()
        start = folder.resume_index()
        if start is None:  # the film on screen (else the first) opens for review: its strokes are kept
            shown = self.layers.film_name()
            start = next((i for i, f in enumerate(folder.films) if f.path.name == shown), 0)
            self._carry.append(f"Every film is accepted or skipped ({folder.progress_line()}): review any of them "
                               "(double-click it in the list); Accept saves a change.")
        self.open_film(start)
        self._check_earlier()  # after the film: it is not kept waiting
        return True

    def open_film(self, index: int) -> None:
        """Show film ``index`` (its draft, else its accepted mask, else the model's mask), in a worker."""
        if self.folder is None or not 0 <= index < len(self.folder.films) or not self._leave_film():
            return
        self._gen += 1
        gen, folder, film = self._gen, self.folder, self.folder.films[index]
        self.opening = index
        self._drop_waiting_accept()
        self.jobs.drop("predict", "prefetch")
        try:
            model, device = self._model_and_device()
        except ValueError as exc:
            model, device, problem = None, "cpu", first_line(exc)
        else:
            problem = ""
        self._say("\n".join([*self._carry, f"Opening {film.path.name}…"]))
        self.table.show_current(index)
        self._set_buttons()
        self.jobs.submit("open", lambda: read_film(self.engine, folder, index, model, device, problem),
                         lambda opened: self._show_film(gen, index, opened))

    def _show_film(self, gen: int, index: int, opened: Opened) -> None:
        if gen != self._gen or self.folder is None:
            return
        if self._touched and not self._leave_film():  # a stroke on the film before while this one was read (QA)
            self.opening = None
            self.table.show_current(self.index)
            self._set_buttons()
            return
        self.opening = None
        folder, film = self.folder, self.folder.films[index]
        if opened.error is not None:
            line = folder.mark_error(index, dock_error(film.path, opened.error))
            self._refresh_rows()
            following = folder.next_index(index)
            self._fail(f"Cannot open {film.path.name}: {folder.errors.get(film.name, line)}")
            if following is not None:
                self._carry.append(self.status.value)
                self.open_film(following)
            return
        pixels = opened.pixels
        mask = opened.mask if opened.mask is not None else np.zeros(pixels.shape, bool)
        self.index, self._pixels, self._spacing, self._touched = index, pixels, opened.spacing, False
        kept = self.layers.show(film.path.name, pixels, mask, opened.box, opened.spacing)
        self._clicks.film_shown()  # (its maps are cleared: their legends go)
        self._base = mask.copy()
        lines = [*self._carry, f"Film {index + 1} of {len(folder.films)}: {film.path.name}, "
                                f"{SOURCES[opened.source]}.", opened.note, kept]
        self._carry = []
        self.last_error = opened.note or None
        self._say("\n".join(line for line in lines if line))
        self._refresh_rows()
        self._prefetch(folder.next_index(index))

    def _prefetch(self, index: Optional[int]) -> None:
        """Embed the next film while the user works on this one, so that Accept shows it at once."""
        if index is None or self.folder is None or index == self.index:
            return
        path = self.folder.films[index].path
        try:
            model, device = self._model_and_device()
        except ValueError:
            return
        def job() -> None:
            try:
                self.engine.embed(read_image(path), model, None, device)
            except Exception:  # noqa: BLE001 - said when that film is opened, not over the film on screen
                pass
        self.jobs.submit("prefetch", job, lambda _none: None)

    def _screen_mask(self) -> Optional[np.ndarray]:
        """The mask on screen (bool (H, W)) when it belongs to the film shown."""
        return self.layers.screen_mask(None if self.index is None else self._pixels.shape)

    def _edited(self) -> bool:
        mask = self._screen_mask()
        return mask is not None and self._base is not None and bool((mask != self._base).any())

    # ---------------------------------------------------------------- actions
    def _ready(self) -> bool:
        if self.folder is None:
            return self._fail("Open a folder first.")
        if self.opening is not None:
            return self._fail(f"Still opening {self.folder.films[self.opening].path.name}…")
        if self.index is None:
            return self._fail("No film is open: double-click one in the list.")
        return True

    def skip(self) -> bool:
        """Mark the film shown as skipped (its work kept as a draft) and open the next one."""
        if not self._ready():
            return False
        index = self.index
        if not self._leave_film():  # the work first: a skip must not be recorded for a film that stays open
            return False
        try:
            self.folder.skip(index)
        except OSError as exc:  # (a read-only dataset folder: annotate.json cannot be written)
            return self._fail(f"Could not mark {self.folder.films[index].path.name} skipped: {first_line(exc)}")
        self._refresh_rows()
        following = self.folder.next_index(index)
        if following is None:  # (its work was kept above)
            self._say("\n".join([*self._carry, f"Nothing left to do ({self.folder.progress_line()})."]))
            self._carry = []
            return True
        self.open_film(following)
        return True

    def back(self) -> bool:
        """Open the film before the one shown (past films that could not be opened)."""
        if not self._ready():
            return False
        errors, films = self.folder.errors, self.folder.films
        before = next((i for i in range(self.index - 1, -1, -1) if films[i].name not in errors), None)
        if before is None:
            return self._fail("This is the first film." if self.index == 0 else
                              "The films before this one could not be opened (their rows say why).")
        self.open_film(before)
        return True

    # ------------------------------------------------------------------ state
    @property
    def busy(self) -> bool:
        """True while a film is opened or a box segmented (not counting the prefetch of the next film)."""
        return self.opening is not None or self.jobs.busy_besides("prefetch", "check")

    def _refresh_rows(self) -> None:
        folder = self.folder
        if folder is None:
            return
        for row in range(len(folder.films)):
            self.table.set_state(row, folder.describe(row))
        self.progress.value = folder.progress_line() + (" · checking the earlier masks…" if self.checking else "")
        self._set_buttons()

    def _set_buttons(self) -> None:
        shown = self.folder is not None and self.index is not None
        for button in (self.accept_button, self.skip_button, self.back_button, self.clicks_button):
            button.enabled = shown

    def correct_with_clicks(self) -> Any:
        """Correct with clicks: the Segment dock beside this one, on this film and with this dock's model, in
        Points mode (its widget; None when no film is shown or the model is missing)."""
        if self.index is None or not self.layers.present(self.layers.image):
            self._fail("No film on screen: open the film again (double-click it in the list), then click.")
            return None
        try:
            model, _device = self._model_and_device()
        except ValueError as exc:
            self._fail(str(exc))
            return None
        segment = self._clicks.open(self.viewer, self.layers.image, model, self._baseline())
        self._say(CLICKS_HELP)
        return segment

    def _baseline(self) -> Optional[ModelRef]:
        """The FP32 twin of this dock's model (kept from the Train dock's hand-over) for the Segment dock's SSIM
        maps; None when there is none, or its file is gone (the bundled FP32 model stands in)."""
        try:
            return self.models.baseline_ref()
        except ValueError:
            return None

    def _say(self, text: str) -> None:
        self.status.value = text

    def _fail(self, message: str) -> bool:
        self.last_error = message
        self.status.value = message
        return False

    def _on_error(self, exc: BaseException) -> None:
        self.opening = None
        self._fail(f"Error: {first_line(exc)}" + (" (nothing saved: Accept again)" if self._drop_waiting_accept()
                                                   else ""))
        show_error(f"AdaLoRA-QAT annotate: {first_line(exc)}")

    def _on_idle(self) -> None:
        self._set_buttons()

    def _on_layer_removing(self, event: Any) -> None:
        """The film or 'lung mask' is about to be deleted (by hand, or napari closing): keep the work as a draft."""
        layer = self.viewer.layers[event.index] if 0 <= event.index < len(self.viewer.layers) else None
        if not self.jobs.closed and self.index is not None and layer is not None \
                and (layer is self.layers.mask or layer is self.layers.image) and self.keep_draft():
            self._say(f"Your work on {self.folder.films[self.index].path.name} is kept as a draft (not saved): "
                      "double-click it in the list to open it again.")

    def _on_layer_inserted(self, event: Any) -> None:
        """An image opened over the film (File → Open, a drag): said at once that boxes still go to the dock's film."""
        layer = getattr(event, "value", None)
        if self.jobs.closed or self.index is None or layer is None or layer is self.layers.image \
                or type(layer).__name__ != "Image" or "source_layer_id" in layer.metadata \
                or not self.layers.present(self.layers.image):  # (a dock's SSIM maps carry their film's id)
            return
        self._say(f"'{layer.name}' is shown over {self.folder.films[self.index].path.name}, the film being annotated: "
                  f"a box in 'boxes' still segments {self.folder.films[self.index].path.name}. Hide '{layer.name}' "
                  "(its eye) to go on; to segment it, close this dock and use the Segment dock.")

    def _on_destroyed(self, *_: Any) -> None:
        """The dock is closed (taken out of the window, or deleted): keep the draft, stop listening."""
        if self.jobs.closed:
            return
        self.jobs.close()
        if self.folder is not None:
            self.folder.release()  # another dock may open this dataset now
        self.layers.detach()
        self._unbind_box_keys()
        self.viewer.layers.events.removing.disconnect(self._on_layer_removing)
        self.viewer.layers.events.inserted.disconnect(self._on_layer_inserted)
        try:
            self.keep_draft()  # closing the dock keeps the work on the film shown
            if not self._touched:  # kept (or nothing to keep): a later dock may show its film in 'lung mask'
                self.layers.mark_left()
        except Exception:  # noqa: BLE001 - Qt is tearing down (the timer may be gone); nothing to report to
            pass
