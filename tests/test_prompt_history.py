"""The Segment dock's prompt history, without a viewer: undo / redo of prompts, what each plane shows, one
memory budget shared by all open films, and one history per image layer and data."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")


def test_prompt_history_undo_redo_painted_and_memory_cap(monkeypatch):
    from napari_adaqat.widgets import _prompt_history as H

    history = H.PromptHistory()
    masks = [np.full((4, 4), i % 2 == 1) for i in range(4)]
    for i, mask in enumerate(masks[:3]):
        history.push(H.PromptState(H.CLICK, plane=None, mask=mask, positive=np.array([True] * i)))
    assert history.undo()[1].mask is masks[1] and history.painted(None) is masks[1]
    assert history.redo()[1].mask is masks[2] and history.redo() is None
    history.undo()
    history.push(H.PromptState(H.BOX, plane=None, mask=masks[3]))  # a new state drops what was undone
    assert not history.can_redo and len(history) == 4
    assert H.PromptState(H.CLICK, box_index=0, positive=np.array([True, False])).prompt_text() == \
        "box + 2 points (1 not lung)"
    monkeypatch.setattr(H, "MAX_BYTES", 3 * masks[0].nbytes)  # the oldest states go first
    history.push(H.PromptState(H.CLICK, plane=None, mask=masks[0]))
    assert len(history) == 3 and history.current.mask is masks[0]
    while history.can_undo:
        history.undo()
    assert history.current.mask is masks[1]
    from types import SimpleNamespace

    shared = np.zeros((30, 30), bool)  # a state's mask is its result's: counted once
    result = SimpleNamespace(mask=shared, p_model=np.zeros((30, 30), np.float32), box=None)
    assert H.PromptState(H.CLICK, mask=shared, result=result).nbytes() == 900 + 3600



def test_many_open_films_share_one_memory_budget_and_keep_their_masks():
    """Histories of many open films: beyond the budget the films used longest ago lose undo steps first (redo
    steps before undo steps); every film keeps the mask it shows, and a plane's last painted mask stays."""
    from napari_adaqat.widgets import _prompt_history as H

    def film(n: int, plane=None) -> H.PromptHistory:
        history = H.PromptHistory()
        for i in range(n):
            history.push(H.PromptState(H.CLICK, plane=plane, mask=np.full((100, 100), i % 2 == 1)))
        return history

    one = 100 * 100  # bytes per state
    old, recent = film(5), film(5)
    old.undo()  # one redo step: it goes first
    assert H.trim_to_budget([old, recent], budget=9 * one) == 1 and len(old) == 5 and not old.can_redo
    shown = old.current.mask
    # the film used longest ago gives them up: its empty start and its 3 oldest masks
    assert H.trim_to_budget([old, recent], budget=6 * one) == 4
    assert len(old) == 1 and len(recent) == 6 and old.current.mask is shown and old.painted(None) is shown
    assert H.trim_to_budget([old, recent], budget=0) == 5  # nothing left to give but what each film shows
    assert (len(old), len(recent)) == (1, 1) and old.current.mask is shown and recent.painted(None) is not None
    stack = H.PromptHistory()  # a stack: plane 0's only mask stays while plane 1 is shown
    stack.push(H.PromptState(H.BOX, plane=0, mask=np.ones((100, 100), bool)))
    stack.push(H.PromptState(H.BOX, plane=1, mask=np.zeros((100, 100), bool)))
    H.trim_to_budget([stack], budget=0)
    assert stack.painted(0) is not None and stack.painted(1) is not None

def test_one_prompt_history_per_layer_and_data_it_holds():
    """The Annotate dock shows each film in the same layer: a new film (new data) gets a fresh history, the
    same film keeps its own, and a freed film's history never comes back for a later array (even one that
    reuses the freed array's ``id``)."""
    import gc
    from types import SimpleNamespace

    from napari_adaqat.widgets._clicks import ClickPrompts

    layer = SimpleNamespace(unique_id="film-layer", data=np.zeros((8, 8)))
    dock = SimpleNamespace(image=SimpleNamespace(value=layer), _histories={})
    history = ClickPrompts.history.fget  # the property, on a stand-in for the dock
    first = history(dock)
    assert history(dock) is first  # the same film: the same history
    freed = id(layer.data)
    layer.data = None  # the next film in the same layer, at the freed film's address where CPython reuses it
    gc.collect()
    others = [np.zeros((8, 8)) for _ in range(200)]
    layer.data = next((a for a in others if id(a) == freed), others[0])
    second = history(dock)
    assert second is not first and history(dock) is second
    other = SimpleNamespace(unique_id="other", data=[[0.0]])  # data that takes no weak reference: held strongly
    dock.image.value = other
    assert history(dock) is history(dock) is not second
    dock.image.value = None
    assert history(dock) is None
