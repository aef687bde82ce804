"""Whether the mask files of an annotation dataset are usable masks of their films, checked without reading a
file twice: a mixin of :class:`~napari_adaqat.data.annotation.AnnotationFolder`.  A mask the dock wrote itself
(its SHA-256 is in ``annotate.json``'s ``written``) is usable; any other is read and compared with its film (its
size, not empty, not full).  What was found is kept per file as it is (mtime, size), so a changed file is checked
again, and :meth:`MaskChecks.check_masks` can run in a worker while the dock works."""
from __future__ import annotations

import contextlib
import hashlib
import time
from pathlib import Path
from typing import Optional, Sequence

from napari_adaqat.io import read_mask
from napari_adaqat.io.images import film_shape
from napari_adaqat.util.errors import first_line

REPLACED = "replaced"  # DATASET/replaced/images|masks|dicom_seg: what Accept found there and did not write
Checked = tuple[int, tuple[int, int], str, Optional[str]]  # film, its mask's (mtime_ns, size), why unusable, SHA-256


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class MaskChecks:
    """The checks; the folder provides ``dataset``, ``films``, ``written``, ``legacy``, ``_problems`` (mask file
    name → ((mtime_ns, size), why unusable or "")), ``mask_path(index)`` and ``_save_state()``."""

    dataset: Path
    films: Sequence
    written: dict[str, str]
    legacy: set[str]
    _problems: dict[str, tuple[tuple[int, int], str]]

    def known_problem(self, index: int) -> str:
        """What :meth:`mask_problem` found for the mask file as it is now, without reading it ("" if unchecked)."""
        path = self.mask_path(index)
        cached = self._problems.get(path.name)
        if not cached or not cached[1]:
            return ""
        try:
            stat = path.stat()
        except OSError:
            return ""
        return cached[1] if cached[0] == (stat.st_mtime_ns, stat.st_size) else ""

    def _ours(self, path: Path) -> bool:
        """``path`` is the file this dock wrote there (not replaced since)."""
        digest = self.written.get(path.relative_to(self.dataset).as_posix())
        return digest is not None and path.is_file() and sha256(path) == digest

    def mask_problem(self, index: int) -> str:
        """Why ``masks/<name>.png`` cannot be film ``index``'s accepted mask (not a binary mask, another size,
        empty or full), or "" (usable, or no file).  A file this dock wrote is not read again."""
        found = self._unchecked(index, adopt=False)
        if found is not None:
            self._problems[self.mask_path(index).name] = (found[1], found[2])
        return self.known_problem(index)

    def _unchecked(self, index: int, adopt: bool) -> Optional[Checked]:
        """Check film ``index``'s mask file when it is not checked as it is now (or, with ``adopt``, is a mask of an
        older dataset to adopt: then also its SHA-256 when usable); None when there is no file or nothing new."""
        path = self.mask_path(index)
        try:
            stat = path.stat()
        except OSError:
            return None
        key, cached = (stat.st_mtime_ns, stat.st_size), self._problems.get(path.name)
        adopt = adopt and path.name in self.legacy
        if not adopt and cached is not None and cached[0] == key:
            return None
        problem = "" if not adopt and self._ours(path) else self._check_other_mask(index, path)
        return index, key, problem, sha256(path) if adopt and not problem else None

    def _check_other_mask(self, index: int, path: Path) -> str:
        try:
            mask = read_mask(path)
        except Exception as exc:  # noqa: BLE001 - said in the film's row and when it opens
            return first_line(exc).removeprefix(f"{path}: ")
        try:
            shape = film_shape(self.films[index].path)
        except Exception:  # noqa: BLE001 - the film itself cannot be read: said when it is opened
            return ""
        if mask.shape != shape:
            return f"its size is {mask.shape[1]}×{mask.shape[0]}, the film's {shape[1]}×{shape[0]}"
        return "it is empty" if not mask.any() else "it covers the whole film" if mask.all() else ""

    def mask_note(self, index: int) -> str:
        """The line said when a film with an unusable mask file opens ("" when there is none)."""
        problem = self.mask_problem(index)
        name = f"masks/{self.mask_path(index).name}"
        return f"The earlier {name} is not shown: {problem}. Accept moves it to {REPLACED}/masks/." if problem else ""

    def check_masks(self, start: int = 0, budget_s: float = float("inf")) -> tuple[list[Checked], int]:
        """Check the mask files of films ``start``… not checked as they are now (and the masks to adopt) for about
        ``budget_s``; return what was found and the film to go on from (``len(films)`` when done).  Changes
        nothing, so a worker thread may run it: :meth:`take_checks` records it."""
        found: list[Checked] = []
        end, index = time.monotonic() + budget_s, start
        while index < len(self.films) and (index == start or time.monotonic() < end):
            with contextlib.suppress(OSError):  # (a file gone or unreadable meanwhile: checked when its film opens)
                if (checked := self._unchecked(index, adopt=True)) is not None:
                    found.append(checked)
            index += 1
        return found, index

    def take_checks(self, found: list[Checked]) -> list[int]:
        """Record what :meth:`check_masks` found (the files changed since are checked again later), adopt the
        usable masks of an older dataset, and keep it all in ``annotate.json``; return the films newly found
        with an unusable mask."""
        newly = []
        for index, key, problem, digest in found:
            path = self.mask_path(index)
            try:
                stat = path.stat()
            except OSError:
                continue
            if (stat.st_mtime_ns, stat.st_size) != key:
                continue
            if problem and not self.known_problem(index):
                newly.append(index)
            self._problems[path.name] = (key, problem)
            if path.name in self.legacy:
                self.legacy.discard(path.name)
                if digest is not None:
                    self.written.setdefault(path.relative_to(self.dataset).as_posix(), digest)
        if found:
            with contextlib.suppress(OSError):  # (read-only for now: checked again next time)
                self._save_state()
        return newly
