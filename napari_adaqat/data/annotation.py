"""A folder of films being annotated into a dataset folder (the Annotate dock's state, without napari).

``DATASET/masks/<name>.png`` holds the accepted masks and ``DATASET/images/<file>`` the films (a hard
link where possible, else a copy; the original is never moved or written), so the dataset folder is at
once a training set for ``adaqat train``.  A film counts as *accepted* when its mask file exists, so
the files on disk, not a log, say what is done.  ``DATASET/annotate.json`` keeps what the files
cannot: the skipped films and the last box (relative to its film's size).  Unsaved work on a film left
without Accept is kept as a draft in ``DATASET/.drafts/<name>.png`` until it is accepted.
Every write is atomic (a crash never leaves a half-written file under its real name).  A mask file counts as
accepted by its presence (opening a dataset reads no mask); a mask this dock did not write (``annotate.json``
keeps the SHA-256 of each file it wrote) is checked when its film opens, is accepted, or by :meth:`check_masks`
(the dock runs it in the background after opening), and from then on one that is not a usable mask of its film
counts as to do; ``annotate.json`` keeps what was found, so a restart knows it without reading.  The masks of a
dataset made before ``annotate.json`` kept the ``written`` record become the dock's own only once checked.
Accept never replaces another tool's file silently: it is moved to ``DATASET/replaced/<folder>/``
(:attr:`AnnotationFolder.set_aside` says which) only once the new file is written.
"""
from __future__ import annotations

import contextlib
import filecmp
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from napari_adaqat.data.boxes import default_box
from napari_adaqat.data.folders import check_output_folder, describe_skipped, scan_inputs
from napari_adaqat.data.annotation_checks import REPLACED, MaskChecks, sha256
from napari_adaqat.io import is_dicom, read_mask, sample_name, write_mask
from napari_adaqat.util.atomic import atomic_write_text, link_or_copy
from napari_adaqat.util.errors import first_line

STATE_FILE = "annotate.json"
DRAFTS = ".drafts"
SEG_FOLDER = "dicom_seg"
TODO, DRAFT, ACCEPTED, SKIPPED, ERROR = "to do", "draft", "accepted", "skipped", "error"


@dataclass(frozen=True)
class Film:
    """One input film: its file and the name its mask is saved under."""

    path: Path
    name: str


