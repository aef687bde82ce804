"""The Annotate dock's check of the earlier masks, in the background after a folder opens (opening reads no mask,
so that 2,000 films open at once): a mask file that is not a usable mask of its film (unreadable, another size,
empty or full) stops counting as accepted, its row says so, and ``annotate.json`` keeps it for the next start —
a mixin of :class:`~napari_adaqat.widgets.annotate.AnnotateWidget`."""
from __future__ import annotations

from typing import Any, Optional

from napari_adaqat.data.annotation import AnnotationFolder
from napari_adaqat.data.annotation_checks import Checked
from napari_adaqat.util.text import listed

CHUNK_S = 0.2  # one job checks masks this long: a film to open waits at most that


class EarlierMasks:
    """Checks the dataset's mask files in the dock's worker, a chunk per job (needs the dock's ``folder``,
    ``jobs``, ``status``, ``_refresh_rows`` and ``_say``)."""

    folder: Optional[AnnotationFolder]
    jobs: Any
    status: Any
    checked = False  # every earlier mask of the folder open has been checked
    checking = False  # the check takes more than one chunk and goes on (the progress line says so)
    _unusable: list[int]  # films found with an unusable mask by this check (said once it ends)

    def _check_earlier(self, start: int = 0) -> None:
        """Check the masks of films ``start``… of the folder open, then say what was found."""
        folder = self.folder
        if folder is None:
            return
        if start == 0:
            self._unusable, self.checked, self.checking = [], False, False
        self.jobs.submit("check", lambda: folder.check_masks(start, CHUNK_S),
                         lambda result: self._on_checked(folder, *result))

    def _on_checked(self, folder: AnnotationFolder, found: list[Checked], following: int) -> None:
        if folder is not self.folder:  # another folder opened meanwhile
            return
        self._unusable += folder.take_checks(found)
        done = following >= len(folder.films)
        self.checked, self.checking = done, not done
        self._refresh_rows()  # (the progress line says "checking" while it goes on)
        if not done:
            self._check_earlier(following)
            return
        if self._unusable:
            self._say(f"{self.status.value}\n{unusable_line(folder, self._unusable)}".strip())
        if folder.without_film():  # the usable ones of another tool's masks: their films into images/ (a job: copies)
            self.jobs.submit("check", folder.link_films, lambda names: self._on_linked(folder, names))

    def _on_linked(self, folder: AnnotationFolder, names: list[str]) -> None:
        if folder is self.folder and names:
            self._say(f"{self.status.value}\n{len(names)} film(s) of accepted masks added to "
                      f"{folder.dataset / 'images'}, so training uses them ({listed(names, 3)}).".strip())


def unusable_line(folder: AnnotationFolder, films: list[int]) -> str:
    """E.g. "1 earlier mask is not usable (film 11, b.png): to do again; …"."""
    named = [f"{i + 1}, {folder.films[i].path.name}" if len(films) <= 2 else str(i + 1) for i in films[:8]]
    many = len(films) > 1
    return (f"{len(films)} earlier mask{'s are' if many else ' is'} not usable (film{'s' if many else ''} "
            f"{'; '.join(named) if len(films) <= 2 else ', '.join(named)}{', …' if len(films) > 8 else ''}): to do "
            f"again; {'their rows say' if many else 'its row says'} so, and opening the film says why (its file is "
            f"moved to replaced/masks/ on Accept).")
