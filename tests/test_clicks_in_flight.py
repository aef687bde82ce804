"""Clicks on their way to the worker (the model busy: a native film's embedding) and the undo history: a review
of the first version found these holes, each a repro here (real napari viewer under Xvfb, tiny random models).

- Reset while clicks were on their way threw them away: Undo of the Reset came back to the box alone.
- Back on a film left while a replaced click's mask was being made, nothing made it.
- A replaced click's mask was drawn while a newer click was on its way (the screen: 2 points' mask under 3).
- The Annotate dock shows its next film in the same layer: a click on the old film went into the new film's history.
"""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from test_napari_clicks import open_dock, spy_prompts, wait  # noqa: E402  (tests/ is on sys.path)

pytestmark = pytest.mark.gui
CLICKS = ([200.0, 150.0], [300.0, 350.0], [260.0, 120.0])


def _busy_dock(make_napari_viewer, qtbot, monkeypatch, nano_models):
    """A dock with a box's mask, whose clicks all go through the worker (as while an embedding runs)."""
    viewer = make_napari_viewer()
    widget, image, _truth = open_dock(viewer, qtbot, model_path=nano_models[0], use_baseline=False,
                                      model_type="vit_nano")
    calls = spy_prompts(widget, monkeypatch)
    viewer.layers["boxes"].add_rectangles(np.array([[40.0, 30.0], [470.0, 480.0]]))
    wait(qtbot, widget)
    monkeypatch.setattr(widget, "_quick_prompt", lambda *a: False)
    return viewer, widget, image, calls, viewer.layers["points"]


def test_reset_keeps_the_clicks_on_their_way_as_undo_steps(make_napari_viewer, qtbot, monkeypatch, nano_models):
    _viewer, widget, _image, _calls, points = _busy_dock(make_napari_viewer, qtbot, monkeypatch, nano_models)
    for xy in CLICKS:  # no event loop between them
        points.add([xy])
    widget.reset_prompts()
    wait(qtbot, widget)
    assert len(points.data) == 0
    widget.undo()
    wait(qtbot, widget)
    assert len(points.data) == 3 and widget.history.current.computed  # its mask made when Undo came back
    widget.undo()
    wait(qtbot, widget)
    assert len(points.data) == 2


def test_a_film_left_while_a_click_s_mask_is_made_gets_it_when_back(make_napari_viewer, qtbot, monkeypatch,
                                                                   nano_models):
    viewer, widget, image, _calls, points = _busy_dock(make_napari_viewer, qtbot, monkeypatch, nano_models)
    for xy in CLICKS:
        points.add([xy])
    wait(qtbot, widget)
    widget.undo()  # to click 2, never answered: its mask is being made
    assert not widget.history.current.computed
    widget.image.value = viewer.add_image(np.asarray(image.data)[::-1].copy(), name="other")
    widget.image.value = image
    wait(qtbot, widget)
    assert widget.history.current.computed and len(points.data) == 2


def test_a_replaced_click_s_mask_waits_for_the_newer_click(make_napari_viewer, qtbot, monkeypatch, nano_models):
    _viewer, widget, _image, _calls, points = _busy_dock(make_napari_viewer, qtbot, monkeypatch, nano_models)
    for xy in CLICKS:
        points.add([xy])
    wait(qtbot, widget)
    shown, real = [], widget._show_state
    monkeypatch.setattr(widget, "_show_state", lambda image, result, mask=None: (
        shown.append(widget._waiting_clicks()), real(image, result, mask)))
    widget.undo()  # to click 2: its mask goes to the worker
    points.add([[100.0, 100.0]])  # a new click while it is made
    wait(qtbot, widget)
    assert shown and not any(shown)  # nothing drawn while a newer click was on its way
    assert len(points.data) == 3 and len(widget.history.current.points) == 3


def test_a_click_on_the_film_before_stays_out_of_the_next_film_s_history(make_napari_viewer, qtbot, monkeypatch,
                                                                        nano_models):
    _viewer, widget, image, _calls, points = _busy_dock(make_napari_viewer, qtbot, monkeypatch, nano_models)
    before = widget.history
    points.add([[200.0, 150.0]])  # on its way, on film A
    image.data = np.ascontiguousarray(image.data[::-1])  # film B in the same layer (the Annotate dock's next film)
    after = widget.history
    assert after is not before
    wait(qtbot, widget)
    points.add([[300.0, 350.0]])  # on film B
    wait(qtbot, widget)
    assert not any(len(state.points) == 1 and state.mask is None for state in after._states)  # A's click is not there
