"""What the Train dock's fields describe: the :class:`TrainConfig` of one stage, or the chain Stage 1 →
Stage 2 → model files, and the ``adaqat train`` arguments either runs with (derived by the core, so the dock
and the command line cannot drift apart). A mixin over the fields that
:func:`~napari_adaqat.widgets._train_form.make_fields` builds; :mod:`napari_adaqat.widgets.train` runs it."""
from __future__ import annotations

from typing import Optional

from magicgui.widgets import FileEdit

from napari_adaqat.train.chain import Chain, chain_paths, config_args, load_chain
from napari_adaqat.train.config import TrainConfig, make_config
from napari_adaqat.train.paths import run_paths, run_stage
from napari_adaqat.train.preflight import BUNDLED
from napari_adaqat.train.run import resolve_config


def typed_path(edit: FileEdit) -> str:
    """The typed path, '' when empty (``FileEdit.value`` would turn '' into '.')."""
    return str(edit.line_edit.value or "").strip()


class TrainFormReading:
    """Reads the Train dock's fields (``stage``, ``data``, ``out``, ``checkpoint``, … as attributes)."""

    def options(self) -> dict:
        """The TrainConfig options the fields set (0 and empty leave them to the preset or, on resume, the run)."""
        stage, numbers = self.stage.value, (("epochs", self.epochs), ("batch_size", self.batch_size),
                                            ("max_steps_per_epoch", self.max_steps))
        opts = {"data": typed_path(self.data), "out": typed_path(self.out), "device": self.device.value,
                **{k: int(w.value) for k, w in numbers if int(w.value) > 0}}
        if self.masks_as_given.value:  # (the run's config.json keeps it on resume)
            opts["masks_as_given"] = True
        if self.resume.value:
            return opts
        ckpt = typed_path(self.checkpoint)
        if stage == 2:
            opts["from_run"] = typed_path(self.from_run) or None
        else:
            opts.update(checkpoint=ckpt or None, mode=self.mode.value)
            if not (ckpt == BUNDLED or ckpt.endswith(".safetensors")):  # our files carry their architecture
                opts["model_type"] = self.model_type.value
        return opts

    def config(self) -> TrainConfig:
        """The run the fields describe (the chain's Stage 1 for 'all'); ValueError (one line) when it cannot be."""
        stage = 1 if self.stage.value == "all" else int(self.stage.value)
        opts = self.options()
        if self.resume.value and run_paths(opts["out"])["config"].is_file():
            own = self.resumed_stage()
            if own is not None and self.stage.value != own:  # (the API and the CLI refuse it too)
                raise ValueError(f"{opts['out']} is a Stage-{own} run: Resume continues it with stage {own}")
            return resolve_config(None, None, opts, resume=True)  # the run's own stage
        return make_config(self.preset.value, stage, opts)

    def resumed_stage(self) -> Optional[int]:
        """The stage (1 or 2) of the stage run in 'run folder' that Resume would continue; None when Resume is off,
        or the folder holds a chain (``--stage all``) or no run."""
        out = typed_path(self.out)
        if not (self.resume.value and out) or chain_paths(out)["config"].is_file():
            return None
        return run_stage(out)

    def chain(self) -> Chain:
        """The chain Stage 1 → Stage 2 → model files the fields describe, into 'run folder'."""
        out = typed_path(self.out)
        if self.resume.value and chain_paths(out)["config"].is_file():  # the saved chain ← what is typed in
            options = {k: v for k, v in self.options().items() if k != "out"}
            return load_chain(out, options=self._stage2_epochs(options), profile=self.profile.value)
        chain = Chain.from_config(self.config(), typed_path(self.out), profile=self.profile.value)
        chain.options = self._stage2_epochs(chain.options)
        return chain

    def _stage2_epochs(self, options: dict) -> dict:
        return {**options, "stage2.epochs": int(self.qat_epochs.value)} if self.qat_epochs.value else options

    def _argv(self) -> list[str]:
        if self.stage.value == "all":
            return self.chain().argv(bool(self.resume.value))
        return config_args(self.config(), bool(self.resume.value))
