"""Undo / redo of the Segment dock's prompts: every mask the dock shows is one state (its box, its points,
the mask exactly as painted and the logits to feed back), so Ctrl+Z puts back the previous mask bit for bit.

No napari here: the dock snapshots its layers into a :class:`PromptState` and writes a state back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

# The kinds of states, as the status line names them
BOX, CLICK, EDIT, RESET, EMPTY = "box", "click", "brush edit", "reset", "start"
MAX_STATES = 100  # the oldest states go first beyond this many ...
MAX_BYTES = 1 << 30  # ... or beyond this much memory (a 3000² film's state with its maps is ~200 MB)
MAX_TOTAL_BYTES = 2 << 30  # all open images' histories together (:func:`trim_to_budget`)


@dataclass
class PromptState:
    """What the viewer showed after one prompt (or a brush edit, or a reset).

    ``boxes``: the ``boxes`` layer's shapes ((V, D) vertices in layer data coordinates, shape type); ``box_index``: the
    shape that prompted (None: no box); ``points`` (N, D) the ``points`` layer's data with ``positive``
    (N,) bool; ``plane``: the stack plane of ``mask`` (None: a 2-D image); ``mask`` (H, W) bool as painted
    (None: nothing painted yet); ``logits``: the result's low-resolution logits (torch (1, 1, 4E, 4E)),
    the next click's mask prompt; ``mask_input``: the mask prompt this state's mask was made with
    (to run it again identically); ``result``: the engine's SegmentResult (its SSIM / ΔSSIM maps);
    ``models``: the (model, baseline) that made it (its logits are a mask prompt for those alone); ``action``:
    the dock's prompt that asks for it ("box", a point "added", "removed" or "changed", or "rerun"); ``kept``: the
    user's brush edits laid over the model's mask (kept through later clicks, :mod:`._kept_edits`); ``annotate``:
    an EDIT state that is a new mask of the Annotate dock's (its box; the edits it kept on top, none painted since)."""

    kind: str
    boxes: list[tuple[np.ndarray, str]] = field(default_factory=list)
    box_index: Optional[int] = None
    points: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    positive: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=bool))
    plane: Optional[int] = None
    mask: Optional[np.ndarray] = None
    logits: Any = None
    mask_input: Any = None
    result: Any = None
    models: Any = None
    action: str = ""
    kept: Any = None  # the user's brush edits laid over this mask: (painted, erased) (H, W) bool (_kept_edits.py)
    annotate: bool = False

    @property
    def computed(self) -> bool:
        """Whether the model answered this state's prompt (a click replaced while it waited did not: its mask is
        made when Undo or Redo comes back to it)."""
        return self.mask is not None or self.kind not in (BOX, CLICK)

    def prompt_text(self) -> str:
        """E.g. "box + 3 points (1 not lung)"."""
        n, neg = len(self.positive), int((~np.asarray(self.positive, dtype=bool)).sum())
        parts = ["box"] if self.box_index is not None else []
        if n:
            parts.append(f"{n} point{'s' if n != 1 else ''}" + (f" ({neg} not lung)" if neg else ""))
        return " + ".join(parts) or "no prompt"

    def nbytes(self) -> int:
        """Memory held by the mask and the result's arrays (probabilities, maps), each array once (the state's
        mask is usually its result's)."""
        arrays = [self.mask, *(self.kept or ()), *(vars(self.result).values() if self.result is not None else ())]
        return sum({id(a): a.nbytes for a in arrays if isinstance(a, np.ndarray)}.values())


def drop_probabilities(result: Any) -> None:
    """Free a result's per-pixel probabilities (model, baseline) and the baseline's mask once its SSIM / ΔSSIM maps
    are made (or will not be): nothing shows them, and on a 3000² film they are 81 MB of each undo state (about
    half), so Undo reaches twice as far back within :data:`MAX_BYTES`."""
    for name in ("p_model", "p_baseline", "baseline_mask", "own_logits"):
        if getattr(result, name, None) is not None:
            setattr(result, name, None)


