"""A training run outlives its Train dock's panel: closing the panel (its ×, not napari) while ``adaqat train``
runs leaves the subprocess running and says so; the next Train dock opened in the same viewer follows that run
again (its fields, the plot, the progress bar, Stop).  A run that ends while no dock shows it says so too.
Closing the viewer stops a left run as it stops a shown one (SIGTERM: the last finished epoch stays resumable).

:mod:`napari_adaqat.widgets.train` calls :func:`watch_panel_close` (→ :func:`leave_dock`), :func:`take` and
:func:`follow`; they work on the dock's own state (its process, timer and fields).  The records the run has
shown are not kept: the next dock reads them again from the run's logs (:meth:`CommandProcess.taken`).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from napari.utils.notifications import show_info
from qtpy.QtCore import QCoreApplication, QEvent, QObject, QTimer
from qtpy.QtWidgets import QWidget

from napari_adaqat.widgets._train_process import ChainProcess, CommandProcess, TrainProcess

# the Train dock's fields a left run brings back (in this order: stage first, it shows and hides the others)
FORM = ("stage", "data", "out", "checkpoint", "from_run", "model_type", "preset", "mode", "epochs", "qat_epochs",
        "batch_size", "max_steps", "device", "profile", "resume", "masks_as_given")
WATCH_MS = 1000


@dataclass
class LiveRun:
    """A run whose dock panel was closed: the process, the fields it started from, its command."""

    process: CommandProcess
    form: dict[str, Any]
    command: str = ""
    timer: Optional[QTimer] = None  # watches the run while no dock follows it
    window: Callable[[], Any] = lambda: None  # (weakly) the viewer's window it was left in
    ended_said: bool = False


_LEFT: dict[int, LiveRun] = {}  # id(viewer) → the run its closed Train dock left


def _key(viewer: Any) -> int:
    return id(getattr(viewer, "__wrapped__", viewer))  # napari may hand each dock its own proxy of the viewer


def _window(viewer: Any) -> Any:
    """napari's Window of ``viewer`` (it drops its ``_qt_window`` when the viewer closes), or None."""
    return getattr(getattr(viewer, "__wrapped__", viewer), "window", None)


def _closed(window_ref: Callable[[], Any]) -> bool:
    window = window_ref()
    return window is None or getattr(window, "_qt_window", None) is None


def run_folder(process: CommandProcess) -> str:
    """The run folder a training process writes to."""
    if isinstance(process, ChainProcess):
        return str(process.chain.out)
    return str(process.config.out) if isinstance(process, TrainProcess) else ""


class _PanelWatch(QObject):
    """Calls back when the watched widget loses its parent: napari's ``remove_dock_widget`` (the panel's ×)."""

    def __init__(self, widget: QWidget, callback: Callable[[], None]) -> None:
        super().__init__(widget)
        self._callback = callback
        widget.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.ParentChange and isinstance(obj, QWidget) and obj.parent() is None:
            self._callback()
        return False


def watch_panel_close(widget: QWidget, callback: Callable[[], None]) -> QObject:
    """Call ``callback`` when the dock panel holding ``widget`` is closed."""
    return _PanelWatch(widget, callback)


def on_panel_deleted(holder: dict[str, Any]) -> None:
    """The dock's Qt widgets are deleted (napari closing): stop its shown run (``holder["proc"]``); a data check
    ending later is ignored (``holder["deleted"]``)."""
    holder["deleted"] = True
    if holder["proc"]:
        holder["proc"].stop(grace_s=0.0)


def form_values(dock: Any) -> dict[str, Any]:
    """The dock's field values by name (paths as typed: '' stays '')."""
    values = {}
    for name in FORM:
        widget = getattr(dock, name)
        values[name] = str(widget.line_edit.value or "") if hasattr(widget, "line_edit") else widget.value
    return values


def restore_form(dock: Any, values: dict[str, Any]) -> None:
    """Set the dock's fields to ``values`` (from :func:`form_values`)."""
    for name, value in values.items():
        widget = getattr(dock, name)
        if hasattr(widget, "line_edit"):
            widget.line_edit.value = value  # (FileEdit.value would turn '' into '.')
        else:
            widget.value = value
    dock.masks_as_given.visible = bool(values.get("masks_as_given"))


