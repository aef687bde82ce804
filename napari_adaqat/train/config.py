"""The one configuration object that flows from the CLI / dock / YAML to the engine.

``TrainConfig`` nests its adapter settings (``adalora``: :class:`AdaLoRAConfig`) and its
Stage-2 settings (``qat``: :class:`QATConfig`), as peft nests its configs.  Every field
carries its help text in ``field(metadata={"help": ...})``: ``adaqat train --help`` and the
Train dock's tooltips read it through :func:`field_help`.

Stage-dependent defaults (learning rates, epochs, patience) are ``None`` in the fields and
filled by :func:`stage_defaults` alone, so ``TrainConfig(stage=2)`` has Stage-2 rates.
Old flat keys (``r_init``, ``budget``, ``qat_variant`` …: config.json of older runs, flat
YAML files, ``--set r_init=16``) still load: :data:`FLAT_KEYS` maps them to nested fields.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

# torch-free imports only: ``adaqat train --help`` and the Train dock read the fields without torch or scipy
from napari_adaqat.model.adalora_config import AdaLoRAConfig
from napari_adaqat.model.device import DEVICES
from napari_adaqat.model.modes import STAGE2_TRAINABLE, TRAIN_MODES
from napari_adaqat.model.spec import PRESETS, REFINER_LEVELS
from napari_adaqat.train.config_numbers import check_numbers

if TYPE_CHECKING:
    from napari_adaqat.train.prompts import PromptMix

DEEPEST_CLICK_PROB = 0.5  # of the clicks: the evaluation's rule (the deepest point of the largest error region)
PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"  # training/*.yaml link here

KEEP_CHOICES = ("auto", "best", "last")
MIN_VAL_FOR_BEST = 5  # validation films below which keep=auto keeps the last epoch (train/loop.py)

# adaqat train flag → the TrainConfig option it sets (dotted for the nested adalora/qat sections)
FLAGS = {
    "--data": "data", "--out": "out", "--from": "from_run", "--model-type": "model_type",
    "--checkpoint": "checkpoint", "--mode": "mode", "--image-size": "image_size", "--epochs": "epochs",
    "--batch-size": "batch_size", "--accumulate": "accumulate", "--lr-adapter": "lr_adapter",
    "--lr-decoder": "lr_decoder", "--lr-other": "lr_other", "--budget": "adalora.budget",
    "--qat-variant": "qat.variant", "--patience": "patience", "--keep": "keep", "--augment": "augment", "--seed": "seed",
    "--device": "device", "--grad-checkpoint": "grad_checkpoint", "--max-steps-per-epoch": "max_steps_per_epoch",
    "--masks-as-given": "masks_as_given", "--vote-epochs": "vote_epochs",
}
# Old flat TrainConfig keys → (section, field) of the nested config.
FLAT_KEYS = {
    **{name: ("adalora", name) for name in ("r_init", "r_target", "alpha", "init_lambda", "ema_beta", "prune_epochs",
                                            "budget", "ortho_weight", "lambda_grad_clip", "targets")},
    "qat_variant": ("qat", "variant"),
    "quantize_extra": ("qat", "quantize_extra"),
}


def _opt(default=None, help: str = "", factory=None, **metadata):
    """A dataclass field with its help text (and optional ``choices``) in the metadata."""
    metadata = {"help": help, **metadata}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class QATConfig:
    """Stage 2: INT8 fake quantization and what trains under it."""

    variant: str = _opt("full", "Stage 2: full = Full QAT (every Linear), decoder = D-QAT (mask decoder only)",
                        choices=("full", "decoder"))
    quantize_extra: bool = _opt(False, "Stage 2: also fake-quantize convolutions, biases and position tensors "
                                       "(smaller file, not in the paper)")
    trainable: str | None = _opt(None, "Stage 2: what trains. paper = only Λ; authors = P, Q, mask decoder and "
                                       "prompt encoder (Λ frozen). Default: the preset's name when it is paper or "
                                       "authors, else paper", choices=STAGE2_TRAINABLE)

    def __post_init__(self) -> None:
        _check_choices(self)


@dataclass
class TrainConfig:
    """Everything a training run needs; saved (nested) into RUN/config.json and every checkpoint."""

    stage: int = _opt(1, "1 = AdaLoRA fine-tuning, 2 = INT8 QAT", choices=(1, 2))
    data: str = _opt("", "dataset folder: DIR/images + DIR/masks, or DIR/{train,val,test}/{images,masks}, or a "
                         "public set as it unpacks (its one folder of films and one named as masks: Montgomery's "
                         "CXR_png + ManualMask/{left,right}Mask, Shenzhen's CXR_png + mask, nnU-Net's imagesTr + "
                         "labelsTr; or class folders each holding theirs: COVID/ Normal/)")
    out: str = _opt("", "run folder (checkpoints/, progress.jsonl, split.json, config.json; with --stage all: "
                       "stage1/, stage2/, chain.json, model_int8.safetensors, baseline_fp32.safetensors)")
    model_type: str = _opt("vit_b", "architecture: vit_b, vit_l, vit_h (official SAM), hybrid_tiny (v3; "
                                    "with mask_refiner 16, the default model v3f), hybrid_fine (v3 + a stride-2 "
                                    "fusion level), hybrid_refine (v3 + a full-resolution mask refiner), vit_tiny (v2), "
                                    "hybrid_nano, hybrid_nano_fine, hybrid_nano_refine, vit_nano (tests)",
                           choices=tuple(PRESETS))
    checkpoint: str | None = _opt(None, "start weights: default (the bundled model's FP32 file, with its "
                                         "architecture), an official SAM .pth or one of our checkpoints")
    from_run: str | None = _opt(None, "Stage 2: the Stage-1 run folder to start from (its best checkpoint)")
    image_size: int | None = _opt(None, "encoder input size (position embedding interpolated); "
                                        "default: the architecture's or the checkpoint's")
    mode: str = _opt("adalora", "Stage 1: adalora (the paper), decoder (decoder only), lora (fixed rank), "
                                "full (everything; also from scratch)", choices=TRAIN_MODES)
    preset: str = _opt("paper", "YAML recipe: paper, authors or finetune (the bundled model on a CPU; "
                                "napari_adaqat/presets/*.yaml), or a .yaml path")
    epochs: int | None = _opt(None, "epochs to train (default: 25 in Stage 1, 10 in Stage 2)")
    batch_size: int = _opt(16, "images per optimizer step and process (an epoch's one-film last step borrows one)")
    accumulate: int = _opt(1, "gradient accumulation steps (batch_size is per step)")
    lr_adapter: float | None = _opt(None, "learning rate of the adapters (default: 5e-5 in Stage 1; Stage 2: "
                                          "1e-6 paper, 5e-7 authors)")
    lr_decoder: float | None = _opt(None, "learning rate of the mask decoder (default: 2e-5 in Stage 1; "
                                          "Stage 2: 1e-6 paper, 5e-7 authors)")
    lr_other: float | None = _opt(None, "learning rate of the encoder (full mode) and the prompt encoder "
                                        "(default: 2e-5 in Stage 1; Stage 2: 1e-6 paper, 5e-7 authors)")
    weight_decay: float = _opt(1e-4, "AdamW weight decay")
    lr_schedule: str = _opt("constant", "per-epoch schedule after warmup_epochs of linear warm-up",
                            choices=("constant", "cosine"))
    warmup_epochs: int = _opt(0, "epochs of linear learning-rate warm-up")
    patience: int | None = _opt(None, "early stopping patience on validation Dice, in epochs; 0 = off "
                                      "(default: 8 in Stage 1, 0 in Stage 2)")
    keep: str = _opt("auto", "the epoch a run keeps as its model: best (highest validation Dice), last, or auto: best, "
                             f"but last when the validation set has under {MIN_VAL_FOR_BEST} films (a Dice on so few "
                             "picks an epoch by chance); 'best' in the logs stays the highest Dice, and patience "
                             "still stops a run", choices=KEEP_CHOICES)
    seed: int = _opt(0, "random seed (split, shuffling, jitter, augmentation)")
    vote_epochs: int = _opt(15, "--stage all from a model file with a vote (the bundled model): its last step "
                                "fine-tunes that vote this many epochs on the train films; 0 leaves the vote out")
    masks_as_given: bool = _opt(False, "train on the masks as they are even when every one looks inverted (white "
                                       "along most of the image's edge or around black lung-sized holes), which is "
                                       "otherwise refused; for masks that are right but odd. Masks need lung = 255 "
                                       "on background = 0")
    device: str = _opt("auto", "where to train; auto picks cuda, then mps, then cpu",
                       choices=DEVICES)
    amp: bool = _opt(True, "bf16 autocast on CUDA")
    grad_checkpoint: bool | None = _opt(None, "recompute each encoder block's activations in backward (less memory, "
                                              "~30% more time). Default: on where it pays (encoders of at least "
                                              "4096 tokens x 768 channels, e.g. ViT-B at 1024 px); turn it off with "
                                              "--set grad_checkpoint=false")
    ema_decay: float = _opt(0.0, "exponential moving average of the trained weights, per optimizer step (e.g. 0.99); "
                                 "validation and best.safetensors use the average, training the live weights. 0 = off")
    mask_refiner: int = _opt(0, "Stage 1: give a start model without one a fresh full-resolution mask refiner of "
                                "this many channels (8 in hybrid_refine, 16 in the default model v3f); it starts as the "
                                "identity, so the model first predicts as before. 0 = keep the model as it is")
    mask_refiner_levels: int = _opt(4, "with mask_refiner: U-Net levels of the new refiner's per-image branch (4: "
                                       "widths W-2W-4W-8W, as v3f; 5 adds 16W, the U-Net reference's 16-32-64-128-256 "
                                       "at W = 16)")
    refiner_clicks: bool = _opt(False, "Stage 1: let the model's mask refiner also see the clicks at full resolution "
                                       "(click maps into its mask branch, starting at zero: the model first "
                                       "predicts as before), so a click can move a boundary by a few pixels; the branch "
                                       "trains with the prompt encoder (train_prompt_encoder, at lr_other)")
    refiner_aux_loss: float = _opt(0.0, "with a mask refiner: also apply the loss, with this weight, to the decoder's "
                                        "own logits before the refiner (deep supervision), so the decoder stays a "
                                        "mask on its own and the refiner learns a correction. 0 = off")
    reset_mask_prompt: bool = _opt(False, "Stage 1: start the mask prompt's encoder as 'no mask' (its last convolution "
                                          "zero, its bias the no-mask embedding), for a start model never trained "
                                          "with mask prompts (the bundled v3f): clicks then learn it from there")
    freeze: list = _opt(help="Stage 1: parameter-name prefixes kept frozen whatever the mode (e.g. "
                               "mask_refiner.image_branch: the refiner's per-image U-Net)", factory=list)
    train_prompt_encoder: bool = _opt(False, "Stage 1: also train the prompt encoder (the authors' code does)")
    augment: bool = _opt(False, "random affine + intensity augmentation (off in the paper)")
    augment_preset: str = _opt("basic", "with augment: basic (small affine, gamma/contrast) or clinic (also wider "
                                        "crops/FOV, CLAHE, blur, noise, JPEG, inverted polarity), clinic_wide "
                                        "(clinic with zoom-out to 0.6x) or clinic_zoom (clinic with zoom 0.7-1.35x)",
                               choices=("basic", "clinic", "clinic_wide", "clinic_zoom"))
    jitter_px: int = _opt(20, "training boxes pushed outward by U(0, jitter_px) pixels per side")
    jitter_in_px: int = _opt(0, "training box sides may also move inward, by up to this many pixels")
    full_box_prob: float = _opt(0.0, "chance of a whole-image training box (teaches loose boxes)")
    one_lung_prob: float = _opt(0.0, "chance of a training box around one lung, which then asks for that lung "
                                     "(so a box around one lung gives that lung)")
    partial_box_prob: float = _opt(0.0, "chance of a training box cut into the lungs, asking for the lung inside it")
    empty_box_prob: float = _opt(0.0, "chance of a training box with no lung in it, asking for an empty mask")
    points_only_prob: float = _opt(0.0, "chance of a training sample prompted by a positive point per lung, no box")
    train_clipped: bool = _opt(False, "score training (and validation) predictions clipped to the box plus the "
                                      "inference's clipping margin, as users get them: the model is not asked to "
                                      "erase outside the box what the clipping erases (e.g. the other lung, for a "
                                      "box around one lung)")
    convention_prob: float = _opt(0.0, "chance of a training sample whose mask is in another site's convention "
                                       "(without the lung behind the heart, eroded, dilated or cut above the bases: "
                                       "data/conventions.py), scored after its clicks only, so that clicks that "
                                       "disagree with the model's habit win; needs click_rounds")
    click_rounds: int = _opt(0, "corrective clicks simulated per training sample after its first prompt (each from "
                                "the error of the prediction before it, with that prediction as the mask prompt), "
                                "so the model learns to correct with clicks; validation then scores the box and as many clicks by "
                                "the evaluation's rule (their mean Dice picks the best epoch); 0 = box only")
    click_deepest_prob: float = _opt(DEEPEST_CLICK_PROB, "of the simulated training clicks: the share placed by the evaluation's rule (the "
                                          "deepest point of the largest error region, as users click); the rest are "
                                          "drawn uniformly from the wrong pixels (SAM's rule: boundary slivers too)")
    adalora: AdaLoRAConfig = _opt(help="AdaLoRA adapters (Stage 1; Stage 2 keeps the Stage-1 model's)",
                                  factory=AdaLoRAConfig)
    qat: QATConfig = _opt(help="Stage 2: INT8 quantization-aware training", factory=QATConfig)
    num_workers: int = _opt(0, "DataLoader worker processes")
    max_steps_per_epoch: int | None = _opt(None, "cap the steps of every epoch (smoke tests; 0 = every step)")
    log_every: int = _opt(1, "write a progress.jsonl step record every N steps")

    def prompt_mix(self) -> PromptMix:
        """The training prompts' mix (:class:`~napari_adaqat.train.prompts.PromptMix`)."""
        from napari_adaqat.train.prompts import PromptMix  # numpy/scipy: not needed to read a config

        return PromptMix(self.one_lung_prob, self.partial_box_prob, self.empty_box_prob, self.points_only_prob)

    def __post_init__(self) -> None:
        if isinstance(self.adalora, dict):
            self.adalora = AdaLoRAConfig.from_dict(_coerce(AdaLoRAConfig, self.adalora, "adalora."))
        if isinstance(self.qat, dict):
            self.qat = QATConfig(**_coerce(QATConfig, self.qat, "qat."))
        _check_choices(self)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be 0 (off) or in (0, 1), got {self.ema_decay}")
        if type(self.mask_refiner) is not int or not 0 <= self.mask_refiner <= 64:
            raise ValueError(f"mask_refiner must be a number of channels from 0 (none) to 64, got {self.mask_refiner!r}")
        if type(self.mask_refiner_levels) is not int or self.mask_refiner_levels not in REFINER_LEVELS:
            raise ValueError(f"mask_refiner_levels must be an integer from 2 to 6, got {self.mask_refiner_levels!r}")
        if not 0.0 <= self.convention_prob <= 1.0 or (self.convention_prob and not self.click_rounds):
            raise ValueError(f"convention_prob must be in [0, 1] and needs click_rounds > 0, got {self.convention_prob}")
        if not 0.0 <= self.click_deepest_prob <= 1.0:
            raise ValueError(f"click_deepest_prob must be in [0, 1], got {self.click_deepest_prob}")
        if not self.refiner_aux_loss >= 0.0:
            raise ValueError(f"refiner_aux_loss must be a weight >= 0 (0 = off), got {self.refiner_aux_loss}")
        if type(self.vote_epochs) is not int or self.vote_epochs < 0:
            raise ValueError(f"vote_epochs must be a whole number >= 0 (0 = leave the vote out), got {self.vote_epochs!r}")
        if self.qat.trainable is None:
            self.qat.trainable = self.preset if self.preset in STAGE2_TRAINABLE else "paper"
        for name, value in stage_defaults(self.stage, self.qat.trainable).items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        check_numbers(self)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["adalora"] = self.adalora.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """Nested or old flat keys (see :data:`FLAT_KEYS`); numbers written as strings are read."""
        values = nest(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        for section, kind in (("adalora", AdaLoRAConfig), ("qat", QATConfig)):
            part = values.get(section)
            if isinstance(part, dict):
                names = {f.name for f in dataclasses.fields(kind)}
                unknown += [f"{section}.{k}" for k in sorted(set(part) - names)]
        if unknown:
            raise ValueError(f"unknown training options: {unknown}")
        return cls(**_coerce(cls, values))


def stage_defaults(stage: int, trainable: str = "paper") -> dict:
    """The defaults that depend on the stage (and, in Stage 2, on what trains): the one place."""
    if stage == 1:
        return {"epochs": 25, "patience": 8, "lr_adapter": 5e-5, "lr_decoder": 2e-5, "lr_other": 2e-5}
    lr = 5e-7 if trainable == "authors" else 1e-6  # the paper trains only Λ; the authors' code P, Q, decoders
    return {"epochs": 10, "patience": 0, "lr_adapter": lr, "lr_decoder": lr, "lr_other": lr}


def _check_choices(obj) -> None:
    for f in dataclasses.fields(obj):
        choices, value = f.metadata.get("choices"), getattr(obj, f.name)
        if choices and value is not None and value not in choices:
            raise ValueError(f"{f.name} must be one of {list(choices)}, got {value!r}")


def _coerce(kind, values: dict, prefix: str = "") -> dict:
    """Float fields given as strings (YAML 1.1 reads "1e-3" as one) become numbers; a number field given anything
    else (``--set jitter_px=abc``) is one line naming the option."""
    types = {f.name: f.type for f in dataclasses.fields(kind)}
    values = dict(values)
    for key, value in values.items():
        kind_name = str(types.get(key, "")).replace(" | None", "")
        if kind_name not in ("float", "int") or value is None and str(types.get(key)).endswith("| None"):
            continue
        if kind_name == "float" and isinstance(value, str):
            try:
                values[key] = value = float(value)
            except ValueError:
                pass
        if kind_name == "int" and isinstance(value, float) and value.is_integer():
            values[key] = value = int(value)  # (jitter_px: 20.0)
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not (whole or (kind_name == "float" and isinstance(value, float))):
            what = "a whole number" if kind_name == "int" else "a number"
            raise ValueError(f"option {prefix}{key} expects {what}, got {value!r}")
    return values


def nest(data: dict) -> dict:
    """Options in nested form: old flat keys and dotted keys (``adalora.r_init``) go to their section."""
    out: dict = {}
    for key, value in data.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = value.to_dict() if hasattr(value, "to_dict") else dataclasses.asdict(value)
        if key in FLAT_KEYS:
            section, key = FLAT_KEYS[key]
        elif "." in key:
            section, key = key.split(".", 1)
        elif isinstance(value, dict):
            out[key] = {**out.get(key, {}), **value}
            continue
        else:
            out[key] = value
            continue
        part = out.setdefault(section, {})
        if isinstance(part, dict):
            part[key] = value
    return out


def merge_options(*layers: dict) -> dict:
    """Later layers win, section by section (``adalora``, ``qat``); every layer may use old flat keys."""
    merged: dict = {}
    for layer in layers:
        for key, value in nest(layer).items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged


def _flat_alias(section: str, name: str) -> property:
    def get(self):
        value = getattr(getattr(self, section), name)
        return list(value) if isinstance(value, tuple) else value
    return property(get, doc=f"Old flat name of ``{section}.{name}`` (read-only; as in config.json).")


for _flat, (_section, _name) in FLAT_KEYS.items():
    setattr(TrainConfig, _flat, _flat_alias(_section, _name))


def _field(name: str) -> tuple[dataclasses.Field, dict]:
    """The dataclass field of a TrainConfig option (``epochs``, ``budget``, ``adalora.budget``) and its metadata."""
    if name in FLAT_KEYS:
        section, key = FLAT_KEYS[name]
    else:
        section, _, key = name.rpartition(".")
    kind = {"": TrainConfig, "adalora": AdaLoRAConfig, "qat": QATConfig}.get(section)
    fields = {f.name: f for f in dataclasses.fields(kind)} if kind else {}
    if key not in fields:
        raise KeyError(f"no training option {name!r}")
    f = fields[key]
    return f, dict(f.metadata)


def field_help(name: str) -> str:
    """The help text of a training option, e.g. ``field_help("epochs")`` or ``field_help("qat.variant")``."""
    return _field(name)[1].get("help", "")


def field_choices(name: str) -> tuple | None:
    """The allowed values of a training option, or None when any value of its type goes."""
    return _field(name)[1].get("choices")


def field_type(name: str) -> str:
    """The annotation of a training option as written (``"int | None"``, ``"float"``, ``"bool"`` …)."""
    return str(_field(name)[0].type)


def field_default(name: str):
    f = _field(name)[0]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def preset_names() -> list[str]:
    """The bundled YAML recipes (``paper`` first: the default)."""
    return sorted((p.stem for p in PRESETS_DIR.glob("*.yaml")), key=lambda n: (n != "paper", n))


def preset_path(name: str) -> Path:
    """A preset name (``paper``, ``authors``) or a path to a YAML file; unknown names are errors."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESETS_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(preset_names())} or give a .yaml file")
    if not path.is_file():
        raise ValueError(f"{path}: preset file not found")
    return path


def load_preset(name: str, stage: int, mode: str | None = None) -> dict:
    """Options of a YAML preset for ``stage`` (top-level keys ← its ``stageN:`` section ← its
    ``stageN_MODE:`` section, e.g. ``stage1_adalora:`` for an AdaLoRA step after a full run), nested."""
    data = yaml.safe_load(preset_path(name).read_text()) or {}
    stage_part = data.pop(f"stage{stage}", None) or {}
    common = {k: v for k, v in data.items() if not k.startswith("stage")}
    mode = mode or stage_part.get("mode") or common.get("mode")
    return merge_options(common, stage_part, (data.get(f"stage{stage}_{mode}") or {}) if mode else {})


def make_config(preset: str | None, stage: int, overrides: dict) -> TrainConfig:
    """Defaults ← YAML preset ← explicit overrides (None values ignored; flat or nested keys)."""
    layers: list[dict] = [{"stage": stage}]
    if preset:
        layers[0]["preset"] = Path(preset).stem if Path(preset).suffix else preset
        layers.append(load_preset(preset, stage, overrides.get("mode")))
    layers.append({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(merge_options(*layers))
