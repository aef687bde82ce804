"""Stage 1 → Stage 2 → export as one resumable run: ``adaqat train --stage all`` and ``train(stage="all")``.

The run folder of a chain::

    RUN/chain.json                 what was asked: preset, options, INT8 profile, from_run (the resume base)
    RUN/progress.jsonl             one ``chain`` record per step (start, done, skipped) and ``chain_done``
    RUN/stage1/                    the Stage-1 run (AdaLoRA; left out with ``from_run``, an existing one)
    RUN/stage2/                    the Stage-2 run (INT8 QAT from Stage 1's best checkpoint)
    RUN/model_int8.safetensors     INT8 model (Stage 2's best; profile deploy or paper)
    RUN/baseline_fp32.safetensors  FP32 baseline (Stage 1's best), for the SSIM views

Options apply to both stages, except the Stage-1 ones (:data:`STAGE1_ONLY`: start weights, adapters,
epochs, learning rates …), which Stage 2 takes from the preset's ``stage2:`` section; ``stage2.KEY``
(``--set stage2.epochs=3``, ``--qat-epochs 3``) sets one for Stage 2 alone, ``stage1.KEY`` for Stage 1.
With ``resume``, a finished step is skipped, a step with a checkpoint resumes, the rest start: a kill in
Stage 2 never redoes Stage 1. This module is the chain's configuration, torch-free (the dock builds it);
:func:`napari_adaqat.train.run.run_chain` runs it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from napari_adaqat.data.folders import check_output_folder
from napari_adaqat.train.config import FLAGS, TrainConfig, make_config, nest, preset_path
from napari_adaqat.train.paths import CHAIN_FILE, chain_note, run_paths, run_stage
from napari_adaqat.train.preflight import preflight
from napari_adaqat.train.progress import read_progress
from napari_adaqat.util.errors import first_line
from napari_adaqat.util.fields import from_fields

__all__ = ["Chain", "INT8_NAME", "FP32_NAME", "chain_paths", "chain_preflight", "config_args", "finished",
           "load_chain", "recipe_file", "stage_options", "train_args"]

INT8_NAME, FP32_NAME = "model_int8.safetensors", "baseline_fp32.safetensors"
PROFILES = ("deploy", "paper")
ADAPTER_MODES = ("adalora", "lora")
# TrainConfig options that only Stage 1 takes from the caller (Stage 2 starts from Stage 1's model)
STAGE1_ONLY = ("checkpoint", "from_run", "mode", "model_type", "image_size", "mask_refiner", "mask_refiner_levels",
               "refiner_aux_loss", "train_prompt_encoder", "ema_decay", "adalora", "epochs", "patience", "lr_adapter",
               "lr_decoder", "lr_other", "lr_schedule", "warmup_epochs", "vote_epochs")


def chain_paths(out: str | Path) -> dict[str, Path]:
    """The files and folders of chain run ``out``."""
    root = Path(out)
    return {"root": root, "config": root / CHAIN_FILE, "progress": root / "progress.jsonl",
            "stage1": root / "stage1", "stage2": root / "stage2", "int8": root / INT8_NAME, "fp32": root / FP32_NAME,
            "vote": root / "vote"}


def finished(run: str | Path) -> bool:
    """True when stage run ``run`` holds a best checkpoint and its progress log ends with ``done``."""
    records = read_progress(run_paths(run)["progress"])
    return run_paths(run)["best"].is_file() and bool(records) and records[-1].get("kind") == "done"


def stage_options(options: dict, stage: int) -> dict:
    """The caller's options for one stage: all of them for Stage 1, less :data:`STAGE1_ONLY` for Stage 2;
    ``stageN.KEY`` keys go to stage N alone (nested, as :func:`~napari_adaqat.train.config.nest` writes)."""
    own = f"stage{stage}."
    picked = {k[len(own):]: v for k, v in options.items() if k.startswith(own)}
    common = nest({k: v for k, v in options.items() if not k.startswith(("stage1.", "stage2."))})
    if stage == 2:
        common = {k: v for k, v in common.items() if k not in STAGE1_ONLY}
    merged = dict(common)
    for key, value in nest(picked).items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


@dataclass
class Chain:
    """What a chain run does; saved as ``RUN/chain.json``.

    ``options`` are TrainConfig options as a caller gives them (``{"data": "DATA", "epochs": 5,
    "stage2.epochs": 2}``); ``from_run`` an existing Stage-1 run to continue from (no Stage 1 then;
    its data and preset are the defaults); ``profile`` the INT8 file's; ``scores`` a JSON file recorded
    in both model files.
    """

    out: str
    preset: str | None = None
    options: dict = field(default_factory=dict)
    profile: str = "deploy"
    from_run: str | None = None
    scores: str | None = None

    def __post_init__(self) -> None:
        self.out = str(self.out)
        self.from_run = str(self.from_run) if self.from_run else None
        self.options = {k: str(v) if isinstance(v, Path) else v for k, v in self.options.items() if v is not None}
        if self.profile not in PROFILES:
            raise ValueError(f"profile must be one of {list(PROFILES)}, got {self.profile!r}")

    @classmethod
    def from_config(cls, config: TrainConfig, out: str | Path, **fields) -> "Chain":
        """The chain whose Stage 1 is ``config`` (a Stage-1 config from a preset: only the options that
        differ from the preset's own values are kept, so Stage 2 gets the preset's)."""
        base = _flat(make_config(config.preset, 1, {}).to_dict())
        mine = _flat(config.to_dict())
        options = {k: v for k, v in mine.items() if base.get(k) != v and k not in ("stage", "out", "preset")}
        return cls(out=str(out), preset=config.preset, options=options, **fields)

    @property
    def paths(self) -> dict[str, Path]:
        return chain_paths(self.out)

    @property
    def stage1_dir(self) -> Path:
        return Path(self.from_run) if self.from_run else self.paths["stage1"]

    def _saved_stage1(self) -> dict:
        try:
            return json.loads(run_paths(self.stage1_dir)["config"].read_text()) if self.from_run else {}
        except (OSError, ValueError):
            return {}

    def _preset(self) -> str:
        return self.preset or self._saved_stage1().get("preset") or "paper"

    def stage1(self) -> TrainConfig | None:
        """Stage 1's configuration (None with ``from_run``: that run is Stage 1)."""
        if self.from_run:
            return None
        return make_config(self._preset(), 1, {**stage_options(self.options, 1), "out": str(self.stage1_dir)})

    def stage2(self) -> TrainConfig:
        """Stage 2's configuration: the preset's Stage 2, the common options, Stage 1's best as the start."""
        saved = self._saved_stage1()
        options = {"data": saved.get("data"), "masks_as_given": bool(saved.get("masks_as_given")),  # Stage 1's data
                   **stage_options(self.options, 2),
                   "from_run": str(self.stage1_dir), "out": str(self.paths["stage2"]), "checkpoint": None}
        mode = saved.get("mode") if self.from_run else self.stage1().mode
        if mode not in ADAPTER_MODES and "trainable" not in options.get("qat", {}):
            options["qat"] = {**options.get("qat", {}), "trainable": "authors"}  # no Λ to train: the decoders do
        return make_config(self._preset(), 2, options)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def argv(self, resume: bool = False) -> list[str]:
        """The ``adaqat train`` arguments of this chain (without the program); every option round-trips
        (:func:`train_args`)."""
        args = ["train", "--stage", "all", "--out", self.out, "--profile", self.profile]
        args += ["--preset", self.preset] if self.preset else []
        args += ["--from", self.from_run] if self.from_run else []
        args += ["--scores", self.scores] if self.scores else []
        return args + train_args(self.options) + (["--resume"] if resume else [])