def leave(viewer: Any, run: LiveRun) -> None:
    """Keep ``run`` for the next Train dock of ``viewer``, say so, and watch it until then."""
    key = _key(viewer)
    _LEFT[key] = run
    folder, label = run_folder(run.process), run.process.label
    show_info(f"Training goes on in the background ({label}, pid {run.process.pid}, run folder {folder}): only its "
              "panel was closed. Open Plugins → AdaLoRA-QAT lung segmentation → Train (AdaLoRA-QAT) again to "
              "follow or stop it.")
    window = _window(viewer)
    run.window = weakref.ref(window) if window is not None else (lambda: None)
    run.timer = QTimer()
    run.timer.setInterval(WATCH_MS)
    run.timer.timeout.connect(lambda: _watch(key, run))
    run.timer.start()
    app = QCoreApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(lambda: stop_left(key))


def _watch(key: int, run: LiveRun) -> None:
    """While no dock follows ``run``: stop it (and forget it) when the viewer closes, let a pending Stop
    escalate, and say when the run ends."""
    if _LEFT.get(key) is not run or _closed(run.window):  # a dock follows it again, or the viewer closed
        if run.timer is not None:
            run.timer.stop()
            run.timer = None
        if _LEFT.get(key) is run:
            stop_left(key)
        return
    CommandProcess.poll(run.process)  # (the base poll: escalation only; the progress records wait for a dock)
    if not run.process.running() and not run.ended_said:
        run.ended_said = True
        code = run.process.returncode()
        outcome = "finished" if code == 0 else f"ended (exit {code})"
        show_info(f"{run.process.label[:1].upper()}{run.process.label[1:]} {outcome} while the Train panel was closed "
                  f"(run folder {Path(run_folder(run.process)).name}). Open Plugins → AdaLoRA-QAT lung "
                  "segmentation → Train (AdaLoRA-QAT) to see it.")


def take(viewer: Any) -> Optional[LiveRun]:
    """The run a closed Train dock of ``viewer`` left (now the caller's to follow), or None."""
    run = _LEFT.pop(_key(viewer), None) if viewer is not None else None
    if run is not None and run.timer is not None:
        run.timer.stop()
        run.timer = None
    if run is not None and run.window() is not _window(viewer):  # a closed viewer's whose id was reused
        run.process.stop(grace_s=0.0)
        return None
    return run


def stop_left(key: int) -> None:
    """Stop the run left in viewer ``key`` (SIGTERM; the last finished epoch stays resumable)."""
    run = _LEFT.pop(key, None)
    if run is not None:
        if run.timer is not None:
            run.timer.stop()
            run.timer = None
        run.process.stop(grace_s=0.0)


def leave_dock(dock: Any) -> None:
    """``dock``'s panel was closed while napari goes on: its run goes on too, unseen, until a dock follows it."""
    if dock.process is not None and dock.viewer is not None:
        dock._timer.stop()
        leave(dock.viewer, LiveRun(dock.process, form_values(dock), dock.command.value))
        dock.process, dock._holder["proc"] = None, None


def follow(dock: Any, run: LiveRun) -> None:
    """Let ``dock`` follow ``run``, left by a closed Train panel of its viewer: fields, curves, progress, Stop."""
    restore_form(dock, run.form)
    dock.process = dock._holder["proc"] = run.process
    dock.progress.native.setFormat("%v / %m")  # (a new panel says "no run yet")
    if isinstance(run.process, TrainProcess):  # as the dock's start did (a resumed run's earlier curves)
        cfg = run.process.config
        dock._begin_stage(Path(cfg.out), cfg.stage, cfg.epochs)
    dock.command.value = run.command
    shown = run.process.taken()  # the records shown so far, from the logs (a point taken twice replaces itself)
    dock._take(shown)
    if not shown:
        dock.status.value = f"Following {run.process.label} again (pid {run.process.pid})…"
    dock.tabs.setCurrentIndex(1)
    dock._update_buttons()
    dock._timer.start()
