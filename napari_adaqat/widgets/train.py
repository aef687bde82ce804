"""The "Train (AdaLoRA-QAT)" dock: runs ``adaqat train`` as a subprocess and follows its progress.

Training never runs in napari's process: the dock starts ``python -m napari_adaqat train …``
and a QTimer reads the new lines of ``RUN/progress.jsonl`` a few times a second, so the viewer
stays responsive. Stop sends SIGTERM (checkpoints are written atomically); Resume continues.
The exact command is shown so it can be copied and run headless.
"""
from __future__ import annotations

from typing import Any, Optional

import napari
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, LineEdit, ProgressBar, PushButton, SpinBox
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer

from napari_adaqat.widgets._compat import guard_triton_import

guard_triton_import()  # before torch/torchvision load: see _compat.py

from napari_adaqat.model.build import PRESETS  # noqa: E402
from napari_adaqat.train.config import field_choices, field_help, preset_names  # noqa: E402
from napari_adaqat.train.paths import run_paths  # noqa: E402
from napari_adaqat.train.progress import read_progress  # noqa: E402
from napari_adaqat.widgets._train_process import TrainProcess, TrainRequest, status_text  # noqa: E402

CKPT_FILTER = "Checkpoints (*.pth *.pt *.safetensors)"
POLL_MS = 300


def _text(edit: FileEdit) -> str:
    """The typed path, '' when empty (``FileEdit.value`` would turn '' into '.')."""
    return str(edit.line_edit.value or "").strip()