class PromptHistory:
    """A linear undo history of :class:`PromptState` (the first one is the empty start); pushing after an
    undo drops the states that were undone, as every editor does."""

    def __init__(self, start: Optional[PromptState] = None) -> None:
        self._states: list[PromptState] = [start or PromptState(EMPTY)]
        self._index = 0

    @property
    def current(self) -> PromptState:
        return self._states[self._index]

    @property
    def can_undo(self) -> bool:
        return self._index > 0

    @property
    def can_redo(self) -> bool:
        return self._index < len(self._states) - 1

    def __len__(self) -> int:
        return len(self._states)

    def push(self, state: PromptState) -> PromptState:
        """Make ``state`` current (the undone states after the current one are dropped, and the oldest
        ones beyond :data:`MAX_STATES` or :data:`MAX_BYTES`)."""
        del self._states[self._index + 1:]
        self._states.append(state)
        self._index += 1
        while len(self._states) > 2 and (len(self._states) > MAX_STATES
                                         or sum(s.nbytes() for s in self._states) > MAX_BYTES):
            self._states.pop(0)
            self._index -= 1
        return state

    def restart(self, state: PromptState) -> bool:
        """Make ``state`` the start instead, while nothing came after the start (the Annotate dock's mask: there
        is nothing of its film before it to undo to); False when states came after it."""
        if len(self._states) > 1:
            return False
        self._states[0] = state
        return True

    def undo(self) -> Optional[tuple[PromptState, PromptState]]:
        """(the state left, the state now current), or None at the start."""
        if not self.can_undo:
            return None
        self._index -= 1
        return self._states[self._index + 1], self._states[self._index]

    def redo(self) -> Optional[tuple[PromptState, PromptState]]:
        """(the state left, the state now current), or None when nothing was undone."""
        if not self.can_redo:
            return None
        self._index += 1
        return self._states[self._index - 1], self._states[self._index]

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self._states)

    def drop_one(self) -> bool:
        """Free memory without changing what is shown: drop the last redo state, else the oldest undo state when
        a later one up to the current state painted the same plane (so :meth:`painted` stays the same).
        False when nothing can go (the current state and the masks it shows always stay)."""
        if self.can_redo:
            self._states.pop()
            return True
        first = self._states[0]
        if self._index == 0 or (first.mask is not None and not any(
                s.mask is not None and s.plane == first.plane for s in self._states[1:self._index + 1])):
            return False
        self._states.pop(0)
        self._index -= 1
        return True

    def _shown_on(self, plane: Optional[int]) -> Optional[PromptState]:
        """The current state, or the last one before it, that painted a mask on ``plane`` (None: none did)."""
        return next((state for state in reversed(self._states[:self._index + 1])
                     if state.mask is not None and state.plane == plane), None)

    def kept_on(self, plane: Optional[int]) -> Any:
        """The brush edits kept with the mask that :meth:`painted` finds on ``plane`` (None: none)."""
        state = self._shown_on(plane)
        return None if state is None else state.kept

    def painted(self, plane: Optional[int]) -> Optional[np.ndarray]:
        """The mask (H, W) bool that the current state or the last one before it painted on ``plane``
        (None: the dock never painted it): what the ``lung mask`` layer shows there unless edited."""
        state = self._shown_on(plane)
        return None if state is None else state.mask


def trim_to_budget(histories: list[PromptHistory], budget: Optional[int] = None) -> int:
    """Drop undo / redo states, from the first (least recently used) history on, until ``histories`` hold at most
    ``budget`` bytes together (default :data:`MAX_TOTAL_BYTES`): a session with many films open stays within
    memory.  Every history keeps its current state and what it shows; returns the number of states dropped."""
    budget = MAX_TOTAL_BYTES if budget is None else budget
    sizes = [h.nbytes() for h in histories]
    total, dropped = sum(sizes), 0
    for i, history in enumerate(histories):
        while total > budget and history.drop_one():
            dropped += 1
            now = history.nbytes()
            total, sizes[i] = total - (sizes[i] - now), now
        if total <= budget:
            break
    return dropped
