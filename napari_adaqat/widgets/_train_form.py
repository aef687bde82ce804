"""The Train dock's fields (magicgui widgets); their tooltips are the help of the TrainConfig fields (as in
``adaqat train --help``). Widgets only: :mod:`napari_adaqat.widgets.train` wires them."""
from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, ComboBox, FileEdit, Label, LineEdit, ProgressBar, PushButton, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QWidget

from napari_adaqat.model.build import PRESETS
from napari_adaqat.train.config import field_choices, field_help, preset_names
from napari_adaqat.widgets._continue import Setup

CKPT_FILTER = "Checkpoints (*.pth *.pt *.safetensors)"
STAGES = [("1 → 2 → model files (the chain)", "all"), ("1 · AdaLoRA fine-tuning", 1), ("2 · INT8 QAT", 2)]


def make_fields(setup: Setup) -> dict[str, Any]:
    """The dock's widgets by attribute name, the form set to ``setup``."""
    f: dict[str, Any] = {
        "stage": ComboBox(label="stage", value="all", choices=STAGES, tooltip=field_help("stage")),
        "why": Label(label="setup", value=setup.why),
        "switch_button": PushButton(text=""),
        "eta": Label(label="ETA", value=""),
        "data": FileEdit(label="data folder", mode="d", tooltip=field_help("data")),
        "data_check": Label(label="data check", value="Choose a data folder: its pairs are checked first."),
        "masks_as_given": CheckBox(text="masks are right as given (train even if they look inverted)", value=False,
                                   visible=False, tooltip=field_help("masks_as_given")),
        "out": FileEdit(label="run folder", mode="d", tooltip=field_help("out")),
        "checkpoint": FileEdit(label="start checkpoint", mode="r", filter=CKPT_FILTER, value=setup.checkpoint,
                               tooltip=f"{field_help('checkpoint')}; empty = none"),
        "from_run": FileEdit(label="from run", mode="d", tooltip=field_help("from_run")),
        "model_type": ComboBox(label="model type", choices=list(PRESETS), value=setup.model_type,
                               tooltip=field_help("model_type")),
        "preset": ComboBox(label="preset", choices=preset_names(), value=setup.preset,
                           tooltip=f"{field_help('preset')}. {field_help('qat.trainable')}"),
        "mode": ComboBox(label="mode", choices=list(field_choices("mode")), value="adalora", tooltip=field_help("mode")),
        "epochs": SpinBox(label="epochs (0 = preset)", min=0, max=10_000, value=0, tooltip=field_help("epochs")),
        "qat_epochs": SpinBox(label="QAT epochs (0 = preset)", min=0, max=10_000, value=0,
                              tooltip="Stage 2 epochs of the chain and of Continue (0: the preset's)"),
        "batch_size": SpinBox(label="batch size (0 = preset)", min=0, max=4096, value=0,
                              tooltip=field_help("batch_size")),
        "max_steps": SpinBox(label="steps per epoch (0 = all)", min=0, max=1_000_000, value=0,
                             tooltip=field_help("max_steps_per_epoch")),
        "device": ComboBox(label="device", choices=list(field_choices("device")), value="auto",
                           tooltip=field_help("device")),
        "profile": ComboBox(label="INT8 profile", choices=["deploy", "paper"], value="deploy",
                            tooltip="deploy: INT8 + FP16 (smallest file); paper: INT8 + FP32"),
        "resume": CheckBox(text="Resume (continue the run in 'run folder')", value=False),
        "start_button": PushButton(text="Start"),
        "stop_button": PushButton(text="Stop", enabled=False),
        "progress": ProgressBar(label="progress", min=0, max=1, value=0),
        "plot_info": Label(label="learning", value="loss per step · validation Dice per epoch"),
        "status": Label(label="status", value="Choose a data folder and a run folder, then Start."),
        "continue_button": PushButton(text="Continue a Stage-1 run: Stage 2 + export", enabled=False),
        "models_label": Label(label="models", value="(when the chain or Continue ends)"),
        "use_button": PushButton(text="Use in Segment dock", enabled=False),
        "annotate_button": PushButton(text="Use in Annotate dock", enabled=False),
        "batch_button": PushButton(text="Use in Batch dock", enabled=False,
                                   tooltip="segment whole folders with the new model"),
        "command": LineEdit(label="command", tooltip="the exact command the dock runs: copy it to train headless"),
    }
    f["command"].native.setReadOnly(True)
    return f


def scrolling(widget: QWidget) -> QScrollArea:
    """``widget`` (a tab) in a scroll area as wide as it: the dock need not be as tall as the whole form (with the
    Annotate and Segment docks beside it, a 1080-px screen is too short for it: napari's window grew past it)."""
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # (it is as wide as the form)
    area.setWidget(widget)
    area.setMinimumWidth(widget.minimumSizeHint().width() + area.verticalScrollBar().sizeHint().width())
    return area
