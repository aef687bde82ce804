"""The one configuration object that flows from the CLI / dock / YAML to the engine."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"  # training/*.yaml link here


@dataclass
class TrainConfig:
    """Everything a training run needs; saved into every checkpoint."""

    stage: int = 1
    data: str = ""
    out: str = ""
    model_type: str = "vit_b"
    checkpoint: str | None = None          # official SAM .pth, or our checkpoint, to start from
    from_run: str | None = None            # Stage 2: the Stage-1 run folder (uses its best checkpoint)
    image_size: int | None = None          # encoder input size; None = the preset's / checkpoint's
    mode: str = "adalora"                  # adalora | decoder | lora | full
    preset: str = "paper"                  # paper | authors (what differs is listed in training/*.yaml)
    epochs: int = 25
    batch_size: int = 16
    accumulate: int = 1                    # gradient accumulation steps (batch_size is per step)
    lr_adapter: float = 5e-5
    lr_decoder: float = 2e-5
    lr_other: float = 2e-5                 # encoder (full mode) and prompt encoder
    weight_decay: float = 1e-4
    lr_schedule: str = "constant"          # constant | cosine (per epoch, with warmup_epochs of linear warm-up)
    warmup_epochs: int = 0
    patience: int = 8                      # early stopping on validation Dice; 0 = off
    seed: int = 0
    device: str = "auto"
    amp: bool = True                       # bf16 autocast on CUDA
    grad_checkpoint: bool = False
    train_prompt_encoder: bool = False     # the authors' code trains it in Stage 1
    augment: bool = False                  # off by default, as in the paper
    jitter_px: int = 20                    # training box pushed outward by U(0, jitter) px per side
    full_box_prob: float = 0.0             # chance of a whole-image training box (teaches loose boxes)
    # AdaLoRA
    r_init: int = 48
    r_target: int = 32
    alpha: float = 32.0
    init_lambda: float = 0.1
    ema_beta: float = 0.9
    prune_epochs: list[int] = field(default_factory=lambda: [3, 7, 12])
    budget: str = "global"                 # global (paper) | per_block (authors' code)
    ortho_weight: float = 0.003
    lambda_grad_clip: float | None = 0.02
    targets: list[str] = field(default_factory=lambda: ["attn.qkv"])
    # Stage 2
    qat_variant: str = "full"              # full | decoder (D-QAT)
    quantize_extra: bool = False           # also fake-quantize convs/biases (smaller file)
    # housekeeping
    num_workers: int = 0
    max_steps_per_epoch: int | None = None
    log_every: int = 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training options: {unknown}")
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if isinstance(value, str) and types[key] in ("float", "float | None"):
                try:  # YAML 1.1 reads "1e-3" as a string
                    data[key] = float(value)
                except ValueError:
                    raise ValueError(f"option {key} expects a number, got {value!r}") from None
        return cls(**data)


def preset_path(name: str) -> Path:
    """A preset name (``paper``, ``authors``) or a path to a YAML file; unknown names are errors."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESETS_DIR / f"{name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
            raise ValueError(f"unknown preset {name!r}; choose one of {known} or give a .yaml file")
    if not path.is_file():
        raise ValueError(f"{path}: preset file not found")
    return path


def load_preset(name: str, stage: int) -> dict:
    """Options of a YAML preset for ``stage`` (top-level keys plus a ``stageN:`` section)."""
    path = preset_path(name)
    data = yaml.safe_load(path.read_text()) or {}
    stage_part = data.pop(f"stage{stage}", None) or {}
    data = {k: v for k, v in data.items() if not k.startswith("stage")}
    data.update(stage_part)
    return data


def make_config(preset: str | None, stage: int, overrides: dict) -> TrainConfig:
    """Defaults ← YAML preset ← explicit overrides (None values ignored)."""
    values: dict = {"stage": stage}
    if preset:
        from_yaml = load_preset(preset, stage)
        values["preset"] = Path(preset).stem if Path(preset).suffix else preset
        values.update(from_yaml)  # a YAML file may name the Stage-2 preset it follows (paper/authors)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(values)
