"""The Annotate dock never drops the user's work on a film (real napari viewer under Xvfb, bundled model): a stroke
made while the next film is read is kept as its film's draft; where no draft can be written (a read-only dataset
folder), the film stays open and the line says why, and Skip says that it could not record the skip."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_adaqat.model import loading  # noqa: E402
from test_annotate_walkthrough import open_dock, settle  # noqa: E402  (tests/ is on sys.path)

pytestmark = [pytest.mark.gui, pytest.mark.skipif(not loading.DEFAULT_MODEL.is_file(), reason="no bundled model")]


def _stroke(viewer) -> np.ndarray:
    """Paint a 9x9 square of lung into 'lung mask' where it is not lung (as the brush does: one undo step and
    napari's paint event); returns the mask after it."""
    mask = viewer.layers["lung mask"]
    data = np.asarray(mask.data)
    rows, cols = np.nonzero(data == 0)
    r, c = int(rows[len(rows) // 3]), int(cols[len(cols) // 3])
    r, c = min(max(r, 5), data.shape[0] - 6), min(max(c, 5), data.shape[1] - 6)
    square = np.mgrid[r - 4:r + 5, c - 4:c + 5].reshape(2, -1)
    mask.data_setitem(tuple(square), 1)
    return np.asarray(mask.data) != 0


def test_a_stroke_made_while_the_next_film_opens_is_kept_as_a_draft(make_napari_viewer, qtbot, films, tmp_path):
    """A QA find: after Skip, the film stays on screen until the next one is read (0.3-1.6 s); a stroke in that gap
    was thrown away when the next film appeared, without a word."""
    viewer = make_napari_viewer(show=True)
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    assert widget.skip() and widget.opening == 1 and widget.index == 0  # the next film is being read
    painted = _stroke(viewer)  # (the worker's result waits for the event loop: this stroke comes first)
    settle(qtbot, widget)
    assert widget.index == 1
    assert widget.folder.has_draft(0)
    assert "Your work on" in widget.status.value and "kept as a draft" in widget.status.value, widget.status.value
    widget.open_film(0)
    settle(qtbot, widget)
    np.testing.assert_array_equal(np.asarray(viewer.layers["lung mask"].data) != 0, painted)


def test_work_that_cannot_be_kept_keeps_its_film_open(make_napari_viewer, qtbot, films, tmp_path, monkeypatch):
    """A QA find: in a dataset folder made read-only, the draft could not be written and Back or a jump then
    showed another film, the edits gone; Skip raised a PermissionError traceback.  Now the film stays, with one line
    each."""
    viewer = make_napari_viewer(show=True)
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    folder = widget.folder

    def read_only(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied", str(folder.dataset / "annotate.json"))

    monkeypatch.setattr(folder, "save_draft", read_only)
    painted = _stroke(viewer)
    name = folder.films[0].path.name
    assert not widget.skip()  # the work first: no skip recorded for a film that stays open (review find)
    assert widget.status.value.startswith(f"{name} stays open: your work on it could not be kept as a draft "), \
        widget.status.value
    assert folder.films[0].name not in folder.skipped and widget.index == 0
    widget.open_film(1)  # a double-click on the next row
    settle(qtbot, widget)
    assert widget.index == 0 and widget.opening is None
    assert widget.status.value.startswith(f"{name} stays open: "), widget.status.value
    np.testing.assert_array_equal(np.asarray(viewer.layers["lung mask"].data) != 0, painted)
    monkeypatch.undo()  # the drafts folder writable again, annotate.json not
    monkeypatch.setattr(folder, "_save_state", read_only)
    assert not widget.skip()
    assert widget.status.value.startswith(f"Could not mark {name} skipped: ") and "Permission denied" in \
        widget.status.value
    assert folder.films[0].name not in folder.skipped and folder.has_draft(0) and widget.index == 0


def test_a_seg_that_cannot_be_written_says_what_to_do_in_the_dock(tmp_path):
    """A QA find: the Annotate dock passed on the CLI's hint "use --format png or tif", an option the dock has not."""
    from types import SimpleNamespace

    from napari_adaqat.io.dicom_seg import DicomSegError
    from napari_adaqat.widgets._annotate_accept import AcceptFlow

    def write_seg(*_args, **_kwargs):
        raise DicomSegError(f"{tmp_path / 'a.dcm'}: cannot write a DICOM SEG: the source image lacks "
                            "StudyInstanceUID; use --format png or tif for it")

    dock = SimpleNamespace(folder=SimpleNamespace(write_seg=write_seg), last_error=None,
                           _model_and_device=lambda: (SimpleNamespace(resolved=lambda: None), "cpu"))
    line = AcceptFlow._write_seg(dock, 0, np.ones((4, 4), bool))
    assert "--format" not in line and line.endswith(
        "lacks StudyInstanceUID (the mask is saved; untick 'also write a DICOM SEG' for such films)"), line


def test_a_film_opened_over_the_annotated_one_is_said_at_once(make_napari_viewer, qtbot, films, tmp_path):
    """A QA find: a box drawn right after File → Open of a second film segmented the dock's film, hidden under it,
    and the line said so only after the fact.  Opening the film now says where boxes go; the Segment dock's maps
    (image layers too) say nothing."""
    viewer = make_napari_viewer(show=True)
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    film = widget.folder.films[0].path.name
    before = widget.status.value
    viewer.add_image(np.zeros((8, 8), np.float32), name="SSIM-like", metadata={"source_layer_id": "x"})
    assert widget.status.value == before
    viewer.add_image(np.zeros((64, 64), np.float32), name="other film")
    assert widget.status.value.startswith(f"'other film' is shown over {film}, the film being annotated: a box in "
                                          f"'boxes' still segments {film}."), widget.status.value


def test_closing_the_clicks_dock_stops_points_being_added(make_napari_viewer, qtbot, films, tmp_path):
    """A QA find: a click in 'points' after the Segment dock was closed added a point that nothing answered, without
    a word.  Closing the dock puts 'points' in pan & zoom; Correct with clicks [Ctrl+K] puts it back in add mode."""
    from napari_adaqat.widgets._shared import SEGMENT_DOCK

    viewer = make_napari_viewer(show=True)
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    segment = widget.correct_with_clicks()
    qtbot.waitUntil(lambda: not segment.busy, timeout=180_000)
    points = viewer.layers["points"]
    assert points.mode == "add"
    dock = next(d for name, d in viewer.window._dock_widgets.items() if SEGMENT_DOCK in name)
    viewer.window.remove_dock_widget(dock)  # napari's ×
    qtbot.wait(50)
    assert segment._closed and points.mode == "pan_zoom"
    segment = widget.correct_with_clicks()
    qtbot.waitUntil(lambda: not segment.busy, timeout=180_000)
    assert viewer.layers["points"].mode == "add"


def test_r_on_points_never_clears_the_film_and_an_emptied_mask_puts_its_draft_aside(make_napari_viewer, qtbot,
                                                                                   films, tmp_path):
    """A QA find: on the Annotate dock's film, R with 'points' selected reset the mask, and once the film was left
    its draft (the user's brush work) was deleted without a word. Now R there says what does clear the film; a
    mask emptied on purpose (the Reset button) puts the draft aside in replaced/.drafts/, and the next line says so."""
    from napari_adaqat.io import read_mask
    from napari_adaqat.widgets._clicks import RESET_KEY

    viewer = make_napari_viewer(show=True)
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    painted = _stroke(viewer)
    widget.open_film(1)
    settle(qtbot, widget)
    widget.open_film(0)
    settle(qtbot, widget)
    segment = widget.correct_with_clicks()
    qtbot.waitUntil(lambda: not segment.busy, timeout=120_000)
    assert viewer.layers.selection.active is viewer.layers["points"]
    assert viewer.window._qt_viewer._key_map_handler.press_key(RESET_KEY)
    qtbot.wait(50)
    assert segment.status.value.startswith("R does not clear the Annotate dock's film")
    np.testing.assert_array_equal(np.asarray(viewer.layers["lung mask"].data) != 0, painted)

    segment.reset_prompts()  # the button: on purpose
    qtbot.waitUntil(lambda: not segment.busy, timeout=120_000)
    assert not np.asarray(viewer.layers["lung mask"].data).any()
    name = widget.folder.films[0].path.name
    widget.open_film(1)
    settle(qtbot, widget)
    aside = widget.folder.dataset / "replaced" / ".drafts" / widget.folder.draft_path(0).name
    assert not widget.folder.has_draft(0) and aside.is_file()
    np.testing.assert_array_equal(read_mask(aside) != 0, painted)
    assert f"{name}: its mask was empty, so it opens again" in widget.status.value, widget.status.value
    assert str(aside) in widget.status.value


def test_closing_the_window_with_work_no_draft_holds_keeps_a_copy_and_says_where(make_napari_viewer, qtbot, films,
                                                                                 tmp_path, monkeypatch):
    """A QA find: in a read-only dataset folder, a stroke then the window's × closed napari without a word, the
    stroke lost. The window's close (×, Ctrl+W or Ctrl+Q alike) now keeps the draft first; where it cannot, a copy of
    the mask goes outside the dataset folder, said on the terminal and in napari's close dialog (its task status,
    which the × shows); once a draft is kept, the item is gone. The stroke before the draft timer fired counts."""
    from napari_adaqat.io import read_mask
    from qtpy.QtGui import QCloseEvent
    from qtpy.QtWidgets import QApplication

    monkeypatch.setenv("ADAQAT_UNSAVED_DIR", str(tmp_path / "unsaved"))
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.installEventFilter(veto := _Veto(window))  # (before the dock's: Qt runs the last one installed first)
    _, widget = open_dock(viewer, qtbot, films, tmp_path / "dataset")
    folder, tasks = widget.folder, viewer.window._task_status_manager

    def read_only(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied", str(folder.dataset / ".drafts"))

    with monkeypatch.context() as patch:
        patch.setattr(folder, "save_draft", read_only)
        painted = _stroke(viewer)
        assert widget._touched and not tasks.get_status()  # (the draft timer has not fired yet)
        veto.ignore = True  # napari must not close the test's window
        QApplication.sendEvent(window, QCloseEvent())  # the close: the dock's filter keeps the draft first: it fails
        [copy] = list((tmp_path / "unsaved").iterdir())
        np.testing.assert_array_equal(read_mask(copy) != 0, painted)
        status = tasks.get_status()
        name = folder.films[0].path.name
        assert status == [f"napari-adaqat Annotate: your work on {name} could not be kept as a draft; a copy of its "
                          f"mask is in {copy}"], status
        assert tasks.is_busy()
    veto.ignore = False
    assert widget.keep_draft() and folder.has_draft(0)
    assert not tasks.get_status()


class _Veto:
    """An event filter that swallows the window's close (so that the test's viewer stays open)."""

    def __new__(cls, window):
        from qtpy.QtCore import QEvent, QObject

        class Veto(QObject):
            ignore = False

            def eventFilter(self, obj, event):  # noqa: N802 - Qt's name
                return self.ignore and event.type() == QEvent.Type.Close

        return Veto(window)
