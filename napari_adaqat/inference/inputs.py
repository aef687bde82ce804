"""What ``adaqat segment`` reads of one input, besides its pixels: the reader's warnings (kept for results.csv's
``note``) and a note for a film the model was not trained on (a lateral view, a film stored on its side)."""
from __future__ import annotations

from pathlib import Path

from napari_adaqat.io import ImageData, is_dicom, read_image
from napari_adaqat.io.dicom import SCREEN_CAPTURES, MultiFrameError, read_dicom
from napari_adaqat.io.image_data import kept_read_warnings

__all__ = ["LATERAL_VIEWS", "READ_WARNINGS", "read_input", "reading_notes", "view_note"]

READ_WARNINGS = "read_warnings"  # ImageData.meta key: the reader's ImageReadWarning lines, without their path
LATERAL_VIEWS = ("LL", "RL", "LATERAL", "LAT")  # a DICOM's ViewPosition (0018,5101) of a side view (decubitus: frontal)


SIDEWAYS_ROWS = ("H", "F")  # a Patient Orientation (0020,0020) whose rows run head-foot: the film lies on its side


def view_note(image: ImageData) -> str:
    """A note for a film whose DICOM header says it is a lateral view, or stored on its side (Patient Orientation
    rows along head-foot; not turned here), "" otherwise: the model learnt upright frontal films (PA / AP), so
    its mask of such a film is to be looked at."""
    view = image.meta.get("view_position", "")
    if view in LATERAL_VIEWS:
        coded = image.meta.get("view_code")
        where = f"View Code Sequence: {coded}" if coded else f"ViewPosition {view}"
        return f"lateral view ({where}): the model was trained on frontal (PA/AP) films; check this mask"
    conversion = image.meta.get("conversion_type", "")
    if conversion in SCREEN_CAPTURES:
        return (f"secondary capture, {SCREEN_CAPTURES[conversion]} (ConversionType {conversion}), not a film: its "
                "grays and overlays are a display's; check this mask")
    orientation = image.meta.get("patient_orientation", "")
    if orientation[:1] in SIDEWAYS_ROWS:
        return (f"film stored on its side (PatientOrientation {orientation}: rows run head-foot): the model was "
                "trained on upright films; check this mask, or turn the film upright")
    return ""


def reading_notes(image: ImageData) -> list[str]:
    """The reading warnings of ``image`` (:func:`read_input`), without their path."""
    return list(image.meta.get(READ_WARNINGS, []))


def _read(path: Path, frame: int | None) -> ImageData:
    if not is_dicom(path):
        return read_image(path)
    try:
        return read_dicom(path, frame=frame)
    except MultiFrameError as exc:
        raise MultiFrameError(f"{path}: multi-frame DICOM with {exc.frames} frames; choose one with --frame N "
                              f"(0-based, 0 to {exc.frames - 1})", exc.frames) from None


def read_input(path: Path, frame: int | None = None) -> ImageData:
    """Read one input; ``frame`` (0-based) picks the frame of a multi-frame DICOM, which is refused
    without it (single-frame files ignore it).  The reader's :class:`ImageReadWarning` lines are warned as
    ever and kept, without their path, in ``meta["read_warnings"]`` (for the ``note`` column)."""
    with kept_read_warnings() as lines:
        image = _read(path, frame)
    prefix = f"{path}: "
    image.meta[READ_WARNINGS] = [line[len(prefix):] if line.startswith(prefix) else line for line in lines]
    return image
