"""One napari worker thread at a time for a dock: a new job of a kind replaces the queued one of that
kind (the newest box wins; nothing piles up), and the results of a closed dock are dropped.  Used by the
Segment and Annotate docks."""
from __future__ import annotations

import atexit
from typing import Any, Callable, Optional

from napari.qt.threading import create_worker
from qtpy.QtCore import QThreadPool, QTimer

EXIT_WAIT_MS = 60_000  # at exit, jobs still running get this long to end


def _wait_for_jobs() -> None:
    """At interpreter exit, let the jobs still running end first: a worker that ends after Python freed its
    signals aborts the process (napari closed while a dock embeds a film: "Aborted", exit code 134)."""
    QThreadPool.globalInstance().waitForDone(EXIT_WAIT_MS)


atexit.register(_wait_for_jobs)


class JobQueue:
    """Runs ``fn()`` in a worker and hands its result to ``on_done`` on the GUI thread.

    ``order`` says which queued kind runs first; ``on_error(exc)`` gets a job's exception;
    ``on_idle()`` is called when nothing runs or waits any more; ``on_start(kind)`` when a job starts.
    Jobs of a ``deferred`` kind, when only they wait, start on the next turn of the event loop, after Qt
    has painted what the job before them showed (the Segment dock's SSIM maps wait for its mask)."""

    def __init__(self, order: tuple[str, ...], on_error: Callable[[BaseException], None],
                 on_idle: Optional[Callable[[], None]] = None, on_start: Optional[Callable[[str], None]] = None,
                 deferred: tuple[str, ...] = ()) -> None:
        self.order, self.deferred = order, deferred
        self.on_error, self.on_idle, self.on_start = on_error, on_idle, on_start
        self._queue: dict[str, tuple[Callable[[], Any], Callable[[Any], None]]] = {}
        self._worker: Any = None
        self._running: Optional[str] = None  # the kind of the job running now
        self.closed = False

    @property
    def busy(self) -> bool:
        """True while a job runs or waits."""
        return self._worker is not None or bool(self._queue)

    @property
    def running(self) -> Optional[str]:
        """The kind of the job running now (during its ``on_error`` too), or None."""
        return self._running

    def waiting(self, kind: str) -> bool:
        """True while a job of ``kind`` is queued (not yet running)."""
        return kind in self._queue

    def busy_besides(self, *kinds: str) -> bool:
        """True while a job of another kind than ``kinds`` runs or waits."""
        running = self._worker is not None and self._running not in kinds
        return running or any(kind not in kinds for kind in self._queue)

    def submit(self, kind: str, fn: Callable[[], Any], on_done: Callable[[Any], None]) -> None:
        """Queue ``fn`` as the job of ``kind`` (replacing a queued one) and start it when the worker is free."""
        if self.closed:
            return
        self._queue[kind] = (fn, on_done)
        self._pump()

    def drop(self, *kinds: str) -> None:
        """Forget queued jobs of these kinds (a running one still finishes)."""
        for kind in kinds:
            self._queue.pop(kind, None)

    def close(self) -> None:
        """Run nothing more; results still on their way are dropped."""
        self.closed = True
        self._queue.clear()

    def _pump(self, now: bool = False) -> None:
        if self._worker is not None or self.closed:
            return
        if not self._queue:
            if self.on_idle is not None:
                self.on_idle()
            return
        if not now and set(self._queue) <= set(self.deferred):
            QTimer.singleShot(0, lambda: self._pump(now=True))
            return
        kind = next(k for k in (*self.order, *self._queue) if k in self._queue)
        fn, on_done = self._queue.pop(kind)
        worker = create_worker(fn, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda result: None if self.closed else on_done(result))
        worker.errored.connect(lambda exc: None if self.closed else self.on_error(exc))
        worker.finished.connect(self._finished)
        self._worker, self._running = worker, kind
        if self.on_start is not None:
            self.on_start(kind)
        worker.start()

    def _finished(self) -> None:
        self._worker = self._running = None
        self._pump()