class TrainWidget(Container):
    """Dock widget: a form for ``adaqat train``, Start/Stop, a progress bar and a status line."""

    def __init__(self, viewer: Optional[napari.viewer.Viewer] = None, *, poll_ms: int = POLL_MS) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.process: Optional[TrainProcess] = None
        self.last_error: Optional[str] = None
        self.last_epoch: Optional[dict] = None
        self._holder: dict[str, Any] = {"proc": None}  # reached from `destroyed` after the wrapper is gone

        # tooltips: the help text of the TrainConfig fields (as in 'adaqat train --help')
        self.stage = ComboBox(label="stage", value=1, choices=[("1 · AdaLoRA fine-tuning", 1), ("2 · INT8 QAT", 2)],
                              tooltip=field_help("stage"))
        self.data = FileEdit(label="data folder", mode="d", tooltip=field_help("data"))
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
        self.device = ComboBox(label="device", choices=list(field_choices("device")), value="auto",
                               tooltip=field_help("device"))
        self.resume = CheckBox(text="Resume (continue RUN/checkpoints/last.safetensors)", value=False)
        self.start_button = PushButton(text="Start")
        self.stop_button = PushButton(text="Stop", enabled=False)
        buttons = Container(layout="horizontal", labels=False, widgets=[self.start_button, self.stop_button])
        buttons.margins = (0, 0, 0, 0)
        self.progress = ProgressBar(label="epochs", min=0, max=1, value=0)
        self.status = Label(label="status", value="Choose a data folder and a run folder, then Start.")
        self.command = LineEdit(label="command", tooltip="the exact command the dock runs: copy it to train headless")
        self.command.native.setReadOnly(True)
        self._inputs = [self.stage, self.data, self.out, self.checkpoint, self.from_run, self.model_type, self.preset,
                        self.mode, self.epochs, self.batch_size, self.device, self.resume]
        self.extend([*self._inputs, buttons, self.progress, self.status, self.command])
        self.progress.native.setFormat("%v / %m")
        self.status.native.setWordWrap(True)
        self.status.native.setMinimumWidth(260)

        self._timer = QTimer(self.native)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._tick)
        holder = self._holder
        self.native.destroyed.connect(lambda *_: holder["proc"] and holder["proc"].stop(grace_s=0.0))

        for w in self._inputs:
            w.changed.connect(self._on_inputs_changed)
        self.start_button.changed.connect(lambda *_: self.start())
        self.stop_button.changed.connect(lambda *_: self.stop())
        self._on_inputs_changed()

    # ------------------------------------------------------------------ form
    def request(self) -> TrainRequest:
        """The training run the fields describe."""
        stage = int(self.stage.value)
        return TrainRequest(stage=stage, data=_text(self.data), out=_text(self.out), checkpoint=_text(self.checkpoint),
                            from_run=_text(self.from_run) if stage == 2 else "", model_type=self.model_type.value,
                            preset=self.preset.value, mode=self.mode.value, epochs=int(self.epochs.value),
                            batch_size=int(self.batch_size.value), device=self.device.value,
                            resume=bool(self.resume.value))

    def _on_inputs_changed(self, *_: Any) -> None:
        stage1 = int(self.stage.value) == 1
        self.from_run.visible = not stage1
        self.model_type.visible = stage1
        self.mode.visible = stage1
        self.command.value = self.request().command_line()

    def _set_running(self, running: bool) -> None:
        for w in self._inputs:
            w.enabled = not running
        self.start_button.enabled = not running
        self.stop_button.enabled = running

    # --------------------------------------------------------------- actions
    @property
    def busy(self) -> bool:
        """True while a training subprocess runs."""
        return self.process is not None

    def start(self) -> bool:
        """Check the form and start ``adaqat train``; False (and a one-line status) when it cannot."""
        if self.busy:
            return False
        req = self.request()
        self.command.value = req.command_line()
        problem = req.problem()
        if problem:
            self.last_error = problem
            self.status.value = problem
            return False
        self.last_error, self.last_epoch = None, None
        self._init_progress(req)
        try:
            self.process = TrainProcess(req)
        except OSError as exc:
            self._fail(f"could not start training: {exc}")
            return False
        self._holder["proc"] = self.process
        self.status.value = f"Starting stage {req.stage} training (pid {self.process.pid})…"
        self._set_running(True)
        self._timer.start()
        return True

    def stop(self) -> None:
        """Ask the training process to end; the last finished epoch can be resumed."""
        if self.process is not None and self.process.running():
            self.process.stop()
            self.status.value = "Stopping…"
            self.stop_button.enabled = False

    def _init_progress(self, req: TrainRequest) -> None:
        records = read_progress(run_paths(req.out)["progress"]) if req.resume else []
        old = [r for r in records if r.get("kind") == "epoch"]
        total = req.epochs or (old[-1].get("epochs") if old else 0) or 1
        self.progress.max = max(int(total), 1)
        self.progress.value = min(int(old[-1]["epoch"]) if old else 0, self.progress.max)

    # -------------------------------------------------------------- following
    def _tick(self) -> None:
        proc = self.process
        if proc is None:
            self._timer.stop()
            return
        for rec in proc.poll():
            self._on_record(rec)
        if proc.running():
            return
        for rec in proc.poll():  # lines written just before it exited
            self._on_record(rec)
        self._timer.stop()
        self._finish(proc)

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

    def _finish(self, proc: TrainProcess) -> None:
        code, out = proc.returncode(), proc.request.out
        self.process, self._holder["proc"] = None, None
        self._set_running(False)
        last = self.last_epoch
        summary = status_text(last) if last else "no epoch finished"
        if code == 0:
            best = run_paths(out)["best"]
            self.status.value = f"Done · {summary} · model: {best}"
            self.progress.value = self.progress.max
            show_info(f"AdaLoRA-QAT training finished: {best}")
        elif proc.stopping:
            can_resume = run_paths(out)["last"].is_file()
            self.resume.value = can_resume
            hint = "Start again (Resume ticked) to continue." if can_resume else "No epoch finished; nothing to resume."
            self.status.value = f"Stopped · {summary}. {hint}"
        else:
            self._fail(proc.last_error_line() or f"adaqat train exited with code {code}", code)
        proc.close()

    def _fail(self, message: str, code: Optional[int] = None) -> None:
        self.last_error = message
        self.status.value = f"Failed{f' (exit {code})' if code is not None else ''}: {message}"
        show_error(f"AdaLoRA-QAT training: {message}")
