"""The Segment dock's prompts on their way to the worker, so that clicks made while the model is busy (a native
film's embedding takes seconds) are each one Undo step: a click whose job a newer click replaced goes into the
history unanswered, and its mask is made when Undo or Redo comes back to it (``SegmentWidget._fill``).  A mixin
of :class:`~napari_adaqat.widgets._clicks.ClickPrompts`; no napari here."""
from __future__ import annotations

from typing import Callable

from napari_adaqat.widgets._prompt_history import PromptHistory, PromptState


class InFlight:
    """Needs the dock's ``_push(history, state)``."""

    _in_flight: tuple[tuple[PromptHistory, PromptState], ...] = ()  # (its history, the prompt), oldest first
    _push: Callable[[PromptHistory, PromptState], None]  # the dock's

    def _sent(self, history: PromptHistory, request: PromptState) -> None:
        """``request`` of ``history`` went to the worker."""
        self._in_flight = (*self._in_flight, (history, request))

    def _push_answered(self, history: PromptHistory, request: PromptState) -> None:
        """Push ``request``, whose mask came, after the prompts of ``history`` sent before it whose jobs it replaced
        while they waited, each one Undo step (prompts of another history, a film since replaced: dropped)."""
        self._push_until(history, request)
        self._push(history, request)

    def _drop_answered(self, request: PromptState) -> None:
        """``request``'s mask came for a film or history no longer shown: it and the prompts before it are gone."""
        self._push_until(None, request)

    def _push_until(self, history: PromptHistory | None, request: PromptState) -> None:
        sent = self._in_flight
        at = next((i for i, (_, state) in enumerate(sent) if state is request), None)
        if at is None:
            return
        for owner, state in sent[:at]:
            if owner is history:
                self._push(history, state)
        self._in_flight = sent[at + 1:]

    def _send_off(self, history: PromptHistory) -> None:
        """The prompts still on their way are dropped (an Undo, a Reset, another image): those of ``history`` sent
        before the newest go into it unanswered, each one Undo step; the newest is the caller's."""
        for owner, state in self._in_flight[:-1]:
            if owner is history:
                self._push(history, state)
        self._in_flight = ()

    def _waiting_clicks(self) -> bool:
        """Whether prompts are still on their way."""
        return bool(self._in_flight)
