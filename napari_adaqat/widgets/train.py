"""The "Train (AdaLoRA-QAT)" dock: checks the data, runs ``adaqat train`` as a subprocess, plots the
learning live, and chains Stage 2 and the export to a model that the Segment dock can use at once.

Training never runs in napari's process: the dock starts ``python -m napari_adaqat train …`` and a
QTimer reads the new lines of ``RUN/progress.jsonl`` a few times a second, so the viewer stays
responsive. Stop sends SIGTERM (checkpoints are written atomically); Resume continues. The data
check runs in a worker thread. The exact command is shown so it can be copied and run headless.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import napari
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, ProgressBar, PushButton, SpinBox
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QTabWidget

from napari_adaqat.widgets._compat import guard_triton_import

guard_triton_import()  # before torch/torchvision load: see _compat.py

from napari_adaqat.model.build import PRESETS  # noqa: E402
from napari_adaqat.train.config import field_choices, field_help, preset_names  # noqa: E402
from napari_adaqat.train.paths import run_paths  # noqa: E402
from napari_adaqat.train.progress import read_progress  # noqa: E402
from napari_adaqat.widgets._continue import ContinuePlan, continue_problem, plan_continue  # noqa: E402
from napari_adaqat.widgets._data_check import DataReport, check_data  # noqa: E402
from napari_adaqat.widgets._train_plot import TrainPlot, info_text  # noqa: E402
from napari_adaqat.widgets._train_process import CommandProcess, TrainProcess, TrainRequest, status_text  # noqa: E402

CKPT_FILTER = "Checkpoints (*.pth *.pt *.safetensors)"
POLL_MS = 300
PLUGIN, SEGMENT_DOCK = "napari-adaqat", "Segment lungs (AdaLoRA-QAT)"  # as in napari.yaml


def _text(edit: FileEdit) -> str:
    """The typed path, '' when empty (``FileEdit.value`` would turn '' into '.')."""
    return str(edit.line_edit.value or "").strip()


def _row(*widgets: Any, labels: bool = False) -> Container:
    row = Container(layout="horizontal", labels=labels, widgets=list(widgets))
    row.margins = (0, 0, 0, 0)
    return row


class TrainWidget(Container):
    """Dock widget: data check, a form for ``adaqat train``, Start/Stop, live plot, Stage 2 + export."""

    # napari passes its viewer only to a parameter annotated exactly ``napari.viewer.Viewer`` (no Optional)
    def __init__(self, viewer: napari.viewer.Viewer = None,  # type: ignore[assignment]
                 *, poll_ms: int = POLL_MS) -> None:
        super().__init__(labels=False)
        self.viewer = viewer
        self.process: Optional[CommandProcess] = None
        self.last_error: Optional[str] = None
        self.last_epoch: Optional[dict] = None
        self.data_report: Optional[DataReport] = None
        self.plan: Optional[ContinuePlan] = None  # the Stage 2 + export chain, while it runs or after it
        self.exported: Optional[tuple[Path, Path]] = None  # (INT8 model, FP32 baseline)
        self._steps: list[tuple[str, Any, Optional[TrainRequest]]] = []  # chain steps to start: (label, make, req)
        self._check_worker: Any = None
        self._holder: dict[str, Any] = {"proc": None}  # reached from `destroyed` after the wrapper is gone

        # tooltips: the help text of the TrainConfig fields (as in 'adaqat train --help')
        self.stage = ComboBox(label="stage", value=1, choices=[("1 · AdaLoRA fine-tuning", 1), ("2 · INT8 QAT", 2)],
                              tooltip=field_help("stage"))
        self.data = FileEdit(label="data folder", mode="d", tooltip=field_help("data"))
        self.data_check = Label(label="data check", value="Choose a data folder: its pairs are checked first.")
        self.out = FileEdit(label="run folder", mode="d", tooltip=field_help("out"))
        self.checkpoint = FileEdit(label="start checkpoint", mode="r", filter=CKPT_FILTER,
                                   tooltip=f"optional: {field_help('checkpoint')}")
        self.from_run = FileEdit(label="from run", mode="d", tooltip=field_help("from_run"))
        self.model_type = ComboBox(label="model type", choices=list(PRESETS), value="vit_b",
                                   tooltip=field_help("model_type"))
        self.preset = ComboBox(label="preset", choices=preset_names(), value="paper",
                               tooltip=f"{field_help('preset')}. {field_help('qat.trainable')}")
        self.mode = ComboBox(label="mode", choices=list(field_choices("mode")), value="adalora",
                             tooltip=field_help("mode"))
        self.epochs = SpinBox(label="epochs (0 = preset)", min=0, max=10_000, value=0, tooltip=field_help("epochs"))
        self.batch_size = SpinBox(label="batch size (0 = preset)", min=0, max=4096, value=0,
                                  tooltip=field_help("batch_size"))
        self.max_steps = SpinBox(label="steps per epoch (0 = all)", min=0, max=1_000_000, value=0,
                                 tooltip=field_help("max_steps_per_epoch"))
        self.device = ComboBox(label="device", choices=list(field_choices("device")), value="auto",
                               tooltip=field_help("device"))
        self.resume = CheckBox(text="Resume (continue RUN/checkpoints/last.safetensors)", value=False)
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.progress = ProgressBar(label="epochs", min=0, max=1, value=0)
        self.plot_info = Label(label="learning", value="loss per step · validation Dice per epoch")
        self.plot = TrainPlot()
        plot_box = Container(labels=False)
        plot_box.margins = (0, 0, 0, 0)
        plot_box.native.layout().addWidget(self.plot)
        self.status = Label(label="status", value="Choose a data folder and a run folder, then Start.")
        self.qat_epochs = SpinBox(label="QAT epochs (0 = preset)", min=0, max=10_000, value=0,
                                  tooltip="Stage 2 epochs of the chain (the preset's default: 10)")
        self.profile = ComboBox(label="INT8 profile", choices=["deploy", "paper"], value="deploy",
                                tooltip="deploy: INT8 + FP16 (smallest file); paper: INT8 + FP32")
        self.continue_button = PushButton(text="Continue: Stage 2 + export", enabled=False)
        self.models_label = Label(label="models", value="(after Stage 2 + export)")
        self.use_button = PushButton(text="Use in Segment dock", enabled=False)
        self.command = LineEdit(label="command", tooltip="the exact command the dock runs: copy it to train headless")
        self.command.native.setReadOnly(True)
        self._inputs = [self.stage, self.data, self.out, self.checkpoint, self.from_run, self.model_type, self.preset,
                        self.mode, self.epochs, self.batch_size, self.max_steps, self.device, self.resume]
        setup = Container(labels=True, widgets=[self.stage, self.data, self.data_check, *self._inputs[2:]])
        qat_row = _row(self.qat_epochs, self.profile, labels=True)
        learning = Container(labels=True, widgets=[self.plot_info, plot_box, qat_row,
                                                   self.continue_button, self.models_label, self.use_button])
        self.tabs = QTabWidget()
        self.tabs.addTab(setup.native, "Setup")
        self.tabs.addTab(learning.native, "Learning → model")
        tabs_box = Container(labels=False)
        tabs_box.margins = (0, 0, 0, 0)
        tabs_box.native.layout().addWidget(self.tabs)
        below = Container(labels=True, widgets=[self.progress, self.status, self.command])
        below.margins = (0, 0, 0, 0)
        self.extend([tabs_box, _row(self.start_button, self.stop_button), below])
        self.progress.native.setFormat("%v / %m")
        for label in (self.status, self.data_check, self.plot_info, self.models_label):
            label.native.setWordWrap(True)
            label.native.setMinimumWidth(260)

        self._timer = QTimer(self.native)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._tick)
        self._check_timer = QTimer(self.native)  # debounces typing in the data field
        self._check_timer.setSingleShot(True)
        self._check_timer.setInterval(250)
        self._check_timer.timeout.connect(self.check_data)
        holder = self._holder
        self.native.destroyed.connect(lambda *_: holder["proc"] and holder["proc"].stop(grace_s=0.0))

        for w in self._inputs:
            w.changed.connect(self._on_inputs_changed)
        self.data.changed.connect(lambda *_: self._check_timer.start())
        self.start_button.changed.connect(lambda *_: self.start())
        self.stop_button.changed.connect(lambda *_: self.stop())
        self.continue_button.changed.connect(lambda *_: self.continue_to_model())
        self.use_button.changed.connect(lambda *_: self.use_in_segment_dock())
        self._on_inputs_changed()

    # ------------------------------------------------------------------ form
    def request(self) -> TrainRequest:
        """The training run the fields describe."""
        stage = int(self.stage.value)
        return TrainRequest(stage=stage, data=_text(self.data), out=_text(self.out), checkpoint=_text(self.checkpoint),
                            from_run=_text(self.from_run) if stage == 2 else "", model_type=self.model_type.value,
                            preset=self.preset.value, mode=self.mode.value, epochs=int(self.epochs.value),
                            batch_size=int(self.batch_size.value), device=self.device.value,
                            resume=bool(self.resume.value), max_steps_per_epoch=int(self.max_steps.value))

    def _on_inputs_changed(self, *_: Any) -> None:
        stage1 = int(self.stage.value) == 1
        self.from_run.visible = not stage1
        self.model_type.visible = stage1
        self.mode.visible = stage1
        self.command.value = self.request().command_line()
        self._update_buttons()

    def _update_buttons(self) -> None:
        running = self.busy
        for w in self._inputs:
            w.enabled = not running
        self.start_button.enabled = not running
        self.stop_button.enabled = running and not self.process.stopping
        problem = continue_problem(_text(self.out)) if int(self.stage.value) == 1 else "Stage 1 only"
        self.continue_button.enabled = not running and problem is None
        self.continue_button.tooltip = problem or "Stage 2 (QAT) from this run, then the INT8 and FP32 model files"
        self.use_button.enabled = not running and self.exported is not None

    # ------------------------------------------------------------ data check
    def check_data(self) -> None:
        """Check the data folder's pairs and split in a worker thread; the result shows in 'data check'."""
        folder = _text(self.data)
        if not folder:
            return
        self.data_check.value = f"Checking {Path(folder).name}…"

        def done(report: DataReport) -> None:
            self._check_worker = None
            if folder == _text(self.data):  # else the field changed meanwhile
                self.data_report = report
                self.data_check.value = report.text()

        worker = create_worker(check_data, folder, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(done)
        worker.errored.connect(self._on_check_error)
        self._check_worker = worker
        worker.start()

    def _on_check_error(self, exc: BaseException) -> None:
        self._check_worker = None
        self.data_check.value = f"✗ {exc}"

    @property
    def checking(self) -> bool:
        """True while the data check runs (or waits for typing to end)."""
        return self._check_worker is not None or self._check_timer.isActive()

    # --------------------------------------------------------------- actions
    @property
    def busy(self) -> bool:
        """True while a training or export subprocess runs."""
        return self.process is not None

    def start(self) -> bool:
        """Check the form and start ``adaqat train``; False (and a one-line status) when it cannot."""
        if self.busy:
            return False
        req = self.request()
        self.command.value = req.command_line()
        report = self.data_report
        problem = req.problem()
        if problem is None and report is not None and str(report.folder) == req.data and not report.usable:
            problem = f"No usable image/mask pairs in {req.data}: {report.error or report.bad[0]}"
        if problem:
            self.last_error = problem
            self.status.value = problem
            return False
        self._steps, self.plan = [], None
        return self._launch(lambda: TrainProcess(req), f"stage {req.stage} training", req)

    def _launch(self, make: Any, label: str, req: Optional[TrainRequest] = None) -> bool:
        self.last_error = None
        if req is not None:
            self.last_epoch = None
            self._init_progress(req)
        else:
            self.progress.max, self.progress.value = 0, 0  # busy bar while exporting
        try:
            self.process = make()
        except OSError as exc:
            self._fail(f"could not start {label}: {exc}")
            return False
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
        """From the finished Stage-1 run in 'run folder': Stage 2, then the INT8 and FP32 exports."""
        run = _text(self.out)
        problem = None if not self.busy else "busy"
        problem = problem or continue_problem(run)
        if problem:
            self.status.value = problem
            return False
        base = TrainRequest(data=_text(self.data), preset=self.preset.value, batch_size=int(self.batch_size.value),
                            device=self.device.value, max_steps_per_epoch=int(self.max_steps.value))
        plan = plan_continue(run, base, epochs=int(self.qat_epochs.value), profile=self.profile.value)
        if plan.stage2 is not None and (why := plan.stage2.problem()):
            self.status.value = why
            return False
        self.plan, self.exported = plan, None
        steps = [(label, (lambda argv=argv, label=label: CommandProcess(argv, label)), None)
                 for label, argv in plan.exports]
        if plan.stage2 is not None:
            req = plan.stage2
            self.command.value = req.command_line()
            steps.insert(0, ("stage 2 training", (lambda: TrainProcess(req)), req))
        self._steps = steps
        return self._next_step()

    def _next_step(self) -> bool:
        label, make, req = self._steps.pop(0)
        return self._launch(make, label, req)

    def use_in_segment_dock(self) -> Any:
        """Open (or raise) the Segment dock and give it the exported INT8 model and FP32 baseline."""
        if self.exported is None or self.viewer is None:
            self.status.value = "No exported model yet (Continue: Stage 2 + export), or no viewer."
            return None
        dock, segment = self.viewer.window.add_plugin_dock_widget(PLUGIN, SEGMENT_DOCK)
        dock.show()
        dock.raise_()
        segment.use_models(*self.exported)
        self.status.value = f"The Segment dock now uses {self.exported[0].name} (baseline {self.exported[1].name})."
        return segment

    def _init_progress(self, req: TrainRequest) -> None:
        records = read_progress(run_paths(req.out)["progress"]) if req.resume else []
        old = [r for r in records if r.get("kind") == "epoch"]
        total = req.epochs or (old[-1].get("epochs") if old else 0) or 1
        self.progress.max = max(int(total), 1)
        self.progress.value = min(int(old[-1]["epoch"]) if old else 0, self.progress.max)
        if self.plan is not None and req.stage == 2:  # the chain: Stage 2 continues the Stage-1 curves
            self.plot.continue_from(read_progress(run_paths(self.plan.stage1)["progress"]), stage=2)
        else:
            self.plot.clear(req.stage)
        self.plot.add(records)  # a resumed run continues its curves
        self.plot.refresh()
        self.last_epoch = old[-1] if old else None
        self.plot_info.value = f"Stage {req.stage}: loss per step · validation Dice per epoch"

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
        self._show_eta()

    def _show_eta(self) -> None:
        if self.last_epoch is not None:
            self.plot_info.value = info_text(self.last_epoch, self.plot.stage, self.busy)

    def _on_record(self, rec: dict) -> None:
        kind = rec.get("kind")
        if kind == "start" and rec.get("epochs"):
            self.progress.max = max(int(rec["epochs"]), 1)
        elif kind == "epoch":
            self.last_epoch = rec
            self.progress.max = max(int(rec.get("epochs") or self.progress.max), 1)
            self.progress.value = min(int(rec.get("epoch", 0)), self.progress.max)
        elif kind in ("step", "early_stop", "done") and self.last_epoch is not None:
            self.status.value = f"{status_text(rec)}  |  {status_text(self.last_epoch)}"
            return
        self.status.value = status_text(rec)

    def _finish(self, proc: CommandProcess) -> None:
        code = proc.returncode()
        self.process, self._holder["proc"] = None, None
        in_chain = self.plan is not None
        if code == 0 and in_chain and self._steps:
            proc.close()
            self._next_step()
            return
        last = self.last_epoch
        summary = status_text(last) if last else "no epoch finished"
        if code == 0 and in_chain:
            self._chain_done()
        elif code == 0:
            best = run_paths(proc.request.out)["best"]
            self.status.value = f"Done · {summary} · model: {best}"
            self.progress.value = self.progress.max
            show_info(f"AdaLoRA-QAT training finished: {best}")
        elif proc.stopping:
            self._steps = []
            if in_chain:
                self.status.value = f"Stopped during {proc.label}. Continue again to pick up from there."
            else:
                can_resume = run_paths(proc.request.out)["last"].is_file()
                self.resume.value = can_resume
                hint = ("Start again (Resume ticked) to continue." if can_resume
                        else "No epoch finished; nothing to resume.")
                self.status.value = f"Stopped · {summary}. {hint}"
        else:
            self._steps = []
            self._fail(proc.last_error_line() or f"{proc.label} exited with code {code}", code)
        proc.close()
        self._update_buttons()
        self._show_eta()

    def _chain_done(self) -> None:
        plan = self.plan
        self.exported = (plan.int8, plan.fp32)
        self.progress.max, self.progress.value = 1, 1
        self.models_label.value = plan.files_text()
        self.models_label.tooltip = f"{plan.int8}\n{plan.fp32}"
        self.status.value = plan.done_text()
        show_info(f"AdaLoRA-QAT model exported: {plan.int8}")

    def _fail(self, message: str, code: Optional[int] = None) -> None:
        self.last_error = message
        self.status.value = f"Failed{f' (exit {code})' if code is not None else ''}: {message}"
        show_error(f"AdaLoRA-QAT training: {message}")