class AnnotationFolder(MaskChecks):
    """The films of ``images`` and their state in ``dataset`` (see the module docstring).

    Raises ValueError (one line) for a missing or empty image folder, a dataset folder inside the image
    folder or not writable, and two films that would share one mask name.  ``hold(dataset)``, when given, is
    called before ``annotate.json`` is read or written (the dock's lock: what it raises is raised, nothing written);
    its result is :attr:`lock` (``release()`` on it by :meth:`release`)."""

    def __init__(self, images: str | Path, dataset: str | Path, *,
                 hold: Optional[Callable[[Path], Any]] = None) -> None:
        self.images_dir, self.dataset = Path(images), Path(dataset)
        if not str(images).strip() or not self.images_dir.is_dir():
            raise ValueError(f"image folder {images}: not found; choose a folder of films")
        check_output_folder(self.dataset, [self.images_dir], option="dataset folder", what="image folder")
        paths, skipped = scan_inputs([self.images_dir])
        films = [Film(p, sample_name(p)) for p in paths]
        if not films:
            raise ValueError(f"image folder {self.images_dir}: no image files (PNG, JPEG, TIFF, BMP or DICOM)"
                             + (f"; the folder holds {describe_skipped(skipped)}" if skipped else ""))
        self.skipped_note = f"skipped {describe_skipped(skipped)}" if skipped else ""  # the dock shows it
        seen: dict[str, Path] = {}
        for film in films:
            if film.name in seen:
                raise ValueError(f"{seen[film.name].name} and {film.path.name} would share the mask "
                                 f"masks/{film.name}.png; rename one")
            seen[film.name] = film.path
        self.films: list[Film] = films
        self.errors: dict[str, str] = {}  # name → why it cannot be opened (this session only)
        self.skipped: set[str] = set()
        self.last_box: Optional[tuple[float, float, float, float]] = None  # x0/w, y0/h, x1/w, y1/h
        self.written: dict[str, str] = {}  # "masks/<name>.png" → SHA-256 of the file this dock wrote there
        self.set_aside: list[tuple[Path, Path]] = []  # (file, where it went) for the last accept / write_seg
        self._problems: dict[str, tuple[tuple[int, int], str]] = {}  # mask file name → ((mtime, size), why)
        self.legacy: set[str] = set()  # mask files of a dataset older than the `written` record, not yet checked
        self.lock: Any = hold(self.dataset) if hold is not None else None
        self._load_state()

    def release(self) -> None:
        """Let go of :attr:`lock` (idempotent)."""
        lock, self.lock = self.lock, None
        if lock is not None:
            lock.release()

    # ------------------------------------------------------------------ paths
    @property
    def state_path(self) -> Path:
        return self.dataset / STATE_FILE

    def mask_path(self, index: int) -> Path:
        return self.dataset / "masks" / f"{self.films[index].name}.png"

    def image_path(self, index: int) -> Path:
        return self.dataset / "images" / self.films[index].path.name

    def draft_path(self, index: int) -> Path:
        return self.dataset / DRAFTS / f"{self.films[index].name}.png"

    def seg_path(self, index: int) -> Path:
        return self.dataset / SEG_FOLDER / f"{self.films[index].name}.dcm"

    # ------------------------------------------------------------------ state
    def _load_state(self) -> None:
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # none yet (or unreadable: the masks on disk still say what is accepted)
        if not isinstance(state, dict):
            return
        self.skipped = {str(n) for n in state.get("skipped", []) if isinstance(n, str)}
        box = state.get("last_box")
        if isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box):
            self.last_box = tuple(float(v) for v in box)  # type: ignore[assignment]
        written = state.get("written")
        if isinstance(written, dict):
            self.written = {str(k): str(v) for k, v in written.items()}
        legacy, checked = state.get("legacy"), state.get("checked")
        self.legacy = {n for n in legacy if isinstance(n, str)} if isinstance(legacy, list) else set()
        for name, entry in (checked if isinstance(checked, dict) else {}).items():  # as [mtime_ns, size, why]
            if isinstance(entry, list) and len(entry) == 3 and all(isinstance(v, int) for v in entry[:2]):
                self._problems[str(name)] = ((entry[0], entry[1]), str(entry[2]))
        if "written" not in state:
            self._adopt_masks()

    def _adopt_masks(self) -> None:
        """A dataset made before ``annotate.json`` kept the ``written`` record: its masks were (mostly) this dock's
        own; each becomes so once :meth:`check_masks` found it usable (else a re-accept would call it "not written
        here").  Until then it counts by its presence, as any mask not checked yet."""
        names = {f"{film.name}.png" for film in self.films}
        with contextlib.suppress(OSError):  # (unreadable, or read-only for now: adopted again next time)
            self.legacy = {p.name for p in (self.dataset / "masks").glob("*.png") if p.name in names}
            self._save_state()

    def _save_state(self) -> None:
        names = {f"{film.name}.png" for film in self.films}
        checked = {name: [*key, why] for name, (key, why) in sorted(dict(self._problems).items())  # (a copy: a
                   if name in names and (why or f"masks/{name}" not in self.written)}  # worker may add meanwhile)
        state = {"image_folder": str(self.images_dir.resolve()), "skipped": sorted(self.skipped),
                 "last_box": list(self.last_box) if self.last_box else None, "written": self.written,
                 "legacy": sorted(self.legacy), "checked": checked}
        atomic_write_text(self.state_path, json.dumps(state, indent=1) + "\n")

    def accepted(self, index: int) -> bool:
        """A mask file is there, not (yet) found unusable: no file is read (see :meth:`known_problem`)."""
        return self.mask_path(index).is_file() and not self.known_problem(index)

    def has_draft(self, index: int) -> bool:
        return self.draft_path(index).is_file()

    def state(self, index: int) -> str:
        """One of TODO, DRAFT, ACCEPTED, SKIPPED, ERROR (a draft only counts where nothing else does)."""
        name = self.films[index].name
        if self.accepted(index):
            return ACCEPTED
        if name in self.skipped:
            return SKIPPED
        if name in self.errors:
            return ERROR
        return DRAFT if self.has_draft(index) else TODO

    def describe(self, index: int) -> str:
        """The state as the dock's list shows it, e.g. ``"accepted, edited (not saved)"``."""
        state = self.state(index)
        if state == ERROR:
            return f"error: {self.errors[self.films[index].name]}"
        problem = self.known_problem(index) if state in (TODO, DRAFT) else ""
        if problem:  # (the reason is said when the film opens: the row stays short)
            return f"{'draft (not saved)' if state == DRAFT else state}, earlier mask not usable"
        if state == DRAFT:
            return "draft (not saved)"
        if self.has_draft(index):
            return f"{state}, edited (not saved)" if state == ACCEPTED else f"{state}, draft kept"
        return state

    def counts(self) -> tuple[int, int, int]:
        """(accepted, skipped, total)."""
        states = [self.state(i) for i in range(len(self.films))]
        return states.count(ACCEPTED), states.count(SKIPPED), len(states)

    def progress_line(self) -> str:
        """E.g. ``"23 of 120 accepted, 2 skipped"``."""
        done, skipped, total = self.counts()
        return f"{done} of {total} accepted, {skipped} skipped"

    def _open(self, index: int) -> bool:
        return self.state(index) in (TODO, DRAFT)

    def without_film(self) -> list[str]:
        """The films counted as accepted whose film is not in ``images/`` (another tool's masks put in ``masks/``):
        training would leave them out (a mask without an image) until they are accepted here."""
        return [f.path.name for i, f in enumerate(self.films)
                if self.accepted(i) and not os.path.lexists(self.image_path(i))]

    def link_films(self) -> list[str]:
        """Put the film of every accepted mask without one into ``images/`` (another tool's masks put in ``masks/``:
        call it once :meth:`check_masks` has found which are usable), a hard link where possible, else a copy, as
        Accept does, so that training uses them; the originals are never moved or written.  Returns their names
        (a film that cannot be linked, e.g. gone meanwhile, is left out: it stays in :meth:`without_film`)."""
        linked = []
        for index, film in enumerate(self.films):
            target = self.image_path(index)
            if self.accepted(index) and not os.path.lexists(target):
                with contextlib.suppress(OSError):
                    link_or_copy(film.path, target)
                    linked.append(film.path.name)
        return linked

    def resume_index(self) -> Optional[int]:
        """The first film neither accepted nor skipped (None when every film is)."""
        return next((i for i in range(len(self.films)) if self._open(i)), None)

    def next_index(self, index: int) -> Optional[int]:
        """The next film after ``index`` still to do, wrapping round to the start (None when none is)."""
        n = len(self.films)
        return next((j % n for j in range(index + 1, index + n) if self._open(j % n)), None)

    # ---------------------------------------------------------------- actions
    def read_saved(self, index: int) -> tuple[Optional[np.ndarray], str]:
        """The draft, else the accepted mask, of film ``index`` as bool (H, W), and which it is
        (``"draft"``, ``"saved"``, or ``""`` with None when there is neither).  An unreadable file is
        reported as ImageReadError (one line) and left as it is."""
        for path, kind in ((self.draft_path(index), "draft"), (self.mask_path(index), "saved")):
            if path.is_file() and (kind == "draft" or not self.mask_problem(index)):
                return read_mask(path), kind
        return None, ""

    def check_mask(self, index: int, mask: np.ndarray) -> np.ndarray:
        """``mask`` as bool, or ValueError (one line) for a mask a training run would refuse."""
        mask = np.asarray(mask) != 0
        if mask.ndim != 2:
            raise ValueError(f"{self.films[index].path.name}: the mask must be 2-D, got shape {mask.shape}")
        if not mask.any():
            raise ValueError("The mask is empty: draw a box or paint the lungs, or Skip this film.")
        if mask.all():
            raise ValueError("The mask covers the whole film: erase the background, or Skip this film.")
        return mask

    def accept(self, index: int, mask: np.ndarray) -> list[Path]:
        """Save film ``index`` with ``mask`` (H, W): the image first, then the mask (so a mask never
        lies without its image); return both files.  The film's draft is removed and it is no longer
        skipped.  Another image there, or a mask this dock did not write, is moved to ``replaced/``
        (:attr:`set_aside`).  ValueError (one line) for an empty or full mask; nothing is written then.  When a
        write fails (OSError, e.g. a full disk) the files set aside are put back before it is raised."""
        mask = self.check_mask(index, mask)
        film = self.films[index]
        written = [self.image_path(index), self.mask_path(index)]
        self.set_aside = []
        if written[0].is_file() and not (os.path.samefile(film.path, written[0])
                                         or filecmp.cmp(film.path, written[0], shallow=False)):
            self._put_aside(written[0])
        if written[1].is_file() and (not self._ours(written[1]) or self.mask_problem(index)):
            self._put_aside(written[1])
        try:
            link_or_copy(film.path, written[0])
            self._record(write_mask(written[1], mask, overwrite=True))
        except BaseException:
            self._put_back()
            raise
        self.draft_path(index).unlink(missing_ok=True)
        self.legacy.discard(written[1].name)
        self.errors.pop(film.name, None)
        self.skipped.discard(film.name)
        self._save_state()
        return written

    def _record(self, path: Path) -> None:
        self.written[path.relative_to(self.dataset).as_posix()] = sha256(path)

    def _put_aside(self, path: Path) -> None:
        """Move ``path`` to ``replaced/<its folder>/`` (numbered when that name is taken)."""
        folder = self.dataset / REPLACED / path.parent.name
        folder.mkdir(parents=True, exist_ok=True)
        target, n = folder / path.name, 1
        while target.exists():
            n += 1
            target = folder / f"{path.stem}_{n}{path.suffix}"
        os.replace(path, target)
        self.set_aside.append((path, target))

    def _put_back(self) -> None:
        """Undo :meth:`_put_aside` (a write after it failed): each file back under its name, nothing in replaced/."""
        for path, target in reversed(self.set_aside):
            os.replace(target, path)
            with contextlib.suppress(OSError):  # only when empty
                target.parent.rmdir()
                target.parent.parent.rmdir()
        self.set_aside = []

    def set_aside_line(self) -> str:
        """E.g. ``" The earlier masks/a.png (not written here) is kept as replaced/masks/a.png."``, or ""."""
        rel = [(a.relative_to(self.dataset).as_posix(), b.relative_to(self.dataset).as_posix())
               for a, b in self.set_aside]
        return "".join(f" The earlier {a} (not written here) is kept as {b}." for a, b in rel)

    def write_seg(self, index: int, mask: np.ndarray, model_file: Optional[str | Path] = None) -> Optional[Path]:
        """Also save ``mask`` as ``DATASET/dicom_seg/<name>.dcm`` over a DICOM film (SEMIAUTOMATIC: a model
        mask the user accepted); None for a film that is not DICOM.  Raises DicomSegError (one line)."""
        film = self.films[index]
        if not is_dicom(film.path):
            return None
        from napari_adaqat.io.dicom_seg import write_dicom_seg

        path, self.set_aside = self.seg_path(index), []
        if path.is_file() and not self._ours(path):
            self._put_aside(path)
        try:
            path = write_dicom_seg(path, film.path, np.asarray(mask) != 0, model_file=model_file,
                                   algorithm_type="SEMIAUTOMATIC", overwrite=True)
        except BaseException:
            self._put_back()
            raise
        self._record(path)
        self._save_state()
        return path

    def skip(self, index: int) -> None:
        """Mark film ``index`` skipped (a later Accept undoes it)."""
        name = self.films[index].name
        was = name in self.skipped
        self.skipped.add(name)
        try:
            self._save_state()
        except OSError:  # not recorded: not skipped
            if not was:
                self.skipped.discard(name)
            raise

    def save_draft(self, index: int, mask: np.ndarray) -> Path:
        """Keep unsaved work on film ``index`` (any mask, even empty) until it is accepted."""
        return write_mask(self.draft_path(index), np.asarray(mask) != 0, overwrite=True)

    def drop_draft(self, index: int) -> Optional[Path]:
        """Film ``index`` has no draft any more (its mask was emptied): an earlier draft is moved to
        ``replaced/.drafts/`` (numbered when that name is taken), never deleted; returns where, or None."""
        path = self.draft_path(index)
        if not path.is_file():
            return None
        self.set_aside = []
        self._put_aside(path)
        return self.set_aside[-1][1]

    def mark_error(self, index: int, exc: BaseException) -> str:
        """Remember why film ``index`` cannot be opened (this session); return the line."""
        line = first_line(exc)
        self.errors[self.films[index].name] = line.removeprefix(f"{self.films[index].path}: ")
        return line

    # ------------------------------------------------------------------ boxes
    def box_for(self, shape: tuple[int, int]) -> np.ndarray:
        """The box to prompt a new film of (H, W) ``shape`` with: the last box drawn, scaled to this
        film, else the default box (the whole film less a 2 % margin); xyxy pixels (4,)."""
        if self.last_box is None:
            return default_box(shape)
        h, w = shape
        x0, y0, x1, y1 = self.last_box
        return np.array([x0 * w, y0 * h, x1 * w, y1 * h], dtype=np.float64)

    def remember_box(self, box: np.ndarray, shape: tuple[int, int]) -> None:
        """Keep ``box`` (xyxy pixels of a film of (H, W) ``shape``) for the next films, also after a restart."""
        h, w = shape
        x0, y0, x1, y1 = (float(v) for v in box)
        self.put_back_box((x0 / w, y0 / h, x1 / w, y1 / h))

    def put_back_box(self, relative: Optional[tuple[float, float, float, float]]) -> None:
        """Make ``relative`` (x0, y0, x1, y1 as parts of the width and height, None: none) the box for the next films
        (:attr:`last_box`; the Annotate dock's Undo of a box puts back the one before it)."""
        if relative != self.last_box:
            self.last_box = relative
            self._save_state()


__all__ = ["ACCEPTED", "DRAFT", "ERROR", "SKIPPED", "TODO", "AnnotationFolder", "Film", "link_or_copy"]