def train_args(options: dict) -> list[str]:
    """``adaqat train`` arguments that set ``options`` (dotted keys): the option's flag where it has one
    (``--epochs 3``), else ``--set KEY=VALUE`` with the value as JSON (which YAML reads back)."""
    flags = {option: flag for flag, option in FLAGS.items()}
    args: list[str] = []
    for key, value in _flat(nest(options)).items() if options else ():
        flag = flags.get(key)
        if flag and isinstance(value, bool):
            args += [flag] if value else ["--set", f"{key}=false"]
        elif flag and value is not None and not isinstance(value, (list, dict)):
            args += [flag, str(value)]
        else:
            args += ["--set", f"{key}={json.dumps(value)}"]
    return args


def config_args(config: TrainConfig, resume: bool = False) -> list[str]:
    """The ``adaqat train --stage 1|2`` arguments that rebuild ``config``: its preset and what differs from
    the preset's values (with ``resume``, the run's config.json is the base: the same differences again)."""
    base = _flat(make_config(config.preset, config.stage, {}).to_dict())
    changed = {k: v for k, v in _flat(config.to_dict()).items() if base.get(k) != v and k not in ("stage", "preset")}
    args = ["train", "--stage", str(config.stage), "--preset", config.preset]
    return args + train_args(changed) + (["--resume"] if resume else [])


