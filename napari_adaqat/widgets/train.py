"""The "Train (AdaLoRA-QAT)" dock: checks the data, builds a :class:`TrainConfig` (or the chain Stage 1 →
Stage 2 → model files, :class:`~napari_adaqat.train.chain.Chain`) from its fields, runs ``adaqat train`` as a
subprocess from it, plots the learning live, and hands the new model files to the Segment and Annotate docks.

Training never runs in napari's process: the dock starts ``python -m napari_adaqat train …`` (arguments derived
from the config by the core, shown to copy) and a QTimer reads the progress logs, so the viewer stays
responsive. Stop sends SIGTERM; Resume continues. Without a GPU and a SAM checkpoint it opens on ``finetune``.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Optional

import napari
from magicgui.widgets import Container
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QTabWidget

from napari_adaqat.widgets._compat import guard_triton_import

guard_triton_import()  # before torch/torchvision load: see _compat.py

from napari_adaqat.train.chain import chain_paths, chain_preflight  # noqa: E402
from napari_adaqat.train.paths import run_paths  # noqa: E402
from napari_adaqat.train.preflight import BUNDLED, preflight  # noqa: E402
from napari_adaqat.train.progress import read_progress  # noqa: E402
from napari_adaqat.util.errors import first_line  # noqa: E402
from napari_adaqat.widgets import _continue as cont  # noqa: E402
from napari_adaqat.widgets._data_check import DataReport  # noqa: E402
from napari_adaqat.widgets._train_data_check import TrainDataCheck  # noqa: E402
from napari_adaqat.widgets._shared import ANNOTATE_DOCK, PLUGIN, SEGMENT_DOCK, tab_with_folder_docks  # noqa: E402
from napari_adaqat.widgets import _train_live as live  # noqa: E402
from napari_adaqat.widgets import _train_outcome as outcome  # noqa: E402
from napari_adaqat.widgets._train_form import make_fields, scrolling  # noqa: E402
from napari_adaqat.widgets._train_reading import TrainFormReading, typed_path  # noqa: E402
from napari_adaqat.widgets._train_plot import TrainPlot, info_text, info_tip  # noqa: E402
from napari_adaqat.widgets._train_process import (ChainProcess, CommandProcess,  # noqa: E402
                                                  TrainProcess, adaqat_argv, format_duration, status_text)

FINISHED = "A finished model:"  # the status line of a run folder that holds one

POLL_MS = 300


def _container(*widgets: Any, labels: bool = False, layout: str = "vertical") -> Container:
    box = Container(layout=layout, labels=labels, widgets=list(widgets))
    box.margins = (0, 0, 0, 0)
    return box


class TrainWidget(TrainFormReading, TrainDataCheck, Container):
    """Dock widget: data check, the training form, Start/Stop, live plot, model files → Segment/Annotate docks."""

    # napari passes its viewer only to a parameter annotated exactly ``napari.viewer.Viewer`` (no Optional)
    def __init__(self, viewer: napari.viewer.Viewer = None,  # type: ignore[assignment]
                 *, poll_ms: int = POLL_MS, setup: Optional[cont.Setup] = None) -> None:
        super().__init__(labels=False)
        tab_with_folder_docks(self.native)  # beside Segment, one tabbed area
        self.viewer = viewer
        self.process: Optional[CommandProcess] = None
        self.last_error: Optional[str] = None
        self.last_epoch: Optional[dict] = None
        self.data_report: Optional[DataReport] = None
        self.exported: Optional[tuple[Path, Path]] = None  # (INT8 model, FP32 baseline)
        self._found = False  # exported was found in the typed run folder (not made by a run of this dock)
        self._check_worker: Any = None
        self._holder: dict[str, Any] = {"proc": None}  # reached from `destroyed` after the wrapper is gone
        setup = setup or cont.opening_setup()

        for name, widget in make_fields(setup).items():  # stage, data, out, checkpoint, … (see _train_form.py)
            setattr(self, name, widget)
        self.plot = TrainPlot()
        plot_box = _container()
        plot_box.native.layout().addWidget(self.plot)
        self._inputs = [self.stage, self.data, self.out, self.checkpoint, self.from_run, self.model_type, self.preset,
                        self.mode, self.epochs, self.qat_epochs, self.batch_size, self.max_steps, self.device,
                        self.profile, self.resume]
        setup_tab = Container(labels=True, widgets=[self.why, self.switch_button, self.stage, self.data,
                                                    self.data_check, self.masks_as_given, *self._inputs[2:], self.eta])
        self._inputs.append(self.masks_as_given)
        learning = Container(labels=True, widgets=[self.plot_info, plot_box, self.continue_button, self.models_label,
                                                   _container(self.use_button, self.annotate_button, self.batch_button,
                                                              layout="horizontal")])
        self.tabs = QTabWidget()
        self.tabs.addTab(scrolling(setup_tab.native), "Setup")
        self.tabs.addTab(scrolling(learning.native), "Learning → model")
        tabs_box = _container()
        tabs_box.native.layout().addWidget(self.tabs)
        self.extend([tabs_box, _container(self.start_button, self.stop_button, layout="horizontal"),
                     _container(self.progress, self.status, self.command, labels=True)])
        self.native.layout().setStretchFactor(tabs_box.native, 1)  # the form takes the dock's height (ETA in sight)
        self.progress.native.setFormat("no run yet")  # (not "0 / 1" before anything ran; a start sets "%v / %m")
        for label in (self.status, self.data_check, self.plot_info, self.models_label, self.why, self.eta):
            label.native.setWordWrap(True)
            label.native.setMinimumWidth(260)

        self._timer = QTimer(self.native)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._tick)
        self._check_timer = QTimer(self.native)  # debounces typing in the data field
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(250)
        self._check_timer.timeout.connect(self.check_data)
        self.native.destroyed.connect(lambda *_, holder=self._holder: live.on_panel_deleted(holder))
        self._panel_watch = live.watch_panel_close(self.native, lambda: live.leave_dock(self))  # its × (not napari's)

        for w in self._inputs:
            w.changed.connect(self._on_inputs_changed)
        self.data.changed.connect(lambda *_: self._check_timer.start())
        self.masks_as_given.changed.connect(lambda *_: self._check_timer.start())
        self.start_button.changed.connect(lambda *_: self.start())
        self.stop_button.changed.connect(lambda *_: self.stop())
        self.switch_button.changed.connect(lambda *_: self.switch_setup())
        self.continue_button.changed.connect(lambda *_: self.continue_to_model())
        self.use_button.changed.connect(lambda *_: self.use_in_segment_dock())
        self.annotate_button.changed.connect(lambda *_: self.use_in_annotate_dock())
        self.batch_button.changed.connect(lambda *_: self.use_in_batch_dock())
        self._on_inputs_changed()
        if dataset := cont.annotate_dataset(viewer, ANNOTATE_DOCK):  # the films the Annotate dock just accepted
            self.data.value = dataset
        if (left := live.take(viewer)) is not None:  # the run a closed Train panel of this viewer left
            live.follow(self, left)

    def _on_inputs_changed(self, *_: Any) -> None:
        own = self.resumed_stage()
        if own is not None and self.stage.value != own:  # Resume continues the run with its own stage
            self.stage.value = own  # (its changed event comes back here, with the fields of that stage)
            self.status.value = f"Resume: {typed_path(self.out)} is a Stage-{own} run, so stage is set to {own}."
            return
        stage = self.stage.value
        self.from_run.visible = stage == 2
        bundled, ckpt = typed_path(self.checkpoint) == BUNDLED, typed_path(self.checkpoint)
        self.mode.visible = self.checkpoint.visible = stage != 2
        self.model_type.visible = stage != 2 and not (bundled or ckpt.endswith(".safetensors"))  # the file's own
        self.qat_epochs.visible = self.profile.visible = stage != 1
        self.switch_button.text = ("Use ViT-B · paper instead" if bundled or self.preset.value == "finetune"
                                   else "Use the bundled model · finetune instead")
        missing = [what for what, edit in (("a data folder", self.data), ("a run folder", self.out))
                   if not typed_path(edit)]
        try:
            if missing:  # (an empty --out '' in the command would teach nothing)
                raise ValueError(f"choose {' and '.join(missing)}")
            self.command.value = shlex.join(adaqat_argv(self._argv()))
        except (ValueError, KeyError) as exc:
            self.command.value = f"(not yet: {first_line(exc)})"
        held = None if self.busy else self._finished_model()
        if not self.busy and self.status.value.startswith(("Choose a ", "Ready: ", FINISHED)):  # (the opening prompt)
            self.status.value = f"Choose {' and '.join(missing)}, then Start." if missing else "Ready: press Start."
            if held is not None and not missing:
                self.status.value = (f"{FINISHED} {held[0].name} and its FP32 baseline are in this run folder: "
                                     "'Use in Segment / Annotate / Batch dock' load them; another run folder trains anew.")
        self._update_eta()
        self._update_buttons()

    def _finished_model(self) -> Optional[tuple[Path, Path]]:
        """The (INT8, FP32) files of the finished chain in 'run folder' (a dock opened after the run), which the
        hand-over buttons then give; otherwise what a run of this dock exported stays, or nothing."""
        out = typed_path(self.out)
        paths = chain_paths(out) if out else None
        if paths is not None and paths["int8"].is_file() and paths["fp32"].is_file():
            pair = (paths["int8"], paths["fp32"])
            self._found = self._found if self.exported == pair else True  # (this dock's own run's: stays its)
            self.exported = pair
        elif self._found:  # the folder whose model was found is no longer typed: its buttons go
            self.exported, self._found = None, False
        return self.exported

    def switch_setup(self) -> None:
        """One click between the CPU fine-tune of the bundled model and ViT-B with the paper's recipe."""
        to_paper = typed_path(self.checkpoint) == BUNDLED or self.preset.value == "finetune"
        setup = cont.paper_setup() if to_paper else cont.opening_setup(gpu=False, look=False)
        self.preset.value, self.model_type.value = setup.preset, setup.model_type
        self.checkpoint.line_edit.value = setup.checkpoint  # (.value would turn "" into ".")
        self.why.value = setup.why
        self._on_inputs_changed()

    def _update_eta(self) -> None:
        report = self.data_report
        n_train = (report.used or report.split).get("train", 0) if report is not None and report.usable else 0
        try:
            seconds = cont.eta_seconds(self.chain(), n_train) if self.stage.value == "all" else None
        except (ValueError, KeyError):
            seconds = None
        unusable = report is not None and str(report.folder) == typed_path(self.data) and not report.usable
        self.eta.value = (f"about {format_duration(seconds)} on an idle 2-core CPU for {n_train} training films"
                          + cont.busy_cpu_note() if seconds else "shown after the first epoch" if n_train
                          else "none: no usable image/mask pairs to train on" if unusable else "after the data check")

    def _update_buttons(self) -> None:
        running = self.busy
        for w in self._inputs:
            w.enabled = not running
        self.start_button.enabled = self.switch_button.enabled = not running
        self.stop_button.enabled = running and not self.process.stopping
        problem = cont.continue_problem(typed_path(self.out)) if self.stage.value == 1 else "Stage 1 only"
        self.continue_button.enabled = not running and problem is None
        self.continue_button.tooltip = problem or "Stage 2 (QAT) from this run, then the INT8 and FP32 model files"
        ready = not running and self.exported is not None
        self.use_button.enabled = self.annotate_button.enabled = self.batch_button.enabled = ready

    # --------------------------------------------------------------- actions
    @property
    def busy(self) -> bool:
        """True while a training subprocess runs."""
        return self.process is not None

    def start(self) -> bool:
        """Check the form (the core's preflight) and start ``adaqat train``; False (and a one-line status)
        when it cannot."""
        if self.busy:
            return False
        resume = bool(self.resume.value)
        try:
            if self.stage.value == "all":
                chain = self.chain()
                chain_preflight(chain, resume)
                make, label = (lambda: ChainProcess(chain, resume)), "the chain"
            else:
                cfg = self.config()
                preflight(cfg, resume)
                make, label = (lambda: TrainProcess(cfg, resume)), f"stage {cfg.stage} training"
        except (ValueError, FileExistsError, KeyError) as exc:
            return self._refuse(first_line(exc))
        report = self.data_report
        if report is not None and str(report.folder) == typed_path(self.data) and not report.usable:
            return self._refuse(f"{report.folder}: {report.error}" if report.error else  # (e.g. no validation film)
                                f"No usable image/mask pairs in {report.folder}: {report.bad[0]}")
        self.command.value = shlex.join(adaqat_argv(self._argv()))
        return self._launch(make, label)

    def _refuse(self, problem: str) -> bool:
        problem = cont.dock_words(problem)
        self.last_error = problem
        self.status.value = problem
        data = typed_path(self.data)  # a refusal about the data goes once another data folder passes its check
        self._refused_data = data if data and data in problem else None
        return False

    def _launch(self, make: Any, label: str) -> bool:
        self.last_error, self.last_epoch, self.exported = None, None, None
        self.progress.max, self.progress.value = 0, 0  # busy until the first epoch count arrives
        self.progress.native.setFormat("%v / %m")
        try:
            self.process = make()
        except OSError as exc:
            self._fail(f"could not start {label}: {exc}")
            return False
        if isinstance(self.process, TrainProcess):
            self._begin_stage(Path(self.process.config.out), self.process.config.stage, self.process.config.epochs)
        self._holder["proc"] = self.process
        self.tabs.setCurrentIndex(1)  # the learning curves and what comes next
        self.status.value = f"Starting {label} (pid {self.process.pid})…"
        self._update_buttons()
        self._timer.start()
        return True

    def stop(self) -> None:
        """Ask the running process to end; the last finished epoch can be resumed."""
        if self.process is not None and self.process.running():
            self.process.stop()
            self.status.value = "Stopping…"
            self.stop_button.enabled = False

    def continue_to_model(self) -> bool:
        """From the finished Stage-1 run in 'run folder': the chain's Stage 2 and both exports."""
        run = typed_path(self.out)
        if problem := ("busy" if self.busy else cont.continue_problem(run)):
            return self._refuse(problem)
        options = {k: v for k, v in self.options().items() if k in ("data", "device", "batch_size",
                                                                  "max_steps_per_epoch", "masks_as_given") and v}
        chain, resume = cont.continue_chain(run, self._stage2_epochs(options), profile=self.profile.value)
        try:
            chain_preflight(chain, resume)
        except (ValueError, FileExistsError) as exc:
            return self._refuse(first_line(exc))
        self.command.value = shlex.join(adaqat_argv(chain.argv(resume)))
        return self._launch(lambda: ChainProcess(chain, resume), "Stage 2 + export")

    def use_in_segment_dock(self) -> Any:
        """Open (or raise) the Segment dock and give it the exported INT8 model and FP32 baseline."""
        segment, self.status.value = cont.hand_to_segment(self.viewer, self.exported, PLUGIN, SEGMENT_DOCK)
        return segment

    def use_in_annotate_dock(self) -> Any:
        """Give the open Annotate dock the exported pair, so the next films are pre-segmented by it."""
        annotate, self.status.value = cont.hand_to_annotate(self.viewer, self.exported, ANNOTATE_DOCK)
        return annotate

    def use_in_batch_dock(self) -> Any:
        """Open (or raise) the Batch dock and give it the exported pair, for whole folders."""
        batch, self.status.value = cont.hand_to_batch(self.viewer, self.exported, PLUGIN)
        return batch

    def _begin_stage(self, run: Path, stage: int, epochs: int, after: Optional[Path] = None) -> None:
        """Reset the bar and the plot for a stage run in ``run`` (continuing ``after``'s curves, if given)."""
        records = read_progress(run_paths(run)["progress"]) if self.resume.value or after else []
        old = [r for r in records if r.get("kind") == "epoch"]
        self.progress.max = max(int(epochs or 1), 1)
        self.progress.value = min(int(old[-1]["epoch"]) if old else 0, self.progress.max)
        self.progress.native.setFormat(outcome.stage_format(stage))
        if after is not None:
            self.plot.continue_from(read_progress(run_paths(after)["progress"]), stage=stage)
        else:
            self.plot.clear(stage)
        self.plot.add(records)  # a resumed run continues its curves
        self.plot.refresh()
        self.last_epoch = old[-1] if old else None
        self.plot_info.value = f"Stage {stage}: loss per step · validation Dice per epoch"

    # -------------------------------------------------------------- following
    def _tick(self) -> None:
        proc = self.process
        if proc is None:
            self._timer.stop()
            return
        self._take(proc.poll())
        if proc.running():
            return
        self._take(proc.poll())  # lines written just before it exited
        self._timer.stop()
        self._finish(proc)

    def _take(self, records: list[dict]) -> None:
        for rec in records:
            self._on_record(rec)
        if self.plot.add(records):
            self.plot.refresh()
        self._refresh_info()

    def _refresh_info(self) -> None:
        """The line over the plot, for the last epoch (its ETA only while a run goes on)."""
        if self.last_epoch is not None:
            self.plot_info.value = info_text(self.last_epoch, self.plot.stage, self.busy)
            self.plot_info.tooltip = info_tip(self.last_epoch)

    def _on_record(self, rec: dict) -> None:
        kind = rec.get("kind")
        if kind == "chain" and rec.get("status") == "start" and str(rec.get("step")).startswith("stage"):
            chain = self.process.chain
            stage = int(rec["step"][-1])
            cfg = chain.stage1() if stage == 1 else chain.stage2()
            self._begin_stage(Path(rec["path"]), stage, cfg.epochs, after=chain.stage1_dir if stage == 2 else None)
        elif (text := outcome.step_format(rec)) is not None:  # the model files, the vote
            self.progress.native.setFormat(text)
        elif kind == "start" and rec.get("epochs"):
            self.progress.max = max(int(rec["epochs"]), 1)
        elif kind in ("epoch", "vote_epoch"):  # (the vote's epochs move the bar; the plot keeps the stages')
            self.last_epoch = rec if kind == "epoch" else self.last_epoch
            self.progress.max = max(int(rec.get("epochs") or self.progress.max), 1)
            self.progress.value = min(int(rec.get("epoch", 0)), self.progress.max)
        elif kind in ("step", "early_stop", "done") and self.last_epoch is not None:
            self.status.value = f"{status_text(rec)}  |  {status_text(self.last_epoch)}"
            return
        self.status.value = status_text(rec)

    def _finish(self, proc: CommandProcess) -> None:
        code = proc.returncode()
        self.process, self._holder["proc"] = None, None
        vote = getattr(proc, "last_vote", None) if proc.label == "the vote" else None  # (its own epochs)
        summary = status_text(vote or self.last_epoch) if vote or self.last_epoch else (
            "no epoch of this step finished (the steps before it are kept)" if isinstance(proc, ChainProcess)
            else "no epoch finished")
        if code == 0 and isinstance(proc, ChainProcess):
            outcome.chain_done(self, proc.chain)
        elif code == 0:
            best = run_paths(proc.config.out)["best"]
            self.status.value = f"Done · {summary} · model: {best}"
            self.progress.value = self.progress.max
            show_info(f"AdaLoRA-QAT training finished: {best}")
        elif proc.stopping:
            can_resume = isinstance(proc, ChainProcess) or run_paths(proc.config.out)["last"].is_file()
            self.resume.value = can_resume
            hint = ("Start again (Resume ticked) to continue." if can_resume else "No epoch finished; nothing to resume.")
            if isinstance(proc, ChainProcess) and proc.chain.from_run:
                hint = "Continue again to pick up from there."
                self.resume.value = False
            self.status.value = f"Stopped during {proc.label} · {summary}. {hint}"
        else:
            self._fail(proc.last_error_line() or f"{proc.label} exited with code {code}", code)
        proc.close()
        self._refresh_info()  # (no "ETA 0 s" left over the plot of a finished run)
        self._update_buttons()

    def _fail(self, message: str, code: Optional[int] = None) -> None:
        self.last_error = message
        self.status.value = f"Failed{f' (exit {code})' if code is not None else ''}: {message}"
        show_error(f"AdaLoRA-QAT training: {message}")