def _flat(data: dict, prefix: str = "") -> dict:
    """Nested dict → dotted keys (lists and tuples compared as lists)."""
    out: dict = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def load_chain(out: str | Path, **changes) -> Chain:
    """The chain saved in ``out`` (for ``--resume``); ``changes`` (None values ignored) update it, and
    ``options`` in them are merged into the saved options."""
    path = chain_paths(out)["config"]
    if not path.is_file():
        raise ValueError(f"{out}: nothing to resume (no chain.json); run without --resume")
    saved = json.loads(path.read_text())
    options = {**saved.get("options", {}), **(changes.pop("options", None) or {})}
    saved.update({k: v for k, v in changes.items() if v is not None}, options=options, out=str(out))
    return from_fields(Chain, saved, f"{path.name} (from another version?)")


def _resume_stage(run: Path, resume: bool) -> bool:
    return resume and run_paths(run)["last"].is_file()


def chain_preflight(chain: Chain, resume: bool = False) -> None:
    """Refuse a chain that cannot run, before anything is written (one line; the stages' own
    :func:`~napari_adaqat.train.preflight.preflight` included)."""
    paths = chain.paths
    if not chain.out:
        raise ValueError("Choose a run folder (--out RUN)")
    if not resume and (paths["config"].is_file() or paths["int8"].is_file()):
        raise FileExistsError(f"{chain.out} already holds a chain run; pass --resume to continue it "
                              "or choose another --out")
    stage = run_stage(chain.out)
    if stage is not None or run_paths(chain.out)["last"].is_file():  # a Stage-N run's folder: never mixed in
        what = f"a Stage-{stage} run (adaqat train --stage {stage})" if stage else "a training run's checkpoints"
        raise FileExistsError(f"{chain.out} holds {what}; choose another --out"
                              + (f" (--from {chain.out} starts the chain from it)" if stage == 1 else ""))
    if chain.from_run and Path(chain.from_run).resolve() == paths["root"].resolve():
        raise ValueError("--out must differ from --from (the Stage-1 run is never overwritten)")
    if chain.from_run and not run_paths(chain.from_run)["best"].is_file():
        raise ValueError(f"{chain.from_run} holds no Stage-1 model (checkpoints/best.safetensors)"
                         + chain_note(chain.from_run))
    stage1, stage2 = chain.stage1(), chain.stage2()
    check_output_folder(chain.out, [stage2.data] if stage2.data else [], option="--out", what="data folder")
    if stage1 is not None and not finished(stage1.out):
        preflight(stage1, _resume_stage(Path(stage1.out), resume))
    elif not finished(stage2.out):
        preflight(stage2, _resume_stage(Path(stage2.out), resume))
    if chain.preset:
        preset_path(chain.preset)  # an unknown preset: one line, now
    if chain.scores and not Path(chain.scores).is_file():
        raise ValueError(f"{chain.scores}: scores file not found")
    if chain.scores:  # read now, not after both stages have trained (the export records it)
        try:
            json.loads(Path(chain.scores).read_text())
        except (ValueError, OSError) as exc:
            raise ValueError(f"{chain.scores}: not a JSON file of scores ({first_line(exc)})") from None


def recipe_file(chain: Chain) -> Path | None:
    """The preset's YAML file, recorded in both model files (None when it cannot be found)."""
    try:
        return preset_path(chain.preset or chain.stage2().preset)
    except ValueError:
        return None
